"""Peak GPU memory of a training run, per GPU, from its recipe and the model's config: no weights loaded.

The estimate is the sum of what lives on a GPU at the training pass's backward, the step's high-water mark:

- **model states**: parameters, gradients and AdamW's two moments of the trained parameters, by launch:
  without DeepSpeed (one GPU, DDP) everything in the weights' dtype, as torch's AdamW keeps its moments in the
  parameter's dtype (LoRA adapters in float32, as PEFT casts them); under DeepSpeed ZeRO the split of
  DeepSpeed's own ``estimate_zero2/zero3_model_states_mem_needs`` (16-bit weights and gradients, float32
  master weights, moments and gradient partitions; a test checks the sum against DeepSpeed's functions);
  frozen parameters (a frozen vision tower, LoRA's base) only as 16-bit weights;
- **the reference model** (beta > 0, full fine-tune; LoRA disables its adapters instead): 16-bit weights,
  sharded under ZeRO-3 as TRL's ``prepare_deepspeed`` does;
- **activations** of the training pass, counted exactly on the meta device (:mod:`crowdvlm.plan.activations`)
  for the pass's rows: stock TRL's B rows of prompt + completion, each with its image; crowdvlm's one image per
  group, and one packed ``[prompt | c1 ... cG]`` row per group where its sharing registry packs the family
  (per-row text otherwise);
- **vLLM** in colocate mode: the ``vllm_gpu_memory_utilization`` share of the card it reserves.

Generation's KV cache (gradients freed by then) is far smaller than the backward's states + activations for
every shipped recipe, and is reported beside the peak. Not counted: the CUDA context and allocator slack (about
0.5-1 GiB), DeepSpeed's communication buckets.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 2**30

# TRL 1.16's GRPOConfig / SFTConfig defaults for the keys the planner reads (a test checks them against TRL:
# importing trl would cost the planner most of its time budget).
TRL_DEFAULTS: dict[str, dict[str, Any]] = {
    "grpo": {
        "num_generations": 8,
        "per_device_train_batch_size": 8,
        "max_completion_length": 512,
        "gradient_checkpointing": True,
        "beta": 0.0,
        "use_vllm": False,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
    },
    "sft": {"per_device_train_batch_size": 8, "gradient_checkpointing": True},
}
# crowdvlm's own defaults (ModelArguments / GRPOScriptArguments).
CROWDVLM_DEFAULTS = {
    "dtype": "auto",
    "freeze_vision": False,
    "use_peft": False,
    "lora_r": 64,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "lora_include_vision": False,
    "share_prompt": False,
}
SFT_ANSWER_TOKENS = 64  # the templated reasoning and the count of the SFT targets


@dataclass
class Launch:
    """How the run is spread: GPUs in all, machines, ZeRO stage (0: no DeepSpeed)."""

    gpus: int = 1
    machines: int = 1
    zero_stage: int = 0
    source: str = "one process, no DeepSpeed (no accelerate config given or named in the recipe)"


@dataclass
class RunShape:
    """The recipe's keys the estimate depends on, with TRL's and crowdvlm's defaults filled in."""

    kind: str
    model: str
    dtype: str
    freeze_vision: bool
    use_peft: bool
    lora_r: int
    lora_target_modules: list[str]
    lora_include_vision: bool
    batch: int  # per_device_train_batch_size: completions per training micro-batch
    num_generations: int
    completion_tokens: int
    gradient_checkpointing: bool
    beta: float
    share_prompt: bool
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    min_pixels: int | None = None
    max_pixels: int | None = None
    attn_implementation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_recipe_shape(path: str | Path) -> tuple[RunShape, dict[str, Any]]:
    """The :class:`RunShape` of a recipe YAML (read as data: no dataset or output folder is touched)."""
    from crowdvlm.train.config import _read_recipe

    keys = _read_recipe(str(path))
    kind = "grpo" if "rewards" in keys or "num_generations" in keys else "sft"
    merged = CROWDVLM_DEFAULTS | TRL_DEFAULTS[kind] | {k: v for k, v in keys.items() if v is not None}
    if not merged.get("model_name_or_path"):
        from crowdvlm.train.errors import ConfigError

        raise ConfigError(f"{path}: no model_name_or_path: the planner needs the model's config")
    shape = RunShape(
        kind=kind,
        model=str(merged["model_name_or_path"]),
        dtype=str(merged["dtype"]),
        freeze_vision=bool(merged["freeze_vision"]),
        use_peft=bool(merged["use_peft"]),
        lora_r=int(merged["lora_r"]),
        lora_target_modules=list(merged["lora_target_modules"]),
        lora_include_vision=bool(merged["lora_include_vision"]),
        batch=int(merged["per_device_train_batch_size"]),
        num_generations=int(merged.get("num_generations", 1)),
        completion_tokens=int(merged.get("max_completion_length", SFT_ANSWER_TOKENS)),
        gradient_checkpointing=bool(merged["gradient_checkpointing"]),
        beta=float(merged.get("beta", 0.0)),
        share_prompt=bool(merged["share_prompt"]),
        use_vllm=bool(merged.get("use_vllm", False)),
        vllm_mode=str(merged.get("vllm_mode", "colocate")),
        vllm_gpu_memory_utilization=float(merged.get("vllm_gpu_memory_utilization", 0.3)),
        min_pixels=merged.get("min_pixels"),
        max_pixels=merged.get("max_pixels"),
        attn_implementation=merged.get("attn_implementation"),
    )
    return shape, keys


_LAUNCH_LINE = re.compile(r"--config_file\s+(\S+\.yaml)")


def read_launch(accelerate_config: str | Path | None, recipe: str | Path | None, gpus: int | None) -> Launch:
    """The launch from an accelerate config, else the one the recipe's header names; ``gpus`` overrides."""
    import yaml

    source = "given"
    if accelerate_config is None and recipe is not None:
        header = Path(recipe).read_text(encoding="utf-8")
        match = _LAUNCH_LINE.search(header)
        if match:  # written relative to the repository root, two folders above recipes/<model>/
            named = [Path(match.group(1)), Path(recipe).resolve().parents[2] / match.group(1)]
            found = next((p for p in named if p.is_file()), None)
            if found is not None:
                accelerate_config, source = found, "named in the recipe's header"
    launch = Launch()
    if accelerate_config is not None:
        path = Path(accelerate_config)
        if not path.is_file():
            raise FileNotFoundError(f"accelerate config {path} not found")
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        machines = int(config.get("num_machines", 1) or 1)
        processes = int(config.get("num_processes", 1) or 1)
        stage = 0
        if str(config.get("distributed_type", "")).upper() == "DEEPSPEED":
            stage = int((config.get("deepspeed_config") or {}).get("zero_stage", 0))
        kind = f"DeepSpeed ZeRO-{stage}" if stage else str(config.get("distributed_type", "NO"))
        launch = Launch(processes, machines, stage, f"{kind} ({path}, {source})")
    if gpus is not None:
        launch = dataclasses.replace(launch, gpus=gpus, machines=min(launch.machines, gpus))
    return launch


def load_model_config(model: str):
    """The model's transformers config: a published one crowdvlm knows offline, a local folder, or the Hub."""
    from transformers import AutoConfig

    from crowdvlm.modeling.real_configs import known_model, real_config

    if known_model(model) is not None:
        return real_config(model)
    folder = Path(model)
    if (folder / "config.json").is_file():
        return AutoConfig.from_pretrained(folder)
    if folder.exists() or model.startswith((".", "/", "runs")):
        raise FileNotFoundError(
            f"{model}: no config.json there (a model folder in Hugging Face format is needed)"
        )
    try:
        return AutoConfig.from_pretrained(model)  # the config only, from the Hub (offline: its cache)
    except OSError as err:
        from crowdvlm.modeling.real_configs import REAL_MODELS

        raise FileNotFoundError(
            f"{model}: not a folder with config.json, not in the Hub cache, and not one of the published configs "
            f"known offline ({', '.join(REAL_MODELS)}): {' '.join(str(err).split())[:200]}"
        ) from None


def weights_dtype(shape: RunShape, config):
    import torch

    name = shape.dtype
    if name == "auto":
        name = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "bfloat16")
    return getattr(torch, name.replace("torch.", ""))


def build_meta_model(config, dtype):
    """The model on the meta device (exact shapes, no memory), tied as from_pretrained ties it, its packed calls
    routed as in training."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForImageTextToText

    from crowdvlm.plan.activations import register_attention, route_packed_calls

    with init_empty_weights():
        model = AutoModelForImageTextToText.from_config(
            config, attn_implementation=register_attention(), dtype=dtype
        )
    model.tie_weights()
    route_packed_calls(model)
    return model


@dataclass
class ParameterCounts:
    total: int
    trained: int
    trained_bytes_per_param: int  # the trained parameters' own dtype (LoRA adapters: float32)
    largest: int  # the largest parameter (DeepSpeed's ZeRO-3 estimate gathers one layer at a time)
    vision: int


def count_parameters(model, shape: RunShape) -> ParameterCounts:
    """Parameters in all, trained ones (frozen vision, LoRA adapters from the target modules), largest one."""
    import torch

    total = vision = largest = 0
    trained = 0
    for name, param in model.named_parameters():
        numel = param.numel()
        total += numel
        largest = max(largest, numel)
        is_vision = ".visual." in f".{name}"
        vision += numel if is_vision else 0
        if not shape.use_peft and not (shape.freeze_vision and is_vision):
            trained += numel
    dtype_bytes = weights_dtype(shape, model.config).itemsize
    if shape.use_peft:
        targets = set(shape.lora_target_modules)
        for name, module in model.named_modules():
            is_vision = ".visual." in f".{name}"
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets:
                if is_vision and not shape.lora_include_vision:
                    continue
                trained += shape.lora_r * (module.in_features + module.out_features)
        dtype_bytes = 4
    return ParameterCounts(total, trained, dtype_bytes, largest, vision)


def model_state_bytes(counts: ParameterCounts, weight_bytes: int, launch: Launch) -> dict[str, float]:
    """Parameters, gradients and optimizer states per GPU.

    ZeRO-2 and ZeRO-3 follow DeepSpeed's estimate functions term by term for the trained parameters. ZeRO-2:
    2 bytes of 16-bit weights on every GPU, and 18 sharded ones (2 + 4 of 16- and 32-bit gradients, 4 + 8 of
    float32 master weights and moments). ZeRO-3: 18 sharded bytes (2 of weights, 4 of gradients, 12 of
    master weights and moments) and 4 per element of the largest layer, gathered whole. ZeRO-1 shards only
    the float32 states.
    """
    n = max(launch.gpus, 1)
    trained, frozen = counts.trained, counts.total - counts.trained
    if launch.zero_stage == 0:
        own = counts.trained_bytes_per_param
        return {
            "parameters": frozen * weight_bytes + trained * own,
            "gradients": trained * own,
            "optimizer": 2 * trained * own,
        }
    if launch.zero_stage == 3:
        return {
            "parameters": (2 * trained + frozen * weight_bytes) / n + 4 * counts.largest,
            "gradients": 4 * trained / n,
            "optimizer": 12 * trained / n,
        }
    return {
        "parameters": 2 * trained + frozen * weight_bytes,
        "gradients": 6 * trained / n if launch.zero_stage == 2 else 6 * trained,
        "optimizer": 12 * trained / n,
    }
