"""The one rule for reading an image, used by every path: training, evaluation, prediction, conversion, show.

**EXIF orientation is applied.** A photo whose EXIF ``Orientation`` tag says "rotate 90°" (tag 6, what phones
write) is used upright, as an image viewer shows it and as ``datasets.Image`` decodes it for training. So
everywhere in crowdvlm an image's ``width``/``height`` and its ``points`` are in this *oriented* frame:

- :func:`open_image` decodes a file as the RGB image every model sees (``PIL.ImageOps.exif_transpose``, the
  function ``datasets`` itself calls, so training and evaluation get the same pixels);
- converters of native annotation files (ShanghaiTech ``.mat``, UCF/JHU/NWPU/FSC lists), whose points were
  made in the raw pixel frame (MATLAB's ``imread`` ignores EXIF), map them with
  :func:`check_image_and_points`; manifests and CrowdVLM records are already in the oriented frame.

Point coordinates are continuous (pixel ``i`` spans ``[i, i + 1)``), so a horizontal flip maps ``x`` to
``width - x``.

**Regular files only.** Every path is checked with :func:`regular_file` before it is opened: a named pipe
given as an image would block the reader forever (and a device would read without end).

:class:`ImageCheck` is the fast check run on every training image before a model is loaded: a full decode
(a truncated file fails here) and the processor's own size rules (e.g. Qwen-VL refuses an aspect ratio over
200), so one bad image can never stop a run hours in.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from crowdvlm.data.errors import DataError

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
_SWAPS_AXES = (5, 6, 7, 8)  # orientations that turn a W x H file into an H x W image
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation of an open image (1..8; 1 when absent or not a valid value)."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError):  # a corrupt EXIF block: PIL's exif_transpose ignores it too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented_size(raw_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(width, height)`` of the upright image, from the file's raw size."""
    w, h = raw_size
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def orient_points(points: np.ndarray, raw_size: tuple[int, int], orientation: int) -> np.ndarray:
    """Map ``(N, 2)`` raw-frame ``[x, y]`` points into the frame :func:`open_image` returns.

    >>> orient_points(np.array([[10.0, 2.0]]), (100, 50), 6).tolist()  # rotated 90° clockwise: 50 x 100
    [[48.0, 10.0]]
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    w, h = raw_size
    x, y = points[:, 0], points[:, 1]
    mapped = {
        1: (x, y),
        2: (w - x, y),  # mirrored left-right
        3: (w - x, h - y),  # rotated 180°
        4: (x, h - y),  # mirrored top-bottom
        5: (y, x),  # transposed
        6: (h - y, x),  # rotated 90° clockwise
        7: (h - y, w - x),  # transversed
        8: (y, w - x),  # rotated 90° counter-clockwise
    }[orientation]
    return np.stack(mapped, axis=1)


class NotRegularFileError(OSError):
    """A path that names a named pipe, a socket, a device or a folder where a file was expected."""


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it is a named pipe, socket or device (opening one may block or never end);
    None for a regular file, a folder or nothing at all (opening those fails or works as usual)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _file_type(mode)


def regular_file(path: str | Path) -> Path:
    """``path`` if it is a regular file (links followed), checked without opening it.

    Raises:
        FileNotFoundError: nothing is there.
        NotRegularFileError: a named pipe, socket, device or folder (opening a pipe would block forever).
    """
    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"{path}: not a regular file ({_file_type(mode)})")
    return path


def open_image(path: str | Path | IO[bytes]) -> Image.Image:
    """Decode an image fully, upright (EXIF orientation applied) and in RGB: what every model sees.

    Args:
        path: a regular file (see :func:`regular_file`), or an open binary stream.

    Raises:
        OSError: missing, not a regular file, unreadable, truncated or not an image (PIL raises subclasses
            of it).
        Image.DecompressionBombError: the image is implausibly large.
    """
    if isinstance(path, str | Path):
        path = regular_file(path)
    with Image.open(path) as img:
        img.load()  # decode now: a corrupt file fails here, not inside a model call
        upright = ImageOps.exif_transpose(img) if exif_orientation(img) != 1 else img
        return upright.convert("RGB")


def _inspect(path: Path, record: str | None) -> tuple[tuple[int, int], int]:
    """Decode ``path`` fully; ``(raw size, orientation)``, or a DataError naming the file and record."""
    if not path.exists() or path.is_dir():
        what = "is a folder, not an image" if path.is_dir() else "image not found"
        raise DataError(path, what, record=record, kind="missing-image")
    try:
        regular_file(path)
    except NotRegularFileError as err:
        raise DataError(path, str(err).removeprefix(f"{path}: "), record=record, kind="bad-image") from None
    try:
        with Image.open(path) as img:
            size, orientation = img.size, exif_orientation(img)
            if img.format == "JPEG":  # draft mode reads the whole stream at 1/8 scale: truncation still fails
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except _DECODE_ERRORS as err:
        raise DataError(
            path, f"unreadable or truncated image ({err})", record=record, kind="bad-image"
        ) from None
    if min(size) < 1:
        raise DataError(path, f"image has no pixels ({size[0]}x{size[1]})", record=record, kind="bad-image")
    return size, orientation


def check_image(path: str | Path, *, record: str | None = None) -> tuple[int, int]:
    """Decode an image fully (a truncated file fails here) and return its upright ``(width, height)``.

    Raises:
        DataError: ``missing-image`` or ``bad-image``, naming the file and ``record``.
    """
    size, orientation = _inspect(Path(path), record)
    return oriented_size(size, orientation)


def check_image_and_points(
    path: str | Path, points: np.ndarray | None, *, record: str | None = None
) -> tuple[tuple[int, int], np.ndarray | None]:
    """:func:`check_image`, plus raw-frame annotation ``points`` mapped into the upright frame."""
    size, orientation = _inspect(Path(path), record)
    if points is not None and orientation != 1:
        points = orient_points(points, size, orientation)
    return oriented_size(size, orientation), points


def processor_size_rule(processor) -> Callable[[int, int], None]:
    """A function ``(width, height) -> None`` that raises ``ValueError`` where the processor would.

    Qwen-VL image processors decide from the size alone (``smart_resize``: aspect ratio at most 200), so
    their own function is called with the processor's settings. Any other processor is run on a blank image
    of each distinct size once (slower, but it is the processor itself that decides).
    """
    image_processor = getattr(processor, "image_processor", processor)
    smart_resize = getattr(sys.modules.get(type(image_processor).__module__), "smart_resize", None)
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    size = getattr(image_processor, "size", None) or {}
    min_pixels, max_pixels = size.get("shortest_edge"), size.get("longest_edge")
    if smart_resize is not None and patch and merge and min_pixels and max_pixels:

        def rule(width: int, height: int) -> None:
            smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)

        return rule

    verdicts: dict[tuple[int, int], str | None] = {}

    def run_processor(width: int, height: int) -> None:
        if (width, height) not in verdicts:
            try:
                image_processor(images=[Image.new("RGB", (width, height))], return_tensors="np")
                verdicts[width, height] = None
            except (ValueError, RuntimeError) as err:
                verdicts[width, height] = str(err)
        if verdicts[width, height] is not None:
            raise ValueError(verdicts[width, height])

    return run_processor


class ImageCheck:
    """Decode an image and apply the processor's size rules: the check of every training image.

    Args:
        size_rule: from :func:`processor_size_rule`; None checks decoding only.
    """

    def __init__(self, size_rule: Callable[[int, int], None] | None = None):
        self.size_rule = size_rule

    def __call__(self, path: str | Path, *, record: str | None = None) -> tuple[int, int]:
        """The upright ``(width, height)`` of a usable image.

        Raises:
            DataError: ``missing-image``, ``bad-image`` or ``rejected-image`` (the processor's rule).
        """
        width, height = check_image(path, record=record)
        if self.size_rule is not None:
            try:
                self.size_rule(width, height)
            except ValueError as err:
                raise DataError(
                    path,
                    f"the processor rejects this {width}x{height} image ({err})",
                    record=record,
                    kind="rejected-image",
                ) from None
        return width, height
