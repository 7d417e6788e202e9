"""``compare.png``: MAE per dataset and per true-count bucket, and each model's difference against the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_comparison"]

OVERALL = "overall"


def plot_comparison(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    models = result["models"]
    panels = 3 if result["diffs"] else 2
    fig = Figure(figsize=(6 * panels, 4.5), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    width = 0.8 / len(models)
    for ax, columns, table, title in (
        (axes[0], [*result["datasets"], OVERALL], result["table"], "MAE per dataset"),
        (axes[1], result["buckets"], result["bucket_table"], "MAE per true-count bucket"),
    ):
        for k, model in enumerate(models):
            values = [table[model][c]["mae"] if table[model][c]["n"] else 0.0 for c in columns]
            ax.bar(
                [i + (k - (len(models) - 1) / 2) * width for i in range(len(columns))],
                values,
                width,
                label=model,
            )
        ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
        ax.set_yscale("symlog", linthresh=1)  # MAE spans orders of magnitude across buckets
        ax.set_ylabel("MAE (objects, log scale)")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    if result["diffs"]:
        # the paper's "better when target values are larger": the difference and its 95 % CI per bucket
        ax, buckets, others = axes[2], result["buckets"], list(result["diffs"])
        step = 0.8 / len(others)
        for k, model in enumerate(others):
            for i, bucket in enumerate(buckets):
                r = result["diffs"][model].get(bucket)
                if r and r["diff"] is not None:
                    x = i + (k - (len(others) - 1) / 2) * step
                    yerr = [[r["diff"] - r["low"]], [r["high"] - r["diff"]]]
                    ax.errorbar(
                        x,
                        r["diff"],
                        yerr=yerr,
                        fmt="o",
                        capsize=3,
                        color=f"C{k + 1}",
                        label=model if i == 0 else None,
                    )
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xticks(range(len(buckets)), buckets, rotation=20, ha="right")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylabel(f"MAE − MAE({result['baseline']}), 95 % CI")
        ax.set_title("Difference vs baseline per true-count bucket")
        ax.legend(fontsize=8)
    fig.savefig(path)
