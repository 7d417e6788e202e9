"""SFT and GRPO on counting manifests, built on TRL.

Python API (what the CLI runs; the demo calls it in-process)::

    from crowdvlm.train import parse_job, run_grpo
    job = parse_job("grpo", recipe="recipes/tiny/grpo_fgrpr.yaml", output_dir="runs/x", max_steps=20)
    result = run_grpo(job)          # TrainResult(output_dir, global_step, metrics, ...)

Heavy imports (torch, transformers, trl) happen inside the functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "TrainJob", "TrainResult", "parse_job", "run_grpo", "run_sft"]


def __getattr__(name: str) -> Any:
    if name in ("ConfigError", "TrainJob", "parse_job"):
        from crowdvlm.train import config

        return getattr(config, name)
    if name == "TrainResult":
        from crowdvlm.train.common import TrainResult

        return TrainResult
    if name == "run_sft":
        from crowdvlm.train.sft import run_sft

        return run_sft
    if name == "run_grpo":
        from crowdvlm.train.grpo import run_grpo

        return run_grpo
    raise AttributeError(f"module 'crowdvlm.train' has no attribute {name!r}")
