"""PixMo-Count (Molmo's counting set: web images, val/test 540 each, counts 2-10, human-verified), as published
on the Hugging Face Hub (``allenai/pixmo-count``)::

    <root>/data/{train,validation,test}-NNNNN-of-NNNNN.parquet
        image_url      where the image is (the images are not in the dataset)
        image_sha256   the SHA-256 of the image's bytes
        count          the number of objects
        points         {x: [...], y: [...]} in pixels (train only; missing for the eval sets)
        label          what is counted ("boat", "people", ...)

First ``crowdvlm data fetch --format pixmo-count --root <root> --out <images>`` downloads the images as
``<images>/<sha256>.<ext>`` (:mod:`~crowdvlm.data.fetch`), then ``convert`` reads them from there
(``--image-dir``, default ``<root>/images``). An image that could not be fetched is a ``missing-image``
record (``--skip-bad`` leaves it out and counts it). The question is ``question_for(label)``; the points,
where published, become the record's points (their number must equal ``count``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crowdvlm.data.common import check_image_and_points, count_field, make_record, record_points
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.fetch import FetchItem, fetched_image
from crowdvlm.data.tables import read_rows, split_tables, table_files
from crowdvlm.prompts import question_for

__all__ = ["COLUMNS", "load_pixmo_count", "pixmo_fetch_items"]

COLUMNS = {
    "url": "image_url",
    "sha256": "image_sha256",
    "count": "count",
    "points": "points",
    "label": "label",
}


def pixmo_fetch_items(root: str | Path, split: str | None = None) -> list[FetchItem]:
    """The images to fetch for ``split`` (default: every split), one per row."""
    return [
        FetchItem(row["url"], row["sha256"])
        for files in table_files(Path(root), split).values()
        for table in files
        for row in read_rows(table, {"url": COLUMNS["url"], "sha256": COLUMNS["sha256"]})
    ]


def _point_pairs(raw: Any, table: Path, record: str) -> list | None:
    """PixMo's points as ``[[x, y], ...]``: stored as ``{x: [...], y: [...]}`` (datasets' Sequence of a struct)
    or ``[{x, y}, ...]``; None where the split publishes none."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        xs, ys = raw.get("x") or [], raw.get("y") or []
        if len(xs) != len(ys):
            raise DataError(
                table, f"points: {len(xs)} x but {len(ys)} y", record=record, kind="bad-coordinates"
            )
        return [[x, y] for x, y in zip(xs, ys, strict=True)]
    return [[p.get("x"), p.get("y")] if isinstance(p, dict) else p for p in raw]


def load_pixmo_count(
    root: str | Path,
    split: str | None = None,
    *,
    image_dir: str | Path | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records of PixMo-Count (dataset ``pixmo-count``; splits train, validation, test)."""
    root, skips = Path(root), skips or SkipLog()
    images = Path(image_dir) if image_dir else root / "images"
    records: list[dict] = []
    for sp, table, prefix in split_tables(root, split, "pixmo-count"):

        def build(row: dict, sp=sp, table=table, prefix=prefix) -> dict:
            record = f"row {row['row']} ({row['url']})"
            count = count_field(row["count"], table, record, name="count")
            image = fetched_image(images, str(row["sha256"]))
            if image is None:
                raise DataError(
                    images,
                    f"image {row['sha256']} not fetched (`crowdvlm data fetch --format pixmo-count` first)",
                    record=record,
                    kind="missing-image",
                )
            pairs = _point_pairs(row.get("points"), table, record)
            points = None if pairs is None else np.asarray(record_points(pairs, count, table, record))
            size, upright = check_image_and_points(
                image, np.zeros((0, 2)) if points is None else points, record=record
            )
            points = None if points is None else upright
            label = str(row.get("label") or "objects")
            return make_record(
                image,
                dataset="pixmo-count",
                split=sp,
                problem=question_for(label),
                points=points,
                size=size,
                solution=count,
                record_id=f"{prefix}{row['row']}",
                meta={"label": label, "url": row["url"], "sha256": row["sha256"]},
            )

        records += collect(
            read_rows(table, COLUMNS, optional=("points",)),
            build,
            skips,
            desc=f"pixmo-count {sp}",
            progress=progress,
        )
    return records
