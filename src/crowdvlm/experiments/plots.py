"""The report's PNG plots (matplotlib's object API, no display): reward curves, MAE per dataset, MAE by count.

The per-set comparison plots (``compare-<set>/compare.png``) are ``crowdvlm compare``'s own
(:mod:`crowdvlm.evaluate.compare`); these three put every test set of the experiment side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_all"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _smooth(values: list[float], window: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if window <= 1 or arr.size < window:
        return arr
    return np.convolve(np.nan_to_num(arr, nan=np.nanmean(arr)), np.ones(window) / window, mode="valid")


def _colors(arms: list[str]) -> dict[str, str]:
    return {arm: f"C{k % 10}" for k, arm in enumerate(arms)}


def plot_reward_curves(curves: dict[str, dict[str, Any]], labels: dict[str, str], colors, path: Path) -> Path:
    """Task reward (as a fraction of its largest value) and zero-variance groups per GRPO step, every GRPO arm."""
    fig = _figure(11, 4)
    ax_r, ax_z = fig.subplots(1, 2)
    for arm, by_seed in curves.items():
        top = max((max(c["task_reward"], default=0) for c in by_seed.values()), default=0) or 1.0
        for i, curve in enumerate(by_seed.values()):
            if not curve["step"]:
                continue
            window = max(1, len(curve["step"]) // 25)
            steps = np.asarray(curve["step"])[window - 1 :] if window > 1 else np.asarray(curve["step"])
            kw = dict(color=colors[arm], alpha=0.85, lw=1.4, label=labels.get(arm, arm) if i == 0 else None)
            ax_r.plot(steps, _smooth(curve["task_reward"], window) / top, **kw)
            ax_z.plot(steps, _smooth(curve["frac_reward_zero_std"], window), **kw)
    ax_r.set(
        xlabel="GRPO step", ylabel="task reward / its largest value", title="Task reward (moving average)"
    )
    ax_z.set(
        xlabel="GRPO step",
        ylabel="fraction of groups",
        title="Groups with zero reward variance (no gradient)",
    )
    ax_z.set_ylim(0, 1)
    for ax in (ax_r, ax_z):
        ax.grid(alpha=0.3)
        if curves:
            ax.legend()
    fig.savefig(path)
    return path


def plot_mae_per_dataset(sets: dict[str, Any], labels, colors, path: Path) -> Path:
    """Grouped bars: MAE (mean over seeds, sd as error bar) per dataset of every test set, per arm."""
    columns = [
        (f"{d.removeprefix('synth-')} ({name})", s, d) for name, s in sets.items() for d in s["datasets"]
    ]
    arms = list(next(iter(sets.values()))["arms"])
    width = 0.8 / len(arms)
    fig = _figure(max(7, 1.3 * len(columns)), 4)
    ax = fig.add_subplot()
    x = np.arange(len(columns))
    for j, arm in enumerate(arms):
        means = [s["arms"][arm]["per_dataset"][d]["mae"]["mean"] for _, s, d in columns]
        sds = [s["arms"][arm]["per_dataset"][d]["mae"]["sd"] or 0.0 for _, s, d in columns]
        ax.bar(
            x + (j - (len(arms) - 1) / 2) * width,
            means,
            width,
            yerr=sds,
            capsize=2,
            color=colors[arm],
            label=labels.get(arm, arm),
        )
    ax.set_xticks(x, [c[0] for c in columns], rotation=20, ha="right")
    ax.set(ylabel="MAE (lower is better)", title="MAE per dataset and arm (error bars: sd over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncols=min(len(arms), 4), fontsize=8)
    fig.savefig(path)
    return path


def plot_error_by_bucket(sets: dict[str, Any], labels, colors, path: Path) -> Path:
    """MAE per true-count bucket per arm, one panel per test set."""
    fig = _figure(5.5 * len(sets), 4)
    axes = np.atleast_1d(fig.subplots(1, len(sets)))
    for ax, (name, data) in zip(axes, sets.items(), strict=True):
        buckets = data["buckets"]
        for arm, res in data["arms"].items():
            means = [res["per_bucket"][b]["mae"]["mean"] for b in buckets]
            sds = [res["per_bucket"][b]["mae"]["sd"] or 0.0 for b in buckets]
            ax.errorbar(
                range(len(buckets)),
                means,
                yerr=sds,
                marker="o",
                capsize=3,
                color=colors[arm],
                label=labels.get(arm, arm),
            )
        counts = [data["arms"][next(iter(data["arms"]))]["per_bucket"][b]["n"] for b in buckets]
        ax.set_xticks(range(len(buckets)), [f"{b}\n(n={n})" for b, n in zip(buckets, counts, strict=True)])
        ax.set(xlabel="true count", title=f"MAE by count bucket, {name}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MAE (lower is better)")
    axes[0].legend(fontsize=8)
    fig.savefig(path)
    return path


def plot_all(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write every plot into ``out_dir``; returns ``{name: file name}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = results["labels"]
    colors = _colors(list(labels))
    written = {
        "reward_curves": plot_reward_curves(results["curves"], labels, colors, out_dir / "reward_curves.png"),
        "mae_per_dataset": plot_mae_per_dataset(
            results["sets"], labels, colors, out_dir / "mae_per_dataset.png"
        ),
        "error_by_bucket": plot_error_by_bucket(
            results["sets"], labels, colors, out_dir / "error_by_bucket.png"
        ),
    }
    return {name: p.name for name, p in written.items()}
