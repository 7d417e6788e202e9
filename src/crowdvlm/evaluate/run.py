"""Evaluation orchestration: manifests → items → batches → backend → ``predictions.jsonl`` → metrics → report.

A run directory holds:

* ``run.json``: what was evaluated and how (model, backend settings, prompt, parse mode; never a secret),
  plus the measured throughput of each session;
* ``predictions.jsonl``: one line per image, appended and flushed per batch (see
  :mod:`crowdvlm.evaluate.predictions`), so ``resume=True`` continues where a crash stopped;
* ``metrics.json``: recomputed from the whole of ``predictions.jsonl`` at the end of every session;
* ``report.md`` and PNG plots (:mod:`crowdvlm.evaluate.report`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json
from crowdvlm.errors import RunError, UsageError
from crowdvlm.evaluate.backends.base import Backend, EvalItem
from crowdvlm.evaluate.predictions import (
    PREDICTIONS_FILE,
    Prediction,
    PredictionWriter,
    latest_by_id,
    os_reason,
    read_predictions,
    storable_text,
)
from crowdvlm.evaluate.prefetch import prefetch
from crowdvlm.evaluate.resume import ITEMS_DIGEST, check_resumable, items_digest
from crowdvlm.evaluate.scoring import compute_metrics
from crowdvlm.parsing import parse_count

__all__ = [
    "METRICS_FILE",
    "RUN_FILE",
    "ImageEvaluationError",
    "answer_batches",
    "evaluate",
    "items_from_manifests",
]

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"


class ImageEvaluationError(RunError):
    """An image could not be evaluated and the run is strict."""


def items_from_manifests(
    manifests: Sequence[str | Path],
    *,
    template: str = "eval",
    output: str = "think",
    limit: int | None = None,
) -> list[EvalItem]:
    """Read manifests into evaluation items (missing images are kept: they are recorded, not fatal).

    Ids must be unique across the manifests; an id repeated by a *later* manifest is qualified with its
    dataset name (``dataset:id``), and one that still repeats is an error.

    Args:
        manifests: manifest files (see :mod:`crowdvlm.data.manifest`).
        template: prompt template name for :func:`crowdvlm.prompts.build_prompt` (the paper's "eval").
        output: output instruction name ("think" or "answer-only").
        limit: keep only the first ``limit`` images of each manifest.

    Raises:
        ValueError: duplicate ids within one manifest.
    """
    from crowdvlm.data.manifest import read_manifest
    from crowdvlm.prompts import build_prompt

    items: list[EvalItem] = []
    owner: dict[str, Path] = {}
    for manifest in map(Path, manifests):
        records = read_manifest(manifest, check_images=False)
        for rec in records[:limit] if limit else records:
            item_id = rec["id"]
            if item_id in owner and owner[item_id] != manifest:
                item_id = f"{rec['dataset']}:{item_id}"
            if item_id in owner:
                raise ValueError(f"{manifest}: image id {item_id!r} appears twice (also in {owner[item_id]})")
            owner[item_id] = manifest
            prompt = build_prompt(rec["problem"], template=template, output=output)
            items.append(EvalItem(item_id, rec["dataset"], Path(rec["image"]), prompt, rec.get("solution")))
    return items


def evaluate(
    backend: Backend,
    items: Sequence[EvalItem],
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    resume: bool = False,
    strict: bool = False,
    parse_strict: bool = False,
    settings: dict[str, Any] | None = None,
    report: bool = True,
    progress: bool = True,
    prefetch_depth: int = 2,
) -> dict[str, Any]:
    """Evaluate ``items`` with ``backend`` into ``out_dir``.

    Args:
        backend: the inference engine.
        items: images to evaluate (see :func:`items_from_manifests`).
        out_dir: the run directory.
        batch_size: images per batch (and per durable write).
        resume: continue the run in ``out_dir``; images already answered are skipped, images that had an
            error are tried again.
        strict: stop at the first image that cannot be evaluated (after recording it).
        parse_strict: read answers with the paper's strict rule instead of the lenient default.
        settings: extra settings recorded in ``run.json`` and checked on resume (prompt template, data,
            limit, ...).
        report: write ``report.md`` and the plots.
        progress: show a progress bar.
        prefetch_depth: batches loaded ahead of generation.

    Returns:
        The metrics (also written to ``metrics.json``).

    Raises:
        UsageError: ``out_dir`` already holds predictions and ``resume`` is False; resuming a run with
            different settings (see :mod:`crowdvlm.evaluate.resume`); a corrupt ``predictions.jsonl``.
        ImageEvaluationError: ``strict`` and an image could not be evaluated.
        RunError: a file of the run could not be written (a full disk: the message names the file).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path, run_file = out_dir / PREDICTIONS_FILE, out_dir / RUN_FILE
    settings = {
        **(settings or {}),
        **backend.describe(),
        "parse": "strict" if parse_strict else "lenient",
        ITEMS_DIGEST: items_digest(items),
    }

    answered: set[str] = set()
    sessions: list[dict] = []
    if pred_path.exists() and pred_path.stat().st_size > 0:
        if not resume:
            raise UsageError(f"{pred_path} already holds predictions: pass --resume or choose another --out")
        sessions = check_resumable(run_file, settings).get("sessions", [])
        try:
            previous = latest_by_id(read_predictions(pred_path, repair=True))
        except ValueError as err:  # a line in the middle is not a prediction: not ours to repair
            raise UsageError(str(err)) from err
        answered = {item_id for item_id, p in previous.items() if p.error is None}
    todo = [item for item in items if item.id not in answered]
    logger.info("%d images: %d already answered, %d to do", len(items), len(items) - len(todo), len(todo))
    _write_json(run_file, {**settings, "sessions": sessions})

    start, done, errors = time.perf_counter(), 0, 0
    bar = tqdm(
        total=len(items), initial=len(items) - len(todo), unit="img", desc="eval", disable=not progress
    )
    with PredictionWriter(pred_path) as writer, bar:
        for batch in answer_batches(
            backend, todo, batch_size=batch_size, parse_strict=parse_strict, prefetch_depth=prefetch_depth
        ):
            writer.write_batch(batch)
            done += len(batch)
            failed = [p for p in batch if p.error]
            errors += len(failed)
            bar.update(len(batch))
            for p in failed:
                logger.warning("%s: %s", p.id, p.error)
            if strict and failed:
                raise ImageEvaluationError(f"{failed[0].id}: {failed[0].error} (strict mode stops here)")
    seconds = time.perf_counter() - start
    throughput = {"images": done, "errors": errors, "seconds": round(seconds, 3)}
    throughput["images_per_s"] = round(done / seconds, 3) if done and seconds > 0 else None
    logger.info(
        "evaluated %d images in %.1fs (%s images/s), %d errors",
        done,
        seconds,
        throughput["images_per_s"],
        errors,
    )
    _write_json(run_file, {**settings, "sessions": [*sessions, throughput]})

    predictions = read_predictions(pred_path)
    metrics = compute_metrics(predictions)
    _write_json(out_dir / METRICS_FILE, metrics)
    if report:
        from crowdvlm.evaluate.report import write_report

        try:
            write_report(out_dir, predictions, metrics, settings)
        except OSError as err:
            raise RunError(f"cannot write the report into {out_dir}: {os_reason(err)}") from err
    return metrics


def answer_batches(
    backend: Backend,
    items: Sequence[EvalItem],
    *,
    batch_size: int = 8,
    parse_strict: bool = False,
    prefetch_depth: int = 2,
) -> Iterator[list[Prediction]]:
    """Ask ``backend`` about ``items``, one batch at a time: the loop that `eval` and `predict` share.

    Images are loaded ``prefetch_depth`` batches ahead of generation. An image that cannot be loaded, or
    whose answer failed, becomes a prediction with ``error`` set and empty text; it never stops the loop.

    Args:
        backend: the inference engine.
        items: images to ask about, in order.
        batch_size: images per batch.
        parse_strict: read answers with the paper's strict rule instead of the lenient default.
        prefetch_depth: batches loaded ahead of generation.

    Yields:
        Each batch's predictions, in the order of ``items``.
    """
    batches = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    for prepared in prefetch(batches, backend.prepare, depth=prefetch_depth):
        answers = iter(backend.generate(prepared) if prepared.loaded else [])
        batch = []
        for item, load_error in zip(prepared.items, prepared.errors, strict=True):
            answer = None if load_error else next(answers)
            error = load_error or answer.error
            text = "" if error else storable_text(answer.text)
            pred = None if error else parse_count(text, strict=parse_strict)
            batch.append(
                Prediction(
                    item.id, item.dataset, str(item.image), item.truth, text, pred, pred is not None, error
                )
            )
        yield batch


def _write_json(path: Path, data: Any) -> None:
    """Atomic: a crash never leaves half a JSON file; a failed write names the path (RunError)."""
    atomic_write_json(path, data, ensure_ascii=False, allow_nan=False)
