"""UCF_CC_50 (``datasets.md`` §1.3): 50 grayscale images, evaluated by 5-fold cross-validation::

    <root>/[UCF_CC_50/]<k>.jpg        <root>/[UCF_CC_50/]<k>_ann.mat      # annPoints: N x 2 [x, y]

There is no standard fold assignment, so crowdvlm fixes one: ``ucf_cc_50_folds.json`` (committed next to
this module) lists the 10 image ids of each fold. Splits: ``fold<k>`` (the 10 test images of fold k) and
``train-fold<k>`` (the 40 others). Without a split, every image is converted with ``split = "fold<k>"``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from crowdvlm.data.common import (
    check_image_and_points,
    find_dir,
    list_images,
    load_mat,
    make_record,
    pair_by_stem,
    points_from_array,
    require_pair,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.prompts import dataset_question

FOLDS_FILE = Path(__file__).with_name("ucf_cc_50_folds.json")


@cache
def folds() -> dict[str, list[int]]:
    """``{"fold1": [image ids], ...}``: the committed 5-fold assignment."""
    data = json.loads(FOLDS_FILE.read_text())
    return {k: v for k, v in data.items() if k.startswith("fold")}


def fold_of(image_id: int) -> str:
    """The fold whose test set holds ``image_id``."""
    for name, ids in folds().items():
        if image_id in ids:
            return name
    raise KeyError(f"UCF_CC_50 image id {image_id} is in no fold of {FOLDS_FILE}")


def load_ucf_cc_50(
    root: str | Path, split: str | None = None, *, skips: SkipLog | None = None, progress: bool = True
) -> list[dict]:
    """Records for UCF_CC_50 (dataset ``ucf-cc-50``, splits ``fold<k>`` / ``train-fold<k>``, k = 1..5)."""
    root, skips = Path(root), skips or SkipLog()
    known = [*folds(), *(f"train-{k}" for k in folds())]
    if split is not None and split not in known:
        raise ValueError(f"ucf-cc-50: unknown split {split!r}; available: {known}")
    folder = root if any(root.glob("*_ann.mat")) else find_dir(root, "UCF_CC_50")
    if folder is None:
        raise FileNotFoundError(f"{root}: no <k>_ann.mat files (here or in UCF_CC_50/)")

    fold_ids = {i for ids in folds().values() for i in ids}

    def wanted(stem: str) -> str | None:
        """The record's split, or None when the image is not in the requested split."""
        if not stem.isdigit() or int(stem) not in fold_ids:
            raise DataError(folder / stem, f"not an image of UCF_CC_50: its id is in no fold of {FOLDS_FILE.name}",
                            record=stem, kind="bad-record")  # fmt: skip
        fold = fold_of(int(stem))
        if split is None or split == fold:
            return fold
        if split.startswith("train-") and split != f"train-{fold}":
            return split
        return None

    def build(pair) -> dict | None:
        stem, image, mat = pair
        sp = wanted(stem)
        if sp is None:
            return None
        image, mat = require_pair(stem, image, mat, folder / f"{stem}_ann.mat")
        points = points_from_array(load_mat(mat, "annPoints", record=stem), mat, record=stem)
        size, points = check_image_and_points(image, points, record=stem)  # points: raw -> upright frame
        return make_record(image, dataset="ucf-cc-50", split=sp, problem=dataset_question("ucf-cc-50"),
                           points=points, size=size, record_id=f"ucf-cc-50/{stem}")  # fmt: skip

    def image_stem(mat: Path) -> str | None:
        return mat.stem.removesuffix("_ann") if mat.stem.endswith("_ann") else None

    pairs = pair_by_stem(list_images(folder), sorted(folder.glob("*_ann.mat")), image_stem)
    return collect(pairs, build, skips, desc=f"ucf-cc-50 {split or 'all'}", progress=progress)
