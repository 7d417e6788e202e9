"""Checks of a parsed training job that need no model: paths, values, choices, rewards, checkpoints.

Each failure raises :class:`~crowdvlm.train.errors.ConfigError` naming the recipe, the key to change and how.
The data itself (a manifest with no usable rows, no ground truth, images the processor would reject) is
checked when it is loaded, which the runners also do before loading any model.

This module imports nothing from :mod:`crowdvlm.train.config` (which calls :func:`validate_job`), so the two
never import each other.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdvlm.pointing.frame import CONVENTIONS as POINT_FRAMES
from crowdvlm.prompts import OUTPUTS, TEMPLATES
from crowdvlm.train.errors import ConfigError

if TYPE_CHECKING:
    from crowdvlm.train.config import TrainJob


# TRL's GRPO needs two completions per prompt for a group advantage (a smaller value fails inside TRL's
# config with a ZeroDivisionError or a ValueError, so it is checked before TRL parses the recipe).
MIN_GENERATIONS = 2

_REAL = (int, float)


def _is_real(value: Any) -> bool:
    return isinstance(value, _REAL) and not isinstance(value, bool) and math.isfinite(value)


def check_num_generations(value: Any, where: str = "") -> None:
    """Refuse a ``num_generations`` TRL cannot group (checked on the raw recipe value, before TRL sees it)."""
    if value is None:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}num_generations must be an integer >= {MIN_GENERATIONS}, got {value!r}"
        ) from None
    if not number.is_integer() or number < MIN_GENERATIONS:
        raise ConfigError(
            f"{where}num_generations must be an integer >= {MIN_GENERATIONS} (GRPO compares completions "
            f"within a group), got {value!r}"
        )


def validate_job(job: TrainJob) -> None:
    """Check everything that does not need the model: paths, values, choices, rewards, checkpoints.

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
    _validate_output_dir(job, where)
    if not s.dataset:
        raise ConfigError(
            f"{where}no training data: set dataset in the recipe or pass --dataset MANIFEST [...]"
        )
    for path in s.dataset:
        if Path(path).is_dir():
            raise ConfigError(f"{where}dataset {path} is a folder: --dataset takes manifest files (JSONL)")
        if not Path(path).is_file():
            raise ConfigError(f"{where}dataset {path} not found: --dataset takes manifest files (JSONL)")
    if s.prompt_template not in TEMPLATES:
        raise ConfigError(f"{where}prompt_template must be one of {TEMPLATES}, got {s.prompt_template!r}")
    if s.output_format not in OUTPUTS:
        raise ConfigError(f"{where}output_format must be one of {OUTPUTS}, got {s.output_format!r}")
    if s.point_frame not in POINT_FRAMES:
        raise ConfigError(f"{where}point_frame must be one of {POINT_FRAMES}, got {s.point_frame!r}")
    _validate_values(job, where)
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
    if job.kind == "sft" and "{count}" not in s.sft_reasoning and s.output_format == "think":
        raise ConfigError(f"{where}sft_reasoning must contain {{count}} (the count the answer repeats)")
    if job.kind == "grpo":
        _validate_rewards(job, where)
        if s.sample_completions_steps < 0 or s.num_sample_completions < 0 or s.num_sample_groups < 0:
            raise ConfigError(
                f"{where}sample_completions_steps, num_sample_completions and num_sample_groups must be >= 0"
            )
        from crowdvlm.train.dynamic_sampling import check_dynamic_sampling

        check_dynamic_sampling(s, job.training, where)
        if getattr(job.training, "use_vllm", False) and importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                f"{where}use_vllm is true but vLLM is not installed: `pip install 'crowdvlm[vllm]'` on a CUDA "
                "machine, `make setup-vllm` for vLLM's CPU build (.venv-vllm), or set use_vllm: false"
            )
    _validate_checkpoints(job, where)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation.replace("Optional[int]", "int | None").replace("Optional[float]", "float | None")
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _validate_values(job: TrainJob, where: str) -> None:
    """Numbers of the right kind (a YAML ``max_steps: 2.7`` reaches the dataclass unconverted) and range."""
    for config in (job.model, job.script, job.training):
        for f in fields(config):
            kind, value = _type_name(f.type), getattr(config, f.name, None)
            if value is None or isinstance(value, bool):
                continue
            if kind in ("int", "int | None"):
                if isinstance(value, float) and value.is_integer():
                    setattr(config, f.name, int(value))  # `max_steps: 10.0` means 10
                elif not isinstance(value, int):
                    raise ConfigError(f"{where}{f.name} must be an integer, got {value!r}")
            elif kind in ("float", "float | None") and not _is_real(value):
                raise ConfigError(f"{where}{f.name} must be a finite number, got {value!r}")
    t = job.training
    if not t.learning_rate > 0:
        raise ConfigError(f"{where}learning_rate must be > 0, got {t.learning_rate}")
    if t.per_device_train_batch_size < 1 or t.gradient_accumulation_steps < 1:
        raise ConfigError(
            f"{where}per_device_train_batch_size and gradient_accumulation_steps must be >= 1, got "
            f"{t.per_device_train_batch_size} and {t.gradient_accumulation_steps}"
        )
    if t.max_steps == 0 or t.max_steps < -1:
        raise ConfigError(f"{where}max_steps must be > 0 (or -1: train num_train_epochs), got {t.max_steps}")
    if job.kind == "grpo":
        check_num_generations(t.num_generations, where)
        if t.beta < 0:
            raise ConfigError(f"{where}beta (the KL weight) must be >= 0, got {t.beta}")


def _validate_output_dir(job: TrainJob, where: str) -> None:
    """Refuse an ``output_dir`` that is, or lies inside, the base model's folder (saving would overwrite it)."""
    model = Path(job.model.model_name_or_path).expanduser()
    if not model.is_dir():
        return  # a Hub id: nothing local to overwrite
    out, base = job.output_dir.expanduser().resolve(), model.resolve()
    if out == base or base in out.parents:
        raise ConfigError(
            f"{where}output_dir {job.output_dir} is inside the base model's folder {model}: the final save "
            "would overwrite or mix with the base model; choose another --output_dir"
        )


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
        params = s.reward_kwargs.get(name, {})
        if not isinstance(params, dict):
            raise ConfigError(f"{where}reward_kwargs for {name!r} must be a mapping of parameter: value")
        try:  # the reward's constructor applies the one set of rules (crowdvlm.rewards.params)
            build_reward(name, **params)
        except (TypeError, ValueError) as err:
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


def _validate_checkpoints(job: TrainJob, where: str) -> None:
    from crowdvlm.train.resume import checkpoint_dirs, checkpoint_problem, read_state

    chosen = job.training.resume_from_checkpoint
    if isinstance(chosen, str) and chosen.lower() not in ("true", "false"):  # a folder named explicitly
        problem = checkpoint_problem(chosen, need_optimizer=not job.training.save_only_model)
        if problem:
            raise ConfigError(f"{where}resume_from_checkpoint {chosen} cannot be resumed from: {problem}")
    if job.script.resume or chosen:
        return
    existing = checkpoint_dirs(job.output_dir)
    if existing:
        raise ConfigError(
            f"{where}{job.output_dir} already holds {existing[-1].name}: pass --resume to continue it, or "
            "choose another --output_dir"
        )
    if read_state(job.output_dir) is not None:
        raise ConfigError(
            f"{where}{job.output_dir} already holds a finished run: pass --resume (it will say the run is "
            "complete), or choose another --output_dir"
        )
