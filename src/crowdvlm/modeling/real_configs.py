"""The real checkpoints' architecture figures each tiny model family stands in for (no weights, no download).

Values of the published ``config.json`` files (Hugging Face hub) that decide the compute per token: widths,
depths, heads, vocabulary, the vision tower's patching and attention layout. Used by the proportional
benchmark shape (:mod:`crowdvlm.modeling.proportional`) and by anything that needs a real model's shape
without its weights.

- Qwen2.5-VL-3B-Instruct and Qwen3-VL-4B-Instruct: the checkpoints of the recipes.
- Qwen3.5: the smallest published checkpoint, Qwen3.5-0.8B (the recipes use Qwen3.5-9B; same layer pattern,
  three Gated DeltaNet layers then one gated full-attention layer). Its vision tower's depth and width (12,
  768) are from public copies of its config; its ``intermediate_size`` and ``num_heads`` were not found in a
  source checked here and are taken as 3,072 and 12 (a ViT-B block) -- marked ``assumed`` below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextShape:
    """A language model's compute-relevant config (``text_config``).

    Attributes:
        linear_*: Gated DeltaNet sizes (0 where the model has no linear-attention layers); ``layer_types`` is
            ``full_attention`` / ``linear_attention`` per layer.
        attn_output_gate: the full-attention query projection also yields a gate (twice its width; Qwen3.5).
    """

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    layer_types: tuple[str, ...]
    mrope_section: tuple[int, ...]
    attn_output_gate: bool = False
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0


@dataclass(frozen=True)
class VisionShape:
    """A vision tower's compute-relevant config (``vision_config``).

    Attributes:
        mlp: ``"swiglu"`` (three matrices, Qwen2.5-VL) or ``"gelu"`` (two, Qwen3-VL / Qwen3.5).
        window_size: Qwen2.5-VL's attention window in pixels (``None``: every block attends to the whole image);
            ``full_blocks`` are the blocks that attend to the whole image anyway.
        deepstack: Qwen3-VL's deepstack mergers (one per ``deepstack_visual_indexes`` entry).
    """

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    patch_size: int
    mlp: str
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: int | None = None
    full_blocks: tuple[int, ...] = ()
    deepstack: tuple[int, ...] = ()


@dataclass(frozen=True)
class RealModel:
    name: str
    text: TextShape
    vision: VisionShape


def _qwen3_5_layers(num_layers: int) -> tuple[str, ...]:
    """Three linear-attention layers, then one full (``full_attention_interval`` 4)."""
    return tuple("full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(num_layers))


REAL_MODELS: dict[str, RealModel] = {
    "qwen2_5_vl": RealModel(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        TextShape(
            hidden_size=2048,
            intermediate_size=11008,
            num_layers=36,
            num_heads=16,
            num_kv_heads=2,
            head_dim=128,
            vocab_size=151936,
            layer_types=("full_attention",) * 36,
            mrope_section=(16, 24, 24),
        ),
        VisionShape(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=2048,
            patch_size=14,
            mlp="swiglu",
            window_size=112,
            full_blocks=(7, 15, 23, 31),
        ),
    ),
    "qwen3_vl": RealModel(
        "Qwen/Qwen3-VL-4B-Instruct",
        TextShape(
            hidden_size=2560,
            intermediate_size=9728,
            num_layers=36,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            vocab_size=151936,
            layer_types=("full_attention",) * 36,
            mrope_section=(24, 20, 20),
        ),
        VisionShape(
            depth=24,
            hidden_size=1024,
            intermediate_size=4096,
            num_heads=16,
            out_hidden_size=2560,
            patch_size=16,
            mlp="gelu",
            deepstack=(5, 11, 17),
        ),
    ),
    "qwen3_5": RealModel(
        "Qwen/Qwen3.5-0.8B",
        TextShape(
            hidden_size=1024,
            intermediate_size=3584,
            num_layers=24,
            num_heads=8,
            num_kv_heads=2,
            head_dim=256,
            vocab_size=248320,
            layer_types=_qwen3_5_layers(24),
            mrope_section=(11, 11, 10),
            attn_output_gate=True,
            linear_num_key_heads=16,
            linear_num_value_heads=16,
            linear_key_head_dim=128,
            linear_value_head_dim=128,
            linear_conv_kernel_dim=4,
        ),
        VisionShape(
            depth=12,
            hidden_size=768,
            intermediate_size=3072,  # assumed (see the module docstring)
            num_heads=12,  # assumed
            out_hidden_size=1024,
            patch_size=16,
            mlp="gelu",
        ),
    ),
}
