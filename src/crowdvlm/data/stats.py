"""What a manifest holds: counts per dataset and split, the count distribution, image sizes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from crowdvlm.data.manifest import read_manifest


def manifest_stats(records: list[dict]) -> dict:
    """Summary numbers of a list of manifest records.

    Returns:
        ``{"n", "unlabeled", "counts": {min, max, mean, median, total}, "groups": {"dataset/split": {...}},
        "sizes": {min_w, max_w, min_h, max_h, mean_w, mean_h, unknown}}``.

    >>> s = manifest_stats([{"dataset": "a", "split": "train", "solution": 2, "width": 10, "height": 20},
    ...                     {"dataset": "a", "split": "train", "solution": None}])
    >>> s["n"], s["unlabeled"], s["counts"]["total"], s["groups"]["a/train"]["n"]
    (2, 1, 2, 2)
    """

    def summary(counts: list[int]) -> dict:
        if not counts:
            return {"min": None, "max": None, "mean": None, "median": None, "total": 0}
        arr = np.asarray(counts)
        return {
            "min": int(arr.min()),
            "max": int(arr.max()),
            "mean": float(arr.mean()),
            "median": float(np.median(arr)),
            "total": int(arr.sum()),
        }

    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        groups[f"{rec.get('dataset', '?')}/{rec.get('split', '?')}"].append(rec)
    labelled = [r["solution"] for r in records if r.get("solution") is not None]
    widths = [r["width"] for r in records if r.get("width")]
    heights = [r["height"] for r in records if r.get("height")]
    sizes = {"unknown": len(records) - len(widths)}
    if widths:
        sizes.update(
            min_w=min(widths),
            max_w=max(widths),
            mean_w=float(np.mean(widths)),
            min_h=min(heights),
            max_h=max(heights),
            mean_h=float(np.mean(heights)),
        )
    return {
        "n": len(records),
        "unlabeled": len(records) - len(labelled),
        "counts": summary(labelled),
        "groups": {
            key: {"n": len(recs), **summary([r["solution"] for r in recs if r.get("solution") is not None])}
            for key, recs in sorted(groups.items())
        },
        "sizes": sizes,
    }


def format_stats(stats: dict) -> str:
    """A plain-text table of :func:`manifest_stats`."""

    def num(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v) if isinstance(v, float) else str(v)

    lines = [
        f"{'dataset/split':<32} {'images':>7} {'min':>6} {'median':>7} {'mean':>8} {'max':>7} {'total':>9}"
    ]
    rows = [*stats["groups"].items(), ("all", {"n": stats["n"], **stats["counts"]})]
    for key, g in rows:
        lines.append(
            f"{key:<32} {g['n']:>7} {num(g['min']):>6} {num(g['median']):>7} {num(g['mean'], '{:.2f}'):>8} "
            f"{num(g['max']):>7} {g['total']:>9}"
        )
    if stats["unlabeled"]:
        lines.append(f"{stats['unlabeled']} records without ground truth (solution null)")
    s = stats["sizes"]
    if "min_w" in s:
        lines.append(
            f"image sizes: width {s['min_w']}-{s['max_w']} (mean {s['mean_w']:.0f}), "
            f"height {s['min_h']}-{s['max_h']} (mean {s['mean_h']:.0f})"
            + (f", {s['unknown']} unknown" if s["unknown"] else "")
        )
    return "\n".join(lines)


def plot_count_histogram(records: list[dict], out: str | Path, *, bins: int = 30) -> Path:
    """Histogram of the counts, one colour per dataset, saved as an image (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    by_dataset: dict[str, list[int]] = defaultdict(list)
    for rec in records:
        if rec.get("solution") is not None:
            by_dataset[rec.get("dataset", "?")].append(rec["solution"])
    if not by_dataset:
        raise ValueError("no labelled records to plot")
    everything = [c for counts in by_dataset.values() for c in counts]
    hi = max(everything)
    edges = np.arange(0, hi + 2) - 0.5 if hi < bins else np.linspace(0, hi + 1, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.hist(list(by_dataset.values()), bins=edges, stacked=True, label=list(by_dataset))
    ax.set_xlabel("count (objects per image)")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(f"{len(everything)} images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def stats_of(paths: list[str | Path]) -> tuple[list[dict], dict]:
    """Read manifests and summarise them."""
    records = [rec for p in paths for rec in read_manifest(p, check_images=False)]
    return records, manifest_stats(records)
