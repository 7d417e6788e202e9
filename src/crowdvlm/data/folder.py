"""A plain folder of images, with an optional CSV of counts::

    <root>/*.jpg|png|...
    <root>/counts.csv        image,count      (header optional; image paths relative to the CSV's folder)

Rows with an empty count become records with ``solution`` null (to predict, not to train). Without a CSV,
every image in the folder is converted with ``solution`` null. Images in the folder that the CSV does not
list are not converted, and their number is logged.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from crowdvlm.counts import read_count
from crowdvlm.data.common import check_image, list_images, make_record
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines
from crowdvlm.prompts import question_for

logger = logging.getLogger(__name__)

DEFAULT_CSV = "counts.csv"


def read_counts(path: Path, skips: SkipLog) -> list[tuple[str, str, int | None]]:
    """``[(where, image, count or None)]`` from an ``image,count`` CSV."""
    rows = []
    # One CSV row per line (image paths hold no newlines); read_lines drops a BOM and routes a non-UTF-8
    # line through ``skips``.
    for line_no, text in read_lines(path, skips):
        for row in csv.reader([text]):
            if not row or not any(cell.strip() for cell in row):
                continue
            if line_no == 1 and [c.strip().lower() for c in row[:2]] == ["image", "count"]:
                continue
            where = f"line {line_no}"
            try:
                if len(row) < 2:
                    raise ValueError("expected 'image,count'")
                image, count = row[0].strip(), row[1].strip()
                value = read_count(count or None, "count", allow_none=True)  # the one rule (crowdvlm.counts)
            except ValueError as err:
                skips.add(DataError(path, f"{err}: {','.join(row)!r}", record=where, kind="bad-field"))
                continue
            rows.append((where, image, value))
    return rows


def load_folder(
    root: str | Path,
    split: str | None = None,
    *,
    csv_path: str | Path | None = None,
    objects: str = "objects",
    question: str | None = None,
    dataset: str | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records for a folder of images (dataset: ``dataset`` or the folder's name; split: ``split`` or "all").

    Args:
        csv_path: the counts CSV (default ``<root>/counts.csv`` when it exists).
        objects: what is counted; the question is "How many <objects> are in the image?".
        question: the full question instead.
    """
    root, skips = Path(root), skips or SkipLog()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    problem = question or question_for(objects)
    name, sp = dataset or root.name, split or "all"
    csv_file = Path(csv_path) if csv_path else root / DEFAULT_CSV
    if csv_path and not csv_file.is_file():
        raise FileNotFoundError(f"{csv_file}: counts CSV not found")

    if csv_file.is_file():
        rows = read_counts(csv_file, skips)
        base = csv_file.parent
        listed = {(base / image).resolve() for _, image, _ in rows}
        unlisted = [p for p in list_images(root) if p.resolve() not in listed]
        if unlisted:
            logger.warning(
                "%s: %d images are not listed in %s and were not converted", root, len(unlisted), csv_file
            )
    else:
        rows = [(p.name, p.name, None) for p in list_images(root)]
        base, csv_file = root, root
        logger.info(
            "%s: no %s, converting every image with solution null (for prediction)", root, DEFAULT_CSV
        )

    def build(row) -> dict:
        where, image, count = row
        path = base / image
        size = check_image(path, record=f"{csv_file.name} {where}")
        return make_record(
            path,
            dataset=name,
            split=sp,
            problem=problem,
            points=None,
            size=size,
            solution=count,
            record_id=f"{name}/{image}",
        )

    return collect(rows, build, skips, desc=f"folder {root.name}", progress=progress)
