"""FSC-147, class-agnostic counting, as released::

    <root>/images_384_VarV2/<id>.jpg
    <root>/annotation_FSC147_384.json     {"<id>.jpg": {"points": [[x, y], ...], "box_examples_coordinates": ...}}
    <root>/Train_Test_Val_FSC_147.json    {"train": [...], "val": [...], "test": [...], "val_coco", "test_coco"}
    <root>/ImageClasses_FSC147.txt        "<id>.jpg<TAB><class name>"

Points are in the pixel space of the 384-px images (never rescaled by the json's ``H``/``W``, which are the
original sizes). The class name goes into the question ("How many sea shells are in the image?") and into
``meta.class``; the three exemplar boxes are kept as ``meta.exemplars`` (``[x1, y1, x2, y2]``, from corners
0 and 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crowdvlm.data.common import check_image_and_points, make_record, points_from_array
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines, read_text
from crowdvlm.prompts import question_for

SPLITS = ("train", "val", "test", "val_coco", "test_coco")
ANNOTATIONS = "annotation_FSC147_384.json"
SPLIT_FILE = "Train_Test_Val_FSC_147.json"
CLASSES = "ImageClasses_FSC147.txt"
IMAGES = "images_384_VarV2"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (FSC-147 needs {ANNOTATIONS}, {SPLIT_FILE}, {IMAGES}/)")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err})", kind="bad-annotation") from None


def read_classes(path: Path, skips: SkipLog) -> dict[str, str]:
    """``{"<id>.jpg": class name}``."""
    classes = {}
    for line_no, line in read_lines(path, skips):
        if not line.strip():
            continue
        name, sep, cls = line.partition("\t")
        if not sep or not cls.strip():
            skips.add(
                DataError(
                    path,
                    f"expected '<id>.jpg<TAB><class>', got {line!r}",
                    record=f"line {line_no}",
                    kind="bad-annotation",
                )
            )
            continue
        classes[name.strip()] = cls.strip()
    return classes


def _exemplars(ann: dict) -> list[list[float]]:
    boxes = []
    for corners in ann.get("box_examples_coordinates") or []:
        if len(corners) >= 3:
            (x1, y1), (x2, y2) = corners[0][:2], corners[2][:2]
            boxes.append([float(x1), float(y1), float(x2), float(y2)])
    return boxes


def load_fsc147(
    root: str | Path, split: str | None = None, *, skips: SkipLog | None = None, progress: bool = True
) -> list[dict]:
    """Records for FSC-147 (dataset ``fsc147``; splits train/val/test/val_coco/test_coco; default: the first
    three, which partition the labelled images)."""
    root, skips = Path(root), skips or SkipLog()
    if split is not None and split not in SPLITS:
        raise ValueError(f"fsc147: unknown split {split!r}; available: {list(SPLITS)}")
    annotations = _read_json(root / ANNOTATIONS)
    split_lists = _read_json(root / SPLIT_FILE)
    classes = read_classes(root / CLASSES, skips) if (root / CLASSES).is_file() else {}
    records: list[dict] = []
    for sp in [split] if split else ["train", "val", "test"]:
        if sp not in split_lists:
            raise DataError(
                root / SPLIT_FILE, f"no split {sp!r}; has {sorted(split_lists)}", kind="missing-key"
            )

        def build(name: str, sp=sp) -> dict:
            ann = annotations.get(name)
            if not isinstance(ann, dict) or "points" not in ann:
                raise DataError(
                    root / ANNOTATIONS,
                    "no entry with 'points' for this image",
                    record=name,
                    kind="missing-annotation",
                )
            points = points_from_array(ann["points"], root / ANNOTATIONS, record=name)
            cls = classes.get(name)
            if cls is None:
                raise DataError(
                    root / CLASSES, "no class name for this image", record=name, kind="missing-annotation"
                )
            image = root / IMAGES / name
            corners = np.asarray(_exemplars(ann), dtype=np.float64).reshape(-1, 2)  # (2B, 2): x1 y1, x2 y2
            size, both = check_image_and_points(
                image, np.vstack([points, corners]), record=name
            )  # raw -> upright
            points, corners = both[: len(points)], both[len(points) :].reshape(-1, 2, 2)
            exemplars = np.concatenate(
                [corners.min(axis=1), corners.max(axis=1)], axis=1
            )  # (B, 4) x1 y1 x2 y2
            meta = {"class": cls, "exemplars": exemplars.tolist()}
            return make_record(
                image,
                dataset="fsc147",
                split=sp,
                problem=question_for(cls),
                points=points,
                size=size,
                record_id=f"fsc147/{Path(name).stem}",
                meta=meta,
            )

        records += collect(split_lists[sp], build, skips, desc=f"fsc147 {sp}", progress=progress)
    return records
