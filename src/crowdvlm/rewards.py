"""Reward functions for GRPO on counting: FGRPR precision, the strict format reward, the 0/1 baseline,
and precision rewards beyond FGRPR (ratio, FGRPR with an absolute tolerance, Gaussian, rank within group).

Each reward is a pure per-sample helper plus a thin batch wrapper with TRL's signature
``f(completions, solution, **kwargs) -> list[float]``. The wrappers are picklable callables with a
``__name__`` (TRL logs ``rewards/<name>/mean``), parameterised by config fields rather than literals.
Answers are read by :func:`crowdvlm.parsing.parse_count`, the same parser evaluation uses.

The paper's reward is ``fgrpr + format`` (weights 1 and 1, so at most 2.5); its baseline ``binary + format``.
The other precision rewards share FGRPR's ceiling (1.5) so that any of them can replace ``fgrpr`` in a recipe;
docs/rewards.md compares their shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from crowdvlm.counts import read_count
from crowdvlm.parsing import MAX_POINTS, PointAnswer, completion_text, parse_count, parse_points
from crowdvlm.pointing.targets import frame_of_row

__all__ = [
    "REWARDS",
    "BinaryCountReward",
    "CountFormatReward",
    "FGRPRPrecisionReward",
    "POINT_REWARDS",
    "PointConsistencyReward",
    "PointCountReward",
    "PointF1Reward",
    "FGRPRToleranceReward",
    "GaussianPrecisionReward",
    "GroupRankReward",
    "RatioPrecisionReward",
    "binary_count_reward",
    "build_reward",
    "count_format_reward",
    "fgrpr_precision",
    "fgrpr_precision_reward",
    "fgrpr_tolerance_precision",
    "gaussian_precision",
    "group_rank_scores",
    "is_count_format",
    "point_consistency_reward",
    "point_f1_reward",
    "ratio_precision",
    "ratio_precision_reward",
]

# re.ASCII: "digits" are 0-9 only, as in crowdvlm.parsing (never another script's digits).
_THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>\d+</answer>", re.DOTALL | re.ASCII)
_ANSWER_ONLY = re.compile(r"<answer>\d+</answer>", re.ASCII)


# --------------------------------------------------------------------------- per-sample helpers


def fgrpr_precision(pred: int | None, truth: int, band: float = 0.5, ceiling: float = 1.5) -> float:
    """The paper's fuzzy precision reward r_p for one answer.

    With ``rel = |pred - truth| / truth``: ``ceiling - rel`` if ``rel < band`` (strict), else 0.
    For ``truth == 0`` the paper is silent (its code scores 0 even for a correct "0"); we give
    ``ceiling`` for an exact 0 and 0 otherwise. An unparseable answer (``None``) scores 0.

    >>> round(fgrpr_precision(20, 22), 4)   # the paper's worked example: 1.5 - 2/22
    1.4091
    >>> fgrpr_precision(11, 22), fgrpr_precision(0, 0), fgrpr_precision(None, 5)
    (0.0, 1.5, 0.0)
    """
    if pred is None:
        return 0.0
    if truth == 0:
        return ceiling if pred == 0 else 0.0
    rel = abs(pred - truth) / truth
    return ceiling - rel if rel < band else 0.0


def is_count_format(text: str, require_think: bool = True) -> bool:
    """True iff the whole text is ``<think>…</think>``, optional whitespace, ``<answer>DIGITS</answer>``.

    With ``require_think=False`` the whole text must be ``<answer>DIGITS</answer>`` (the answer-only prompt).

    >>> is_count_format("<think>one, two</think>\\n<answer>2</answer>"), is_count_format(" <answer>2</answer>")
    (True, False)
    """
    pattern = _THINK_ANSWER if require_think else _ANSWER_ONLY
    return pattern.fullmatch(text) is not None


# --------------------------------------------------------------------------- batch rewards (TRL signature)


class _CountReward:
    """Base of the batch rewards: one float per completion, solutions read by :func:`crowdvlm.counts.read_count`."""

    __name__ = "count_reward"

    def __call__(self, completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(completions) != len(solution):
            raise ValueError(f"{self.__name__}: {len(completions)} completions but {len(solution)} solutions")
        return [
            self.score(completion_text(c), read_count(s)) for c, s in zip(completions, solution, strict=True)
        ]

    def score(self, text: str, truth: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__")
        return f"{type(self).__name__}({params})"


class FGRPRPrecisionReward(_CountReward):
    """FGRPR precision r_p (see :func:`fgrpr_precision`), answers read strictly by default as in the paper.

    >>> fgrpr_precision_reward(["<think>x</think><answer>20</answer>", "no answer"], solution=[22, 22])
    [1.4090909090909092, 0.0]
    """

    def __init__(self, band: float = 0.5, ceiling: float = 1.5, strict: bool = True, name: str = "fgrpr"):
        if not 0 < band:
            raise ValueError(f"fgrpr band must be > 0, got {band}")
        self.band, self.ceiling, self.strict = band, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return fgrpr_precision(parse_count(text, strict=self.strict), truth, self.band, self.ceiling)


class CountFormatReward(_CountReward):
    """1.0 iff the whole completion has the strict count format (see :func:`is_count_format`), else 0.0.

    >>> count_format_reward(["<think>x</think> <answer>5</answer>", "<answer>5</answer> done"], solution=[5, 5])
    [1.0, 0.0]
    """

    def __init__(self, require_think: bool = True, value: float = 1.0, name: str = "format"):
        self.require_think, self.value = require_think, value
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return self.value if is_count_format(text, self.require_think) else 0.0


class BinaryCountReward(_CountReward):
    """The GRPO 0/1 baseline: 1.0 iff the answered count equals the truth exactly, else 0.0.

    >>> binary_count_reward(["<answer>7</answer>", "<answer>8</answer>"], solution=["7", 7])
    [1.0, 0.0]
    """

    def __init__(self, strict: bool = True, name: str = "binary"):
        self.strict = strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return 1.0 if parse_count(text, strict=self.strict) == truth else 0.0


# --------------------------------------------------------------------------- point rewards (counting by pointing)


class _PointReward:
    """Base of the point rewards: one float per completion, read with :func:`crowdvlm.parsing.parse_points`.

    Besides ``solution`` they need the point columns of a point training set (``output_format: points``):
    ``points`` (original pixels), ``image_size`` and ``frame_size`` (see :mod:`crowdvlm.pointing.targets`).
    Answers longer than ``max_points`` points are capped, so a reward never costs more than that.
    """

    __name__ = "point_reward"
    max_points: int = MAX_POINTS

    def __call__(
        self,
        completions: Sequence[Any],
        solution: Sequence[Any],
        points: Sequence[Any] | None = None,
        image_size: Sequence[Any] | None = None,
        frame_size: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if points is None or image_size is None or frame_size is None:
            raise ValueError(
                f"{self.__name__} needs the dataset columns points, image_size and frame_size: train with "
                "output_format: points (manifests with points)"
            )
        lengths = [len(v) for v in (completions, solution, points, image_size, frame_size)]
        if len(set(lengths)) != 1:
            raise ValueError(
                f"{self.__name__}: lengths differ (completions, solution, points, image_size, frame_size): {lengths}"
            )
        scores = []
        for c, s, pts, isize, fsize in zip(
            completions, solution, points, image_size, frame_size, strict=True
        ):
            frame = frame_of_row(isize, fsize)
            answer = parse_points(c, (frame.width, frame.height), max_points=self.max_points, strict=True)
            scores.append(self.score(answer, frame.to_frame(pts), read_count(s)))
        return scores

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__")
        return f"{type(self).__name__}({params})"


class PointF1Reward(_PointReward):
    """F1 of the answer's points against the true points, matched one to one within ``radius`` frame units.

    Matching is Hungarian within the radius (:func:`crowdvlm.pointing.matching.match_points`); an empty
    image answered with no points scores 1. Points outside the frame are dropped (they never match).

    >>> reward = PointF1Reward(radius=5)
    >>> reward(['[{"point_2d": [10, 10]}, {"point_2d": [50, 50]}]<answer>2</answer>', "[]<answer>0</answer>"],
    ...        solution=[1, 1], points=[[[22, 20]], [[5, 5]]], image_size=[[224, 224]] * 2,
    ...        frame_size=[[112, 112]] * 2)
    [0.6666666666666666, 0.0]
    """

    def __init__(self, radius: float = 8.0, max_points: int = MAX_POINTS, name: str = "point_f1"):
        if not radius > 0:
            raise ValueError(f"point_f1 radius must be > 0, got {radius}")
        if max_points < 1:
            raise ValueError(f"point_f1 max_points must be >= 1, got {max_points}")
        self.radius, self.max_points = radius, max_points
        self.__name__ = name

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        from crowdvlm.pointing.matching import match_points

        return match_points(answer.points, truth_points, self.radius).f1


class PointConsistencyReward(_PointReward):
    """``value`` iff the stated ``<answer>`` count equals the number of points listed, else 0.

    >>> point_consistency_reward(['[{"point_2d": [1, 2]}]<answer>1</answer>', '[{"point_2d": [1, 2]}]<answer>2</answer>'],
    ...                          solution=[1, 1], points=[[[1, 2]]] * 2, image_size=[[9, 9]] * 2, frame_size=[[9, 9]] * 2)
    [1.0, 0.0]
    """

    def __init__(self, value: float = 1.0, name: str = "point_consistency"):
        self.value = value
        self.__name__ = name

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        return self.value if answer.consistent else 0.0


class PointCountReward(_PointReward):
    """Any count reward (``base``, e.g. ``fgrpr``) scored on the count read from the points, not the stated one.

    The count is the number of points inside the frame; the base reward scores it as if the model had
    answered ``<answer>count</answer>``, so every count reward of :data:`REWARDS` combines with pointing.

    >>> reward = PointCountReward("fgrpr")
    >>> reward(['[{"point_2d": [1, 1]}, {"point_2d": [5, 5]}]<answer>7</answer>'], solution=[2],
    ...        points=[[[1, 1], [4, 4]]], image_size=[[9, 9]], frame_size=[[9, 9]])
    [1.5]
    """

    def __init__(
        self, base: str = "fgrpr", max_points: int = MAX_POINTS, name: str | None = None, **base_params: Any
    ):
        if base not in _FACTORIES or base in _POINT_FACTORIES:
            raise ValueError(
                f"point_count base must be a count reward ({', '.join(sorted(_FACTORIES))}), got {base!r}"
            )
        self.base, self.max_points, self.base_params = base, max_points, dict(base_params)
        self._base = _FACTORIES[base](**base_params)
        self.__name__ = name or f"point_{base}"

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        return self._base.score(f"<answer>{answer.count}</answer>", truth)

    def __repr__(self) -> str:
        return f"PointCountReward(base={self.base!r}, max_points={self.max_points}, **{self.base_params!r})"


# --------------------------------------------------------------------------- precision rewards beyond FGRPR
# FGRPR's defects (docs/rewards.md): a cliff at 50 % error that leaves all-wrong groups without gradient,
# exact match only for counts <= 2, and a window that accepts a 2x undercount but only a 1.5x overcount.


def ratio_precision(pred: int | None, truth: int, tau: float = 0.5, ceiling: float = 1.5) -> float:
    """``ceiling * exp(-|log((pred + 1) / (truth + 1))| / tau)``: no cliff, defined at 0, symmetric in ratio.

    The +1 keeps ``truth == 0`` defined; a k-fold overcount scores as a k-fold undercount of ``truth + 1``.
    An unparseable answer (``None``) scores 0.

    >>> ratio_precision(22, 22), round(ratio_precision(19, 9), 4), round(ratio_precision(4, 9), 4)
    (1.5, 0.375, 0.375)
    >>> round(ratio_precision(1, 0), 4), ratio_precision(None, 3)
    (0.375, 0.0)
    """
    if pred is None:
        return 0.0
    return ceiling * math.exp(-abs(math.log((pred + 1) / (truth + 1))) / tau)


def fgrpr_tolerance_precision(
    pred: int | None, truth: int, band: float = 0.5, tolerance: float = 1.5, ceiling: float = 1.5
) -> float:
    """FGRPR whose window is at least ``tolerance`` wide, so that small counts earn partial credit.

    The half-width is ``w = max(band * truth, tolerance)``; inside it (``|pred - truth| < w``) the reward is
    ``ceiling - band * |pred - truth| / w``, else 0. Where ``band * truth >= tolerance`` this is exactly
    :func:`fgrpr_precision`; below, the same ramp is stretched over ``w`` (with the default 1.5, an answer
    off by one earns ``1.5 - 0.5 / 1.5`` at y = 0, 1, 2 where FGRPR gives 0 or demands an exact hit).

    >>> round(fgrpr_tolerance_precision(2, 1), 4), fgrpr_tolerance_precision(3, 1), fgrpr_tolerance_precision(5, 4)
    (1.1667, 0.0, 1.25)
    """
    if pred is None:
        return 0.0
    width = max(band * truth, tolerance)
    diff = abs(pred - truth)
    return ceiling - band * diff / width if diff < width else 0.0


def gaussian_precision(
    pred: int | None, truth: int, rel_sigma: float = 0.25, min_sigma: float = 1.0, ceiling: float = 1.5
) -> float:
    """Gaussian precision ``ceiling * exp(-(pred - truth)^2 / (2 sigma^2))``, ``sigma = max(rel_sigma * truth, min_sigma)``.

    Smooth (no cliff) but its tail vanishes: an answer 50 % off earns ``exp(-2)`` of the ceiling with the
    default ``rel_sigma``, one 100 % off about 3e-4 of it.

    >>> gaussian_precision(10, 10), round(gaussian_precision(15, 20), 4), round(gaussian_precision(1, 0), 4)
    (1.5, 0.9098, 0.9098)
    """
    if pred is None:
        return 0.0
    sigma = max(rel_sigma * truth, min_sigma)
    return ceiling * math.exp(-0.5 * ((pred - truth) / sigma) ** 2)


def group_rank_scores(errors: Sequence[float]) -> list[float]:
    """Mid-rank of each error within its group, scaled to [0, 1]: 1 = smallest error, 0 = largest.

    A completion scores the fraction of the others it beats, a tie counting one half, so equal errors
    share a score and a group of one scores 0.5.

    >>> group_rank_scores([3, 0, 3, math.inf])
    [0.5, 1.0, 0.5, 0.0]
    """
    n = len(errors)
    if n == 1:
        return [0.5]
    return [
        (sum(other > own for other in errors) + 0.5 * (sum(other == own for other in errors) - 1)) / (n - 1)
        for own in errors
    ]


class RatioPrecisionReward(_CountReward):
    """The ratio reward (see :func:`ratio_precision`).

    >>> ratio_precision_reward(["<answer>22</answer>", "<answer>0</answer>"], solution=[22, 0])
    [1.5, 1.5]
    """

    def __init__(self, tau: float = 0.5, ceiling: float = 1.5, strict: bool = True, name: str = "ratio"):
        if not tau > 0:
            raise ValueError(f"ratio tau must be > 0, got {tau}")
        self.tau, self.ceiling, self.strict = tau, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return ratio_precision(parse_count(text, strict=self.strict), truth, self.tau, self.ceiling)


class FGRPRToleranceReward(_CountReward):
    """FGRPR with an absolute tolerance for small counts (see :func:`fgrpr_tolerance_precision`).

    >>> build_reward("fgrpr_tol")(["<answer>2</answer>", "<answer>20</answer>"], solution=[1, 22])
    [1.1666666666666667, 1.4090909090909092]
    """

    def __init__(
        self,
        band: float = 0.5,
        tolerance: float = 1.5,
        ceiling: float = 1.5,
        strict: bool = True,
        name: str = "fgrpr_tol",
    ):
        if not (band > 0 and tolerance > 0):
            raise ValueError(f"fgrpr_tol band and tolerance must be > 0, got {band} and {tolerance}")
        self.band, self.tolerance, self.ceiling, self.strict = band, tolerance, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        pred = parse_count(text, strict=self.strict)
        return fgrpr_tolerance_precision(pred, truth, self.band, self.tolerance, self.ceiling)


class GaussianPrecisionReward(_CountReward):
    """Gaussian precision (see :func:`gaussian_precision`).

    >>> build_reward("gaussian")(["<answer>10</answer>", "none"], solution=[10, 10])
    [1.5, 0.0]
    """

    def __init__(
        self,
        rel_sigma: float = 0.25,
        min_sigma: float = 1.0,
        ceiling: float = 1.5,
        strict: bool = True,
        name: str = "gaussian",
    ):
        if not (rel_sigma > 0 and min_sigma > 0):
            raise ValueError(f"gaussian rel_sigma and min_sigma must be > 0, got {rel_sigma} and {min_sigma}")
        self.rel_sigma, self.min_sigma, self.ceiling, self.strict = rel_sigma, min_sigma, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        pred = parse_count(text, strict=self.strict)
        return gaussian_precision(pred, truth, self.rel_sigma, self.min_sigma, self.ceiling)


class GroupRankReward(_CountReward):
    """Rank within the group by absolute error (see :func:`group_rank_scores`), times ``ceiling``.

    For groups where every answer is far off (FGRPR gives all of them 0, so GRPO learns nothing) the
    closest answer still wins. TRL calls a reward once per generation batch, with the ``num_generations``
    completions of each prompt next to each other; a group is a run of consecutive rows with the same
    ``id`` (the manifest column TRL passes on), or, without ``id``, the same prompt and solution.
    Unparseable answers rank last. Under DDP each process ranks the part of a group it holds (docs/rewards.md).

    >>> build_reward("rank")(["<answer>50</answer>", "<answer>10</answer>", "x", "<answer>3</answer>"],
    ...                      solution=[100] * 3 + [3], id=["a", "a", "a", "b"])
    [1.5, 0.75, 0.0, 0.75]
    """

    def __init__(self, ceiling: float = 1.5, strict: bool = True, name: str = "rank"):
        self.ceiling, self.strict = ceiling, strict
        self.__name__ = name

    def __call__(self, completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(completions) != len(solution):
            raise ValueError(f"{self.__name__}: {len(completions)} completions but {len(solution)} solutions")
        truths = [read_count(s) for s in solution]
        errors = []
        for completion, truth in zip(completions, truths, strict=True):
            pred = parse_count(completion_text(completion), strict=self.strict)
            errors.append(math.inf if pred is None else abs(pred - truth))
        keys = kwargs.get("id")
        if not keys:  # no id column: the prompt and the solution identify the image well enough
            prompts = kwargs.get("prompts") or [None] * len(truths)
            keys = [repr((p, t)) for p, t in zip(prompts, truths, strict=True)]
        scores: list[float] = []
        start = 0
        for end in range(1, len(errors) + 1):  # one contiguous run of equal keys = one group
            if end == len(errors) or keys[end] != keys[start]:
                scores.extend(self.ceiling * s for s in group_rank_scores(errors[start:end]))
                start = end
        return scores


fgrpr_precision_reward = FGRPRPrecisionReward()
count_format_reward = CountFormatReward()
binary_count_reward = BinaryCountReward()
point_f1_reward = PointF1Reward()
point_consistency_reward = PointConsistencyReward()
ratio_precision_reward = RatioPrecisionReward()

_FACTORIES = {
    "fgrpr": FGRPRPrecisionReward,
    "format": CountFormatReward,
    "answer_format": lambda **kw: CountFormatReward(
        **{"require_think": False, "name": "answer_format", **kw}
    ),
    "binary": BinaryCountReward,
    "ratio": RatioPrecisionReward,
    "fgrpr_tol": FGRPRToleranceReward,
    "gaussian": GaussianPrecisionReward,
    "rank": GroupRankReward,
}
# Point rewards read the point columns (output_format: points); `point_fgrpr` is FGRPR on the pointed count.
_POINT_FACTORIES = {
    "point_f1": PointF1Reward,
    "point_consistency": PointConsistencyReward,
    "point_count": lambda **kw: PointCountReward(**{"name": "point_count", **kw}),
    "point_fgrpr": lambda **kw: PointCountReward(**{"base": "fgrpr", **kw}),
}
_FACTORIES.update(_POINT_FACTORIES)

#: Short name -> reward with default parameters. ``answer_format`` is the format reward for the
#: answer-only prompt (no ``<think>`` block), used by tiny models that cannot reason in text.
REWARDS: dict[str, _CountReward | _PointReward] = {name: factory() for name, factory in _FACTORIES.items()}
#: The rewards that need point columns (``output_format: points``).
POINT_REWARDS = frozenset(_POINT_FACTORIES)


def build_reward(name: str, **params: Any) -> _CountReward | _PointReward:
    """Build the reward registered as ``name`` with non-default parameters (e.g. ``band=0.3``).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    if name not in _FACTORIES:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**params)
