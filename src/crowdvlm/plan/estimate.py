"""``estimate_run``: the per-GPU peak of a recipe, its parts, and the cheapest change that makes it fit.

The image is resized as the model's processor resizes it (``smart_resize`` with the recipe's ``min_pixels`` /
``max_pixels``); the prompt is its text tokens (the chat template and the paper's question: about 64) plus the
image tokens and the two vision markers; completions are ``max_completion_length`` long (every one at the
length limit: the worst case, and the benchmarks' setting).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from crowdvlm.plan.activations import PackedRows, PassShape, training_pass_bytes
from crowdvlm.plan.memory import (
    GIB,
    Launch,
    RunShape,
    build_meta_model,
    count_parameters,
    model_state_bytes,
    weights_dtype,
)

PROMPT_TEXT_TOKENS = 64
# Settings tried in this order when the run does not fit: the first ones change nothing the model learns.
LOWER_MAX_PIXELS = 401408  # 512 image tokens of 28 px (Qwen2.5-VL), the value the recipes suggest


@dataclass
class Images:
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Images:
        """``"1024x768"`` -> ``Images(1024, 768)``."""
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"image size {text!r}: expected WIDTHxHEIGHT, e.g. 1024x768") from None
        return cls(width, height)


def image_patches(config, images: Images, min_pixels: int | None, max_pixels: int | None) -> int:
    """Patch rows of one image after the processor's resize (image tokens are a quarter of them)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    vision = config.vision_config
    factor = vision.patch_size * vision.spatial_merge_size
    height, width = smart_resize(
        images.height,
        images.width,
        factor=factor,
        min_pixels=min_pixels or 4 * factor**2,
        max_pixels=max_pixels or 16384 * factor**2,
    )
    return (height // vision.patch_size) * (width // vision.patch_size)


@dataclass
class Estimate:
    """Per-GPU bytes of each part, the peak, and what the estimate assumed."""

    parts: dict[str, float]
    peak: float
    generation_kv_cache: float
    assumptions: dict[str, Any] = field(default_factory=dict)

    def gib(self) -> dict[str, float]:
        return {name: round(value / GIB, 2) for name, value in self.parts.items()} | {
            "peak": round(self.peak / GIB, 2)
        }


def pass_shape(
    shape: RunShape, config, images: Images, trainer: str, prompt_text_tokens: int = PROMPT_TEXT_TOKENS
) -> PassShape:
    """The training forward's rows and tokens for ``trainer`` (``stock`` TRL or ``crowdvlm``)."""
    patches = image_patches(config, images, shape.min_pixels, shape.max_pixels)
    merge = config.vision_config.spatial_merge_size**2
    prompt = prompt_text_tokens + patches // merge + 2
    completion = shape.completion_tokens
    rows = shape.batch
    whole_groups = shape.kind == "grpo" and rows % shape.num_generations == 0
    shared = trainer == "crowdvlm" and whole_groups
    groups = rows // shape.num_generations if shared else rows
    vision_images = 0 if shape.freeze_vision or shape.use_peft else groups
    if shared and _packs(config):  # [prompt | c1 ... cG], the last prompt token copied before each completion
        packed = PackedRows(prompt - 1, shape.num_generations, completion, kernel="flash")
        return PassShape(groups, (prompt - 1) + shape.num_generations * completion, rows * completion, vision_images,
                         patches, packed=packed)  # fmt: skip
    return PassShape(rows, prompt + completion, rows * completion, vision_images, patches)


def _packs(config) -> bool:
    """Whether crowdvlm packs this family's log-prob passes (its sharing registry says so)."""
    from crowdvlm.train.sharing.families import FAMILIES

    family = FAMILIES.get(config.model_type)
    return bool(family and family.packing)


def estimate_run(
    shape: RunShape,
    config,
    launch: Launch,
    images: Images,
    *,
    gpu_memory: float,
    trainer: str | None = None,
    kernel: str = "flash",
    model=None,
    prompt_text_tokens: int = PROMPT_TEXT_TOKENS,
) -> Estimate:
    """The per-GPU peak of ``shape`` under ``launch``.

    Args:
        shape: the recipe's keys.
        config: the model's transformers config.
        launch: GPUs, machines, ZeRO stage.
        images: the training images' size before the processor's resize.
        gpu_memory: bytes per GPU (for vLLM's share).
        trainer: ``stock`` or ``crowdvlm``; default: ``crowdvlm`` when the recipe shares the prompt.
        kernel: ``flash`` (GPU kernels) or ``cpu`` (crowdvlm's packed rows through its CPU sdpa path).
        model: the meta-device model, if already built.
        prompt_text_tokens: the prompt's tokens besides the image's (chat template, question).
    """
    dtype = weights_dtype(shape, config)
    model = model if model is not None else build_meta_model(config, dtype)
    trainer = "sft" if shape.kind == "sft" else trainer or ("crowdvlm" if shape.share_prompt else "stock")
    counts = count_parameters(model, shape)
    weight_bytes = dtype.itemsize
    parts = model_state_bytes(counts, weight_bytes, launch)
    full_reference = shape.kind == "grpo" and shape.beta > 0 and not shape.use_peft
    reference = counts.total * weight_bytes if full_reference else 0
    if full_reference and launch.zero_stage == 3:
        reference /= max(launch.gpus, 1)
    parts["reference model"] = reference
    passes = pass_shape(shape, config, images, trainer, prompt_text_tokens)
    parts["activations"] = training_pass_bytes(
        model, passes, dtype, checkpointing=shape.gradient_checkpointing, kernel=kernel
    )
    vllm = shape.kind == "grpo" and shape.use_vllm and shape.vllm_mode == "colocate"
    if shape.kind == "sft":  # SFTTrainer's loss takes full logits, upcast to float32 (kept for the backward)
        vocab = config.get_text_config().vocab_size
        parts["activations"] += passes.text_rows * passes.text_tokens * vocab * (dtype.itemsize + 4)
    parts["vLLM"] = shape.vllm_gpu_memory_utilization * gpu_memory if vllm else 0
    text = config.get_text_config()
    kv_layers = sum(t == "full_attention" for t in getattr(text, "layer_types", None) or []) or (
        text.num_hidden_layers
    )
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    merge = config.vision_config.spatial_merge_size**2
    generated_row = prompt_text_tokens + passes.patches_per_image // merge + 2 + shape.completion_tokens
    kv = shape.batch * generated_row * kv_layers * 2 * text.num_key_value_heads * head_dim * weight_bytes
    return Estimate(
        parts=parts,
        peak=sum(parts.values()),
        generation_kv_cache=kv,
        assumptions={
            "trainer": trainer,
            "parameters": counts.total,
            "trained_parameters": counts.trained,
            "text_rows": passes.text_rows,
            "tokens_per_row": passes.text_tokens,
            "patches_per_image": passes.patches_per_image,
            "image_tokens": passes.patches_per_image // config.vision_config.spatial_merge_size**2,
            "vision_images_with_grad": passes.vision_images,
            "packed": passes.packed is not None,
            "dtype": str(dtype).replace("torch.", ""),
            "gpus": launch.gpus,
            "zero_stage": launch.zero_stage,
            "gradient_checkpointing": shape.gradient_checkpointing,
        },
    )


def cheapest_fix(
    shape: RunShape, config, launch: Launch, images: Images, *, gpu_memory: float, model=None, **kwargs
) -> tuple[str, Estimate] | None:
    """The first change (in the order that changes the least of what is learned) under which the run fits.

    Tried one at a time, then cumulatively: gradient checkpointing, ZeRO-3 (more than one GPU), half the
    completions per micro-batch (twice the accumulation), ``max_pixels`` 401,408, a frozen vision tower, LoRA.
    """
    candidates: list[tuple[str, RunShape, Launch]] = []
    if not shape.gradient_checkpointing:
        candidates.append(
            ("gradient_checkpointing: true", dataclasses.replace(shape, gradient_checkpointing=True), launch)
        )
    if launch.gpus > 1 and launch.zero_stage < 3:
        candidates.append(
            ("ZeRO-3 (recipes/accelerate/zero3.yaml)", shape, dataclasses.replace(launch, zero_stage=3))
        )
    if shape.batch > 1:
        half = shape.batch // 2
        candidates.append(
            (
                f"per_device_train_batch_size: {half} with gradient_accumulation_steps doubled",
                dataclasses.replace(shape, batch=half),
                launch,
            )
        )
    if (shape.max_pixels or 1 << 40) > LOWER_MAX_PIXELS:
        candidates.append(
            (
                f"max_pixels: {LOWER_MAX_PIXELS}",
                dataclasses.replace(shape, max_pixels=LOWER_MAX_PIXELS),
                launch,
            )
        )
    if not shape.freeze_vision and not shape.use_peft:
        candidates.append(("freeze_vision: true", dataclasses.replace(shape, freeze_vision=True), launch))
    if not shape.use_peft:
        candidates.append(("use_peft: true (LoRA)", dataclasses.replace(shape, use_peft=True), launch))
    model = model if model is not None else build_meta_model(config, weights_dtype(shape, config))

    def fits(s: RunShape, lau: Launch) -> Estimate | None:
        est = estimate_run(s, config, lau, images, gpu_memory=gpu_memory, model=model, **kwargs)
        return est if est.peak <= gpu_memory else None

    for name, s, lau in candidates:
        if (est := fits(s, lau)) is not None:
            return name, est
    names, s, lau = [], shape, launch
    for name, candidate, candidate_launch in candidates:  # cumulative: each change on top of the previous
        names.append(name)
        s = dataclasses.replace(candidate, **{f.name: getattr(s, f.name) for f in _changed(shape, s)})
        lau = candidate_launch if candidate_launch != launch else lau
        if (est := fits(s, lau)) is not None:
            return " + ".join(names), est
    return None


def _changed(original: RunShape, current: RunShape) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(RunShape) if getattr(original, f.name) != getattr(current, f.name)]
