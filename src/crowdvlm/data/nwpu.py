"""NWPU-Crowd, as released::

    <root>/images/<id>.jpg   (or images_part1..5/<id>.jpg, as the zips unpack)
    <root>/jsons/<id>.json   {"img_id", "human_num", "points": [[x, y], ...], "boxes": [...]}
    <root>/mats/<id>.mat     annPoints (used when the json is absent)
    <root>/{train,val,test}.txt   "<id> <illumination> <scene_level>" per line (test: the id only)

The test split's ground truth is withheld by the benchmark: its records have ``solution`` null and no
points, so they can be predicted (and submitted) but :func:`~crowdvlm.data.manifest.manifest_to_dataset`
refuses them for training. ``illumination`` and ``scene_level`` go into ``meta``.
"""

from __future__ import annotations

import json
from pathlib import Path

from crowdvlm.data.common import (
    IMAGE_EXTENSIONS,
    check_count,
    check_image_and_points,
    make_record,
    points_from_array,
    read_ann_points,
    splits_to_read,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines, read_text
from crowdvlm.prompts import dataset_question

SPLITS = ("train", "val", "test")
WITHHELD = ("test",)


def read_split_list(path: Path, skips: SkipLog) -> list[tuple[str, dict]]:
    """``[(id, meta)]`` from a split list; ``meta`` has ``illumination`` and ``scene_level`` when given."""
    entries = []
    for line_no, line in read_lines(path, skips):
        fields = line.split()
        if not fields:
            continue
        try:
            image_id = fields[0]
            if not image_id.isdigit():
                raise ValueError(f"the image id {image_id!r} is not a number")
            meta = {"illumination": int(fields[1]), "scene_level": int(fields[2])} if len(fields) >= 3 else {}
        except ValueError as err:
            skips.add(
                DataError(
                    path,
                    f"{err}: {line!r} (expected '<id> <illumination> <scene_level>')",
                    record=f"line {line_no}",
                    kind="bad-annotation",
                )
            )
            continue
        entries.append((image_id.zfill(4), meta))
    return entries


def read_points(root: Path, image_id: str):
    """Points of one image from ``jsons/<id>.json`` (or ``mats/<id>.mat``), checked against ``human_num``."""
    json_path, mat_path = root / "jsons" / f"{image_id}.json", root / "mats" / f"{image_id}.mat"
    if not json_path.is_file() and mat_path.is_file():
        return read_ann_points(mat_path, record=image_id)
    if not json_path.is_file():
        raise DataError(
            json_path,
            "annotation file not found (nor mats/<id>.mat)",
            record=image_id,
            kind="missing-annotation",
        )
    try:
        ann = json.loads(read_text(json_path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            json_path, f"not valid JSON ({err})", record=image_id, kind="bad-annotation"
        ) from None
    if not isinstance(ann, dict) or "points" not in ann:
        raise DataError(
            json_path, "expected a JSON object with the key 'points'", record=image_id, kind="missing-key"
        )
    points = points_from_array(ann["points"], json_path, record=image_id)
    if "human_num" in ann:
        check_count(ann["human_num"], points, json_path, record=image_id, what="human_num")
    return points


def load_nwpu(
    root: str | Path, split: str | None = None, *, skips: SkipLog | None = None, progress: bool = True
) -> list[dict]:
    """Records for NWPU-Crowd (dataset ``nwpu``, splits train/val/test; test has ``solution`` null)."""
    root, skips = Path(root), skips or SkipLog()
    image_dirs = sorted(p for p in root.glob("images*") if p.is_dir())
    if not image_dirs:
        raise FileNotFoundError(f"{root}: expected images/ (or images_part1..5/)")
    images = {p.stem: p for d in image_dirs for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    records: list[dict] = []
    for sp in splits_to_read(split, SPLITS, "nwpu"):
        list_file = root / f"{sp}.txt"
        if not list_file.is_file():
            if split is not None:
                raise FileNotFoundError(f"{list_file}: split list not found")
            continue

        def build(entry, sp=sp) -> dict:
            image_id, meta = entry
            image = images.get(image_id)
            if image is None:
                raise DataError(
                    root / "images" / f"{image_id}.jpg",
                    f"image not found (listed in {sp}.txt)",
                    record=image_id,
                    kind="missing-image",
                )
            points = None if sp in WITHHELD else read_points(root, image_id)
            size, points = check_image_and_points(
                image, points, record=image_id
            )  # points: raw -> upright frame
            return make_record(
                image,
                dataset="nwpu",
                split=sp,
                problem=dataset_question("nwpu"),
                points=points,
                size=size,
                record_id=f"nwpu/{image_id}",
                meta=meta or None,
            )

        records += collect(
            read_split_list(list_file, skips), build, skips, desc=f"nwpu {sp}", progress=progress
        )
    return records
