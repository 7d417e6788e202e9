"""``report.md`` and the plots of one evaluation run.

Plots (matplotlib's object API, no pyplot state, so it is safe off the main thread and needs no display):

* ``pred_vs_true.png``: predicted against true count, log axes (symmetric-log, so a count of 0 still shows),
  one colour per dataset, parse failures marked apart;
* ``error_by_bucket.png``: MAE and RMSE (log scale) and NAE per true-count bucket;
* ``mae_per_dataset.png``: MAE per dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_text
from crowdvlm.evaluate.predictions import Prediction, latest_by_id
from crowdvlm.evaluate.scoring import is_scored
from crowdvlm.metrics import METRICS

__all__ = ["PLOTS", "REPORT_FILE", "format_value", "metrics_table", "write_report"]


REPORT_FILE = "report.md"
PLOTS = {
    "pred_vs_true": "pred_vs_true.png",
    "error_by_bucket": "error_by_bucket.png",
    "mae_per_dataset": "mae_per_dataset.png",
}
# (column title, metrics key, how to show it): the metrics of crowdvlm.metrics.METRICS marked in_report, then
# the images the model never answered.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    *((m.label, m.name, m.kind) for m in METRICS if m.in_report),
    ("errors", "errors", "int"),
)
_EXAMPLES = 5
_ERRORS_LISTED = 20


def format_value(value: Any, kind: str = "float", *, missing: str = "–") -> str:
    """Format one metric: a table cell (or the console's summary line, whose ``missing`` is "n/a").

    ``None`` (undefined) shows as ``missing``, an en dash by default.

    >>> format_value(0.25, "pct"), format_value(3.14159), format_value(None), format_value(7, "int")
    ('25.0%', '3.14', '–', '7')
    """
    if value is None:
        return missing
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:.2f}"


def metrics_table(rows: Mapping[str, Mapping[str, Any]], first: str) -> str:
    """A markdown table: one row per entry of ``rows`` (named in column ``first``), the :data:`COLUMNS`."""
    head = f"| {first} | " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    body = [
        f"| {name} | " + " | ".join(format_value(m.get(key), kind) for _, key, kind in COLUMNS) + " |"
        for name, m in rows.items()
    ]
    return "\n".join([head, rule, *body])


_INTERVAL_NAMES = {m.name: (m.label, m.kind) for m in METRICS if m.interval}


def _interval_lines(intervals: Mapping[str, list[float]]) -> list[str]:
    """One line of 95 % bootstrap intervals (images resampled) under the overall table."""
    if not intervals:
        return []
    parts = [
        f"{name} [{format_value(intervals[key][0], kind)}, {format_value(intervals[key][1], kind)}]"
        for key, (name, kind) in _INTERVAL_NAMES.items()
        if key in intervals
    ]
    return [
        "95 % bootstrap intervals (images resampled): " + "; ".join(parts) + ". Acc/count is the per-count "
        "macro average (Molmo's evaluator): the exact accuracy of each true count, averaged over the counts.",
        "",
    ]


def _code(text: str, limit: int = 300) -> str:
    text = text if len(text) <= limit else text[:limit] + " …"
    return "`" + text.replace("`", "'").replace("\n", " ⏎ ").replace("|", "\\|") + "`"


def write_report(
    out_dir: str | Path,
    predictions: Iterable[Prediction],
    metrics: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.md`` and the three plots into ``out_dir``; returns the report's path."""
    out_dir = Path(out_dir)
    latest = list(latest_by_id(list(predictions)).values())
    settings = settings or {}
    overall = metrics["overall"]
    _plot_pred_vs_true(latest, out_dir / PLOTS["pred_vs_true"])
    _plot_buckets(metrics["per_bucket"], out_dir / PLOTS["error_by_bucket"])
    _plot_datasets(metrics["per_dataset"], out_dir / PLOTS["mae_per_dataset"])

    lines = ["# Evaluation report", ""]
    for key in ("model", "backend", "prompt_template", "output_format", "parse", "max_new_tokens", "data"):
        if settings.get(key) is not None:
            value = settings[key]
            lines.append(f"- **{key}**: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    lines += [
        f"- **images**: {overall['n']} scored, {overall['errors']} not evaluated (errors), "
        f"{overall['unlabelled']} without ground truth",
        "",
        "MAE / RMSE / NAE count an unparsed answer as 0; RMSE is what crowd-counting papers call MSE; "
        "NAE skips images whose true count is 0.",
        "",
        "## Overall",
        "",
        metrics_table({"all": overall}, "images"),
        "",
        *_interval_lines(overall.get("intervals") or {}),
        "## Per dataset",
        "",
        metrics_table(metrics["per_dataset"], "dataset"),
        "",
        "## Per count bucket (true count)",
        "",
        metrics_table(metrics["per_bucket"], "bucket"),
        "",
        "## Plots",
        "",
        *(f"![{name}]({file})" for name, file in PLOTS.items()),
        "",
    ]
    unparsed = [p for p in latest if is_scored(p) and not p.parse_ok]
    if unparsed:
        lines += [f"## Unparsed answers ({len(unparsed)}; first {min(_EXAMPLES, len(unparsed))})", ""]
        lines += [f"- {p.id} (truth {p.truth}): {_code(p.text)}" for p in unparsed[:_EXAMPLES]] + [""]
    failed = [p for p in latest if p.error is not None]
    if failed:
        lines += [f"## Images not evaluated ({len(failed)}; first {min(_ERRORS_LISTED, len(failed))})", ""]
        lines += [f"- {p.id}: {p.error}" for p in failed[:_ERRORS_LISTED]] + [""]
    path = out_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines))
    return path


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot_pred_vs_true(latest: list[Prediction], path: Path) -> None:
    fig = _figure(6, 6)
    ax = fig.add_subplot()
    scored = [p for p in latest if is_scored(p)]
    datasets = list(dict.fromkeys(p.dataset for p in scored))
    for i, name in enumerate(datasets):
        points = [(p.truth, p.pred) for p in scored if p.dataset == name and p.parse_ok]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=14, alpha=0.7, color=f"C{i % 10}", label=f"{name} ({len(points)})")
    failures = [p.truth for p in scored if not p.parse_ok]
    if failures:
        ax.scatter(
            failures,
            [0] * len(failures),
            marker="x",
            color="red",
            label=f"unparsed, shown at 0 ({len(failures)})",
        )
    top = max([1, *(p.truth for p in scored), *(p.pred or 0 for p in scored)])
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--", label="pred = true")
    # symlog: logarithmic above 1, linear below, so 0 (empty images, unparsed answers) stays visible
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlim(-0.2, top * 1.5)
    ax.set_ylim(-0.2, top * 1.5)
    ax.set_xlabel("true count")
    ax.set_ylabel("predicted count")
    ax.set_title("Predicted vs true count" if scored else "Predicted vs true count (no scored images)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path)


def _plot_buckets(per_bucket: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    fig = _figure(10, 4.5)
    absolute, relative = fig.subplots(1, 2)
    labels = [label for label, m in per_bucket.items() if m["n"]]
    positions = range(len(labels))
    width = 0.4
    for offset, key, name in ((-width / 2, "mae", "MAE"), (width / 2, "rmse", "RMSE")):
        bars = absolute.bar(
            [i + offset for i in positions], [per_bucket[b][key] for b in labels], width, label=name
        )
        if key == "mae":
            absolute.bar_label(bars, labels=[f"n={per_bucket[b]['n']}" for b in labels], fontsize=8)
    absolute.set_yscale("symlog", linthresh=1)  # errors span orders of magnitude across buckets
    absolute.set_ylabel("error (objects, log scale)")
    absolute.set_title("Absolute error by true count")
    absolute.legend()
    # NAE: the error relative to the true count, comparable across buckets
    nae = [per_bucket[b]["nae"] if per_bucket[b]["nae"] is not None else 0.0 for b in labels]
    relative.bar(positions, nae, color="C2")
    relative.set_ylabel("NAE = mean |pred - true| / true")
    relative.set_title("Relative error by true count")
    for ax in (absolute, relative):
        ax.set_xticks(positions, labels)
        ax.set_xlabel("true count bucket")
    fig.savefig(path)


def _plot_datasets(per_dataset: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    names = [name for name, m in per_dataset.items() if m["n"]]
    fig = _figure(7, 1.5 + 0.4 * max(1, len(names)))
    ax = fig.add_subplot()
    bars = ax.barh(names, [per_dataset[name]["mae"] for name in names], color="C0")
    ax.bar_label(
        bars, labels=[f"{per_dataset[n]['mae']:.2f} (n={per_dataset[n]['n']})" for n in names], fontsize=8
    )
    ax.invert_yaxis()  # first dataset on top
    ax.margins(x=0.25)  # room for the labels
    ax.set_xlabel("MAE (objects)")
    ax.set_title("MAE per dataset")
    fig.savefig(path)
