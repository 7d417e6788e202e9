"""One-to-one matching of predicted to true points within a radius (Hungarian matching, radius-pruned).

A predicted point matches at most one true point and vice versa, only within ``radius``; among the
matchings with the most pairs, the one with the smallest total distance is chosen. Pairs farther apart than
the radius can never match, so the problem splits into the connected components of the "within radius"
graph, each solved by ``scipy.optimize.linear_sum_assignment`` on its own small dense cost matrix. Sparse
crowds therefore cost about linear time; even 500 x 500 points in one component take milliseconds
(``benchmarks/point_matching.py``).

>>> m = match_points([[0, 0], [10, 0], [10, 0.5]], [[1, 0], [10, 1]], radius=2)
>>> m.matched, round(m.precision, 3), m.recall, round(m.f1, 3)
(2, 0.667, 1.0, 0.8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PointMatch", "match_points", "point_f1"]


@dataclass(frozen=True)
class PointMatch:
    """The outcome of matching ``n_pred`` predicted to ``n_true`` true points.

    Attributes:
        matched: number of matched pairs (true positives).
        n_pred, n_true: the numbers of points on each side.
        pairs: ``(K, 2)`` indices ``(pred, true)`` of the matched pairs.
    """

    matched: int
    n_pred: int
    n_true: int
    pairs: np.ndarray

    @property
    def precision(self) -> float:
        """Matched / predicted; 1.0 when nothing is predicted and nothing is there, else 0.0 for no prediction."""
        return self.matched / self.n_pred if self.n_pred else float(self.n_true == 0)

    @property
    def recall(self) -> float:
        """Matched / true; 1.0 when there is nothing to find and nothing was predicted."""
        return self.matched / self.n_true if self.n_true else float(self.n_pred == 0)

    @property
    def f1(self) -> float:
        """``2 matched / (n_pred + n_true)``; 1.0 for an empty image answered with no points."""
        total = self.n_pred + self.n_true
        return 2 * self.matched / total if total else 1.0


def _points(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(-1, 2) if array.size else np.zeros((0, 2))


def match_points(pred: Any, true: Any, radius: float) -> PointMatch:
    """Match predicted to true points one to one within ``radius`` (same units as the points).

    Args:
        pred: ``(N, 2)`` predicted points.
        true: ``(M, 2)`` true points.
        radius: the largest distance at which two points can match (inclusive), > 0.

    Raises:
        ValueError: ``radius`` is not positive.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if not radius > 0:
        raise ValueError(f"matching radius must be > 0, got {radius}")
    p, t = _points(pred), _points(true)
    n, m = len(p), len(t)
    empty = np.zeros((0, 2), dtype=np.int64)
    if n == 0 or m == 0:
        return PointMatch(0, n, m, empty)
    # "ndarray" output keeps pairs at distance 0 (duplicates), which sparse-matrix outputs may drop.
    near = cKDTree(p).sparse_distance_matrix(cKDTree(t), radius, output_type="ndarray")
    rows, cols, dist = near["i"].astype(np.int64), near["j"].astype(np.int64), near["v"]
    if len(rows) == 0:
        return PointMatch(0, n, m, empty)
    # Components of the bipartite "within radius" graph: nodes 0..n-1 are predictions, n..n+m-1 truths.
    graph = coo_matrix((np.ones(len(rows)), (rows, cols + n)), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    edge_label = label[rows]
    order = np.argsort(edge_label, kind="stable")
    rows, cols, dist, edge_label = rows[order], cols[order], dist[order], edge_label[order]
    bounds = np.flatnonzero(np.diff(edge_label)) + 1
    pairs = []
    for r, c, d in zip(np.split(rows, bounds), np.split(cols, bounds), np.split(dist, bounds), strict=True):
        if len(r) == 1:  # one pair: nothing to choose
            pairs.append(np.array([[r[0], c[0]]]))
            continue
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        # A pair out of reach costs more than all reachable pairs together, so the assignment first
        # maximises the number of reachable pairs, then minimises their total distance.
        out_of_reach = radius * (min(len(ur), len(uc)) + 1) + 1.0
        cost = np.full((len(ur), len(uc)), out_of_reach)
        cost[ri, ci] = d
        a, b = linear_sum_assignment(cost)
        keep = cost[a, b] < out_of_reach
        pairs.append(np.stack([ur[a[keep]], uc[b[keep]]], axis=1))
    all_pairs = np.concatenate(pairs).astype(np.int64)
    return PointMatch(len(all_pairs), n, m, all_pairs)


def point_f1(pred: Any, true: Any, radius: float) -> float:
    """F1 of :func:`match_points` (1.0 when both sides are empty).

    >>> point_f1([[0, 0]], [[0, 3]], radius=2), point_f1([], [], radius=2), point_f1([[1, 1]], [], radius=2)
    (0.0, 1.0, 0.0)
    """
    return match_points(pred, true, radius).f1
