"""UCF_CC_50 (Idrees et al., CVPR 2013): 50 grayscale images, evaluated by 5-fold cross-validation::

    <root>/[UCF_CC_50/]<k>.jpg        <root>/[UCF_CC_50/]<k>_ann.mat      # annPoints: N x 2 [x, y]

There is no standard fold assignment, so crowdvlm fixes one: ``ucf_cc_50_folds.json`` (committed next to
this module) lists the 10 image ids of each fold. Splits: ``fold<k>`` (the 10 test images of fold k) and
``train-fold<k>`` (the 40 others). Without a split, every image is converted with ``split = "fold<k>"``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from crowdvlm.data.common import ann_mat_pairs, find_dir, make_record, read_ann_mat_pair
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
            raise DataError(
                folder / stem,
                f"not an image of UCF_CC_50: its id is in no fold of {FOLDS_FILE.name}",
                record=stem,
                kind="bad-record",
            )
        fold = fold_of(int(stem))
        if split is None or split == fold:
            return fold
        if split.startswith("train-") and split != f"train-{fold}":
            return split
        return None

    def build(pair) -> dict | None:
        stem = pair[0]
        sp = wanted(stem)
        if sp is None:
            return None
        image, _, size, points = read_ann_mat_pair(pair, folder)
        return make_record(
            image,
            dataset="ucf-cc-50",
            split=sp,
            problem=dataset_question("ucf-cc-50"),
            points=points,
            size=size,
            record_id=f"ucf-cc-50/{stem}",
        )

    return collect(ann_mat_pairs(folder), build, skips, desc=f"ucf-cc-50 {split or 'all'}", progress=progress)
