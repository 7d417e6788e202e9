"""The manifest: one JSONL record per image, the format every reader writes and every trainer reads.

A record::

    {"image": "images/0001.png",          # relative to the manifest's folder, or absolute
     "problem": "How many people are in the image?",
     "solution": 12,                      # int; null only for prediction (e.g. NWPU test, withheld GT)
     "dataset": "synth-people", "split": "train",
     "points": [[x, y], ...],             # optional, pixel coordinates of the image file
     "width": 224, "height": 224,         # optional
     "id": "synth-people/000001",         # optional (defaults to the image path as written)
     "meta": {...}}                       # optional, dataset-specific (JHU weather, FSC class, ...)

It is a superset of the CrowdVLM-R1 record (``image``, ``problem``, ``solution``). :func:`manifest_to_dataset`
turns manifests into the ``datasets.Dataset`` TRL's trainers expect: a conversational ``prompt`` whose user
turn is an image placeholder followed by the built prompt text, a lazily decoded ``image`` column, and
``solution`` (int), which TRL forwards to the reward functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_text
from crowdvlm.data.common import (  # noqa: F401  (MAX_PROBLEM_CHARS: the bound is part of the manifest format)
    MAX_PROBLEM_CHARS,
    check_problem_length,
    count_field,
    record_fields,
    record_points,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines

FIELD_ORDER = ("id", "image", "problem", "solution", "dataset", "split", "width", "height", "points", "meta")
POINT_DECIMALS = 2  # sub-pixel precision kept when writing points


def validate_record(raw: Any, file: str, record: str) -> dict:
    """Check one manifest record and return it normalised (keys in :data:`FIELD_ORDER`, ints as ints).

    Raises:
        DataError: naming ``file`` and ``record`` and what was expected.
    """
    record_fields(raw, file, record)
    out = dict(raw)
    for key in ("image", "problem"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise DataError(
                file, f"{key} must be a non-empty string, got {raw[key]!r}", record=record, kind="malformed"
            )
    check_problem_length(raw["problem"], file, record)
    out["solution"] = count_field(raw["solution"], file, record, allow_none=True)
    for key in ("width", "height"):
        if raw.get(key) is not None:
            out[key] = count_field(raw[key], file, record, name=key, numbers_only=True)
    if raw.get("points") is not None:
        out["points"] = record_points(raw["points"], out["solution"], file, record, allow_negative=True)
    for key in ("dataset", "split", "id"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise DataError(
                file, f"{key} must be a string, got {raw[key]!r}", record=record, kind="malformed"
            )
    ordered = {key: out[key] for key in FIELD_ORDER if out.get(key) is not None or key == "solution"}
    ordered.update({k: v for k, v in out.items() if k not in ordered and v is not None})
    return ordered


def check_unique_ids(
    records: Iterable[tuple[str, dict]], file: str | Path, skips: SkipLog | None = None
) -> list[dict]:
    """The records of ``(where, record)`` pairs, refusing an ``id`` already used in the same manifest.

    The one rule for ids, shared with evaluation (which refuses a manifest that repeats one): unique within a
    manifest. A duplicate is a DataError naming the file and both records; with a skipping ``skips`` the
    later record is left out and counted.
    """
    seen: dict[str, str] = {}
    kept = []
    for where, rec in records:
        record_id = rec.get("id") or rec.get("image")
        if record_id in seen:
            err = DataError(
                file,
                f"id {record_id!r} appears twice (first at {seen[record_id]}); ids must be "
                "unique within a manifest",
                record=where,
                kind="duplicate-id",
            )
            (skips or SkipLog()).add(err)
            continue
        seen[record_id] = where
        kept.append(rec)
    return kept


def read_manifest(path: str | Path, *, check_images: bool = True) -> list[dict]:
    """Read a JSONL manifest; image paths come back absolute.

    Records without ``dataset`` get the manifest's file stem, without ``split`` get ``"all"``, without
    ``id`` get the image path as written.

    Args:
        path: the manifest file.
        check_images: raise if an image file does not exist.

    Raises:
        DataError: for a malformed line or record, naming the file and the line.
        FileNotFoundError: if the manifest does not exist.
    """
    path = Path(path)
    base = path.resolve().parent
    if path.is_dir():
        raise DataError(path, "is a folder: expected a manifest file (JSONL)", kind="malformed")
    records = []
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        where = f"line {line_no}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"not valid JSON ({err.msg})", record=where, kind="malformed") from None
        rec = validate_record(raw, str(path), where)
        rec.setdefault("id", rec["image"])
        rec.setdefault("dataset", path.stem)
        rec.setdefault("split", "all")
        image = Path(os.path.expanduser(rec["image"]))
        rec["image"] = str(image if image.is_absolute() else base / image)
        if check_images and not os.path.exists(rec["image"]):
            raise DataError(path, f"image not found: {rec['image']}", record=where, kind="missing-image")
        records.append((where, rec))
    return check_unique_ids(records, path)


def _portable_image_path(image: str, base: Path) -> str:
    """Relative to ``base`` when the image lies inside it, else absolute."""
    image_path = Path(image)
    if not image_path.is_absolute():
        return image
    try:
        return image_path.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(image_path)


def write_manifest(records: Iterable[dict], path: str | Path) -> Path:
    """Write records as JSONL (validated; images inside the manifest's folder are written relative to it).

    The file is written to a temporary name and renamed, so a failed write never leaves half a manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    checked = check_unique_ids(
        ((f"record {i}", validate_record(raw, str(path), f"record {i}")) for i, raw in enumerate(records)),
        path,
    )  # every record checked before the file is opened
    lines = []
    for rec in checked:
        rec["image"] = _portable_image_path(rec["image"], base)
        if "points" in rec:
            rec["points"] = [[round(x, POINT_DECIMALS), round(y, POINT_DECIMALS)] for x, y in rec["points"]]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return atomic_write_text(path, "".join(lines))  # a full disk, a read-only folder: no half manifest


def manifest_to_dataset(
    paths: str | Path | Sequence[str | Path],
    *,
    template: str = "train",
    output: str = "think",
    require_solution: bool = True,
    with_points: bool = False,
    image_check: Callable[..., Any] | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
):
    """Load one or more manifests as a ``datasets.Dataset`` for TRL.

    Columns: ``prompt`` (conversational user turn: image part + text part built by
    :func:`crowdvlm.prompts.build_prompt`), ``image`` (``datasets.Image(mode="RGB")``, decoded only when a row
    is read), ``solution`` (int), ``dataset``, ``split``, ``id``, ``problem``.

    Args:
        paths: a manifest or a list of manifests (concatenated in order).
        template: "train" or "eval" prompt wording (see :mod:`crowdvlm.prompts`).
        output: "think" or "answer-only".
        require_solution: refuse records whose solution is null (training needs ground truth).
        with_points: also add ``points`` (original image pixels) and ``image_size`` (``[width, height]``),
            for counting by pointing (see :mod:`crowdvlm.pointing.targets`).
        image_check: called as ``image_check(path, record=...)`` on every image first (a progress bar shows
            it), e.g. :class:`crowdvlm.data.images.ImageCheck`; a DataError it raises goes through ``skips``.
        skips: what to do with a bad image (default: raise the first).
        progress: show the progress bar of ``image_check``.

    Raises:
        ValueError: no paths, no usable rows, (with ``require_solution``) a record without ground truth, or
            (with ``with_points``) a record with a positive count but no points.
    """
    import datasets

    from crowdvlm.prompts import build_prompt, conversational_prompt

    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise ValueError("manifest_to_dataset: no manifest given")
    rows: dict[str, list] = {
        k: []
        for k in ("prompt", "image", "solution", "dataset", "split", "id", "problem", "points", "image_size")
    }
    for path in paths:
        records = read_manifest(path, check_images=image_check is None)  # else the check names missing ones
        if require_solution:
            unlabeled = [i for i, rec in enumerate(records) if rec["solution"] is None]
            if unlabeled:
                raise ValueError(
                    f"{path}: {len(unlabeled)} of {len(records)} records have no ground truth (solution null, "
                    f"first: {records[unlabeled[0]]['id']}); they can be predicted but not trained or scored"
                )
        if image_check is not None:
            name = Path(path).name

            def checked(rec: dict, name=name) -> dict:
                image_check(rec["image"], record=f"{name} id {rec['id']}")
                return rec

            records = collect(
                records,
                checked,
                skips or SkipLog(),
                desc=f"checking images of {name}",
                total=len(records),
                progress=progress,
            )
        for i, rec in enumerate(records):
            if with_points:
                _add_point_row(rows, rec, str(path), f"record {i + 1} ({rec['id']})")
            rows["prompt"].append(conversational_prompt(build_prompt(rec["problem"], template, output)))
            rows["image"].append(rec["image"])
            for key in ("solution", "dataset", "split", "id", "problem"):
                rows[key].append(rec[key])
    if not rows["image"]:
        raise ValueError(f"no usable records in {[str(p) for p in paths]}")
    point_features = {}
    if with_points:
        point_features = {
            "points": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
            "image_size": datasets.Sequence(datasets.Value("int64")),
        }
    else:
        for key in ("points", "image_size"):
            del rows[key]
    features = datasets.Features(
        {
            **point_features,
            "prompt": [
                {
                    "role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
                }
            ],
            "image": datasets.Image(mode="RGB"),
            "solution": datasets.Value("int64"),
            "dataset": datasets.Value("string"),
            "split": datasets.Value("string"),
            "id": datasets.Value("string"),
            "problem": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def _add_point_row(rows: dict[str, list], rec: dict, file: str, record: str) -> None:
    """Append a record's points and decoded image size (a count of 0 may come without points)."""
    from crowdvlm.pointing.targets import image_size

    points = rec.get("points")
    if points is None:
        if rec["solution"]:
            raise DataError(
                file,
                f"has count {rec['solution']} but no points; pointing needs one point per object",
                record=record,
                kind="malformed",
            )
        points = []
    rows["points"].append(points)
    rows["image_size"].append(list(image_size(rec["image"], rec.get("width"), rec.get("height"))))
