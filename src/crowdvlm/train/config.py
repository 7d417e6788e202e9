"""Training configuration: dataclasses parsed by TRL's ``TrlParser`` from a YAML recipe plus overrides.

A run is described by three dataclasses, parsed together so that every field is one flat YAML key and one
``--key value`` override: :class:`ModelArguments` (what to load and how), a script dataclass
(:class:`SFTScriptArguments` or :class:`GRPOScriptArguments`: data, rewards, logging, resuming) and TRL's own
``SFTConfig`` / ``GRPOConfig`` (optimiser, batch, checkpoints, GRPO hyper-parameters). Unknown keys are
rejected. Everything that can be checked without loading a model is then checked by
:func:`crowdvlm.train.checks.validate_job`, so a bad recipe fails in a second with a message that says what
to change.

Over ~400 lines on purpose: it is the recipe's schema, one field per recipe key with its help text, which
``crowdvlm train --help`` and the recipe check read from one place; splitting the fields would split the schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from crowdvlm.train.checks import check_num_generations, validate_job
from crowdvlm.train.errors import ConfigError

# The SFT target's reasoning for the `think` output format: short, templated, and ending in the count, so a
# model learns the paper's `<think>...</think><answer>N</answer>` shape without inventing reasoning we do not have.
DEFAULT_SFT_REASONING = (
    "I count each object in the image once, from the top left to the bottom right: {count} in total."
)


@dataclass
class ModelArguments:
    """What model to load and how (shared by SFT and GRPO).

    Not a subclass of ``trl.ModelConfig`` on purpose: that class also declares 4/8-bit loading, DoRA, rsLoRA,
    ``lora_modules_to_save`` and ``model_revision``, which crowdvlm's loader (:func:`crowdvlm.modeling.load_model_and_processor`)
    does not apply; inheriting them would let a recipe set ``load_in_4bit: true`` and silently train in full
    precision. The fields shared with it keep TRL's names and meaning (LoRA defaults differ: r 64 / alpha 128,
    the paper-scale adapters). A field added here must be applied by the loader.
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model folder in Hugging Face format (e.g. runs/tiny-model) or a Hub id."},
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={"help": "Weights dtype: auto (the checkpoint's), bfloat16, float16 or float32."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel: sdpa, eager, flash_attention_2 (None: transformers picks)."},
    )
    min_pixels: int | None = field(
        default=None,
        metadata={"help": "Smallest image area (pixels) the processor resizes to; None: the model's."},
    )
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "Largest image area (pixels) the processor resizes to; None: the model's."},
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the vision tower (and its merger)."})
    use_peft: bool = field(
        default=False, metadata={"help": "Train LoRA adapters instead of the full weights."}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha (scaling numerator)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules to adapt; default: the language model's q/k/v/o and gate/up/down projections."
        },
    )
    lora_include_vision: bool = field(
        default=False,
        metadata={"help": "Also adapt matching vision-tower modules (vLLM cannot serve these)."},
    )
    save_merged: bool = field(
        default=False,
        metadata={"help": "LoRA runs: also save base+adapter merged weights in OUTPUT_DIR/merged."},
    )


@dataclass
class _ScriptArguments:
    """Data, logging and resuming fields common to SFT and GRPO."""

    dataset: list[str] = field(
        default_factory=list, metadata={"help": "One or more manifests (JSONL) to train on, concatenated."}
    )
    prompt_template: str = field(
        default="train", metadata={"help": "Prompt wording: train (the paper's training prompt) or eval."}
    )
    output_format: str = field(
        default="think",
        metadata={
            "help": "Answer shape: think (<think>..</think><answer>N</answer>), answer-only (<answer>N</answer>) "
            'or points ([{"point_2d": [x, y], ...}, ...]<answer>N</answer>, needs manifests with points).'
        },
    )
    point_frame: str = field(
        default="resized",
        metadata={
            "help": "output_format points: the frame points are given in: resized (Qwen2.5-VL, pixels of the "
            "processor-resized image), relative-1000 (Qwen3-VL, 0-1000 per side) or original (image pixels)."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue from the last checkpoint in output_dir (same data order); fresh start if none."
        },
    )
    log_file: str = field(
        default="log.jsonl", metadata={"help": "JSONL log of metrics and samples, relative to output_dir."}
    )
    skip_bad_images: bool = field(
        default=False,
        metadata={
            "help": "Leave out images that fail to decode or that the processor would reject, listed in "
            "output_dir/bad_images.tsv (default: refuse the run before loading the model)."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):  # `dataset: one.jsonl` in YAML
            self.dataset = [self.dataset]
        self.dataset = [str(p) for p in self.dataset or []]


@dataclass
class SFTScriptArguments(_ScriptArguments):
    """SFT-specific fields."""

    sft_reasoning: str = field(
        default=DEFAULT_SFT_REASONING,
        metadata={
            "help": "Text inside <think></think> of the SFT targets (think format); {count} is the count."
        },
    )
    skip_long_targets: bool = field(
        default=False,
        metadata={
            "help": "Leave out rows whose SFT target (e.g. the point list of a dense crowd) is longer than the "
            "model takes, counted in the log (default: refuse the run before loading the model)."
        },
    )


# GRPOScriptArguments' switches of GroupSharedGRPOTrainer (docs/speed.md).
SHARING_SWITCHES = ("share_processing", "share_prefill", "share_vision", "share_prefix")


@dataclass
class GRPOScriptArguments(_ScriptArguments):
    """GRPO-specific fields: rewards by name (weights are TRL's `reward_weights`), prompt sharing."""

    rewards: list[str] = field(
        default_factory=lambda: ["fgrpr", "format"],
        metadata={
            "help": "Reward functions by name (crowdvlm.rewards.REWARDS): the paper fgrpr format; baseline binary format."
        },
    )
    reward_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Per-reward parameters, e.g. {"fgrpr": {"band": 0.5}} (JSON on the command line).'},
    )
    share_prompt: bool = field(
        default=True,
        metadata={
            "help": "Encode each image once per GRPO group (GroupSharedGRPOTrainer); false: stock TRL."
        },
    )
    share_processing: bool = field(
        default=True,
        metadata={"help": "With share_prompt: run the image processor once per distinct prompt of a batch."},
    )
    share_prefill: bool = field(
        default=True,
        metadata={"help": "With share_prompt: prefill each distinct prompt once in generation."},
    )
    share_vision: bool = field(
        default=True,
        metadata={
            "help": "With share_prompt: run the vision tower once per distinct image in the log-prob passes."
        },
    )
    share_prefix: bool = field(
        default=True,
        metadata={
            "help": "With share_prompt: run each distinct prompt once in the log-prob passes, its completions "
            "packed after it (needs share_vision)."
        },
    )
    sample_completions_steps: int = field(
        default=10,
        metadata={
            "help": "Every N optimiser steps, log a few sampled completions with their rewards (0: never)."
        },
    )
    num_sample_completions: int = field(
        default=4, metadata={"help": "How many completions each sample shows."}
    )
    num_sample_groups: int = field(
        default=2,
        metadata={
            "help": "With report_to tensorboard: how many GRPO groups (image, true count, completions, parsed "
            "counts, rewards) TensorBoard shows every sample_completions_steps."
        },
    )
    dynamic_sampling: str = field(
        default="off",
        metadata={
            "help": "Groups whose completions all score alike on dynamic_sampling_signal: off (kept), drop (left "
            "out of the loss, which then averages over the other groups) or resample (replaced by groups of "
            "fresh prompts, up to dynamic_sampling_max_resamples draws, then dropped). docs/rewards.md."
        },
    )
    dynamic_sampling_signal: str = field(
        default="exact",
        metadata={
            "help": "What must vary within a group for it to stay: reward (the weighted reward sum), exact "
            "(the count is right) or within_k (the count is within dynamic_sampling_k)."
        },
    )
    dynamic_sampling_k: int = field(default=1, metadata={"help": "within_k: the tolerance of a right count."})
    dynamic_sampling_max_resamples: int = field(
        default=2, metadata={"help": "resample: at most this many extra generation batches per step."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rewards, str):  # `rewards: fgrpr` or `rewards: fgrpr,format` in YAML
            self.rewards = [name for name in self.rewards.replace(",", " ").split() if name]
        if not all(isinstance(name, str) for name in self.rewards or []):
            raise ConfigError(f"rewards must be a list of reward names, got {self.rewards!r}")
        if isinstance(self.reward_kwargs, str):
            try:
                self.reward_kwargs = json.loads(self.reward_kwargs)
            except json.JSONDecodeError as err:
                raise ConfigError(
                    f"reward_kwargs is not valid JSON ({err.msg}): {self.reward_kwargs!r}"
                ) from None
        self.reward_kwargs = dict(self.reward_kwargs or {})
        if self.share_prefix and not self.share_vision:
            raise ConfigError(
                "share_prefix: true needs share_vision: true (the packed prompts take the shared image "
                "features); set share_prefix: false too"
            )

    @property
    def sharing_switches(self) -> dict[str, bool]:
        """The four ``share_*`` switches, as ``GroupSharedGRPOTrainer``'s keyword arguments."""
        return {name: getattr(self, name) for name in SHARING_SWITCHES}


@dataclass
class TrainJob:
    """Everything one training run needs, parsed and validated."""

    kind: Literal["sft", "grpo"]
    model: ModelArguments
    script: SFTScriptArguments | GRPOScriptArguments
    training: Any  # trl.SFTConfig | trl.GRPOConfig
    recipe: str | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.training.output_dir)


def _trl_config_class(kind: str):
    from trl import GRPOConfig, SFTConfig

    return {"sft": SFTConfig, "grpo": GRPOConfig}[kind]


def _script_class(kind: str):
    return {"sft": SFTScriptArguments, "grpo": GRPOScriptArguments}[kind]


def make_parser(kind: str):
    """The ``TrlParser`` for ``crowdvlm train <kind>`` (``--config RECIPE.yaml`` plus ``--key value`` overrides)."""
    from trl import TrlParser

    if kind not in ("sft", "grpo"):
        raise ValueError(f"kind must be 'sft' or 'grpo', got {kind!r}")
    parser = TrlParser(
        (ModelArguments, _script_class(kind), _trl_config_class(kind)),
        prog=f"crowdvlm train {kind}",
        allow_abbrev=False,  # an unknown key that prefixes a real one (lr_sched) is refused, not taken as it
        description="--config RECIPE.yaml  the recipe (YAML); every key below, ours or TRL's, overrides it "
        "as --key value",
    )
    parser.error = _raise_config_error  # one line naming the option, not argparse's 200-line usage + exit
    return parser


def _raise_config_error(message: str):
    raise ConfigError(f"{message} (`crowdvlm train sft|grpo --help` lists every key)")


def overrides_to_argv(overrides: dict[str, Any]) -> list[str]:
    """``{"max_steps": 5, "dataset": ["a.jsonl"], "bf16": False}`` -> ``["--max_steps", "5", ...]``."""
    argv: list[str] = []
    for key, value in overrides.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, list | tuple):
            argv.extend(str(v) for v in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value).lower() if isinstance(value, bool) else str(value))
    return argv


_HINTS = {
    "divisible by num_generations": (
        "GRPO needs whole groups in every generation batch: make per_device_train_batch_size x number of "
        "processes x gradient_accumulation_steps (or steps_per_generation) a multiple of num_generations."
    ),
    "bf16/gpu": "This machine has no GPU: set bf16: false (and use_cpu: true) for a CPU run.",
}


def _read_recipe(path: str) -> dict[str, Any]:
    """The recipe's ``key: value`` mapping; a missing file, a folder or bad YAML is a ConfigError naming it."""
    import yaml

    recipe = Path(path)
    if recipe.is_dir():
        raise ConfigError(f"recipe {path} is a folder: --config takes a YAML file")
    if not recipe.is_file():
        raise ConfigError(f"recipe {path} not found")
    try:
        keys = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{at}: {problem}") from None
    if not isinstance(keys, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of key: value")
    return keys


def _raw_value(key: str, recipe_keys: dict[str, Any], argv: list[str]) -> Any:
    """The value ``key`` will get (the last ``--key v`` / ``--key=v`` of ``argv``, else the recipe's)."""
    value = recipe_keys.get(key)
    for i, arg in enumerate(argv):
        if arg == f"--{key}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
    return value


def _unknown_keys_message(keys: list[str], known: set[str], kind: str) -> str:
    """'unknown key(s) ...' with the closest valid names, for YAML keys and command-line options alike."""
    import difflib

    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=2)
        parts.append(f"{key!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return f"unknown key(s) {', '.join(parts)}; `crowdvlm train {kind} --help` lists every key"


def parse_job(
    kind: str, argv: list[str] | None = None, *, recipe: str | Path | None = None, **overrides
) -> TrainJob:
    """Parse a recipe and overrides into a validated :class:`TrainJob`, loading no model.

    Args:
        kind: "sft" or "grpo".
        argv: command-line style arguments (``["--config", "r.yaml", "--max_steps", "5"]``).
        recipe: a YAML recipe (same as ``--config``).
        **overrides: extra ``key=value`` overrides, applied last (e.g. ``output_dir="runs/x"``).

    Raises:
        ConfigError: unknown keys, invalid values or missing files, with what to change.
    """
    argv = list(argv or [])
    if recipe is not None:
        argv = ["--config", str(recipe), *argv]
    argv += overrides_to_argv(overrides)
    recipe_path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    where = f"{recipe_path}: " if recipe_path else ""
    parser = make_parser(kind)
    known = {action.dest for action in parser._actions}
    keys = _read_recipe(recipe_path) if recipe_path is not None else {}
    unknown = [k for k in keys if k not in known and k != "env"]
    if unknown:
        raise ConfigError(where + _unknown_keys_message(unknown, known, kind))
    if kind == "grpo":
        check_num_generations(_raw_value("num_generations", keys, argv), where)
    try:
        model_args, script_args, training_args = parser.parse_args_and_config(argv)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
    except ValueError as err:
        if "not used by the HfArgumentParser" in str(err):
            keys_given = [a[2:].split("=")[0] for a in argv if a.startswith("--")]
            unknown = [k for k in keys_given if k not in known and k != "config"]  # TrlParser reads --config
            raise ConfigError(where + _unknown_keys_message(unknown or [str(err)], known, kind)) from None
        hint = next((h for key, h in _HINTS.items() if key in str(err)), "")
        raise ConfigError(f"{where}{err} {hint}".strip()) from err
    job = TrainJob(kind, model_args, script_args, training_args, recipe_path)
    validate_job(job)
    return job


#: The resolved configuration of a run (:func:`job_summary`), written next to its checkpoints.
CONFIG_FILE = "crowdvlm_config.json"


def read_job_summary(output_dir: str | Path) -> dict[str, Any]:
    """The configuration a run saved (:data:`CONFIG_FILE` in its output folder), as the run resolved it.

    Raises:
        ValueError: the file is missing or not a JSON object (the message names it).
    """
    path = Path(output_dir) / CONFIG_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the run's saved configuration cannot be read ({err})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("script"), dict):
        raise ValueError(f"{path}: expected a run configuration written by crowdvlm train")
    return summary


def job_summary(job: TrainJob) -> dict[str, Any]:
    """The resolved configuration as a JSON-able dict (written next to the checkpoints)."""

    def plain(obj) -> dict[str, Any]:
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            out[f.name] = (
                value
                if isinstance(value, int | float | str | bool | list | dict | type(None))
                else str(value)
            )
        return out

    return {
        "kind": job.kind,
        "recipe": job.recipe,
        "model": plain(job.model),
        "script": plain(job.script),
        "training": job.training.to_dict(),
    }
