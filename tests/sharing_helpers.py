"""GroupSharedGRPOTrainer and stock trl.GRPOTrainer set up alike on the tiny Qwen2.5-VL, and one step's rows."""

from __future__ import annotations

from grpo_helpers import one_step_trainer, two_question_dataset

G = 4  # completions per prompt

PROMPTS = 2  # distinct prompts (images) per batch


def group_trainer(cls, model_dir, tmp_path, **config):
    return one_step_trainer(cls, model_dir, tmp_path, two_question_dataset(PROMPTS), generations=G, **config)


def generation_batch(trainer):
    """The rows RepeatSampler gives one step: each dataset row G times in a row."""
    dataset = trainer.train_dataset
    return [dataset[i] for i in range(PROMPTS) for _ in range(G)]
