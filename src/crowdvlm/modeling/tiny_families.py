"""The toy-size architecture of each Qwen VLM family the tiny builder knows (transformers 5.24).

Each family keeps every structural feature of its real checkpoints and shrinks only the widths:

- ``qwen2_5_vl``: Qwen2.5-VL, 14-px patches, windowed + full-attention vision blocks, M-RoPE text decoder.
- ``qwen3_vl``: Qwen3-VL, 16-px patches, learned (interpolated) vision position embeddings, *deepstack*
  mergers (features of early vision blocks added to the first text layers), interleaved M-RoPE, q/k norms.
- ``qwen3_5``: Qwen3.5, the Qwen3-VL vision tower without deepstack and a *hybrid* text decoder: gated
  delta-net linear-attention layers (conv + recurrent state in the cache) beside gated full attention.

Real head-dim ratios are kept where the kernels need them (M-RoPE sections 1:1.5:1.5 for Qwen2.5-VL,
24:20:20 for Qwen3-VL, 11:11:10 of a quarter of head_dim for Qwen3.5), so the rotary code takes the same
paths as on the 3B-9B models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")
FAMILY_NAMES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL", "qwen3_5": "Qwen3.5"}

# Pixels per side of one merged image token (patch size x spatial merge 2).
TOKEN_PIXELS = {"qwen2_5_vl": 28, "qwen3_vl": 32, "qwen3_5": 32}


@dataclass(frozen=True)
class TinySizes:
    """The widths a tiny model is built with (see ``build_tiny_model``)."""

    hidden_size: int
    num_layers: int
    vision_hidden_size: int
    vision_depth: int
    vocab_rows: int
    # Entries that replace the family's tiny choices (the proportional benchmark model); ``mrope_section`` goes
    # into ``rope_parameters``.
    text_overrides: dict[str, Any] = field(default_factory=dict)
    vision_overrides: dict[str, Any] = field(default_factory=dict)


def _text(config: dict[str, Any], s: TinySizes) -> dict[str, Any]:
    overrides = dict(s.text_overrides)
    if "mrope_section" in overrides:
        config["rope_parameters"] = config["rope_parameters"] | {
            "mrope_section": overrides.pop("mrope_section")
        }
    return config | overrides


def check_family(family: str) -> str:
    """``family`` itself, or ``ValueError`` naming the known ones."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def default_pixel_bounds(family: str) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` giving a 112-px image an 8x8 patch grid (16 image tokens) in each family."""
    side = TOKEN_PIXELS[check_family(family)]
    return (2 * side) ** 2, (4 * side) ** 2


def _token_ids(ids: dict[str, int]) -> dict[str, int]:
    return dict(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def _vision_token_ids(ids: dict[str, int]) -> dict[str, int]:
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _qwen2_5_vl_config(s: TinySizes, ids: dict[str, int]):
    from transformers import Qwen2_5_VLConfig

    num_heads = 4
    half_head_dim = s.hidden_size // num_heads // 2
    # M-RoPE splits head_dim/2 rotary frequencies over (temporal, height, width), Qwen's 1:1.5:1.5 ratio.
    mrope_t = half_head_dim // 4
    mrope_h = (half_head_dim - mrope_t) // 2
    mrope_section = [mrope_t, mrope_h, half_head_dim - mrope_t - mrope_h]
    return Qwen2_5_VLConfig(
        text_config=_text(
            dict(
                vocab_size=s.vocab_rows,
                hidden_size=s.hidden_size,
                intermediate_size=2 * s.hidden_size,
                num_hidden_layers=s.num_layers,
                num_attention_heads=num_heads,
                num_key_value_heads=num_heads // 2,
                max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section},
                **_token_ids(ids),
            ),
            s,
        ),
        vision_config=dict(
            depth=s.vision_depth,
            hidden_size=s.vision_hidden_size,
            intermediate_size=2 * s.vision_hidden_size,
            num_heads=4,
            out_hidden_size=s.hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[s.vision_depth - 1],
        )
        | s.vision_overrides,
        **_vision_token_ids(ids),
        tie_word_embeddings=False,
    )


def _qwen3_vision(s: TinySizes) -> dict[str, Any]:
    """The Qwen3-VL / Qwen3.5 vision tower: 16-px patches, an 8x8 learned position grid (real: 48x48)."""
    return dict(
        depth=s.vision_depth,
        hidden_size=s.vision_hidden_size,
        intermediate_size=2 * s.vision_hidden_size,
        num_heads=4,
        out_hidden_size=s.hidden_size,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
    )


def _qwen3_vl_config(s: TinySizes, ids: dict[str, int]):
    from transformers import Qwen3VLConfig

    # head_dim 32: 16 rotary frequencies, interleaved over (t, h, w) as 6:5:5 (the real 24:20:20).
    vision = (
        _qwen3_vision(s)
        | {
            # Deepstack: every vision block but the last hands its merged features to one text layer.
            "deepstack_visual_indexes": list(range(max(1, s.vision_depth - 1))),
        }
        | s.vision_overrides
    )
    return Qwen3VLConfig(
        text_config=_text(
            dict(
                vocab_size=s.vocab_rows,
                hidden_size=s.hidden_size,
                intermediate_size=2 * s.hidden_size,
                num_hidden_layers=s.num_layers,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,
                max_position_embeddings=4096,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 5e6,
                    "mrope_section": [6, 5, 5],
                    "mrope_interleaved": True,
                },
                **_token_ids(ids),
            ),
            s,
        ),
        vision_config=vision,
        **_vision_token_ids(ids),
        tie_word_embeddings=False,
    )


def qwen3_5_layer_types(num_layers: int) -> list[str]:
    """Qwen3.5's pattern (three linear-attention layers, then one full) with the last layer always full.

    >>> qwen3_5_layer_types(2)
    ['linear_attention', 'full_attention']
    >>> qwen3_5_layer_types(5)
    ['linear_attention', 'linear_attention', 'linear_attention', 'full_attention', 'full_attention']
    """
    return [
        "full_attention" if (i + 1) % 4 == 0 or i == num_layers - 1 else "linear_attention"
        for i in range(num_layers)
    ]


def _qwen3_5_config(s: TinySizes, ids: dict[str, int]):
    from transformers import Qwen3_5Config

    if s.num_layers < 2:
        raise ValueError("a tiny Qwen3.5 needs at least 2 layers (linear attention beside full attention)")
    return Qwen3_5Config(
        text_config=_text(
            dict(
                vocab_size=s.vocab_rows,
                hidden_size=s.hidden_size,
                intermediate_size=2 * s.hidden_size,
                num_hidden_layers=s.num_layers,
                layer_types=qwen3_5_layer_types(s.num_layers),
                num_attention_heads=4,
                num_key_value_heads=2,
                # head_dim 64, a quarter rotary: 8 frequencies interleaved 3:3:2 (the real 11:11:10).
                head_dim=64,
                linear_conv_kernel_dim=4,
                linear_key_head_dim=16,
                linear_value_head_dim=16,
                linear_num_key_heads=2,
                linear_num_value_heads=4,
                max_position_embeddings=4096,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 1e7,
                    "partial_rotary_factor": 0.25,
                    "mrope_section": [3, 3, 2],
                    "mrope_interleaved": True,
                },
                **_token_ids(ids),
            ),
            s,
        ),
        vision_config=_qwen3_vision(s) | s.vision_overrides,
        **_vision_token_ids(ids),
        tie_word_embeddings=False,
    )


_CONFIGS = {"qwen2_5_vl": _qwen2_5_vl_config, "qwen3_vl": _qwen3_vl_config, "qwen3_5": _qwen3_5_config}


def tiny_config(family: str, sizes: TinySizes, ids: dict[str, int]):
    """The transformers config of a tiny model of ``family``; ``ids`` maps Qwen's special tokens to ids."""
    return _CONFIGS[check_family(family)](sizes, ids)


def tiny_processor(family: str, tokenizer, chat_template: str, min_pixels: int, max_pixels: int):
    """The family's processor (image processor at the family's patch size, video processor, tokenizer)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    patch = 14 if check_family(family) == "qwen2_5_vl" else 16
    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=2, temporal_patch_size=2
    )
    if family == "qwen2_5_vl":
        return Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=chat_template,
        )
    # Qwen3.5 checkpoints ship Qwen3-VL's processor (transformers' auto mapping says the same).
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2),
        chat_template=chat_template,
    )
