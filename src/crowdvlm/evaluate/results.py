"""Results over seeds × images: the one engine of ``crowdvlm compare``, the experiment report and its verdicts.

A model evaluated once per training seed gives a ``(seeds, images)`` array of predicted counts, one column per
image id (:func:`prediction_rows`; a parse failure is stored as ``-1``). From there:

* per-seed metrics as mean ± sd over seeds (:func:`metrics_over_seeds`, :func:`mean_sd`,
  :func:`format_mean_sd`); the metrics summarised are :data:`SEED_METRICS`, those of
  :data:`crowdvlm.metrics.METRICS` marked ``over_seeds``;
* paired differences between two models (:func:`paired_rows`): seed ``s`` pairs with seed ``s``; a model
  with a single run (an untrained base, or a compared run without seeds) pairs with every seed of the other.
  The interval is :func:`crowdvlm.evaluate.bootstrap.paired_bootstrap`, printed by
  :func:`crowdvlm.evaluate.bootstrap.format_interval`.

How a parse failure is scored (as a prediction of 0) is :func:`crowdvlm.metrics.absolute_errors`'s rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from crowdvlm.metrics import METRICS, count_metrics

__all__ = [
    "PARSE_FAILURE",
    "SEED_METRICS",
    "format_mean_sd",
    "mean_or_none",
    "mean_sd",
    "metrics_over_seeds",
    "paired_rows",
    "prediction_rows",
]

#: The metrics of :func:`crowdvlm.metrics.count_metrics` summarised over seeds (mean and sd): those of
#: :data:`crowdvlm.metrics.METRICS` marked ``over_seeds``.
SEED_METRICS = tuple(m.name for m in METRICS if m.over_seeds)

#: How :func:`prediction_rows` stores an answer without a count in its integer array.
PARSE_FAILURE = -1


def prediction_rows(runs: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> np.ndarray:
    """The predicted counts of each run on ``ids``, as a ``(runs, images)`` integer array.

    Args:
        runs: one mapping per seed, image id → a prediction with a ``pred`` (int, or None: no count parsed).
        ids: the column order; every run must hold every id.

    >>> from types import SimpleNamespace as P
    >>> prediction_rows([{"a": P(pred=3), "b": P(pred=None)}], ["b", "a"]).tolist()
    [[-1, 3]]
    """
    rows = [[PARSE_FAILURE if run[i].pred is None else run[i].pred for i in ids] for run in runs]
    return np.asarray(rows, dtype=np.int64).reshape(len(runs), len(ids))


def paired_rows(seeds_a: Sequence[int], seeds_b: Sequence[int], *, broadcast: bool) -> tuple[list, list]:
    """Which row of a pairs with which row of b: ``(rows_a, rows_b)``, one entry per pair.

    Seeds pair by their number. With ``broadcast`` (one side is a single run standing for every seed), the
    seeds of either side are paired and a side missing a seed uses its first row; otherwise only the seeds
    both sides ran are paired.

    >>> paired_rows((1, 2, 3), (2, 3, 4), broadcast=False)
    ([1, 2], [0, 1])
    >>> paired_rows((0,), (1, 2), broadcast=True)
    ([0, 0, 0], [0, 0, 1])
    """
    seeds = sorted((set.union if broadcast else set.intersection)(set(seeds_a), set(seeds_b)))
    row = lambda seeds_x, s: list(seeds_x).index(s) if s in seeds_x else 0  # noqa: E731
    return [row(seeds_a, s) for s in seeds], [row(seeds_b, s) for s in seeds]


def mean_sd(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sample sd of the values that exist (sd 0 for one value; both None for none).

    >>> mean_sd([1.0, 3.0, None])
    {'mean': 2.0, 'sd': 1.4142135623730951}
    """
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean over seeds of a value every seed has; None where one seed has none."""
    return None if any(v is None for v in values) else float(np.mean(values))


def format_mean_sd(stat: Mapping[str, float | None], digits: int = 2, *, pct: bool = False) -> str:
    """``mean ± sd`` as the reports print it (sd left out for a single seed; "–" without a value).

    >>> format_mean_sd({"mean": 1.234, "sd": 0.5}), format_mean_sd({"mean": 0.25, "sd": 0.0}, pct=True)
    ('1.23 ± 0.50', '25%')
    """
    mean, sd = stat["mean"], stat["sd"]
    if mean is None:
        return "–"
    scale, unit, digits = (100.0, "%", 0) if pct else (1.0, "", digits)
    text = f"{mean * scale:.{digits}f}{unit}"
    return text if not sd else f"{text} ± {sd * scale:.{digits}f}{unit}"


def metrics_over_seeds(
    preds: np.ndarray,
    truths: np.ndarray,
    select: np.ndarray | None = None,
    keys: Sequence[str] = SEED_METRICS,
) -> dict[str, Any]:
    """:func:`crowdvlm.metrics.count_metrics` per seed on the selected images, as mean and sd over seeds.

    Args:
        preds: ``(seeds, images)`` counts, :data:`PARSE_FAILURE` where none was parsed.
        truths: ``(images,)`` true counts.
        select: ``(images,)`` booleans; default every image.
        keys: the metrics to summarise.

    Returns:
        ``{key: {"mean", "sd"}}`` per key, ``n`` (images) and ``per_seed_mae``.
    """
    keep = np.ones(len(truths), bool) if select is None else select
    per_seed = [
        count_metrics([int(p) if p >= 0 else None for p in row[keep]], truths[keep].tolist()) for row in preds
    ]
    out: dict[str, Any] = {k: mean_sd([m[k] for m in per_seed]) for k in keys}
    out["n"] = int(keep.sum())
    out["per_seed_mae"] = [m["mae"] for m in per_seed]
    return out
