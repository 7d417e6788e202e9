"""The Qwen-VL resize rule, in one place: transformers' own ``smart_resize`` with the processor's settings.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL image processors round each side of an image to a multiple of
``patch_size * merge_size`` and scale the whole image so that its area lies within ``[min_pixels, max_pixels]``
(the processor's ``size.shortest_edge`` / ``size.longest_edge``); an aspect ratio over 200 is refused. Modeling
(the pixel bounds a recipe sets), the training image check, pointing frames and every evaluation backend read the
rule here, so none of them can disagree with the processor or with each other.

>>> ResizeRule(28, 56 * 56, 112 * 112).size(1024, 768)
(112, 84)
>>> check_pixel_bounds(5000, 4000)
Traceback (most recent call last):
...
ValueError: min_pixels (5000) is larger than max_pixels (4000)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ResizeRule", "check_pixel_bounds", "resized_size"]


def check_pixel_bounds(min_pixels: int | None, max_pixels: int | None) -> None:
    """Refuse image-area bounds the processor cannot honour: not a positive integer, or min above max."""
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer (an image area in pixels), got {value!r}")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")


def resized_size(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of an image after the Qwen-VL processor's resize (transformers' ``smart_resize``).

    Raises:
        ValueError: a side is not positive, or the aspect ratio exceeds 200 (the processor refuses it).

    >>> resized_size(30, 30, 28, 3136, 12544)   # too small: scaled up to at least min_pixels
    (56, 56)
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    try:
        h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as err:  # transformers' words, with the image named
        raise ValueError(f"image {width}x{height}: the processor refuses it ({err})") from None
    return w, h


@dataclass(frozen=True)
class ResizeRule:
    """A processor's resize settings: the factor (``patch_size * merge_size``) and the pixel-area bounds."""

    factor: int
    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        check_pixel_bounds(self.min_pixels, self.max_pixels)

    @classmethod
    def from_processor(cls, processor: Any) -> ResizeRule:
        """Read ``patch_size``, ``merge_size`` and the ``size`` bounds of a Qwen-VL (image) processor.

        Raises:
            ValueError: the processor is not a Qwen-VL one (no pixel-area bounds or no merge size).
        """
        image_processor = getattr(processor, "image_processor", processor)
        size = dict(getattr(image_processor, "size", None) or {})
        patch = getattr(image_processor, "patch_size", None)
        merge = getattr(image_processor, "merge_size", None)
        if not patch or not merge or "shortest_edge" not in size or "longest_edge" not in size:
            raise ValueError(
                f"{type(image_processor).__name__} has no Qwen-VL resize settings (patch_size, merge_size, "
                "size.shortest_edge/longest_edge); to point with this model use point frame 'relative-1000' or "
                "'original'"
            )
        return cls(int(patch) * int(merge), int(size["shortest_edge"]), int(size["longest_edge"]))

    def size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the resize; raises ``ValueError`` where the processor would."""
        return resized_size(width, height, self.factor, self.min_pixels, self.max_pixels)
