"""Reward functions for GRPO on counting: FGRPR precision, the strict format reward, the 0/1 baseline.

Each reward is a pure per-sample helper plus a thin batch wrapper with TRL's signature
``f(completions, solution, **kwargs) -> list[float]``. The wrappers are picklable callables with a
``__name__`` (TRL logs ``rewards/<name>/mean``), parameterised by config fields rather than literals.
Answers are read by :func:`crowdvlm.parsing.parse_count`, the same parser evaluation uses.

The paper's reward is ``fgrpr + format`` (weights 1 and 1, so at most 2.5); its baseline ``binary + format``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

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
    "binary_count_reward",
    "build_reward",
    "count_format_reward",
    "fgrpr_precision",
    "fgrpr_precision_reward",
    "is_count_format",
    "parse_solution",
    "point_consistency_reward",
    "point_f1_reward",
]

# re.ASCII: "digits" are 0-9 only, as in crowdvlm.parsing (never another script's digits).
_THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>\d+</answer>", re.DOTALL | re.ASCII)
_ANSWER_ONLY = re.compile(r"<answer>\d+</answer>", re.ASCII)
_INTEGRAL_FLOAT = re.compile(r"\s*\d+(?:\.0*)?\s*", re.ASCII)


# --------------------------------------------------------------------------- per-sample helpers


def parse_solution(value: Any) -> int:
    """Read a ground-truth count: an int, a numeric string ("22", "22.0") or ``"<answer>22</answer>"``.

    Raises:
        ValueError: the value is not a non-negative whole count (a data bug: the message names the value).

    >>> [parse_solution(v) for v in (22, "22", "22.0", "<answer>22</answer>")]
    [22, 22, 22, 22]
    """
    if isinstance(value, bool):
        raise ValueError(f"solution {value!r} is a bool, expected a non-negative integer count")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if _INTEGRAL_FLOAT.fullmatch(value):
            return int(float(value))
        count = parse_count(value, strict=True)
        if count is not None:
            return count
    raise ValueError(
        f"solution {value!r} cannot be read as a count: expected a non-negative integer, a numeric string "
        "such as '22', or '<answer>22</answer>'"
    )


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
    """Base of the batch rewards: one float per completion, solutions read by :func:`parse_solution`."""

    __name__ = "count_reward"

    def __call__(self, completions: Sequence[Any], solution: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(completions) != len(solution):
            raise ValueError(f"{self.__name__}: {len(completions)} completions but {len(solution)} solutions")
        return [
            self.score(completion_text(c), parse_solution(s))
            for c, s in zip(completions, solution, strict=True)
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
            scores.append(self.score(answer, frame.to_frame(pts), parse_solution(s)))
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


fgrpr_precision_reward = FGRPRPrecisionReward()
count_format_reward = CountFormatReward()
binary_count_reward = BinaryCountReward()
point_f1_reward = PointF1Reward()
point_consistency_reward = PointConsistencyReward()

_FACTORIES = {
    "fgrpr": FGRPRPrecisionReward,
    "format": CountFormatReward,
    "answer_format": lambda **kw: CountFormatReward(
        **{"require_think": False, "name": "answer_format", **kw}
    ),
    "binary": BinaryCountReward,
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
