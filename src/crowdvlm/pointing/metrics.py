"""Localisation metrics of point answers (numpy / scipy only): precision, recall and F1 at radii, per group.

Each image contributes its matched pairs (one-to-one, within a radius, :mod:`crowdvlm.pointing.matching`),
its number of predicted and of true points. Scores are *micro* averages over the images of a group —
``precision = sum(matched) / sum(predicted)``, ``recall = sum(matched) / sum(true)`` — so a crowd of 500 weighs
500 times an image of one, as in the crowd-localisation literature. Radii are in original image pixels.
The count read from the points (the number of points inside the frame) is scored like any count
(:func:`crowdvlm.metrics.count_metrics`), as ``count_from_points``.

>>> rows = [ImagePoints("a", 2, n_pred=2, n_true=2, matched={4: 1, 8: 2}),
...         ImagePoints("a", 0, n_pred=1, n_true=0, matched={4: 0, 8: 0})]
>>> m = localisation_metrics(rows, radii=(4, 8))
>>> m["r8"]["precision"], m["r8"]["recall"], m["r4"]["f1"]
(0.6666666666666666, 1.0, 0.4)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from crowdvlm.metrics import DEFAULT_BUCKET_EDGES, bucket_label, bucket_labels, count_metrics
from crowdvlm.pointing.matching import match_points

__all__ = ["DEFAULT_RADII", "ImagePoints", "image_points", "localisation_metrics", "localisation_summary"]

#: Matching radii of the localisation metrics, in original image pixels.
DEFAULT_RADII: tuple[float, ...] = (4.0, 8.0, 16.0)


@dataclass
class ImagePoints:
    """One image's point answer against its truth.

    Attributes:
        dataset: the image's dataset (for per-dataset metrics).
        truth: the true count (for per-bucket metrics).
        n_pred: points predicted inside the frame (the count read from the points).
        n_true: true points.
        matched: radius -> matched pairs at that radius.
        capped, outside: points the parser left out (past the cap, outside the frame).
    """

    dataset: str
    truth: int
    n_pred: int
    n_true: int
    matched: dict[float, int] = field(default_factory=dict)
    capped: int = 0
    outside: int = 0


def image_points(
    dataset: str, pred, true, radii: Sequence[float] = DEFAULT_RADII, capped: int = 0, outside: int = 0
) -> ImagePoints:
    """Match one image's predicted points (original pixels, ``(N, 2)``) to its true points at every radius."""
    matches = {r: match_points(pred, true, r) for r in radii}
    first = next(iter(matches.values()))
    return ImagePoints(
        dataset,
        first.n_true,
        first.n_pred,
        first.n_true,
        {r: m.matched for r, m in matches.items()},
        capped,
        outside,
    )


def _radius_key(radius: float) -> str:
    return f"r{radius:g}"


def localisation_metrics(rows: Sequence[ImagePoints], radii: Sequence[float] = DEFAULT_RADII) -> dict:
    """Micro precision / recall / F1 per radius (``"r8": {...}``), the pointed count's metrics, dropped points.

    Precision with nothing predicted, or recall with nothing to find, is None (undefined), not a score.
    """
    n_pred = sum(r.n_pred for r in rows)
    n_true = sum(r.n_true for r in rows)
    out: dict = {
        "n": len(rows),
        "points_predicted": n_pred,
        "points_true": n_true,
        "points_capped": sum(r.capped for r in rows),
        "points_outside": sum(r.outside for r in rows),
    }
    for radius in radii:
        matched = sum(r.matched[radius] for r in rows)
        total = n_pred + n_true
        out[_radius_key(radius)] = {
            "matched": matched,
            "precision": matched / n_pred if n_pred else None,
            "recall": matched / n_true if n_true else None,
            "f1": 2 * matched / total if total else None,
        }
    out["count_from_points"] = count_metrics([r.n_pred for r in rows], [r.truth for r in rows])
    return out


def _grouped(rows: Sequence[ImagePoints], keys: Sequence[Hashable], radii) -> dict:
    members: dict[Hashable, list[ImagePoints]] = {}
    for row, key in zip(rows, keys, strict=True):
        members.setdefault(key, []).append(row)
    return {key: localisation_metrics(group, radii) for key, group in members.items()}


def localisation_summary(
    rows: Sequence[ImagePoints],
    radii: Sequence[float] = DEFAULT_RADII,
    edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
) -> dict:
    """``{"radii": [...], "overall": {...}, "per_dataset": {...}, "per_bucket": {...}}`` of :func:`localisation_metrics`."""
    per_bucket = _grouped(rows, [bucket_label(r.truth, edges) for r in rows], radii)
    return {
        "radii": list(radii),
        "overall": localisation_metrics(rows, radii),
        "per_dataset": _grouped(rows, [r.dataset for r in rows], radii),
        "per_bucket": {label: per_bucket[label] for label in bucket_labels(edges) if label in per_bucket},
    }
