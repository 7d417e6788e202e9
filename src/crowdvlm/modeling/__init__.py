"""Load any Hugging Face image-text-to-text model and its processor; LoRA and a frozen vision tower.

Everything goes through the Auto classes, so Qwen2.5-VL, Qwen2-VL, Qwen3-VL and SmolVLM load the same way.
torch/transformers/peft are imported inside the functions so that importing this package stays cheap.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from crowdvlm.resize import check_pixel_bounds

logger = logging.getLogger(__name__)

# Names of the vision-side submodules across the VLM families transformers ships (Qwen2/2.5/3-VL: `visual`;
# LLaVA-style: `vision_tower` + `multi_modal_projector`; SmolVLM/Idefics3: `vision_model` + `connector`).
VISION_MODULE_KEYWORDS: tuple[str, ...] = ("visual", "vision_tower", "vision_model", "multi_modal_projector")
VISION_MODULE_REGEX = r".*\b(" + "|".join(VISION_MODULE_KEYWORDS) + r")\b.*"

# Default LoRA targets: every linear layer of the language model's attention and MLP blocks.
DEFAULT_LORA_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def is_vision_parameter(name: str) -> bool:
    """Whether a parameter or module name belongs to the vision tower (or its projector).

    >>> is_vision_parameter("model.visual.blocks.0.attn.qkv.weight")
    True
    >>> is_vision_parameter("model.language_model.layers.0.self_attn.q_proj.weight")
    False
    """
    return re.fullmatch(VISION_MODULE_REGEX, name) is not None


def build_lora_config(
    r: int = 64,
    alpha: int = 128,
    dropout: float = 0.05,
    target_modules: list[str] | str | None = None,
    include_vision: bool = False,
):
    """A ``peft.LoraConfig`` for a VLM whose vision tower stays out of LoRA unless asked.

    Args:
        r: LoRA rank.
        alpha: LoRA scaling numerator (``lora_alpha``).
        dropout: dropout on the LoRA input.
        target_modules: module names (or one regex) to adapt; defaults to the language model's attention
            and MLP projections (``DEFAULT_LORA_TARGETS``).
        include_vision: also adapt matching modules inside the vision tower (vLLM cannot serve such adapters).

    Returns:
        A ``peft.LoraConfig`` with ``task_type="CAUSAL_LM"``.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules or DEFAULT_LORA_TARGETS)
        if not isinstance(target_modules, str)
        else target_modules,
        exclude_modules=None if include_vision else VISION_MODULE_REGEX,
        task_type="CAUSAL_LM",
    )


def freeze_vision_tower(model) -> int:
    """Set ``requires_grad=False`` on every vision-tower parameter; returns how many tensors were frozen.

    Raises:
        ValueError: if the model has no parameter recognised as vision (the option would silently do nothing).
    """
    frozen = 0
    for name, param in model.named_parameters():
        if is_vision_parameter(name):
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(
            f"freeze_vision: no vision parameters found in {type(model).__name__} "
            f"(looked for submodules named {', '.join(VISION_MODULE_KEYWORDS)})"
        )
    return frozen


def set_image_pixels(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Bound the image area the processor resizes to (Qwen-VL family: ``size`` shortest/longest edge in pixels).

    Raises:
        ValueError: if the processor's image processor has no pixel-area bounds (e.g. SmolVLM), or min > max.
    """
    if min_pixels is None and max_pixels is None:
        return
    image_processor = getattr(processor, "image_processor", None)
    size = dict(getattr(image_processor, "size", None) or {})
    if (
        "longest_edge" not in size
        or "shortest_edge" not in size
        or not hasattr(image_processor, "merge_size")
    ):
        raise ValueError(
            f"min_pixels/max_pixels apply to Qwen-VL image processors; {type(image_processor).__name__} "
            "has no pixel-area bounds. Remove min_pixels/max_pixels from the config."
        )
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    check_pixel_bounds(size["shortest_edge"], size["longest_edge"])
    image_processor.size = size


def resolve_dtype(dtype: Any):
    """``"auto"`` stays ``"auto"``; names such as ``"bfloat16"`` become ``torch`` dtypes."""
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}; got {dtype!r}")
    return getattr(torch, dtype)


def check_model_path(name_or_path: str | Path) -> None:
    """Fail early, with a clear message, when a local model folder is missing (before transformers tries the Hub).

    A string that does not exist locally is accepted only when it looks like a Hub id (``org/name``) and
    ``HF_HUB_OFFLINE`` is not set.
    """
    import os

    path = Path(name_or_path)
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise FileNotFoundError(
                f"model folder {path} has no config.json: is it a Hugging Face model folder?"
            )
        return
    looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(name_or_path)) is not None
    if not looks_like_hub_id or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"model {name_or_path!r} not found: no such folder"
            + ("" if looks_like_hub_id else " and not a Hub id (org/name)")
            + (" (HF_HUB_OFFLINE=1, so the Hub is not tried)" if looks_like_hub_id else "")
            + ". Set --model_name_or_path to a model folder (e.g. one built by `crowdvlm model tiny --out DIR`)."
        )


def load_model_and_processor(
    name_or_path: str | Path,
    *,
    dtype: Any = "auto",
    attn_implementation: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    lora=None,
    freeze_vision: bool = False,
):
    """Load an image-text-to-text model and its processor through the Auto classes.

    Args:
        name_or_path: a local folder in Hugging Face format or a Hub id.
        dtype: ``"auto"`` (the checkpoint's dtype), ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype.
        attn_implementation: e.g. ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``; None lets transformers choose.
        min_pixels: smallest image area the processor resizes to (Qwen-VL family).
        max_pixels: largest image area the processor resizes to (Qwen-VL family).
        lora: a ``peft.LoraConfig``, or a dict of ``build_lora_config`` arguments, to wrap the model with LoRA
            (vision tower excluded from the targets by default); None for full weights.
        freeze_vision: freeze the vision tower's parameters.

    Returns:
        ``(model, processor)``; the model is a ``peft.PeftModel`` when ``lora`` is given.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    check_model_path(name_or_path)
    processor = AutoProcessor.from_pretrained(name_or_path)
    set_image_pixels(processor, min_pixels, max_pixels)

    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)

    if freeze_vision:
        logger.info("froze %d vision-tower tensors", freeze_vision_tower(model))
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        config = lora if isinstance(lora, LoraConfig) else build_lora_config(**lora)
        model = get_peft_model(model, config)
    return model, processor


def merge_lora(
    adapter_dir: str | Path, out_dir: str | Path, *, base: str | Path | None = None, dtype: Any = "auto"
) -> Path:
    """Merge a LoRA adapter (a run's output or any of its checkpoints) into its base model and save it.

    The result is a plain Hugging Face model folder with the processor, loadable by transformers and vLLM.

    Args:
        adapter_dir: folder with ``adapter_config.json`` (and the processor, as training saves it).
        out_dir: folder to write.
        base: the base model; default: ``base_model_name_or_path`` from the adapter config.
        dtype: dtype to load the base in (see :func:`resolve_dtype`).

    Raises:
        FileNotFoundError: ``adapter_dir`` has no ``adapter_config.json``, or the base model is missing.
    """
    import json

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json: is it a LoRA run or checkpoint?")
    base = base or json.loads(config_file.read_text())["base_model_name_or_path"]
    check_model_path(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=resolve_dtype(dtype))
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir)
    has_processor = (adapter_dir / "processor_config.json").is_file() or (
        adapter_dir / "preprocessor_config.json"
    ).is_file()
    AutoProcessor.from_pretrained(adapter_dir if has_processor else base).save_pretrained(out_dir)
    logger.info("merged %s into %s -> %s", adapter_dir, base, out_dir)
    return out_dir


def count_parameters(model) -> dict[str, int]:
    """Total, trainable and vision-tower parameter counts."""
    counts = {"total": 0, "trainable": 0, "vision": 0}
    for name, param in model.named_parameters():
        counts["total"] += param.numel()
        counts["trainable"] += param.numel() if param.requires_grad else 0
        counts["vision"] += param.numel() if is_vision_parameter(name) else 0
    return counts


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "VISION_MODULE_KEYWORDS",
    "build_lora_config",
    "check_model_path",
    "count_parameters",
    "freeze_vision_tower",
    "is_vision_parameter",
    "load_model_and_processor",
    "merge_lora",
    "resolve_dtype",
    "set_image_pixels",
]
