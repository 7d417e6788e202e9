"""Run the processor once per distinct prompt of a GRPO batch, then repeat its outputs to every row.

TRL's ``RepeatSampler`` puts G identical rows per prompt in a batch, and ``GRPOTrainer`` (trl 1.16.0) runs the
processor over all of them twice per step (``_tokenize_prompts`` for generation, then once more for the
log-prob passes), so each image is resized, normalised and patchified 2G times. ``DedupProcessor`` wraps a
processor for the duration of one ``_generate_and_score_completions`` call: its ``apply_chat_template`` (batch,
tokenized) and ``__call__`` (``images=`` + ``text=`` lists) process each distinct row once and repeat the
outputs, which are then identical, key for key, to what the wrapped processor returns for the full batch.
Everything else is delegated to the wrapped processor unchanged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from crowdvlm.train.sharing.fallbacks import Fallback, FallbackReason

logger = logging.getLogger(__name__)

# Processor outputs that hold one entry (a token sequence) per text row; every other output is per image or
# per patch row.
ROW_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"})
# Outputs laid out per image (``image_grid_thw``) or per patch row of an image (``pixel_values``, Qwen-VL).
IMAGE_KEYS = frozenset({"pixel_values", "image_grid_thw"})
# Outputs a processor declares but only returns for videos, which ``DedupProcessor`` never deduplicates.
VIDEO_KEYS = frozenset({"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"})


def processor_unsupported_reason(processor: Any) -> Fallback | None:
    """Why a processor's outputs cannot be repeated to the rows of a group, or None when they can.

    Read from the inputs the processor declares (``model_input_names``), so it is known before any call:
    every one must be per row, per image or per patch row in the Qwen-VL layout, or video-only.
    """
    names = getattr(processor, "model_input_names", None)
    if not names:
        return Fallback(
            FallbackReason.PROCESSOR_INPUTS, f"{type(processor).__name__} declares no model_input_names"
        )
    unknown = sorted(set(names) - ROW_KEYS - IMAGE_KEYS - VIDEO_KEYS)
    if unknown:
        return Fallback(
            FallbackReason.PROCESSOR_INPUTS,
            f"{type(processor).__name__} returns {unknown}, whose layout per row or image is unknown",
        )
    if "pixel_values" in names and "image_grid_thw" not in names:
        return Fallback(
            FallbackReason.PROCESSOR_INPUTS,
            f"{type(processor).__name__}'s pixel_values are not laid out by image_grid_thw",
        )
    return None


@dataclass(frozen=True)
class RowGroups:
    """Which rows of a batch are copies of one another.

    Attributes:
        first: index of the first row of each distinct group, in order of first appearance.
        inverse: for each row, the index (into ``first``) of its group.
    """

    first: list[int]
    inverse: list[int]

    @property
    def has_duplicates(self) -> bool:
        return len(self.first) < len(self.inverse)


def group_rows(keys: Sequence[Hashable]) -> RowGroups:
    """Group equal keys, keeping first-appearance order.

    >>> group_rows(["a", "a", "b", "a"])
    RowGroups(first=[0, 2], inverse=[0, 0, 1, 0])
    """
    first: list[int] = []
    seen: dict[Hashable, int] = {}
    inverse = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        inverse.append(seen[key])
    return RowGroups(first=first, inverse=inverse)


def content_key(obj: Any) -> Hashable:
    """A hashable key equal for equal prompt content: PIL images and arrays by pixel bytes, containers by item.

    Objects that are neither hashable nor understood get a key unique to the object, so they never merge
    two rows (the safe direction).
    """
    if isinstance(obj, str | int | float | bool | type(None)):
        return obj
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((str(k), content_key(v)) for k, v in obj.items())))
    if isinstance(obj, list | tuple):
        return ("seq", tuple(content_key(v) for v in obj))
    if hasattr(obj, "tobytes") and hasattr(obj, "size") and hasattr(obj, "mode"):  # PIL.Image
        digest = hashlib.blake2b(obj.tobytes(), digest_size=16).hexdigest()
        return ("pil", obj.mode, tuple(obj.size), digest)
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous()
        digest = hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()
        return ("tensor", str(data.dtype), tuple(data.shape), digest)
    if hasattr(obj, "tobytes") and hasattr(obj, "dtype") and hasattr(obj, "shape"):  # numpy
        digest = hashlib.blake2b(obj.tobytes(), digest_size=16).hexdigest()
        return ("array", str(obj.dtype), tuple(obj.shape), digest)
    try:
        hash(obj)
    except TypeError:
        return ("object", id(obj))
    return obj


class CannotExpandError(ValueError):
    """A processor output whose layout (per row, per image or per patch) cannot be told apart."""


def _take(value: Any, index: list[int]) -> Any:
    """Rows ``index`` of a tensor or list (lists are copied so rows never alias one another)."""
    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(index, dtype=torch.long, device=value.device)]
    return [list(value[i]) if isinstance(value[i], list) else value[i] for i in index]


def expand_processor_outputs(
    outputs: dict[str, Any], groups: RowGroups, images_per_group: list[int]
) -> dict[str, Any]:
    """Repeat the processor outputs of the distinct rows to every row of the batch.

    Args:
        outputs: what the processor returned for the distinct rows (one per group, in ``groups.first`` order).
        groups: the row grouping of the full batch.
        images_per_group: number of images of each distinct row.

    Returns:
        A dict with the same keys, laid out as if the processor had seen the full batch.

    Raises:
        CannotExpandError: a value whose first dimension matches neither rows nor images.
    """
    n_groups = len(groups.first)
    n_images = sum(images_per_group)
    image_starts = [sum(images_per_group[:g]) for g in range(n_groups)]
    image_index = [image_starts[g] + j for g in groups.inverse for j in range(images_per_group[g])]

    expanded: dict[str, Any] = {}
    for key, value in outputs.items():
        length = len(value) if isinstance(value, list | tuple | torch.Tensor) else None
        if key in ROW_KEYS or (length == n_groups and length != n_images):
            if length != n_groups:
                raise CannotExpandError(f"processor output {key!r} has {length} rows, expected {n_groups}")
            expanded[key] = _take(value, groups.inverse)
        elif key == "pixel_values" and "image_grid_thw" in outputs:
            # Patch rows: image i owns prod(image_grid_thw[i]) consecutive rows.
            rows_per_image = outputs["image_grid_thw"].prod(-1).tolist()
            chunks = torch.split(value, rows_per_image, dim=0)
            expanded[key] = torch.cat([chunks[i] for i in image_index], dim=0)
        elif length == n_images and (length != n_groups or all(n == 1 for n in images_per_group)):
            expanded[key] = _take(value, image_index)
        else:
            raise CannotExpandError(
                f"processor output {key!r} (length {length}) is neither per row ({n_groups}) nor per image "
                f"({n_images})"
            )
    return expanded


@dataclass
class ProcessorCallStats:
    """Rows asked for and rows actually processed, over the life of a ``DedupProcessor``."""

    rows_requested: int = 0
    rows_processed: int = 0
    images_processed: int = 0
    fallbacks: list[str] = field(default_factory=list)


class DedupProcessor:
    """Delegates to a processor; batched calls process each distinct row once and repeat the outputs.

    Only two entry points change: ``apply_chat_template(conversation=[conv, ...], tokenize=True,
    return_dict=True, ...)`` and ``__call__(text=[...], images=[[...], ...], ...)``. Any other use, and any
    batch whose outputs cannot be laid out unambiguously, goes to the wrapped processor as is (the latter
    is recorded in ``stats.fallbacks`` and logged once).

    Args:
        processor: a ``transformers.ProcessorMixin`` (for example ``Qwen2_5_VLProcessor``).
    """

    def __init__(self, processor: Any) -> None:
        self._processor = processor
        self.stats = ProcessorCallStats()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    @property
    def wrapped(self) -> Any:
        """The processor this one delegates to."""
        return self._processor

    def apply_chat_template(self, conversation: Any, *args: Any, **kwargs: Any) -> Any:
        batched = isinstance(conversation, list) and conversation and isinstance(conversation[0], list)
        if not (batched and kwargs.get("tokenize") and kwargs.get("return_dict")) or args:
            return self._processor.apply_chat_template(conversation, *args, **kwargs)
        groups = group_rows([content_key(conv) for conv in conversation])
        unique = [conversation[i] for i in groups.first]
        images_per_group = [_count_images(conv) for conv in unique]
        return self._run(
            lambda: self._processor.apply_chat_template(conversation, **kwargs),
            lambda: self._processor.apply_chat_template(unique, **kwargs),
            groups,
            images_per_group,
        )

    def __call__(self, *args: Any, images: Any = None, text: Any = None, **kwargs: Any) -> Any:
        per_row = (
            not args
            and isinstance(text, list)
            and isinstance(images, list)
            and len(images) == len(text)
            and all(imgs is None or isinstance(imgs, list) for imgs in images)
        )
        if not per_row or kwargs.get("videos") is not None:
            return self._processor(*args, images=images, text=text, **kwargs)
        groups = group_rows([(t, content_key(imgs)) for t, imgs in zip(text, images, strict=True)])
        unique_text = [text[i] for i in groups.first]
        unique_images = [images[i] for i in groups.first]
        images_per_group = [len(imgs or []) for imgs in unique_images]
        return self._run(
            lambda: self._processor(images=images, text=text, **kwargs),
            lambda: self._processor(images=unique_images, text=unique_text, **kwargs),
            groups,
            images_per_group,
        )

    def _run(self, process_all, process_unique, groups: RowGroups, images_per_group: list[int]) -> Any:
        from transformers import BatchFeature

        n_rows = len(groups.inverse)
        self.stats.rows_requested += n_rows
        if not groups.has_duplicates:
            self.stats.rows_processed += n_rows
            return process_all()
        outputs = process_unique()
        try:
            expanded = expand_processor_outputs(dict(outputs), groups, images_per_group)
        except CannotExpandError as err:
            if not self.stats.fallbacks:
                logger.warning(
                    "processor outputs cannot be shared across a group (%s); processing every row", err
                )
            self.stats.fallbacks.append(str(err))
            self.stats.rows_processed += n_rows
            return process_all()
        self.stats.rows_processed += len(groups.first)
        self.stats.images_processed += sum(images_per_group)
        return BatchFeature(data=expanded)


def _count_images(conversation: list[dict]) -> int:
    """Images in a conversation, counted as the processor's chat template counts them."""
    count = 0
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
    return count
