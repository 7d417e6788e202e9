"""The CrowdVLM-R1 / VLM-R1 record files (the inputs of their ``grpo_rec.py``).

Three inputs, detected by extension and content:

- a JSON list (``.json``) or JSONL (``.jsonl``) of the paper's records
  ``{"image": <path under the image root>, "problem": <question>, "solution": <count>}`` (our manifests are a
  superset, so their extra fields are kept);
- VLM-R1 ``conversations`` records ``{"id", "image", "conversations": [{"from": "human", "value":
  "<image>question"}, {"from": "gpt", "value": "12"}]}`` (the answer may be ``<answer>12</answer>``);
- the paper's YAML list of files (``--dataset_name`` in ``grpo_rec.py``)::

      datasets:
        - json_path: train.json
          sampling_strategy: first:100     # all | first:N | end:N | random:N, N an integer or P%

  ``P%`` means ``ceil(P * len / 100)`` records. A bare ``10%`` (no ``first:``) is refused: the original code
  silently ignores it and takes every record. ``random:N`` shuffles with ``random.Random(seed)``.

Image paths are joined to ``image_root`` (default: the folder of the file that lists them; a YAML entry's
``image_folder`` or ``data_folder`` overrides it). The paper stores ``solution`` sometimes as a string of
digits or ``<answer>12</answer>``; it becomes an int here by the rule of :mod:`crowdvlm.counts` (a string
would silently zero the paper's reward). ``points`` outside their image are dropped and counted, as the
UCF-QNRF reader does (``keep_outside=True`` keeps them).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from pathlib import Path

import numpy as np

from crowdvlm.data.common import (
    check_image,
    check_problem_length,
    count_field,
    drop_outside,
    record_fields,
    record_points,
)
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_lines, read_text

logger = logging.getLogger(__name__)

_STRATEGY = re.compile(r"^(first|end|random):(\d+)(%?)$")


def sample(records: list, strategy: str, *, seed: int, file: Path) -> list:
    """Apply a VLM-R1 ``sampling_strategy`` to the records of one file."""
    strategy = (strategy or "all").strip()
    if strategy == "all":
        return records
    match = _STRATEGY.match(strategy)
    if match is None:
        raise ValueError(
            f"{file}: sampling_strategy {strategy!r} not understood; use all, first:N, end:N, "
            "random:N (N an integer or a percentage like 10%)"
        )
    how, number, percent = match.groups()
    n = math.ceil(int(number) * len(records) / 100) if percent else int(number)
    if how == "first":
        return records[:n]
    if how == "end":
        return records[-n:] if n else []
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n]


def read_record_file(path: Path, skips: SkipLog) -> list[tuple[str, object]]:
    """``[(where, raw record)]`` from a JSON list or JSONL file.

    A malformed or non-UTF-8 JSONL line goes through ``skips``; a JSON list that is not UTF-8 names the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: record file not found")
    if path.suffix != ".jsonl":
        text = read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if "Extra data" not in err.msg:  # else: a JSONL file named .json, as VLM-R1 tolerates
                raise DataError(path, f"not valid JSON ({err})", kind="malformed") from None
        else:
            if not isinstance(data, list):
                raise DataError(
                    path, f"expected a JSON list of records, got {type(data).__name__}", kind="malformed"
                )
            return [(f"record {i}", rec) for i, rec in enumerate(data)]
    out = []
    for line_no, line in read_lines(path, skips):
        if not line.strip():
            continue
        try:
            out.append((f"line {line_no}", json.loads(line)))
        except json.JSONDecodeError as err:
            skips.add(
                DataError(path, f"not valid JSON ({err.msg})", record=f"line {line_no}", kind="malformed")
            )
    return out


def _from_conversations(raw: dict, file: Path, where: str) -> dict:
    turns = raw["conversations"]
    human = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
    gpt = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
    if not isinstance(human, str) or gpt is None:
        raise DataError(
            file,
            "conversations need a 'human' turn (the question) and a 'gpt' turn (the count)",
            record=where,
            kind="malformed",
        )
    out = {k: v for k, v in raw.items() if k != "conversations"}
    out["problem"] = human.replace("<image>", "").strip()
    out["solution"] = gpt
    return out


def to_record(
    raw,
    file: Path,
    where: str,
    *,
    image_root: Path,
    dataset: str,
    split: str | None,
    keep_outside: bool = False,
) -> dict:
    """One manifest record from a paper or VLM-R1 record (image checked, solution an int).

    ``points`` outside the image are dropped (``solution`` becomes the number kept, ``meta.dropped_outside``
    the number dropped) unless ``keep_outside``.
    """
    if isinstance(raw, dict) and "conversations" in raw:
        raw = _from_conversations(raw, file, where)
    record_fields(raw, file, where, hint=" (or conversations)")
    image = raw["image"]
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if not isinstance(image, str):
        raise DataError(
            file,
            f"image must be one path, got {image!r} (multi-image records are not supported)",
            record=where,
            kind="malformed",
        )
    if not isinstance(raw["problem"], str) or not raw["problem"].strip():
        raise DataError(
            file,
            f"problem must be a non-empty question, got {raw['problem']!r}",
            record=where,
            kind="malformed",
        )
    check_problem_length(raw["problem"], file, where)
    image_path = Path(image) if Path(image).is_absolute() else image_root / image
    rec = {k: v for k, v in raw.items() if k not in ("image", "problem", "solution")}
    rec.update(
        image=str(image_path.resolve()),
        problem=raw["problem"].strip(),
        solution=count_field(raw["solution"], file, where),
        dataset=raw.get("dataset") or dataset,
        split=split or raw.get("split") or "all",
    )
    rec["id"] = str(raw["id"]) if raw.get("id") is not None else f"{rec['dataset']}/{image}"
    rec["width"], rec["height"] = check_image(image_path, record=f"{file.name} {where}")
    if raw.get("points") is not None:
        points = record_points(raw["points"], rec["solution"], file, where, allow_negative=not keep_outside)
        if not keep_outside:  # dropped and counted, as the UCF-QNRF reader does
            kept, dropped = drop_outside(
                np.asarray(points, dtype=np.float64).reshape(-1, 2), (rec["width"], rec["height"])
            )
            if dropped:
                points, rec["solution"] = kept.tolist(), len(kept)
                rec["meta"] = {**rec["meta"], **dropped} if isinstance(rec.get("meta"), dict) else dropped
        rec["points"] = points
    return rec


def load_crowdvlm(
    root: str | Path,
    split: str | None = None,
    *,
    image_root: str | Path | None = None,
    dataset: str | None = None,
    seed: int = 42,
    keep_outside: bool = False,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records from a paper JSON/JSONL file or YAML list (``root`` is that file).

    Args:
        root: a ``.json``, ``.jsonl`` or ``.yaml``/``.yml`` file.
        split: the ``split`` of every record (default: the record's own, else ``"all"``).
        image_root: folder the image paths are relative to (default: the listing file's folder).
        dataset: the ``dataset`` of records that have none (default: the record file's stem).
        seed: for ``random:N`` sampling.
        keep_outside: keep ``points`` outside their image (default: drop them, counted in
            ``meta.dropped_outside``).
    """
    root, skips = Path(root), skips or SkipLog()
    if not root.is_file():
        raise FileNotFoundError(f"{root}: expected a .json, .jsonl or .yaml file of CrowdVLM-R1 records")
    if root.suffix in (".yaml", ".yml"):
        import yaml

        try:
            spec = yaml.safe_load(read_text(root)) or {}
        except yaml.YAMLError as err:
            raise DataError(root, f"not valid YAML ({str(err).splitlines()[0]})", kind="malformed") from None
        entries = spec.get("datasets") if isinstance(spec, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and "json_path" in e for e in entries
        ):
            raise DataError(
                root, "expected 'datasets:' with a list of {json_path, sampling_strategy}", kind="malformed"
            )
    else:
        entries = [{"json_path": str(root)}]
    records: list[dict] = []
    for entry in entries:
        path = Path(entry["json_path"])
        path = path if path.is_absolute() else root.parent / path
        folder = entry.get("image_folder") or entry.get("data_folder")
        base = Path(folder) if folder else Path(image_root) if image_root else path.parent
        base = base if base.is_absolute() else root.parent / base
        items = sample(
            read_record_file(path, skips), entry.get("sampling_strategy", "all"), seed=seed, file=path
        )
        name = dataset or path.stem

        def build(item, path=path, base=base, name=name) -> dict:
            where, raw = item
            return to_record(
                raw, path, where, image_root=base, dataset=name, split=split, keep_outside=keep_outside
            )

        records += collect(items, build, skips, desc=f"crowdvlm {path.name}", progress=progress)
    dropped = sum(r["meta"].get("dropped_outside", 0) for r in records if isinstance(r.get("meta"), dict))
    if dropped:
        logger.warning(
            "crowdvlm: dropped %d annotated points outside their image (keep_outside=False)", dropped
        )
    return records
