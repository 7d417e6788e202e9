"""Several evaluation runs side by side, like the paper's tables, with bootstrap confidence intervals.

* rows are models (runs), columns datasets, cells ``MAE / RMSE / accuracy``;
* the count-bucket comparison (MAE per true-count bucket);
* the difference in MAE of each run against the first one, on the images both runs scored (matched by id),
  with a paired bootstrap 95 % confidence interval: a difference whose interval excludes 0 is marked.

A model may be a *group* of runs, one per training seed: its cells are means over the seeds, and its
difference against the baseline pairs seed k with seed k (a single run pairs with every seed) and resamples
seeds and images: the seeds × images engine of :mod:`crowdvlm.evaluate.results`, shared with the experiment
report.

Written as ``compare.md``, ``compare.json`` and ``compare.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json, atomic_write_text
from crowdvlm.errors import RunError, UsageError
from crowdvlm.evaluate.bootstrap import format_interval, paired_bootstrap
from crowdvlm.evaluate.compare_plot import OVERALL, plot_comparison
from crowdvlm.evaluate.predictions import (
    PREDICTIONS_FILE,
    Prediction,
    latest_by_id,
    os_reason,
    read_predictions,
)
from crowdvlm.evaluate.report import format_value
from crowdvlm.evaluate.results import mean_or_none, paired_rows, prediction_rows
from crowdvlm.evaluate.scoring import compute_metrics, is_scored
from crowdvlm.metrics import DEFAULT_BUCKET_EDGES, METRICS, bucket_label, bucket_labels, image_scores

__all__ = ["Run", "compare_runs", "load_run", "write_comparison"]

#: The counting benchmarks' metrics, compared per dataset with a paired bootstrap interval (higher = better):
#: name -> label of those of :data:`crowdvlm.metrics.METRICS` marked ``interval`` and ``higher_is_better``.
ACCURACIES = {m.name: m.label for m in METRICS if m.interval and m.higher_is_better}
# The keys of a table cell: MAE / RMSE / accuracy, then the accuracies.
_KEEP = ("n", "mae", "rmse", *ACCURACIES)

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """One evaluation run directory: its name, metrics and latest prediction per image."""

    name: str
    path: Path
    metrics: dict[str, Any]
    predictions: dict[str, Prediction]


def load_run(run_dir: str | Path, name: str | None = None) -> Run:
    """Load a run written by :func:`crowdvlm.evaluate.run.evaluate` (metrics recomputed if missing).

    Raises:
        UsageError: the path is missing or not a run directory, or a file of the run is malformed (the
            message names the file).
    """
    run_dir = Path(run_dir)
    pred_path = run_dir / PREDICTIONS_FILE
    if not run_dir.exists():
        raise UsageError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is a file; expected an eval run directory (holding {PREDICTIONS_FILE})")
    if not pred_path.is_file():
        raise UsageError(f"{run_dir} is not an evaluation run: {PREDICTIONS_FILE} is missing")
    try:
        predictions = read_predictions(pred_path)
    except ValueError as err:  # names the file and the line
        raise UsageError(str(err)) from err
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        metrics = _read_metrics(metrics_path)
    else:
        logger.warning("%s has no metrics.json; computing it from the predictions", run_dir)
        metrics = compute_metrics(predictions)
    return Run(name or run_dir.resolve().name, run_dir, metrics, latest_by_id(predictions))


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(metrics, dict):
        raise UsageError(f"{path}: expected the metrics of an eval run (a JSON object)")
    return metrics


def _mean_cell(cells: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """One table cell of a group of runs: ``n`` of the first run, the other keys averaged over the runs."""
    return {"n": cells[0].get("n"), **{k: mean_or_none([c.get(k) for c in cells]) for k in keys if k != "n"}}


def _group_diff(
    base: list[Run], other: list[Run], ids: list[str], *, n: int, seed: int, metric: str = "mae"
) -> dict[str, Any]:
    """``metric``(other) − ``metric``(base) on ``ids``, ``metric`` a key of :func:`crowdvlm.metrics.image_scores`:
    runs paired as seeds (:func:`~crowdvlm.evaluate.results.paired_rows`: in order, a single run pairs with
    every seed)."""
    if not ids:
        return {"diff": None, "low": None, "high": None, "n_images": 0, "n_seeds": 0, "significant": False}
    truths = [base[0].predictions[i].truth for i in ids]
    rows_other, rows_base = paired_rows(
        range(len(other)), range(len(base)), broadcast=min(len(base), len(other)) == 1
    )
    scores = lambda group, rows: image_scores(  # noqa: E731
        prediction_rows([group[k].predictions for k in rows], ids), truths
    )[metric]  # (S, N)
    ci = paired_bootstrap(scores(other, rows_other), scores(base, rows_base), n_boot=n, seed=seed)
    return {
        "diff": ci.diff,
        "low": ci.low,
        "high": ci.high,
        "n_images": ci.n_images,
        "n_seeds": ci.n_seeds,
        "significant": ci.excludes_zero,
    }


def compare_runs(
    runs: Sequence[Run | Sequence[Run]],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
) -> dict[str, Any]:
    """The comparison tables as data (what ``compare.json`` holds).

    Args:
        runs: one entry per model: a :class:`Run`, or a group of runs of one model (one per seed), named by
            its first run. Groups compared with each other hold as many runs, or one.

    Returns:
        ``models``, ``datasets``, ``buckets`` (the column orders), ``table`` (model → dataset or "overall" →
        ``{n, mae, rmse, accuracy, acc_within_1, accuracy_per_count}``, means over a group's seeds), ``bucket_table`` (model → bucket →
        ``{n, mae}``), ``seeds`` (model → runs in its group), ``baseline`` and ``diffs`` (other model →
        dataset, "overall" or bucket → ``{diff, low, high, n_images, n_seeds, significant}``),
        ``accuracy_diffs`` (other model → metric of :data:`ACCURACIES` → dataset or "overall" → the same).

    Raises:
        UsageError: no run, or two groups with different numbers of runs (neither a single run).
    """
    if not runs:
        raise UsageError("compare needs at least one run")
    groups = [[r] if isinstance(r, Run) else list(r) for r in runs]
    sizes = {len(g) for g in groups} - {1}
    if len(sizes) > 1 or any(not g for g in groups):
        raise UsageError(
            f"groups of runs must hold one run per seed, as many in each (or one): got {sorted(sizes)}"
        )
    names = [g[0].name for g in groups]
    datasets = list(dict.fromkeys(d for g in groups for run in g for d in run.metrics["per_dataset"]))
    buckets = [
        b for b in bucket_labels(edges) if any(b in run.metrics["per_bucket"] for g in groups for run in g)
    ]
    cell = lambda g, part, key, keys: _mean_cell([r.metrics[part].get(key, {}) for r in g], keys)  # noqa: E731
    table = {
        name: {
            **{d: cell(g, "per_dataset", d, _KEEP) for d in datasets},
            OVERALL: _mean_cell([r.metrics["overall"] for r in g], _KEEP),
        }
        for name, g in zip(names, groups, strict=True)
    }
    bucket_table = {
        name: {b: cell(g, "per_bucket", b, ("n", "mae")) for b in buckets}
        for name, g in zip(names, groups, strict=True)
    }
    baseline, diffs, accuracy_diffs = groups[0], {}, {}
    for name, group in zip(names[1:], groups[1:], strict=True):
        everyone = [*baseline, *group]
        shared = [
            i
            for i, p in baseline[0].predictions.items()
            if all(i in r.predictions and is_scored(r.predictions[i]) for r in everyone)
        ]
        by_group: dict[str, list[str]] = {OVERALL: shared}
        for i in shared:
            p = baseline[0].predictions[i]
            by_group.setdefault(p.dataset, []).append(i)
            by_group.setdefault(bucket_label(p.truth, edges), []).append(i)
        diffs[name] = {
            key: _group_diff(baseline, group, ids, n=n_bootstrap, seed=seed) for key, ids in by_group.items()
        }
        accuracy_diffs[name] = {
            metric: {
                key: _group_diff(
                    baseline, group, by_group.get(key, []), n=n_bootstrap, seed=seed, metric=metric
                )
                for key in (*datasets, OVERALL)
            }
            for metric in ACCURACIES
        }
    return {
        "models": names,
        "datasets": datasets,
        "buckets": buckets,
        "table": table,
        "bucket_table": bucket_table,
        "seeds": {name: len(g) for name, g in zip(names, groups, strict=True)},
        "baseline": names[0],
        "diffs": diffs,
        "accuracy_diffs": accuracy_diffs,
    }


def _diff_cell(r: dict[str, Any] | None) -> str:
    if not r or r["diff"] is None:
        return "–"
    seeds = f" × {r['n_seeds']} seeds" if r.get("n_seeds", 1) > 1 else ""
    cell = f"{format_interval(r['diff'], r['low'], r['high'])} (n={r['n_images']}{seeds})"
    return f"**{cell}**" if r["significant"] else cell


def _accuracy_diff_lines(result: dict[str, Any], columns: list[str]) -> list[str]:
    """The accuracy differences against the baseline, in percentage points, with their intervals."""
    lines = [
        f"## Accuracy difference vs {result['baseline']}",
        "",
        "Each cell: accuracy(model) − accuracy(baseline) in percentage points on the images both scored, with "
        "its paired bootstrap 95 % confidence interval; positive = better than the baseline; **bold** = the "
        "interval excludes 0. Acc/count keeps each image's per-count weight of the compared images.",
        "",
        "| model | metric | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    points = lambda r: r and {**r, **{k: 100 * r[k] for k in ("diff", "low", "high") if r[k] is not None}}  # noqa: E731
    for model, by_metric in result.get("accuracy_diffs", {}).items():
        for metric, by_group in by_metric.items():
            cells = " | ".join(_diff_cell(points(by_group.get(g))) for g in columns)
            lines.append(f"| {model} | {ACCURACIES[metric]} | {cells} |")
    return [*lines, ""]


def comparison_markdown(result: dict[str, Any]) -> str:
    """The tables of :func:`compare_runs` in markdown."""
    columns = [*result["datasets"], OVERALL]
    runs = [
        f"{m} ({result['seeds'][m]} runs, means over seeds)" if result["seeds"].get(m, 1) > 1 else m
        for m in result["models"]
    ]
    lines = ["# Comparison", "", f"Runs: {', '.join(runs)}.", "", "## MAE / RMSE / accuracy", ""]
    lines += ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for model, row in result["table"].items():
        cells = [
            f"{format_value(c['mae'])} / {format_value(c['rmse'])} / {format_value(c['accuracy'], 'pct')}"
            if c["n"]
            else "–"
            for c in (row[col] for col in columns)
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## Acc / Acc ±1 / Acc per count (the counting benchmarks' metrics)", ""]
    lines += ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for model, row in result["table"].items():
        cells = [
            " / ".join(format_value(c.get(key), "pct") for key in ACCURACIES) if c["n"] else "–"
            for c in (row[col] for col in columns)
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## MAE by true-count bucket", ""]
    lines += [
        "| model | " + " | ".join(result["buckets"]) + " |",
        "|---" * (len(result["buckets"]) + 1) + "|",
    ]
    for model, row in result["bucket_table"].items():
        cells = [
            f"{format_value(row[b]['mae'])} (n={row[b]['n']})" if row[b]["n"] else "–"
            for b in result["buckets"]
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if result["diffs"]:
        lines += [
            "",
            f"## MAE difference vs {result['baseline']}",
            "",
            "Each cell: MAE(model) − MAE(baseline) on the images both scored, with its paired bootstrap 95 % "
            "confidence interval; negative = better than the baseline; **bold** = the interval excludes 0.",
            "",
        ]
        for title, groups in (("per dataset", columns), ("per true-count bucket", result["buckets"])):
            lines += [
                f"### {title}",
                "",
                "| model | " + " | ".join(groups) + " |",
                "|---" * (len(groups) + 1) + "|",
            ]
            for model, by_group in result["diffs"].items():
                lines.append(f"| {model} | " + " | ".join(_diff_cell(by_group.get(g)) for g in groups) + " |")
            lines.append("")
        lines += _accuracy_diff_lines(result, columns)
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(
    run_dirs: Sequence[str | Path | Sequence[str | Path]],
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Load runs, compare them, and write ``compare.md``, ``compare.json`` and ``compare.png`` in ``out_dir``.

    Args:
        run_dirs: evaluation run directories, or groups of them (one model, one run per seed); the first
            entry is the baseline of the MAE differences.
        out_dir: where to write.
        names: display names, one per entry (default: the (first) directory's name, made unique).
        n_bootstrap: bootstrap resamples per confidence interval.
        seed: bootstrap seed.
    """
    entries = [[d] if isinstance(d, str | Path) else list(d) for d in run_dirs]
    if names is not None and len(names) != len(entries):
        raise ValueError(f"{len(names)} names for {len(entries)} runs")
    groups = [[load_run(d, names[i] if names else None) for d in dirs] for i, dirs in enumerate(entries)]
    seen: dict[str, int] = {}
    for group in groups:  # two runs called "eval" in different folders get "eval" and "eval#2"
        name = group[0].name
        seen[name] = seen.get(name, 0) + 1
        for run in group:
            run.name = name if seen[name] == 1 else f"{name}#{seen[name]}"
    result = compare_runs(groups, n_bootstrap=n_bootstrap, seed=seed)
    out_dir = Path(out_dir)
    outputs = {
        "compare.md": lambda path: atomic_write_text(path, comparison_markdown(result)),
        "compare.json": lambda path: atomic_write_json(path, result, allow_nan=False),
        "compare.png": lambda path: plot_comparison(result, path),
    }
    for name, write in outputs.items():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            write(out_dir / name)
        except OSError as err:  # a full disk: a failed write() names no file of its own
            raise RunError(f"cannot write {out_dir / name}: {os_reason(err)}") from err
    return result
