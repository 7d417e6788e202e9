"""From predictions to ``metrics.json``: overall, per dataset and per count bucket.

All numbers come from :mod:`crowdvlm.metrics` (a parse failure is scored as a prediction of 0 and counted
in ``parse_failures``). Two kinds of image are *not* scored, only counted, at every level:

* ``errors``: images the model never answered (missing or corrupt file, an API request that kept failing);
* ``unlabelled``: images without a ground-truth count.

So ``n`` is the number of scored images; ``n + errors + unlabelled`` is every image of the group.

The overall entry also holds ``intervals``: a bootstrap 95 % interval (images resampled, the one bootstrap of
:mod:`crowdvlm.evaluate.bootstrap`) of MAE, exact accuracy, accuracy within ±1 and the per-count macro
accuracy, ``{metric: [low, high]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from crowdvlm.evaluate.bootstrap import paired_bootstrap
from crowdvlm.evaluate.predictions import Prediction, latest_by_id
from crowdvlm.metrics import (
    DEFAULT_BUCKET_EDGES,
    METRICS,
    bucket_label,
    bucket_labels,
    bucket_metrics,
    count_metrics,
    grouped_metrics,
    image_scores,
)
from crowdvlm.metrics import absolute_errors as absolute_errors_of

__all__ = [
    "INTERVAL_METRICS",
    "absolute_error",
    "absolute_errors",
    "compute_metrics",
    "is_scored",
    "metric_intervals",
]

#: The metrics given with a bootstrap interval: the crowd papers' MAE and the counting benchmarks' accuracies
#: (those of :data:`crowdvlm.metrics.METRICS` marked ``interval``).
INTERVAL_METRICS = tuple(m.name for m in METRICS if m.interval)


def is_scored(p: Prediction) -> bool:
    """Whether a prediction enters the metrics: the model answered and the truth is known."""
    return p.error is None and p.truth is not None


def absolute_error(p: Prediction) -> float:
    """``|pred - truth|`` of a scored prediction (:func:`crowdvlm.metrics.absolute_errors`)."""
    return float(absolute_errors_of([p.pred], [p.truth])[0])


def absolute_errors(predictions: Iterable[Prediction]) -> dict[str, float]:
    """:func:`absolute_error` per scored image id (the last prediction of each id)."""
    return {p.id: absolute_error(p) for p in latest_by_id(list(predictions)).values() if is_scored(p)}


def metric_intervals(
    preds: Sequence[int | None],
    truths: Sequence[int],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: the bootstrap interval of each of :data:`INTERVAL_METRICS` over the images.

    The per-count macro accuracy keeps each image's weight of the full set (``N / (C · n_c)``) in every
    replicate: an approximation that is exact when the replicate keeps each count's share.
    """
    if not truths:
        return {}
    scores = image_scores(preds, truths)
    zeros = np.zeros((1, len(truths)))
    out = {}
    for key in INTERVAL_METRICS:
        ci = paired_bootstrap(scores[key][None, :], zeros, n_boot=n_boot, level=level, seed=seed)
        out[key] = [ci.low, ci.high]
    return out


def _with_counts(metrics: dict[str, dict], unscored: list[Prediction], key_of) -> dict[str, dict]:
    """Add ``errors`` / ``unlabelled`` counts to each group, creating groups that only hold unscored images."""
    for group in metrics.values():
        group.update(errors=0, unlabelled=0)
    for p in unscored:
        key = key_of(p)
        if key is None:
            continue
        group = metrics.setdefault(key, {**count_metrics([], []), "errors": 0, "unlabelled": 0})
        group["errors" if p.error is not None else "unlabelled"] += 1
    return metrics


def compute_metrics(
    predictions: Iterable[Prediction], edges: Sequence[int] = DEFAULT_BUCKET_EDGES
) -> dict[str, Any]:
    """The content of ``metrics.json``.

    Args:
        predictions: the run's predictions; for an id seen twice the last one counts.
        edges: inclusive upper bounds of the count buckets (by true count).

    Returns:
        ``{"overall": {...}, "per_dataset": {name: {...}}, "per_bucket": {label: {...}}}``, each ``{...}`` the
        output of :func:`crowdvlm.metrics.count_metrics` plus ``errors`` and ``unlabelled``; the overall one
        also ``intervals`` (:func:`metric_intervals`).
    """
    latest = list(latest_by_id(list(predictions)).values())
    scored = [p for p in latest if is_scored(p)]
    unscored = [p for p in latest if not is_scored(p)]
    preds = [p.pred for p in scored]
    truths = [p.truth for p in scored]

    overall = _with_counts({"all": count_metrics(preds, truths)}, unscored, lambda p: "all")["all"]
    overall["intervals"] = metric_intervals(preds, truths)
    per_dataset = _with_counts(
        grouped_metrics(preds, truths, [p.dataset for p in scored]), unscored, lambda p: p.dataset
    )
    # An unlabelled image has no bucket; an errored one is counted in the bucket of its truth.
    per_bucket = _with_counts(
        bucket_metrics(preds, truths, edges),
        unscored,
        lambda p: bucket_label(p.truth, edges) if p.truth is not None else None,
    )
    return {"overall": overall, "per_dataset": per_dataset, "per_bucket": _bucket_order(per_bucket, edges)}


def _bucket_order(per_bucket: dict[str, dict], edges: Sequence[int]) -> dict[str, dict]:
    return {label: per_bucket[label] for label in bucket_labels(edges) if label in per_bucket}
