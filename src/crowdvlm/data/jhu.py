"""JHU-Crowd++ v2.0, as released (``jhu_crowd_v2.0``)::

    <root>/[jhu_crowd_v2.0/]{train,val,test}/images/<id>.jpg
    <root>/[jhu_crowd_v2.0/]{train,val,test}/gt/<id>.txt          # one head per line: x y w h o b
    <root>/[jhu_crowd_v2.0/]{train,val,test}/image_labels.txt     # id,total_count,scene_type,weather,distractor

The count is the number of lines of the gt file; distractor images have an empty one (count 0). The
per-image labels are kept in ``meta`` (``scene``, ``weather`` 0-3, ``distractor`` 0/1), and a
``total_count`` that disagrees with the gt file is a count mismatch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crowdvlm.data.common import (
    check_count,
    find_dir,
    list_images,
    make_record,
    pair_by_stem,
    points_from_array,
    read_pair,
    splits_to_read,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines
from crowdvlm.prompts import dataset_question

SPLITS = ("train", "val", "test")


def read_gt(path: Path, *, record: str | None = None) -> np.ndarray:
    """The (N, 2) head centres of one gt file (empty file: no heads)."""
    rows = []
    for line_no, line in read_lines(path):  # a non-UTF-8 line: DataError naming the file and line
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(
                path,
                f"line {line_no}: expected 'x y w h o b', got {line!r}",
                record=record,
                kind="bad-annotation",
            )
        try:
            rows.append([float(v) for v in fields[:2]])
        except ValueError:
            raise DataError(
                path,
                f"line {line_no}: non-numeric coordinates {line!r}",
                record=record,
                kind="bad-coordinates",
            ) from None
    return points_from_array(rows, path, record=record)


def read_image_labels(path: Path, skips: SkipLog) -> dict[str, dict]:
    """``{image id: {"total_count", "scene", "weather", "distractor"}}`` from ``image_labels.txt``."""
    labels: dict[str, dict] = {}
    if not path.is_file():
        return labels
    for line_no, line in read_lines(path, skips):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        try:
            if len(cells) != 5:
                raise ValueError(f"expected 5 comma-separated fields, got {len(cells)}")
            labels[cells[0]] = {
                "total_count": int(cells[1]),
                "scene": cells[2],
                "weather": int(cells[3]),
                "distractor": int(cells[4]),
            }
        except ValueError as err:
            skips.add(
                DataError(
                    path,
                    f"{err}: {line!r} (expected id,total_count,scene_type,weather,distractor)",
                    record=f"line {line_no}",
                    kind="bad-annotation",
                )
            )
    return labels


def load_jhu(
    root: str | Path, split: str | None = None, *, skips: SkipLog | None = None, progress: bool = True
) -> list[dict]:
    """Records for JHU-Crowd++ (dataset ``jhu-crowd``, splits train/val/test)."""
    root, skips = Path(root), skips or SkipLog()
    base = root if find_dir(root, *SPLITS) else find_dir(root, "jhu_crowd_v2.0")
    if base is None:
        raise FileNotFoundError(f"{root}: expected train/, val/, test/ (or jhu_crowd_v2.0/...)")
    records: list[dict] = []
    for sp in splits_to_read(split, SPLITS, "jhu-crowd"):
        folder = base / sp
        if not folder.is_dir():
            continue
        images, gt = find_dir(folder, "images"), find_dir(folder, "gt")
        if images is None or gt is None:
            raise FileNotFoundError(f"{folder}: expected images/ and gt/")
        labels = read_image_labels(folder / "image_labels.txt", skips)

        def build(pair, sp=sp, gt=gt, labels=labels) -> dict:
            stem = pair[0]
            image, txt, size, points = read_pair(
                pair, gt / f"{stem}.txt", lambda txt: read_gt(txt, record=stem)
            )
            meta = labels.get(stem)
            if meta is not None:
                check_count(
                    meta["total_count"], points, txt, record=stem, what="image_labels.txt total_count"
                )
                meta = {k: v for k, v in meta.items() if k != "total_count"}
            return make_record(
                image,
                dataset="jhu-crowd",
                split=sp,
                problem=dataset_question("jhu-crowd"),
                points=points,
                size=size,
                meta=meta,
            )

        pairs = pair_by_stem(list_images(images), sorted(gt.glob("*.txt")), lambda p: p.stem)
        records += collect(pairs, build, skips, desc=f"jhu-crowd {sp}", progress=progress)
    return records
