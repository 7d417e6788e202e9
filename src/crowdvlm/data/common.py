"""Helpers every dataset reader shares: checked images, .mat files, point arrays and counts; records.

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

from crowdvlm.counts import read_count, read_whole_number
from crowdvlm.data.errors import DataError
from crowdvlm.data.images import check_image, check_image_and_points  # noqa: F401  (the readers import them here)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_DIGITS = re.compile(r"(\d+)")
#: A question, not a document: a longer ``problem`` is refused where a record is read (a 50 MB one once
#: reached the tokenizer and aborted an evaluation out of memory). Ten thousand characters is about 2,500
#: tokens, far above any counting question and far below any model's context.
MAX_PROBLEM_CHARS = 10_000


def load_mat(path: str | Path, key: str, *, record: str | None = None) -> Any:
    """``scipy.io.loadmat(path)[key]``, with errors that name the file and the keys it does have."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "annotation file not found", record=record, kind="missing-annotation")
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError... for a corrupt file
        raise DataError(
            path,
            f"not a readable .mat file ({type(err).__name__}: {err})",
            record=record,
            kind="bad-annotation",
        ) from None
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(path, f"expected the key {key!r}, found {keys}", record=record, kind="missing-key")
    return mat[key]


def count_field(
    value: Any,
    file: str | Path,
    record: str | None,
    *,
    name: str = "solution",
    allow_none: bool = False,
    numbers_only: bool = False,
) -> int | None:
    """A count read by the one rule of :mod:`crowdvlm.counts`, its refusal a ``bad-field`` DataError.

    Args:
        value: the stored value.
        file: the file that holds it, and ``record`` the record, for the message.
        name: the field, for the message.
        allow_none: a missing value (``None``) is allowed and returned as is.
        numbers_only: accept numbers only (no strings), for fields such as ``width``.
    """
    try:
        if value is None and allow_none:
            return None
        return read_whole_number(value, name) if numbers_only else read_count(value, name)
    except ValueError as err:
        raise DataError(file, str(err), record=record, kind="bad-field") from None


def _first_bad_point(raw: Any) -> str:
    """Where a list of points stops being ``[x, y]`` numbers (only called to word an error)."""
    for i, pair in enumerate(raw if isinstance(raw, list | tuple) else []):
        if not isinstance(pair, list | tuple) or len(pair) < 2:
            return f"point {i} must be [x, y], got {pair!r}"[:200]
        for v in pair[:2]:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"point {i} has a non-numeric coordinate {v!r}"[:200]
    return f"coordinates are not numeric, got {type(raw).__name__}"


def points_from_array(
    raw: Any,
    file: str | Path,
    *,
    record: str | None = None,
    allow_negative: bool = False,
    exactly_two_columns: bool = False,
) -> np.ndarray:
    """The one point validator: an (N, 2) float64 array of ``[x, y]`` from a list of pairs or an array.

    Checks that every coordinate is a number (never a string or a bool), finite and (unless
    ``allow_negative``) non-negative. Extra columns (JHU's ``w h o b``) are dropped, unless
    ``exactly_two_columns`` (the ``.mat`` formats: a transposed 2 x N or a 1 x N row would otherwise be read
    as 2 or 1 points). An empty input gives shape (0, 2).

    Raises:
        DataError: ``bad-coordinates``, naming ``file``, ``record`` and the first bad point.
    """
    try:
        arr = np.asarray(raw)
    except ValueError:  # rows of different lengths
        raise DataError(file, _first_bad_point(raw), record=record, kind="bad-coordinates") from None
    if arr.size == 0:
        return np.zeros((0, 2))
    has_bool = isinstance(raw, list | tuple) and any(
        isinstance(v, bool) for pair in raw if isinstance(pair, list | tuple) for v in pair[:2]
    )  # numpy turns True into 1 silently
    if arr.dtype.kind not in "iuf" or has_bool:
        raise DataError(file, _first_bad_point(raw), record=record, kind="bad-coordinates")
    if arr.ndim != 2 or arr.shape[1] < 2 or (exactly_two_columns and arr.shape[1] != 2):
        raise DataError(
            file,
            f"expected an N x 2 array of [x, y], got shape {arr.shape}",
            record=record,
            kind="bad-coordinates",
        )
    arr = arr[:, :2].astype(np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            file,
            f"point {i} has a NaN or infinite coordinate {arr[i].tolist()}",
            record=record,
            kind="bad-coordinates",
        )
    if not allow_negative and (arr < 0).any():
        i = int(np.argmax((arr < 0).any(axis=1)))
        raise DataError(
            file,
            f"point {i} has a negative coordinate {arr[i].tolist()}",
            record=record,
            kind="bad-coordinates",
        )
    return arr


def inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mask of the ``(N, 2)`` points inside an image of ``size``, borders included (the BL / DM-Count rule)."""
    w, h = size
    return (points[:, 0] >= 0) & (points[:, 0] <= w) & (points[:, 1] >= 0) & (points[:, 1] <= h)


def drop_outside(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict | None]:
    """``(points inside the image, meta)``; ``meta`` is ``{"dropped_outside": n}`` when any were dropped.

    The readers keep that count in a record's ``meta``; ``crowdvlm data convert`` sums it and says so.
    """
    keep = inside(points, size)
    meta = None if keep.all() else {"dropped_outside": int((~keep).sum())}
    return points[keep], meta


def check_problem_length(problem: str, file: str | Path, record: str) -> None:
    """Refuse a ``problem`` longer than :data:`MAX_PROBLEM_CHARS` (a ``malformed`` DataError)."""
    if len(problem) > MAX_PROBLEM_CHARS:
        raise DataError(
            file,
            f"problem is {len(problem)} characters; the limit is {MAX_PROBLEM_CHARS} (a question, not a document)",
            record=record,
            kind="malformed",
        )


def record_fields(raw: Any, file: str | Path, record: str, *, hint: str = "") -> dict:
    """``raw`` if it is a JSON object with ``image``, ``problem`` and ``solution``; else a ``malformed`` DataError.

    The first check of a manifest record and of a CrowdVLM-R1 record; ``hint`` adds what else is accepted.
    """
    if not isinstance(raw, dict):
        raise DataError(
            file, f"expected a JSON object, got {type(raw).__name__}", record=record, kind="malformed"
        )
    missing = [key for key in ("image", "problem", "solution") if key not in raw]
    if missing:
        raise DataError(
            file,
            f"missing field(s) {missing}; a record needs image, problem, solution{hint}",
            record=record,
            kind="malformed",
        )
    return raw


def record_points(
    raw: Any, solution: int | None, file: str | Path, record: str, *, allow_negative: bool = False
) -> list[list[float]]:
    """A record's ``points`` checked by :func:`points_from_array`, and as many as its ``solution`` (if any)."""
    points = points_from_array(raw, file, record=record, allow_negative=allow_negative).tolist()
    if solution is not None and len(points) != solution:
        raise DataError(
            file,
            f"solution is {solution} but there are {len(points)} points",
            record=record,
            kind="count-mismatch",
        )
    return points


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
        raise DataError(
            file,
            f"{what} says {stated} but there are {len(points)} points",
            record=record,
            kind="count-mismatch",
        )


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


def read_pair(
    pair: tuple[str, Path | None, Path | None],
    expected_ann: Path,
    read_points: Callable[[Path], np.ndarray],
) -> tuple[Path, Path, tuple[int, int], np.ndarray]:
    """``(image, annotation, upright size, upright points)`` of one pair from :func:`pair_by_stem`.

    The shared step of the readers whose images come with one annotation file each: refuse a missing side
    (``expected_ann`` names the annotation that should be there), read the points with
    ``read_points(annotation)``, decode the image and turn the points into its upright frame (EXIF).
    """
    stem, image, annotation = pair
    if annotation is None:
        raise DataError(
            expected_ann,
            f"annotation file not found for image {image}",
            record=stem,
            kind="missing-annotation",
        )
    if image is None:
        raise DataError(annotation, "image not found for this annotation", record=stem, kind="missing-image")
    size, points = check_image_and_points(image, read_points(annotation), record=stem)
    return image, annotation, size, points


def read_ann_points(mat: Path, *, record: str | None = None, allow_negative: bool = False) -> np.ndarray:
    """The checked ``annPoints`` (N x 2 ``[x, y]``) of a UCF-style .mat (UCF-QNRF, UCF_CC_50, NWPU)."""
    return points_from_array(
        load_mat(mat, "annPoints", record=record),
        mat,
        record=record,
        allow_negative=allow_negative,
        exactly_two_columns=True,
    )


def ann_mat_stem(mat: Path) -> str | None:
    """The image stem of a ``<stem>_ann.mat`` (UCF-QNRF, UCF_CC_50); None for another file."""
    return mat.stem.removesuffix("_ann") if mat.stem.endswith("_ann") else None


def ann_mat_pairs(folder: Path) -> list[tuple[str, Path | None, Path | None]]:
    """:func:`pair_by_stem` of a folder of images and ``<stem>_ann.mat`` files (UCF-QNRF, UCF_CC_50)."""
    return pair_by_stem(list_images(folder), sorted(folder.glob("*_ann.mat")), ann_mat_stem)


def read_ann_mat_pair(
    pair: tuple[str, Path | None, Path | None], folder: Path, *, allow_negative: bool = False
) -> tuple[Path, Path, tuple[int, int], np.ndarray]:
    """:func:`read_pair` of a pair of :func:`ann_mat_pairs`, its points the ``annPoints`` of the .mat
    (:func:`read_ann_points`; ``allow_negative`` keeps negative points, for the reader to drop).
    """
    stem = pair[0]
    return read_pair(
        pair,
        folder / f"{stem}_ann.mat",
        lambda mat: read_ann_points(mat, record=stem, allow_negative=allow_negative),
    )
