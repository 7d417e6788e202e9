"""The report's PNG plots (matplotlib, Agg backend): reward curves, MAE per dataset, error by count bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARM_COLORS", "ARM_LABELS", "plot_all"]

ARM_LABELS = {"base": "base", "sft": "SFT", "grpo_binary": "GRPO 0/1", "grpo_fgrpr": "GRPO FGRPR"}
ARM_COLORS = {"base": "#9e9e9e", "sft": "#1f77b4", "grpo_binary": "#d62728", "grpo_fgrpr": "#2ca02c"}
_REWARD_MAX = {"grpo_binary": 1.0, "grpo_fgrpr": 1.5}  # task reward ceilings (binary 1, FGRPR 1.5)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: list[float], window: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if window <= 1 or arr.size < window:
        return arr
    kernel = np.ones(window) / window
    return np.convolve(np.nan_to_num(arr, nan=np.nanmean(arr)), kernel, mode="valid")


def plot_reward_curves(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """Task reward (as a fraction of its maximum) and zero-variance groups per GRPO step, both arms."""
    plt = _plt()
    fig, (ax_r, ax_z) = plt.subplots(1, 2, figsize=(11, 4))
    for arm, by_seed in curves.items():
        color, label = ARM_COLORS.get(arm, "k"), ARM_LABELS.get(arm, arm)
        for i, curve in enumerate(by_seed.values()):
            if not curve["step"]:
                continue
            window = max(1, len(curve["step"]) // 25)
            steps = np.asarray(curve["step"])[window - 1 :] if window > 1 else np.asarray(curve["step"])
            reward = _smooth(curve["task_reward"], window) / _REWARD_MAX.get(arm, 1.0)
            dead = _smooth(curve["frac_reward_zero_std"], window)
            kw = dict(color=color, alpha=0.85, lw=1.4, label=label if i == 0 else None)
            ax_r.plot(steps, reward, **kw)
            ax_z.plot(steps, dead, **kw)
    ax_r.set(xlabel="GRPO step", ylabel="task reward / its maximum", title="Task reward (moving average)")
    ax_z.set(
        xlabel="GRPO step",
        ylabel="fraction of groups",
        title="Groups with zero reward variance (no gradient)",
    )
    ax_z.set_ylim(0, 1)
    for ax in (ax_r, ax_z):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_mae_per_dataset(sets: dict[str, Any], path: Path) -> Path:
    """Grouped bars: MAE (mean over seeds, sd as error bar) per dataset (in-domain styles + OOD) per arm."""
    plt = _plt()
    test, ood = sets["test"], sets["ood"]
    columns = [(d, test, d) for d in test["datasets"]] + [(f"{d} (OOD)", ood, d) for d in ood["datasets"]]
    if "ood_near" in sets:
        columns += [(f"{d} (near OOD)", sets["ood_near"], d) for d in sets["ood_near"]["datasets"]]
    arms = list(test["arms"])
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(columns)), 4))
    x = np.arange(len(columns))
    for j, arm in enumerate(arms):
        means = [s["arms"][arm]["per_dataset"][d]["mae"]["mean"] for _, s, d in columns]
        sds = [s["arms"][arm]["per_dataset"][d]["mae"]["sd"] or 0.0 for _, s, d in columns]
        ax.bar(x + (j - (len(arms) - 1) / 2) * width, means, width, yerr=sds, capsize=2,
               color=ARM_COLORS.get(arm), label=ARM_LABELS.get(arm, arm))  # fmt: skip
    ax.set_xticks(x, [c[0].removeprefix("synth-") for c in columns], rotation=20)
    ax.set(ylabel="MAE (lower is better)", title="MAE per dataset and arm (error bars: sd over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncols=len(arms))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_by_bucket(sets: dict[str, Any], path: Path) -> Path:
    """MAE per true-count bucket per arm, in-domain and out-of-domain side by side."""
    plt = _plt()
    panels = [("test", "in-domain"), ("ood", "out-of-domain")]
    if "ood_near" in sets:
        panels.append(("ood_near", "near out-of-domain"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    for ax, (name, title) in zip(axes, panels, strict=True):
        data = sets[name]
        buckets = data["buckets"]
        for arm, res in data["arms"].items():
            means = [res["per_bucket"][b]["mae"]["mean"] for b in buckets]
            sds = [res["per_bucket"][b]["mae"]["sd"] or 0.0 for b in buckets]
            ax.errorbar(range(len(buckets)), means, yerr=sds, marker="o", capsize=3,
                        color=ARM_COLORS.get(arm), label=ARM_LABELS.get(arm, arm))  # fmt: skip
        counts = [data["arms"][next(iter(data["arms"]))]["per_bucket"][b]["n"] for b in buckets]
        ax.set_xticks(range(len(buckets)), [f"{b}\n(n={n})" for b, n in zip(buckets, counts, strict=True)])
        ax.set(xlabel="true count", title=f"MAE by count bucket, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MAE (lower is better)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write every plot into ``out_dir``; returns ``{name: file name}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "reward_curves": plot_reward_curves(results["curves"], out_dir / "reward_curves.png"),
        "mae_per_dataset": plot_mae_per_dataset(results["sets"], out_dir / "mae_per_dataset.png"),
        "error_by_bucket": plot_error_by_bucket(results["sets"], out_dir / "error_by_bucket.png"),
    }
    return {name: p.name for name, p in written.items()}
