"""Encode each distinct image of a batch once and hand the features to every row that shows it.

Written against transformers 5.24, whose vision-language models take precomputed encoder outputs through
``forward(..., mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=(per-image features,
...))})`` while ``input_ids`` / ``image_grid_thw`` / ``mm_token_type_ids`` still drive the placeholder scatter
and the 3D (M-RoPE) position ids. The images are found by content, so G copies of one image anywhere in a
batch (consecutive, shuffled, split over micro-batches) cost one vision-tower pass. Under autograd, indexing
one feature tensor into G rows makes backward sum the G gradients, as G separate encodings would.

The layout handled is the Qwen-VL one (``pixel_values`` as patch rows, ``image_grid_thw`` per image) with a
``get_image_features`` whose ``pooler_output`` is a sequence of per-image tensors, plus, for Qwen3-VL, its
*deepstack* features (one sequence of per-image tensors per deepstack layer, added to the first text
layers), which are repeated to the rows the same way. What a model's ``get_image_features`` returns is read
from its declared return type before any work, and ``sharing_unsupported_reason`` says why any other case
falls back to stock TRL.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason
from crowdvlm.train.sharing.families import base_model

# Fields of a get_image_features output that the language model never reads back (see module docstring).
_SAMPLES = 32  # patch values per image used to propose duplicates
_IGNORED_FEATURE_FIELDS = frozenset({"last_hidden_state", "pooler_output", "hidden_states", "attentions"})
# Fields the language model does read, laid out as a list over layers of per-image tensors (Qwen3-VL).
_LAYERED_FEATURE_FIELDS = frozenset({"deepstack_features"})


def split_images(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
    """Patch rows of each image: image i owns ``prod(image_grid_thw[i])`` consecutive rows."""
    return list(torch.split(pixel_values, image_grid_thw.prod(-1).tolist(), dim=0))


def unique_images(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> tuple[list[int], list[int]]:
    """Find images with identical patches.

    A few patch values sampled at fixed positions propose candidates in one device sync (exact values, no
    arithmetic, so copies always agree); ``torch.equal`` against the first image of the candidate group
    confirms each match, so images that merely share the samples are never merged.

    Args:
        pixel_values: ``(total_patch_rows, patch_dim)``.
        image_grid_thw: ``(num_images, 3)``.

    Returns:
        ``(first, inverse)``: the index of the first copy of each distinct image, and for every image the
        index (into ``first``) of its distinct image.
    """
    images = split_images(pixel_values, image_grid_thw)
    samples = [
        img.reshape(-1)[torch.linspace(0, img.numel() - 1, _SAMPLES, device=img.device).long()]
        for img in images
    ]
    summaries = torch.stack(samples).float().tolist()
    grids = image_grid_thw.tolist()
    first: list[int] = []
    inverse: list[int] = []
    candidates: dict[tuple, list[int]] = {}  # summary key -> indices into `first`
    for i, (img, grid, summary) in enumerate(zip(images, grids, summaries, strict=True)):
        key = (*grid, *summary)
        match = next((u for u in candidates.get(key, []) if torch.equal(images[first[u]], img)), None)
        if match is None:
            match = len(first)
            first.append(i)
            candidates.setdefault(key, []).append(match)
        inverse.append(match)
    return first, inverse


def _forward_accepts_encoder_outputs(model: Any) -> bool:
    base = base_model(model)
    return "mm_encoder_outputs" in inspect.signature(type(base).forward).parameters


def sharing_unsupported_reason(
    model: Any,
    pixel_values: torch.Tensor | None,
    image_grid_thw: torch.Tensor | None,
    num_images: Sequence[int] | None,
    extra_inputs: dict[str, Any],
) -> Fallback | None:
    """Why the batch cannot share vision features on this model, or ``None`` when it can.

    Args:
        model: the unwrapped model (plain, or PEFT around a transformers model).
        pixel_values, image_grid_thw, num_images: the image inputs of the log-prob pass.
        extra_inputs: every other input of TRL's ``_get_per_token_logps_and_entropies``; only
            ``token_type_ids`` and ``mm_token_type_ids`` may be set.
    """
    if pixel_values is None:
        return Fallback(FallbackReason.NO_IMAGES, "no images in the batch")
    if image_grid_thw is None or num_images is None:
        return Fallback(
            FallbackReason.IMAGE_LAYOUT,
            "pixel_values are not laid out by image_grid_thw (only the Qwen-VL layout is shared)",
        )
    unexpected = sorted(
        k
        for k, v in extra_inputs.items()
        if v is not None and k not in ("token_type_ids", "mm_token_type_ids")
    )
    if unexpected:
        return Fallback(FallbackReason.UNSUPPORTED_INPUTS, f"unsupported image inputs {unexpected}")
    if not callable(getattr(model, "get_image_features", None)):
        return Fallback(FallbackReason.MODEL_INTERFACE, f"{type(model).__name__} has no get_image_features")
    config = getattr(model, "config", None)
    if getattr(config, "image_token_id", None) is None:
        return Fallback(
            FallbackReason.MODEL_INTERFACE, f"{type(model).__name__} config has no image_token_id"
        )
    if not _forward_accepts_encoder_outputs(model):
        return Fallback(
            FallbackReason.MODEL_INTERFACE,
            f"{type(model).__name__}.forward does not accept mm_encoder_outputs",
        )
    return feature_fields_unsupported_reason(model)


def _declared_feature_fields(model: Any) -> set[str] | None:
    """Fields of the output class ``get_image_features`` declares, or None when it declares none."""
    base = base_model(model)
    try:  # eval_str: modules written with `from __future__ import annotations` declare strings
        declared = inspect.signature(type(base).get_image_features, eval_str=True).return_annotation
    except (NameError, TypeError):  # an annotation that names what its module cannot resolve: undeclared
        return None
    classes = [c for c in (*typing.get_args(declared), declared) if dataclasses.is_dataclass(c)]
    if not classes:
        return None
    return {f.name for c in classes for f in dataclasses.fields(c)}


def feature_fields_unsupported_reason(model: Any) -> Fallback | None:
    """Why the model's image features cannot be repeated to the rows, read from its declared return type.

    Per-image ``pooler_output`` (every Qwen-VL) and Qwen3-VL's per-layer ``deepstack_features`` are
    repeated; any other field the language model might read is a reason to fall back.
    """
    fields = _declared_feature_fields(model)
    if fields is None:
        return None  # undeclared (e.g. a stub): the layout is checked on the output itself
    unknown = sorted(fields - _IGNORED_FEATURE_FIELDS - _LAYERED_FEATURE_FIELDS)
    if unknown:
        return Fallback(
            FallbackReason.FEATURE_FIELDS,
            f"get_image_features returns fields {unknown} that are not repeated per image",
        )
    return None


def per_image_features(output: Any) -> tuple[torch.Tensor, ...]:
    """The per-image feature tensors (``pooler_output``) of a ``get_image_features`` output.

    Raises:
        ValueError: the output carries fields that are not repeated per image (a model whose declared output
            type hid them; ``feature_fields_unsupported_reason`` catches the declared ones before any work),
            or a ``pooler_output`` that is not one tensor per image.
    """
    extra = sorted(k for k in output.keys() if k not in _IGNORED_FEATURE_FIELDS | _LAYERED_FEATURE_FIELDS)
    if extra:
        raise ValueError(f"get_image_features returned extra fields {extra} that would need repeating too")
    features = output.pooler_output
    if not isinstance(features, list | tuple):
        raise ValueError(
            f"get_image_features pooler_output is {type(features).__name__}, not one tensor per image"
        )
    return tuple(features)


@dataclass
class UniqueImageFeatures:
    """The vision tower's output for each distinct image of a batch.

    Attributes:
        per_image: ``pooler_output``, one ``(tokens_i, hidden)`` tensor per distinct image.
        layered: per-layer fields (Qwen3-VL ``deepstack_features``): name -> one tuple of per-image tensors
            per layer.
        output_class: the class ``get_image_features`` returned, rebuilt for ``mm_encoder_outputs`` (Qwen3-VL
            reads ``deepstack_features`` off it).
    """

    per_image: tuple[torch.Tensor, ...]
    layered: dict[str, list[tuple[torch.Tensor, ...]]] = field(default_factory=dict)
    output_class: type | None = None


def layered_features(output: Any) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """The per-layer, per-image fields of a ``get_image_features`` output (Qwen3-VL's deepstack features)."""
    layered = {}
    for name in sorted(_LAYERED_FEATURE_FIELDS & set(output.keys())):
        layers = output[name]
        if not all(isinstance(layer, list | tuple) for layer in layers):
            raise ValueError(f"get_image_features {name} is not one sequence of per-image tensors per layer")
        layered[name] = [tuple(layer) for layer in layers]
    return layered


def encode_unique_images(
    model: Any, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor
) -> tuple[UniqueImageFeatures, list[int]]:
    """Run the vision tower once per distinct image.

    Args:
        model: unwrapped model exposing ``get_image_features(pixel_values, image_grid_thw)``.
        pixel_values: ``(total_patch_rows, patch_dim)`` for all images of the batch, copies included.
        image_grid_thw: ``(num_images, 3)``.

    Returns:
        ``(features, inverse)``: the features of each distinct image (with grad when grad is enabled; see
        :class:`UniqueImageFeatures`), and for every image of the batch the index of its features.
    """
    first, inverse = unique_images(pixel_values, image_grid_thw)
    images = split_images(pixel_values, image_grid_thw)
    unique_pixels = torch.cat([images[i] for i in first], dim=0)
    output = model.get_image_features(
        pixel_values=unique_pixels, image_grid_thw=image_grid_thw[first], return_dict=True
    )
    features = UniqueImageFeatures(per_image_features(output), layered_features(output), type(output))
    return features, inverse


def encoder_outputs_for(
    features: UniqueImageFeatures | Sequence[torch.Tensor], inverse: Sequence[int]
) -> dict:
    """``mm_encoder_outputs`` for a run of images: image j gets the features of distinct image ``inverse[j]``."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if not isinstance(features, UniqueImageFeatures):
        features = UniqueImageFeatures(tuple(features))
    output_class = features.output_class or BaseModelOutputWithPooling
    layered = {
        name: [tuple(layer[u] for u in inverse) for layer in layers]
        for name, layers in features.layered.items()
    }
    return {"image": output_class(pooler_output=tuple(features.per_image[u] for u in inverse), **layered)}


# --- ZeRO-3: every rank calls the partitioned vision tower equally often ------------------------------------
# Under DeepSpeed ZeRO-3 each module call all-gathers the module's parameter shards, a collective: a rank that
# calls the vision tower fewer times than another (no images in its rows, or fewer encoder calls) leaves the
# others waiting in a gather it never joins. The functions below count this rank's calls, agree on the most
# any rank makes, and run the missing ones on a minimal dummy image.


def vision_calls(sharing: bool, pixel_values: torch.Tensor | None, rows: int, batch_size: int | None) -> int:
    """Vision-tower calls one log-prob pass makes on this rank.

    Args:
        sharing: the pass encodes its distinct images once (:func:`encode_unique_images`).
        pixel_values: the pass's images, ``None`` without any.
        rows: rows of the pass.
        batch_size: rows per forward chunk (TRL's loop encodes each chunk's images inside the forward).
    """
    if pixel_values is None:
        return 0
    if sharing:
        return 1
    return -(-rows // (batch_size or rows))


def dummy_image(model: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest image the Qwen-VL vision tower accepts: one merge window of zero patches.

    Returns:
        ``(pixel_values, image_grid_thw)``: ``(merge**2, channels * temporal * patch**2)`` and ``[[1, m, m]]``.
    """
    vision = model.config.vision_config
    merge = int(getattr(vision, "spatial_merge_size", 1))
    patch_dim = (
        int(getattr(vision, "in_channels", 3))
        * int(getattr(vision, "temporal_patch_size", 1))
        * int(vision.patch_size) ** 2
    )
    dtype = next(iter(model.parameters())).dtype
    pixel_values = torch.zeros(merge * merge, patch_dim, dtype=dtype, device=device)
    return pixel_values, torch.tensor([[1, merge, merge]], device=device)


def pad_vision_calls(model: Any, local_calls: int, device: torch.device) -> torch.Tensor | None:
    """Run dummy vision calls until this rank has made as many as the busiest rank (a collective).

    Args:
        model: unwrapped model exposing ``get_image_features``; its vision tower partitioned by ZeRO-3.
        local_calls: calls this rank makes in the pass (:func:`vision_calls`).
        device: this rank's device.

    Returns:
        ``None`` when no call was missing (or one process only), else a zero scalar that depends on the dummy
        features: add it to the pass's output so that backward also runs through them as often on every rank.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    most = torch.tensor([local_calls], dtype=torch.long, device=device)
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    missing = int(most.item()) - local_calls
    if missing <= 0:
        return None
    pixel_values, image_grid_thw = dummy_image(model, device)
    anchor = torch.zeros((), device=device)
    for _ in range(missing):
        output = model.get_image_features(
            pixel_values=pixel_values, image_grid_thw=image_grid_thw, return_dict=True
        )
        anchor = anchor + 0.0 * sum(f.float().sum() for f in per_image_features(output))
    return anchor
