"""Checks of a parsed training job that need no model: paths, choices, rewards, checkpoints.

Each failure raises :class:`~crowdvlm.train.config.ConfigError` naming the recipe, the key to change and how.
The data itself (a manifest with no usable rows or no ground truth) is checked when it is loaded, which the
runners also do before loading any model.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from crowdvlm.pointing.frame import CONVENTIONS as POINT_FRAMES
from crowdvlm.train.config import (
    OUTPUT_FORMATS,
    PROMPT_TEMPLATES,
    ConfigError,
    GRPOScriptArguments,
    SFTScriptArguments,
    TrainJob,
)


def validate_job(job: TrainJob) -> None:
    """Check everything that does not need the model: paths, choices, rewards, checkpoints.

    Raises:
        ConfigError: naming the key to change.
    """
    from crowdvlm.modeling import check_model_path

    m, s = job.model, job.script
    where = f"{job.recipe}: " if job.recipe else ""
    if not m.model_name_or_path:
        raise ConfigError(
            f"{where}no model: set model_name_or_path in the recipe or pass --model_name_or_path DIR"
        )
    try:
        check_model_path(m.model_name_or_path)
    except FileNotFoundError as err:
        raise ConfigError(f"{where}{err}") from None
    if not s.dataset:
        raise ConfigError(
            f"{where}no training data: set dataset in the recipe or pass --dataset MANIFEST [...]"
        )
    for path in s.dataset:
        if not Path(path).is_file():
            raise ConfigError(f"{where}dataset {path} not found: --dataset takes manifest files (JSONL)")
    if s.prompt_template not in PROMPT_TEMPLATES:
        raise ConfigError(
            f"{where}prompt_template must be one of {PROMPT_TEMPLATES}, got {s.prompt_template!r}"
        )
    if s.output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"{where}output_format must be one of {OUTPUT_FORMATS}, got {s.output_format!r}")
    if s.point_frame not in POINT_FRAMES:
        raise ConfigError(f"{where}point_frame must be one of {POINT_FRAMES}, got {s.point_frame!r}")
    if m.save_merged and not m.use_peft:
        raise ConfigError(
            f"{where}save_merged applies to LoRA runs: set use_peft: true or remove save_merged"
        )
    if m.save_merged and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        raise ConfigError(
            f"{where}save_merged cannot merge weights sharded by ZeRO-3: remove save_merged and run "
            "`crowdvlm model merge OUTPUT_DIR --out MERGED_DIR` after training, or launch with zero2.yaml"
        )
    for backend in ("wandb", "tensorboard"):
        if backend in (job.training.report_to or []) and importlib.util.find_spec(backend) is None:
            raise ConfigError(
                f"{where}report_to includes {backend} but it is not installed: pip install {backend} "
                "(`pip install -e '.[cluster]'` brings wandb), or remove it from report_to"
            )
    if isinstance(s, SFTScriptArguments) and "{count}" not in s.sft_reasoning and s.output_format == "think":
        raise ConfigError(f"{where}sft_reasoning must contain {{count}} (the count the answer repeats)")
    if isinstance(s, GRPOScriptArguments):
        _validate_rewards(job, where)
        if s.sample_completions_steps < 0 or s.num_sample_completions < 0:
            raise ConfigError(f"{where}sample_completions_steps and num_sample_completions must be >= 0")
    _validate_checkpoints(job, where)


def _validate_rewards(job: TrainJob, where: str) -> None:
    from crowdvlm.rewards import POINT_REWARDS, REWARDS, build_reward

    s, t = job.script, job.training
    if not s.rewards:
        raise ConfigError(
            f"{where}no rewards: set rewards, e.g. [fgrpr, format] (the paper) or [binary, format]"
        )
    unknown = [name for name in s.rewards if name not in REWARDS]
    if unknown:
        raise ConfigError(f"{where}unknown reward(s) {unknown}; valid: {sorted(REWARDS)}")
    stray = sorted(set(s.reward_kwargs) - set(s.rewards))
    if stray:
        raise ConfigError(f"{where}reward_kwargs names reward(s) {stray} that are not in rewards {s.rewards}")
    for name in s.rewards:
        try:
            build_reward(name, **s.reward_kwargs.get(name, {}))
        except TypeError as err:
            raise ConfigError(f"{where}reward_kwargs for {name!r}: {err}") from None
    if t.reward_weights is not None and len(t.reward_weights) != len(s.rewards):
        raise ConfigError(
            f"{where}reward_weights has {len(t.reward_weights)} value(s) but rewards has {len(s.rewards)} "
            f"({s.rewards}): give one weight per reward"
        )
    pointing = sorted(set(s.rewards) & POINT_REWARDS)
    if pointing and s.output_format != "points":
        raise ConfigError(
            f"{where}reward(s) {pointing} score point answers: set output_format: points (manifests with points)"
        )
    if s.output_format in ("answer-only", "points") and "format" in s.rewards:
        raise ConfigError(
            f"{where}reward 'format' requires a <think> block, which output_format {s.output_format} never asks "
            "for: use 'answer_format' (answer-only) or 'point_consistency' (points) instead"
        )


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered ``checkpoint-N`` folder in ``output_dir`` that holds a trainer state, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    done = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    done = [p for p in done if p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _validate_checkpoints(job: TrainJob, where: str) -> None:
    existing = last_checkpoint(job.output_dir)
    if existing is not None and not job.script.resume and not job.training.resume_from_checkpoint:
        raise ConfigError(
            f"{where}{job.output_dir} already holds {existing.name}: pass --resume to continue it, or choose "
            "another --output_dir"
        )
