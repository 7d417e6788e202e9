"""What each model family can share across a GRPO group: the one place a new family is added.

Keyed by ``config.model_type`` (transformers 5.24). The other modules of this package read these entries and
otherwise work from the model's interface (``get_image_features``, ``mm_encoder_outputs``, the cache's layer
types, ``get_rope_index``), so a family whose interface matches the Qwen-VL one needs one entry here.

A model type missing from :data:`FAMILIES` still shares the processor, the vision tower and the generation
prefill where its interface allows; its log-prob passes run per row (packing is only switched on for a family
whose packed rows are tested equal to the per-row path: ``tests/train/sharing/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crowdvlm.train.sharing.linear_attention import packed_linear_attention


@dataclass(frozen=True)
class FamilySharing:
    """What one family shares.

    Attributes:
        name: the family's name in logs and docs.
        vision_once: the vision tower runs once per distinct image, its features given to every row as
            ``mm_encoder_outputs`` (with Qwen3-VL's per-layer ``deepstack_features``).
        prefill: generation prefills each distinct prompt once and indexes the cache out to the rows.
        packing: the log-prob passes run the prompt once, its completions packed after it.
        positions: how the language model's rotary positions are laid out: ``"mrope"`` (Qwen2-VL / 2.5-VL:
            3-D t/h/w sections) or ``"mrope-interleaved"`` (Qwen3-VL / 3.5). Packed rows always pass explicit
            ``(4, n, L)`` position ids (text, t, h, w), computed from the model's own ``get_rope_index``.
        deepstack: image features are also added to the first decoder layers' hidden states (Qwen3-VL); the
            packed row goes in as ``input_ids`` so the model places them itself.
        linear_attention: decoder layer types whose recurrent state sees every earlier token, whatever the
            mask (Qwen3.5's Gated DeltaNet ``"linear_attention"``). A family with such layers packs only with a
            ``linear_attention_packer``.
        linear_attention_packer: runs one linear-attention layer over a packed row: the prompt once, each
            completion continued from the prompt's final state. Called as ``packer(module, *args, **kwargs)``
            with the ``linear_attn`` module and its forward's own arguments (``packed_layout`` among them:
            :class:`~crowdvlm.train.sharing.packed_attention.PackedLayout`), it returns what that forward
            returns (``packed_attention.install_linear_attention_packer``). ``None``: not built.
    """

    name: str
    vision_once: bool = True
    prefill: bool = True
    packing: bool = False
    positions: str = "mrope"
    deepstack: bool = False
    linear_attention: tuple[str, ...] = ()
    linear_attention_packer: Callable[..., Any] | None = None


FAMILIES: dict[str, FamilySharing] = {
    "qwen2_vl": FamilySharing("Qwen2-VL", packing=True),
    "qwen2_5_vl": FamilySharing("Qwen2.5-VL", packing=True),
    "qwen3_vl": FamilySharing("Qwen3-VL", packing=True, positions="mrope-interleaved", deepstack=True),
    # Qwen3.5: its Gated DeltaNet layers run the prompt once and continue each completion from the prompt's
    # recurrent and convolution state (train/sharing/linear_attention.py).
    "qwen3_5": FamilySharing(
        "Qwen3.5",
        packing=True,
        positions="mrope-interleaved",
        linear_attention=("linear_attention",),
        linear_attention_packer=packed_linear_attention,
    ),
}


def base_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def family_of(model: Any) -> FamilySharing | None:
    """The entry of ``model``'s family (plain or PEFT), or ``None`` for a model type not listed."""
    config = getattr(base_model(model), "config", None)
    return FAMILIES.get(getattr(config, "model_type", None))
