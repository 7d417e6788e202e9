"""Counting metrics in pure numpy (no torch import): MAE, RMSE, NAE, accuracies, parse failures.

Conventions (documented once, used everywhere):

* A prediction is an ``int`` or ``None`` (the answer could not be parsed). A parse failure counts as a
  prediction of **0** in MAE, RMSE and NAE — so a model cannot improve its error by refusing to answer —
  and is also reported on its own (``parse_failures``, ``parse_failure_rate``; ``mae_parsed`` is the MAE
  over parsed answers only). A parse failure is never counted as accurate, even when the truth is 0.
* **RMSE** is what crowd-counting papers call "MSE": ``sqrt(mean((ŷ - y)²))``.
* **NAE** (normalised absolute error) averages ``|ŷ - y| / y`` over images with ``y > 0`` only, as the
  official NWPU judge does; it is ``None`` when no such image exists.
* Undefined values (no images) are ``None``, so the results serialise to strict JSON.
* The counting benchmarks' metrics (CountBenchQA, PixMo-Count, TallyQA): ``accuracy`` (exact match),
  ``acc_within_1`` (off by at most one) and ``accuracy_per_count``, Molmo's per-count macro average: the exact
  accuracy of each distinct true count, averaged over the counts, so that a set dominated by one count
  cannot hide the others. :func:`image_scores` gives each as a mean of per-image values, which the bootstrap
  intervals of ``eval`` and ``compare`` resample.
* :data:`METRICS` describes each key of :func:`count_metrics` once: its display label, how it prints, and
  which summaries it enters; the evaluation reports derive their lists of metrics from it, so a new metric is
  its computation here plus one entry there.

>>> m = count_metrics([10, None, 4], [12, 3, 4])
>>> m["mae"], m["accuracy"], m["parse_failures"]
(1.6666666666666667, 0.3333333333333333, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "METRICS",
    "Metric",
    "absolute_errors",
    "bucket_label",
    "bucket_labels",
    "bucket_metrics",
    "count_metrics",
    "grouped_metrics",
    "image_scores",
    "parsed_mask",
    "scored_counts",
]

#: Upper bounds (inclusive) of the default count buckets: 0-10, 11-50, 51-100, 101-500, 501-1000, >1000.
DEFAULT_BUCKET_EDGES: tuple[int, ...] = (10, 50, 100, 500, 1000)


@dataclass(frozen=True)
class Metric:
    """One key of :func:`count_metrics` (at the default tolerances) and where the reports use it.

    Attributes:
        name: the key in :func:`count_metrics`'s result (and in ``metrics.json``).
        label: its column title in ``report.md`` and ``compare.md``.
        kind: how it prints (:func:`crowdvlm.evaluate.report.format_value`): ``float``, ``pct`` or ``int``.
        in_report: a column of ``report.md``'s tables (:data:`crowdvlm.evaluate.report.COLUMNS`).
        over_seeds: summarised as mean ± sd over training seeds
            (:data:`crowdvlm.evaluate.results.SEED_METRICS`).
        interval: given a bootstrap interval over the images; its per-image values are a key of
            :func:`image_scores` (:data:`crowdvlm.evaluate.scoring.INTERVAL_METRICS`).
        higher_is_better: an accuracy; with ``interval``, compared per dataset against the baseline in
            ``compare`` (:data:`crowdvlm.evaluate.compare.ACCURACIES`).
    """

    name: str
    label: str
    kind: Literal["float", "pct", "int"] = "float"
    in_report: bool = False
    over_seeds: bool = False
    interval: bool = False
    higher_is_better: bool = False


#: Every key of :func:`count_metrics`, in its order (a test checks both).
METRICS: tuple[Metric, ...] = (
    Metric("n", "n", "int", in_report=True),
    Metric("mae", "MAE", in_report=True, over_seeds=True, interval=True),
    Metric("mae_parsed", "MAE (parsed only)", over_seeds=True),
    Metric("rmse", "RMSE", in_report=True, over_seeds=True),
    Metric("nae", "NAE", in_report=True),
    Metric("accuracy", "Acc", "pct", in_report=True, over_seeds=True, interval=True, higher_is_better=True),
    Metric(
        "acc_within_1", "Acc ±1", "pct", in_report=True, over_seeds=True, interval=True, higher_is_better=True
    ),
    Metric("accuracy_per_count", "Acc/count", "pct", in_report=True, interval=True, higher_is_better=True),
    Metric("acc_within_10pct", "Acc ±10%", "pct", in_report=True, higher_is_better=True),
    Metric("parse_failures", "parse failures", "int"),
    Metric("parse_failure_rate", "unparsed", "pct", in_report=True, over_seeds=True),
    Metric("mean_truth", "mean truth"),
    Metric("mean_pred", "mean prediction"),
)


def scored_counts(preds: Sequence[int | None] | np.ndarray) -> np.ndarray:
    """The predictions as the metrics score them: a parse failure counts as a prediction of **0**.

    Args:
        preds: predicted counts, ``None`` (or, in an integer array of any shape, a negative value) for a
            parse failure.

    >>> scored_counts([10, None]).tolist(), scored_counts(np.array([[5, -1]])).tolist()
    ([10.0, 0.0], [[5.0, 0.0]])
    """
    if isinstance(preds, np.ndarray):
        return np.where(preds >= 0, preds, 0).astype(np.float64)
    return np.array([0 if p is None else p for p in preds], dtype=np.float64)


def parsed_mask(preds: Sequence[int | None] | np.ndarray) -> np.ndarray:
    """True where the answer gave a count: not ``None`` (in an integer array, not negative)."""
    if isinstance(preds, np.ndarray):
        return preds >= 0
    return np.array([p is not None for p in preds], dtype=bool)


def absolute_errors(
    preds: Sequence[int | None] | np.ndarray, truths: Sequence[int] | np.ndarray
) -> np.ndarray:
    """``|ŷ - y|`` per image of :func:`scored_counts`; ``truths`` broadcast (``(N,)`` against ``(seeds, N)``).

    >>> absolute_errors([10, None], [12, 3]).tolist()
    [2.0, 3.0]
    """
    return np.abs(scored_counts(preds) - np.asarray(truths, dtype=np.float64))


def count_metrics(
    preds: Sequence[int | None], truths: Sequence[int], within_k: int = 1, within_pct: float = 10.0
) -> dict[str, float | int | None]:
    """Metrics of predicted against true counts.

    Args:
        preds: predicted counts; ``None`` marks a parse failure.
        truths: true counts (non-negative).
        within_k: tolerance of ``acc_within_{k}`` (|ŷ - y| <= k).
        within_pct: tolerance of ``acc_within_{p}pct`` (|ŷ - y| <= p/100 · y).

    Returns:
        ``n, mae, mae_parsed, rmse, nae, accuracy, acc_within_{k}, accuracy_per_count, acc_within_{p}pct,
        parse_failures, parse_failure_rate, mean_truth, mean_pred``.
    """
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} truths")
    pct_key = f"acc_within_{within_pct:g}pct"
    n = len(truths)
    if n == 0:
        keys = (
            "mae",
            "mae_parsed",
            "rmse",
            "nae",
            "accuracy",
            f"acc_within_{within_k}",
            "accuracy_per_count",
        )
        keys += (pct_key,)
        return {
            "n": 0,
            **dict.fromkeys(keys),
            "parse_failures": 0,
            "parse_failure_rate": None,
            "mean_truth": None,
            "mean_pred": None,
        }

    y = np.asarray(truths, dtype=np.float64)
    parsed = parsed_mask(preds)
    y_hat = scored_counts(preds)
    err = np.abs(y_hat - y)
    positive = y > 0
    scores = image_scores(preds, truths, within_k)
    return {
        "n": n,
        "mae": float(err.mean()),
        "mae_parsed": float(err[parsed].mean()) if parsed.any() else None,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "nae": float(np.mean(err[positive] / y[positive])) if positive.any() else None,
        "accuracy": float(np.mean(parsed & (err == 0))),
        f"acc_within_{within_k}": float(np.mean(parsed & (err <= within_k))),
        "accuracy_per_count": float(scores["accuracy_per_count"].mean()),
        pct_key: float(np.mean(parsed & (err <= within_pct / 100.0 * y))),
        "parse_failures": int((~parsed).sum()),
        "parse_failure_rate": float(np.mean(~parsed)),
        "mean_truth": float(y.mean()),
        "mean_pred": float(y_hat.mean()),
    }


def image_scores(
    preds: Sequence[int | None] | np.ndarray, truths: Sequence[int] | np.ndarray, within_k: int = 1
) -> dict[str, np.ndarray]:
    """Per-image values whose mean over the images is each metric of the field (the shape of ``preds``:
    ``(N,)``, or ``(seeds, N)`` against ``(N,)`` truths).

    ``mae``: the absolute error (a parse failure as 0); ``accuracy``: 1 for an exact parsed answer;
    ``acc_within_{k}``: 1 within ``k``; ``accuracy_per_count``: exact × ``N / (C · n_c)``, with ``C`` distinct
    true counts and ``n_c`` images of this image's count, so that the mean is the per-count macro average.

    >>> s = image_scores([2, 3, 5, None], [2, 2, 2, 5])   # count 2: 1 of 3 exact; count 5: 0 of 1
    >>> float(s["accuracy"].mean()), float(s["accuracy_per_count"].mean())
    (0.25, 0.16666666666666666)
    """
    y = np.asarray(truths, dtype=np.float64)
    parsed = parsed_mask(preds)
    err = absolute_errors(preds, y)
    exact = (parsed & (err == 0)).astype(np.float64)
    _, inverse, per_value = np.unique(y, return_inverse=True, return_counts=True)
    weight = len(y) / (len(per_value) * per_value[inverse]) if len(y) else np.zeros(0)
    return {
        "mae": err,
        "accuracy": exact,
        f"acc_within_{within_k}": (parsed & (err <= within_k)).astype(np.float64),
        "accuracy_per_count": exact * weight,
    }


def bucket_label(count: int, edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> str:
    """Name of the count bucket holding ``count``; ``edges`` are increasing inclusive upper bounds.

    >>> [bucket_label(c) for c in (0, 10, 11, 1000, 1001)]
    ['0-10', '0-10', '11-50', '501-1000', '>1000']
    """
    if list(edges) != sorted(set(edges)) or not edges:
        raise ValueError(f"bucket edges must be strictly increasing and non-empty, got {list(edges)}")
    low = 0
    for high in edges:
        if count <= high:
            return f"{low}-{high}"
        low = high + 1
    return f">{edges[-1]}"


def bucket_labels(edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> list[str]:
    """All bucket names for ``edges``, in increasing order."""
    lows = [0, *(e + 1 for e in edges[:-1])]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, edges, strict=True)] + [f">{edges[-1]}"]


def grouped_metrics(
    preds: Sequence[int | None], truths: Sequence[int], groups: Sequence[Hashable], **kwargs
) -> dict[Hashable, dict]:
    """:func:`count_metrics` per group (e.g. dataset name), groups in order of first appearance."""
    if not len(preds) == len(truths) == len(groups):
        raise ValueError(f"lengths differ: {len(preds)} preds, {len(truths)} truths, {len(groups)} groups")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return {
        g: count_metrics([preds[i] for i in idx], [truths[i] for i in idx], **kwargs)
        for g, idx in members.items()
    }


def bucket_metrics(
    preds: Sequence[int | None],
    truths: Sequence[int],
    edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    **kwargs,
) -> dict[str, dict]:
    """:func:`count_metrics` per true-count bucket, in increasing bucket order; empty buckets are left out."""
    labels = [bucket_label(t, edges) for t in truths]
    by_label = grouped_metrics(preds, truths, labels, **kwargs)
    return {label: by_label[label] for label in bucket_labels(edges) if label in by_label}
