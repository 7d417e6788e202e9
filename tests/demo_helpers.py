"""The demo experiment at toy sizes, for the demo tests (the quick demo file it extends is filled in)."""

from __future__ import annotations

TOY = """extends: {quick}
name: demo-toy
data: {{sets: {{train: {{n: 8}}, val: {{n: 5}}, test: {{n: 10}}, ood: {{n: 6}}, ood_near: {{n: 6}}}}}}
eval: {{batch_size: 16}}
arms:
  sft: {{overrides: {{per_device_train_batch_size: 4}}}}
  grpo_binary: {{overrides: {{per_device_train_batch_size: 8, num_generations: 4}}}}
  grpo_fgrpr: {{overrides: {{per_device_train_batch_size: 8, num_generations: 4}}}}
report: {{n_boot: 100}}
"""
