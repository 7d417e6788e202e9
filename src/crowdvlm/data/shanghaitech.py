"""ShanghaiTech Part A and Part B.

Both release layouts are accepted::

    <root>/part_A[_final]/{train,test}_data/images/IMG_<k>.jpg
    <root>/part_A[_final]/{train,test}_data/ground[-_]truth/GT_IMG_<k>.mat

``root`` may also be a part folder itself. Each .mat holds ``image_info``, a 1x1 cell of a 1x1 struct with
fields ``location`` (N x 2 ``[x, y]``) and ``number``; the count is ``len(location)`` (as every public loader
uses) and a ``number`` that disagrees is reported as a count mismatch. Points are kept as stored (0-based
pixel coordinates, as DM-Count and most loaders read them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crowdvlm.data.common import (
    check_count,
    find_dir,
    list_images,
    load_mat,
    make_record,
    pair_by_stem,
    points_from_array,
    read_pair,
    splits_to_read,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.prompts import dataset_question

SPLITS = ("train", "test")
PARTS = ("A", "B")


def _part_dirs(root: Path, parts: tuple[str, ...]) -> dict[str, Path]:
    if (root / "train_data").is_dir() or (root / "test_data").is_dir():  # root is a part folder
        name = root.name.lower()
        part = "B" if "part_b" in name else "A" if "part_a" in name else "A"
        return {part: root}
    found = {}
    for part in parts:
        folder = find_dir(
            root,
            f"part_{part}_final",
            f"part_{part}",
            f"ShanghaiTech/part_{part}_final",
            f"ShanghaiTech/part_{part}",
        )
        if folder is not None:
            found[part] = folder
    if not found:
        raise FileNotFoundError(
            f"{root}: no part_A[_final] or part_B[_final] folder (with train_data/test_data)"
        )
    return found


def read_points(mat_path: Path, *, record: str | None = None) -> np.ndarray:
    """The (N, 2) head points of one ``GT_IMG_<k>.mat``."""
    cell = load_mat(mat_path, "image_info", record=record)
    try:
        struct = cell[0, 0][0, 0]  # cell{1} -> 1x1 struct -> its record
        location, number = struct["location"], struct["number"]
    except (IndexError, KeyError, ValueError, TypeError):
        raise DataError(
            mat_path,
            "image_info is not a 1x1 cell of a struct with fields location and number",
            record=record,
            kind="missing-key",
        ) from None
    points = points_from_array(location, mat_path, record=record, exactly_two_columns=True)
    check_count(number, points, mat_path, record=record, what="image_info.number")
    return points


def load_shanghaitech(
    root: str | Path,
    split: str | None = None,
    *,
    parts: tuple[str, ...] = PARTS,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records for ShanghaiTech (datasets ``shanghaitech-a`` / ``shanghaitech-b``, splits train/test)."""
    root, skips = Path(root), skips or SkipLog()
    records = []
    for part, part_dir in _part_dirs(root, parts).items():
        dataset = f"shanghaitech-{part.lower()}"
        for sp in splits_to_read(split, SPLITS, "shanghaitech"):
            split_dir = part_dir / f"{sp}_data"
            if not split_dir.is_dir():
                continue
            images = find_dir(split_dir, "images")
            gt_dir = find_dir(split_dir, "ground-truth", "ground_truth")
            if images is None or gt_dir is None:
                raise FileNotFoundError(f"{split_dir}: expected images/ and ground-truth/ (or ground_truth/)")

            def build(pair, sp=sp, dataset=dataset, gt_dir=gt_dir) -> dict:
                stem = pair[0]
                image, _, size, points = read_pair(
                    pair, gt_dir / f"GT_{stem}.mat", lambda mat: read_points(mat, record=stem)
                )
                return make_record(
                    image,
                    dataset=dataset,
                    split=sp,
                    problem=dataset_question("shanghaitech"),
                    points=points,
                    size=size,
                )

            pairs = pair_by_stem(list_images(images), sorted(gt_dir.glob("GT_*.mat")), _image_stem)
            records += collect(pairs, build, skips, desc=f"{dataset} {sp}", progress=progress)
    return records


def _image_stem(mat: Path) -> str:
    return mat.stem.removeprefix("GT_")
