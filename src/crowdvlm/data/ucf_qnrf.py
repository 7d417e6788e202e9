"""UCF-QNRF, as released (``UCF-QNRF_ECCV18``)::

    <root>/[UCF-QNRF_ECCV18/]{Train,Test}/img_0001.jpg
    <root>/[UCF-QNRF_ECCV18/]{Train,Test}/img_0001_ann.mat      # annPoints: N x 2 [x, y]

Some annotated points fall outside the image. By default they are dropped, as Bayesian Loss and DM-Count do
(a point is kept when ``0 <= x <= width`` and ``0 <= y <= height``), so the count is the number of points
inside; the number dropped is logged, summed by ``crowdvlm data convert``, and kept per image in
``meta.dropped_outside``. ``keep_outside=True`` keeps the raw annotation (count = ``len(annPoints)``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from crowdvlm.data.common import (
    ann_mat_pairs,
    drop_outside,
    find_dir,
    make_record,
    read_ann_mat_pair,
    splits_to_read,
)
from crowdvlm.data.errors import SkipLog, collect
from crowdvlm.prompts import dataset_question

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")


def load_ucf_qnrf(
    root: str | Path,
    split: str | None = None,
    *,
    keep_outside: bool = False,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records for UCF-QNRF (dataset ``ucf-qnrf``, splits train/test)."""
    root, skips = Path(root), skips or SkipLog()
    base = root if find_dir(root, "Train", "Test") else find_dir(root, "UCF-QNRF_ECCV18")
    if base is None:
        raise FileNotFoundError(f"{root}: expected Train/ and Test/ (or UCF-QNRF_ECCV18/Train, /Test)")
    records: list[dict] = []
    for sp in splits_to_read(split, SPLITS, "ucf-qnrf"):
        folder = find_dir(base, sp.capitalize(), sp)
        if folder is None:
            continue

        def build(pair, sp=sp, folder=folder) -> dict:
            # negative points: outside the image, dropped below
            image, _, size, points = read_ann_mat_pair(pair, folder, allow_negative=True)
            meta = None
            if not keep_outside:
                points, meta = drop_outside(points, size)
            return make_record(
                image,
                dataset="ucf-qnrf",
                split=sp,
                problem=dataset_question("ucf-qnrf"),
                points=points,
                size=size,
                meta=meta,
            )

        records += collect(ann_mat_pairs(folder), build, skips, desc=f"ucf-qnrf {sp}", progress=progress)
    dropped = sum(r.get("meta", {}).get("dropped_outside", 0) for r in records)
    if dropped:
        logger.warning(
            "ucf-qnrf: dropped %d annotated points outside their image (keep_outside=False)", dropped
        )
    return records
