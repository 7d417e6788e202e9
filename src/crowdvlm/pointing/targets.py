"""Point answers for training: the SFT target text and the dataset columns point rewards read.

A point training row carries, besides TRL's ``prompt`` / ``image`` / ``solution``:

* ``points``: the manifest's points, in **original image pixels** (``[[x, y], ...]``);
* ``image_size``: ``[width, height]`` of the original image (the manifest's fields, else the file's);
* ``frame_size``: ``[width, height]`` of the frame the model points in (see :mod:`crowdvlm.pointing.frame`).

Rewards map ``points`` into the frame with ``frame_size / image_size``, so nothing is stored twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from crowdvlm.pointing.frame import Frame, ResizeRule, reading_order
from crowdvlm.prompts import POINT_LABEL

__all__ = ["add_frame_sizes", "frame_of_row", "image_size", "point_answer", "point_frame_for"]

# EXIF orientations that turn the picture by 90 degrees: the decoded image (datasets, our loaders) swaps sides.
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def image_size(path: str | Path, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image as decoded: the manifest's fields when given, else the file's header.

    The header size is turned when the EXIF orientation rotates the picture by 90 degrees, as
    ``datasets.Image`` and ``PIL.ImageOps.exif_transpose`` do when they decode it.
    """
    if width is not None and height is not None:
        return int(width), int(height)
    from PIL import Image

    from crowdvlm.data.images import regular_file

    with Image.open(regular_file(path)) as img:
        w, h = img.size
        if img.getexif().get(_ORIENTATION_TAG) in _QUARTER_TURNS:
            w, h = h, w
    return w, h


def point_answer(points: Sequence[Sequence[float]], label: str = POINT_LABEL) -> str:
    """The point answer for frame ``points``: Qwen's grounding JSON in reading order, then the count.

    >>> point_answer([[40.2, 7.0], [3.0, 7.4], [9.6, 1.0]])
    '[{"point_2d": [10, 1], "label": "object"}, {"point_2d": [3, 7], "label": "object"}, {"point_2d": [40, 7], "label": "object"}]<answer>3</answer>'
    >>> point_answer([])
    '[]<answer>0</answer>'
    """
    ordered = reading_order(points)
    listed = json.dumps([{"point_2d": [x, y], "label": label} for x, y in ordered])
    return f"{listed}<answer>{len(ordered)}</answer>"


def point_frame_for(processor, convention: str) -> ResizeRule | None:
    """The processor's resize rule for the ``resized`` convention (None for the others)."""
    return ResizeRule.from_processor(processor) if convention == "resized" else None


def add_frame_sizes(dataset, convention: str, rule: ResizeRule | None):
    """Add ``frame_size`` (the model's frame of each row's ``image_size``) to a point dataset."""
    sizes = [Frame.make(convention, w, h, rule) for w, h in dataset["image_size"]]
    return dataset.add_column("frame_size", [[f.width, f.height] for f in sizes])


def frame_of_row(image_size: Sequence[int], frame_size: Sequence[int]) -> Frame:
    """The :class:`Frame` of a row from its ``image_size`` and ``frame_size`` columns."""
    return Frame(int(image_size[0]), int(image_size[1]), int(frame_size[0]), int(frame_size[1]))
