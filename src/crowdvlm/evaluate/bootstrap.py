"""Paired bootstrap confidence intervals over per-image errors, pooled over training seeds.

The one bootstrap of crowdvlm: `crowdvlm compare` (one run per model, so one "seed") and the demo (several
training seeds per arm) both use it. The demo, for example, compares two arms (say FGRPR and SFT) on the *same* test images, and seed ``s`` of one arm is
paired with seed ``s`` of the other (both trained on the same images). The quantity of interest is the
difference of mean absolute errors, ``MAE(a) - MAE(b)``, averaged over seeds and images.

Two sources of noise matter: which test images were drawn, and which training run a seed produced (the
miniature study in the reference notes saw SFT's MAE move by 0.17 between seeds, as much as the effects it looked for). The bootstrap
therefore resamples **both levels**: each replicate draws ``S`` seeds with replacement, then ``N`` images
with replacement, and averages the paired differences over the drawn (seed, image) cells. With one seed
only the images are resampled and the interval ignores training noise (the report says so).

>>> import numpy as np
>>> a = np.array([[2.0, 3.0, 4.0, 5.0]]); b = np.array([[1.0, 2.0, 3.0, 4.0]])
>>> ci = paired_bootstrap(a, b, n_boot=200, seed=0)
>>> (ci.diff, ci.low, ci.high)
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["DiffCI", "format_interval", "paired_bootstrap"]


@dataclass(frozen=True)
class DiffCI:
    """A difference of means with its bootstrap confidence interval.

    Attributes:
        diff: observed mean of ``a - b`` over all (seed, image) cells.
        low: lower bound of the interval.
        high: upper bound of the interval.
        level: confidence level (e.g. 0.95).
        n_images: images per seed.
        n_seeds: seeds paired.
        per_seed: the observed difference for each seed.
    """

    diff: float
    low: float
    high: float
    level: float
    n_images: int
    n_seeds: int
    per_seed: tuple[float, ...]

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (the difference is significant at ``level``)."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return format_interval(self.diff, self.low, self.high)


def format_interval(diff: float, low: float, high: float) -> str:
    """A difference with its interval as the reports print it.

    >>> format_interval(-0.5, -0.81, -0.2)
    '-0.50 [-0.81, -0.20]'
    """
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"


def paired_bootstrap(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> DiffCI:
    """Percentile bootstrap CI of ``mean(errors_a - errors_b)``, resampling seeds and images.

    Args:
        errors_a: absolute errors of arm a, shape ``(S, N)`` (seed, image); row ``s`` pairs with ``errors_b[s]``.
        errors_b: absolute errors of arm b, same shape, same image order.
        mask: optional boolean ``(S, N)``: only cells where it is True count (e.g. both arms parsed an answer).
        n_boot: bootstrap replicates.
        level: confidence level of the two-sided interval.
        seed: seeds the resampling, so the report is reproducible.

    Raises:
        ValueError: shapes differ, are not 2-D, or hold no image.
    """
    a = np.asarray(errors_a, dtype=np.float64)
    b = np.asarray(errors_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"paired errors must be two (seeds, images) arrays of one shape, got {a.shape} and {b.shape}"
        )
    n_seeds, n_images = a.shape
    if n_seeds == 0 or n_images == 0:
        raise ValueError(f"paired errors hold no cell (shape {a.shape})")
    m = np.ones_like(a) if mask is None else np.asarray(mask, dtype=np.float64)
    if m.shape != a.shape:
        raise ValueError(f"mask shape {m.shape} differs from the errors' {a.shape}")
    if m.sum() == 0:
        raise ValueError("the mask leaves no (seed, image) cell to compare")
    d = np.where(m > 0, a - b, 0.0)  # (S, N), masked cells contribute nothing
    rng = np.random.default_rng(seed)
    # Replicate r draws S seeds and N images (the same images for every seed: the test set is shared) and
    # averages d over the drawn cells. With draw counts c_img (N,) and c_seed (S,) that is
    # (c_seed @ d @ c_img) / (c_seed @ m @ c_img), one matrix product per level for all replicates at once.
    sums, cells = np.empty(n_boot), np.empty(n_boot)
    chunk = max(1, 2_000_000 // n_images)  # replicates per chunk: bounds memory on large test sets
    for lo in range(0, n_boot, chunk):
        k = min(n_boot, lo + chunk) - lo
        image_counts = _draw_counts(rng, n_images, k)  # (k, N)
        seed_counts = _draw_counts(rng, n_seeds, k) if n_seeds > 1 else np.ones((k, 1))  # (k, S)
        sums[lo : lo + k] = (seed_counts * (image_counts @ d.T)).sum(axis=1)
        cells[lo : lo + k] = (seed_counts * (image_counts @ m.T)).sum(axis=1)
    valid = cells > 0
    boots = sums[valid] / cells[valid]
    per_seed = (d.sum(axis=1) / np.maximum(m.sum(axis=1), 1)).tolist()
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return DiffCI(
        diff=float(d.sum() / m.sum()),
        low=float(low),
        high=float(high),
        level=level,
        n_images=n_images,
        n_seeds=n_seeds,
        per_seed=tuple(float(x) for x in per_seed),
    )


def _draw_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in ``n`` draws with replacement, for ``n_boot`` replicates."""
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts
