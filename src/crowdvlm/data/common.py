"""Helpers every dataset reader shares: checked images, checked .mat files, checked point arrays, records.

Each helper raises :class:`~crowdvlm.data.errors.DataError` with a ``kind`` the skip report groups by:
``missing-image``, ``bad-image``, ``bad-annotation`` (unreadable file, malformed line), ``missing-key``,
``bad-coordinates`` (non-numeric, NaN/inf, negative), ``count-mismatch``, ``missing-annotation``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crowdvlm.data.errors import DataError
from crowdvlm.data.images import check_image, check_image_and_points  # noqa: F401  (the readers import them here)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_DIGITS = re.compile(r"(\d+)")


def load_mat(path: str | Path, key: str, *, record: str | None = None) -> Any:
    """``scipy.io.loadmat(path)[key]``, with errors that name the file and the keys it does have."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation file not found", record=record, kind="missing-annotation")
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError... for a corrupt file
        raise DataError(path, f"not a readable .mat file ({type(err).__name__}: {err})", record=record,
                        kind="bad-annotation") from None  # fmt: skip
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(path, f"expected the key {key!r}, found {keys}", record=record, kind="missing-key")
    return mat[key]


def points_from_array(
    raw: Any, file: str | Path, *, record: str | None = None, allow_negative: bool = False
) -> np.ndarray:
    """An (N, 2) float64 array of ``[x, y]`` from anything array-like; checks numbers, finiteness and sign.

    Extra columns (JHU's ``w h o b``) are dropped. An empty input gives shape (0, 2).
    """
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(file, "coordinates are not numeric", record=record, kind="bad-coordinates") from None
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim == 1 and arr.shape[0] >= 2 and arr.shape[0] <= 6:
        arr = arr[None, :]  # one point (np.loadtxt of a one-line file)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(file, f"expected an N x 2 array of [x, y], got shape {arr.shape}", record=record,
                        kind="bad-coordinates")  # fmt: skip
    arr = arr[:, :2]
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(file, f"point {i} has a NaN or infinite coordinate {arr[i].tolist()}", record=record,
                        kind="bad-coordinates")  # fmt: skip
    if not allow_negative and (arr < 0).any():
        i = int(np.argmax((arr < 0).any(axis=1)))
        raise DataError(file, f"point {i} has a negative coordinate {arr[i].tolist()}", record=record,
                        kind="bad-coordinates")  # fmt: skip
    return arr


def check_count(
    expected: Any, points: np.ndarray, file: str | Path, *, record: str | None, what: str
) -> None:
    """Raise ``count-mismatch`` when an annotation's stated count (``what``) disagrees with its points."""
    try:
        stated = int(np.asarray(expected).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise DataError(
            file, f"{what} is not a number: {expected!r}", record=record, kind="bad-annotation"
        ) from None
    if stated != len(points):
        raise DataError(file, f"{what} says {stated} but there are {len(points)} points", record=record,
                        kind="count-mismatch")  # fmt: skip


def make_record(
    image: Path,
    *,
    dataset: str,
    split: str,
    problem: str,
    points: np.ndarray | None,
    size: tuple[int, int],
    solution: int | None = None,
    record_id: str | None = None,
    meta: dict | None = None,
) -> dict:
    """A manifest record; ``solution`` defaults to the number of points."""
    record = {
        "id": record_id or f"{dataset}/{split}/{image.stem}",
        "image": str(image.resolve()),
        "problem": problem,
        "solution": len(points) if solution is None and points is not None else solution,
        "dataset": dataset,
        "split": split,
        "width": int(size[0]),
        "height": int(size[1]),
    }
    if points is not None:
        record["points"] = np.round(points, 2).tolist()
    if meta:
        record["meta"] = meta
    return record


def find_dir(root: Path, *candidates: str) -> Path | None:
    """The first of ``root/candidate`` that is a directory (candidates may contain '/')."""
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name with numbers in natural order (IMG_2 before IMG_10)."""

    def natural(p: Path):
        return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(p.name)]

    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural)


def splits_to_read(split: str | None, available: tuple[str, ...], dataset: str) -> tuple[str, ...]:
    """All available splits, or just the one asked for (an unknown name is an error listing the known ones)."""
    if split is None:
        return available
    if split not in available:
        raise ValueError(f"{dataset}: unknown split {split!r}; available: {list(available)}")
    return (split,)


def pair_by_stem(
    images: list[Path], annotations: list[Path], image_stem: Callable[[Path], str | None]
) -> list[tuple[str, Path | None, Path | None]]:
    """Match images with annotation files: ``(stem, image or None, annotation or None)``, naturally sorted.

    ``image_stem(annotation)`` gives the stem of the image an annotation belongs to (None: not an annotation
    file). A side that is None is a missing image or a missing annotation, for the reader to report.
    """
    by_image = {p.stem: p for p in images}
    by_ann = {}
    for ann in annotations:
        stem = image_stem(ann)
        if stem is not None:
            by_ann[stem] = ann
    stems = sorted(
        set(by_image) | set(by_ann), key=lambda s: [int(t) if t.isdigit() else t for t in _DIGITS.split(s)]
    )
    return [(s, by_image.get(s), by_ann.get(s)) for s in stems]


def require_pair(
    stem: str, image: Path | None, annotation: Path | None, expected_ann: Path
) -> tuple[Path, Path]:
    """Both files of a pair, or the error for the missing one."""
    if annotation is None:
        raise DataError(expected_ann, f"annotation file not found for image {image}", record=stem,
                        kind="missing-annotation")  # fmt: skip
    if image is None:
        raise DataError(annotation, "image not found for this annotation", record=stem, kind="missing-image")
    return image, annotation
