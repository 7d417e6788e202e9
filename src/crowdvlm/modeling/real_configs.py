"""The published architectures of the checkpoints crowdvlm's recipes name, as data (no download).

Each entry holds the values of the model's ``config.json`` on the Hugging Face Hub that decide its shapes
(widths, depths, heads, vocabulary, vision tower, rotary sections), in transformers 5's layout
(``text_config`` / ``vision_config``, ``rope_parameters``). They serve three users:

- ``benchmarks/gpu_check.py`` builds the real architecture with random weights on a GPU, with nothing
  downloaded (:func:`real_config` with the tiny tokenizer's special-token ids; the vocabulary size is kept);
- ``crowdvlm plan`` reads the architecture of a known Hub id offline (:func:`known_model`);
- ``benchmarks/grpo_step.py``'s proportional shape (r) scales a real model down (:data:`REAL_SHAPES`, the
  compute-relevant view of :data:`PROPORTIONAL_MODELS`; :mod:`crowdvlm.modeling.proportional`).

Values copied from the published ``config.json`` files (Qwen/Qwen2.5-VL-3B-Instruct, -7B-Instruct,
Qwen/Qwen3-VL-4B-Instruct, -8B-Instruct, Qwen/Qwen3.5-9B, and Qwen/Qwen3.5-0.8B with three values assumed,
marked below); token ids are left out (the caller's tokenizer decides them), every other key takes
transformers' default. Over ~400 lines because it is data: one published config per model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

_QWEN2_5_VL_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
_QWEN2_5_VL_ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
_QWEN3_VL_ROPE = {
    "rope_type": "default",
    "rope_theta": 5000000,
    "mrope_section": [24, 20, 20],
    "mrope_interleaved": True,
}
_QWEN3_5_ROPE = {
    "rope_type": "default",
    "rope_theta": 10000000,
    "partial_rotary_factor": 0.25,
    "mrope_section": [11, 11, 10],
    "mrope_interleaved": True,
}
_QWEN3_VISION_COMMON = {
    "hidden_act": "gelu_pytorch_tanh",
    "num_heads": 16,
    "num_position_embeddings": 2304,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
_QWEN3_VL_8B_VISION = _QWEN3_VISION_COMMON | {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "out_hidden_size": 4096,
}

# Hub id -> {"family": tiny-builder family, "short": gpu_check's --model name, "config": the shape keys}
REAL_MODELS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "family": "qwen2_5_vl",
        "short": "qwen2_5_vl_3b",
        "config": {
            "text_config": {
                "vocab_size": 151936,
                "hidden_size": 2048,
                "intermediate_size": 11008,
                "num_hidden_layers": 36,
                "num_attention_heads": 16,
                "num_key_value_heads": 2,
                "max_position_embeddings": 128000,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN2_5_VL_ROPE,
                "tie_word_embeddings": True,
            },
            "vision_config": _QWEN2_5_VL_VISION | {"out_hidden_size": 2048},
            "tie_word_embeddings": True,
        },
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "family": "qwen2_5_vl",
        "short": "qwen2_5_vl_7b",
        "config": {
            "text_config": {
                "vocab_size": 152064,
                "hidden_size": 3584,
                "intermediate_size": 18944,
                "num_hidden_layers": 28,
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "max_position_embeddings": 128000,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN2_5_VL_ROPE,
                "tie_word_embeddings": False,
            },
            "vision_config": _QWEN2_5_VL_VISION | {"out_hidden_size": 3584},
            "tie_word_embeddings": False,
        },
    },
    "Qwen/Qwen3-VL-4B-Instruct": {
        "family": "qwen3_vl",
        "short": "qwen3_vl_4b",
        "config": {
            "text_config": {
                "vocab_size": 151936,
                "hidden_size": 2560,
                "intermediate_size": 9728,
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "max_position_embeddings": 262144,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN3_VL_ROPE,
                "tie_word_embeddings": True,
            },
            "vision_config": _QWEN3_VISION_COMMON
            | {
                "depth": 24,
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "out_hidden_size": 2560,
                "deepstack_visual_indexes": [5, 11, 17],
            },
            "tie_word_embeddings": True,
        },
    },
    "Qwen/Qwen3-VL-8B-Instruct": {
        "family": "qwen3_vl",
        "short": "qwen3_vl_8b",
        "config": {
            "text_config": {
                "vocab_size": 151936,
                "hidden_size": 4096,
                "intermediate_size": 12288,
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "max_position_embeddings": 262144,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN3_VL_ROPE,
                "tie_word_embeddings": False,
            },
            "vision_config": _QWEN3_VL_8B_VISION | {"deepstack_visual_indexes": [8, 16, 24]},
            "tie_word_embeddings": False,
        },
    },
    # The smallest published Qwen3.5 (the proportional benchmark shape scales it down; the recipes use the 9B).
    # Its vision tower's depth and width (12, 768) are from public copies of its config; its intermediate_size,
    # num_heads and tie_word_embeddings were not found in a source checked here: 3,072 and 12 (a ViT-B block)
    # and tied embeddings are assumed.
    "Qwen/Qwen3.5-0.8B": {
        "family": "qwen3_5",
        "short": "qwen3_5_0_8b",
        "config": {
            "text_config": {
                "vocab_size": 248320,
                "hidden_size": 1024,
                "intermediate_size": 3584,
                "num_hidden_layers": 24,
                "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 6,
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "head_dim": 256,
                "linear_conv_kernel_dim": 4,
                "linear_key_head_dim": 128,
                "linear_value_head_dim": 128,
                "linear_num_key_heads": 16,
                "linear_num_value_heads": 16,
                "max_position_embeddings": 262144,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN3_5_ROPE,
                "tie_word_embeddings": True,  # assumed
            },
            "vision_config": _QWEN3_VISION_COMMON
            | {
                "depth": 12,
                "hidden_size": 768,
                "intermediate_size": 3072,  # assumed
                "num_heads": 12,  # assumed
                "out_hidden_size": 1024,
                "deepstack_visual_indexes": [],
            },
            "tie_word_embeddings": True,  # assumed
        },
    },
    "Qwen/Qwen3.5-9B": {
        "family": "qwen3_5",
        "short": "qwen3_5_9b",
        "config": {
            "text_config": {
                "vocab_size": 248320,
                "hidden_size": 4096,
                "intermediate_size": 12288,
                "num_hidden_layers": 32,
                "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
                "num_attention_heads": 16,
                "num_key_value_heads": 4,
                "head_dim": 256,
                "linear_conv_kernel_dim": 4,
                "linear_key_head_dim": 128,
                "linear_value_head_dim": 128,
                "linear_num_key_heads": 16,
                "linear_num_value_heads": 32,
                "max_position_embeddings": 262144,
                "rms_norm_eps": 1e-6,
                "rope_parameters": _QWEN3_5_ROPE,
                "tie_word_embeddings": False,
            },
            # Qwen3-VL-8B's vision tower without deepstack
            "vision_config": _QWEN3_VL_8B_VISION | {"deepstack_visual_indexes": []},
            "tie_word_embeddings": False,
        },
    },
}

SHORT_NAMES: dict[str, str] = {entry["short"]: model_id for model_id, entry in REAL_MODELS.items()}


def known_model(name: str) -> str | None:
    """The Hub id of a known model given its Hub id or short name (``qwen2_5_vl_3b``), else ``None``.

    >>> known_model("qwen2_5_vl_3b")
    'Qwen/Qwen2.5-VL-3B-Instruct'
    >>> known_model("Qwen/Qwen3.5-9B")
    'Qwen/Qwen3.5-9B'
    >>> known_model("someone/else") is None
    True
    """
    if name in REAL_MODELS:
        return name
    return SHORT_NAMES.get(name)


def real_family(name: str) -> str:
    """The tiny-builder family (``qwen2_5_vl``, ``qwen3_vl``, ``qwen3_5``) of a known model."""
    return REAL_MODELS[_hub_id(name)]["family"]


def _hub_id(name: str) -> str:
    model_id = known_model(name)
    if model_id is None:
        known = ", ".join(f"{m} ({e['short']})" for m, e in REAL_MODELS.items())
        raise ValueError(f"unknown model {name!r}; the published configs known offline are: {known}")
    return model_id


def real_config_dict(
    name: str, *, num_layers: int | None = None, vision_depth: int | None = None
) -> dict[str, Any]:
    """A copy of the shape keys of ``name`` (Hub id or short name), optionally with fewer layers.

    ``num_layers`` keeps the family's layer pattern (Qwen3.5: three linear-attention layers, then one full,
    the last always full); ``vision_depth`` keeps the full-attention / deepstack blocks that still exist.
    """
    entry = REAL_MODELS[_hub_id(name)]
    config = copy.deepcopy(entry["config"])
    text, vision = config["text_config"], config["vision_config"]
    if num_layers is not None:
        text["num_hidden_layers"] = num_layers
        if "layer_types" in text:
            from crowdvlm.modeling.tiny_families import qwen3_5_layer_types

            text["layer_types"] = qwen3_5_layer_types(num_layers)
    if vision_depth is not None:
        vision["depth"] = vision_depth
        if "fullatt_block_indexes" in vision:
            kept = [i for i in vision["fullatt_block_indexes"] if i < vision_depth]
            vision["fullatt_block_indexes"] = kept or [vision_depth - 1]
        if vision.get("deepstack_visual_indexes"):
            kept = [i for i in vision["deepstack_visual_indexes"] if i < vision_depth - 1]
            vision["deepstack_visual_indexes"] = kept or [0]
    return config


def real_config(
    name: str,
    token_ids: dict[str, int] | None = None,
    *,
    num_layers: int | None = None,
    vision_depth: int | None = None,
):
    """The transformers config of ``name`` (Hub id or short name), built offline.

    Args:
        name: a key of :data:`REAL_MODELS` or its short name.
        token_ids: Qwen's special tokens -> ids in the tokenizer that will be used (``build_tiny_model``'s
            tokenizer); ``None`` keeps transformers' defaults (enough for counting parameters).
        num_layers: text decoder layers, if fewer than published (see :func:`real_config_dict`).
        vision_depth: vision tower blocks, if fewer than published.

    Returns:
        A ``Qwen2_5_VLConfig``, ``Qwen3VLConfig`` or ``Qwen3_5Config`` with the real vocabulary size.
    """
    from transformers import AutoConfig

    family = real_family(name)
    config = real_config_dict(name, num_layers=num_layers, vision_depth=vision_depth)
    if token_ids is not None:
        from crowdvlm.modeling.tiny_families import _token_ids, _vision_token_ids

        config["text_config"] |= _token_ids(token_ids)
        config |= _vision_token_ids(token_ids)
    return AutoConfig.for_model(family, **config)


# --------------------------------------------------------------------------- compute-relevant view


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


#: family -> the real model its tiny stand-in is scaled down from (``benchmarks/grpo_step.py --shapes r``).
PROPORTIONAL_MODELS = {
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen3_vl": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3_5": "Qwen/Qwen3.5-0.8B",
}


def real_shape(name: str) -> RealModel:
    """The compute-relevant shape of a known model (Hub id or short name), read from its config above."""
    model_id = _hub_id(name)
    family = REAL_MODELS[model_id]["family"]
    t = REAL_MODELS[model_id]["config"]["text_config"]
    v = REAL_MODELS[model_id]["config"]["vision_config"]
    heads = t["num_attention_heads"]
    text = TextShape(
        hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"],
        num_layers=t["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=t["num_key_value_heads"],
        head_dim=t.get("head_dim", t["hidden_size"] // heads),
        vocab_size=t["vocab_size"],
        layer_types=tuple(t.get("layer_types", ["full_attention"] * t["num_hidden_layers"])),
        mrope_section=tuple(t["rope_parameters"]["mrope_section"]),
        attn_output_gate=family == "qwen3_5",  # Qwen3.5's full-attention query projection also yields a gate
        linear_num_key_heads=t.get("linear_num_key_heads", 0),
        linear_num_value_heads=t.get("linear_num_value_heads", 0),
        linear_key_head_dim=t.get("linear_key_head_dim", 0),
        linear_value_head_dim=t.get("linear_value_head_dim", 0),
        linear_conv_kernel_dim=t.get("linear_conv_kernel_dim", 0) if "layer_types" in t else 0,
    )
    vision = VisionShape(
        depth=v["depth"],
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_heads=v["num_heads"],
        out_hidden_size=v["out_hidden_size"],
        patch_size=v["patch_size"],
        mlp="swiglu" if family == "qwen2_5_vl" else "gelu",
        spatial_merge_size=v["spatial_merge_size"],
        temporal_patch_size=v["temporal_patch_size"],
        window_size=v.get("window_size"),
        full_blocks=tuple(v.get("fullatt_block_indexes", ())),
        deepstack=tuple(v.get("deepstack_visual_indexes", ())),
    )
    return RealModel(model_id, text, vision)


#: family -> the compute-relevant shape of :data:`PROPORTIONAL_MODELS`' model.
REAL_SHAPES: dict[str, RealModel] = {family: real_shape(name) for family, name in PROPORTIONAL_MODELS.items()}
