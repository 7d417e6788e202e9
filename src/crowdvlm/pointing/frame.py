"""The frame a model points in, and the mapping between it and the original image pixels.

Manifest points are in pixels of the original image (``width`` x ``height``). A model answers in its own
frame, which depends on the model family's grounding convention:

* ``resized`` (Qwen2.5-VL): absolute pixels of the image *after* the processor's resize. Qwen2-VL / 2.5-VL
  processors resize with ``smart_resize``: each side is rounded to a multiple of ``patch_size * merge_size``
  (28), then the whole image is scaled down (up) so that its area is at most ``max_pixels`` (at least
  ``min_pixels``). :class:`crowdvlm.resize.ResizeRule` computes the same sizes with the processor's own rule.
* ``relative-1000`` (Qwen3-VL, also Qwen2-VL's boxes): coordinates on a 0-1000 scale of each side.
* ``original``: pixels of the original image (for API models that are told nothing else).

A :class:`Frame` is one image's mapping; ``to_frame`` / ``from_frame`` convert points both ways.

>>> frame = Frame.resized(640, 480, ResizeRule(factor=28, min_pixels=56 * 56, max_pixels=112 * 112))
>>> frame.width, frame.height
(112, 84)
>>> frame.to_frame([[320.0, 240.0]]).tolist()
[[56.0, 42.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdvlm.resize import ResizeRule

__all__ = ["CONVENTIONS", "Frame", "reading_order"]

CONVENTIONS = ("resized", "relative-1000", "original")
RELATIVE_SCALE = 1000


@dataclass(frozen=True)
class Frame:
    """One image's point frame: the original size, the frame size, and the convention that relates them.

    Attributes:
        image_width, image_height: the original image, in pixels (what manifest points refer to).
        width, height: the extent of the frame the model answers in (points inside are ``0 <= x <= width``).
        convention: one of :data:`CONVENTIONS`.
    """

    image_width: int
    image_height: int
    width: int
    height: int
    convention: str = "resized"

    @classmethod
    def resized(cls, width: int, height: int, rule: ResizeRule) -> Frame:
        """Qwen2.5-VL: pixels of the image after the processor's resize (``rule``)."""
        w, h = rule.size(width, height)
        return cls(width, height, w, h, "resized")

    @classmethod
    def make(cls, convention: str, width: int, height: int, rule: ResizeRule | None = None) -> Frame:
        """The frame of a ``width`` x ``height`` image under ``convention`` (``resized`` needs ``rule``).

        Raises:
            ValueError: unknown convention, or ``resized`` without a resize rule.
        """
        if convention == "resized":
            if rule is None:
                raise ValueError("point frame 'resized' needs the processor's resize settings")
            return cls.resized(width, height, rule)
        if convention == "relative-1000":
            return cls(width, height, RELATIVE_SCALE, RELATIVE_SCALE, convention)
        if convention == "original":
            return cls(width, height, width, height, convention)
        raise ValueError(f"unknown point frame {convention!r}; expected one of {', '.join(CONVENTIONS)}")

    @property
    def scale(self) -> tuple[float, float]:
        """Frame units per original pixel, along x and along y."""
        return self.width / self.image_width, self.height / self.image_height

    def to_frame(self, points: Any) -> np.ndarray:
        """Original-pixel points ``(N, 2)`` -> frame coordinates ``(N, 2)`` (float64)."""
        # Multiply before dividing: whole-pixel inputs then map exactly wherever the result is representable.
        return _as_points(points) * (self.width, self.height) / (self.image_width, self.image_height)

    def from_frame(self, points: Any) -> np.ndarray:
        """Frame coordinates ``(N, 2)`` -> original-pixel points ``(N, 2)`` (float64)."""
        return _as_points(points) * (self.image_width, self.image_height) / (self.width, self.height)


def _as_points(points: Any) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {array.shape}")
    return array


def reading_order(points: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Points rounded to whole frame units and sorted as text is read: rows top to bottom, then left to right.

    This is the fixed order of the SFT targets (a row is one value of the rounded ``y``), so the same image
    always gives the same target.

    >>> reading_order([[5.4, 2.0], [1.0, 7.6], [0.2, 2.4]])
    [(0, 2), (5, 2), (1, 8)]
    """
    rounded = [(round(float(x)), round(float(y))) for x, y in points]
    return sorted(rounded, key=lambda p: (p[1], p[0]))
