"""Point rewards (counting by pointing): they score the points a model lists, read with
:func:`crowdvlm.parsing.parse_points`, against the true points of a point training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crowdvlm.counts import read_count
from crowdvlm.parsing import MAX_POINTS, PointAnswer, parse_points
from crowdvlm.pointing.targets import frame_of_row
from crowdvlm.rewards.count import CountReward
from crowdvlm.rewards.params import check_params

# --------------------------------------------------------------------------- point rewards (counting by pointing)


class PointReward:
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


class PointF1Reward(PointReward):
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
        check_params(name, radius=radius, max_points=max_points, name=name)
        self.radius, self.max_points = radius, max_points
        self.__name__ = name

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        from crowdvlm.pointing.matching import match_points

        return match_points(answer.points, truth_points, self.radius).f1


class PointConsistencyReward(PointReward):
    """``value`` iff the stated ``<answer>`` count equals the number of points listed, else 0.

    >>> point_consistency_reward(['[{"point_2d": [1, 2]}]<answer>1</answer>', '[{"point_2d": [1, 2]}]<answer>2</answer>'],
    ...                          solution=[1, 1], points=[[[1, 2]]] * 2, image_size=[[9, 9]] * 2, frame_size=[[9, 9]] * 2)
    [1.0, 0.0]
    """

    def __init__(self, value: float = 1.0, name: str = "point_consistency"):
        check_params(name, value=value, name=name)
        self.value = value
        self.__name__ = name

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        return self.value if answer.consistent else 0.0


class PointCountReward(PointReward):
    """A count reward (``base``, e.g. FGRPR) scored on the count read from the points, not the stated one.

    The count is the number of points inside the frame; the base reward scores it as if the model had answered
    ``<answer>count</answer>``, so every count reward combines with pointing (by name: ``point_count`` with
    ``base: NAME`` in the registry).

    >>> from crowdvlm.rewards.count import FGRPRPrecisionReward
    >>> reward = PointCountReward(FGRPRPrecisionReward())
    >>> reward(['[{"point_2d": [1, 1]}, {"point_2d": [5, 5]}]<answer>7</answer>'], solution=[2],
    ...        points=[[[1, 1], [4, 4]]], image_size=[[9, 9]], frame_size=[[9, 9]])
    [1.5]
    """

    def __init__(self, base: CountReward, max_points: int = MAX_POINTS, name: str | None = None):
        name = name or f"point_{base.__name__}"
        check_params(name, max_points=max_points, name=name)
        self.base, self.max_points = base, max_points
        self.__name__ = name

    def score(self, answer: PointAnswer, truth_points: Any, truth: int) -> float:
        return self.base.score(f"<answer>{answer.count}</answer>", truth)


point_f1_reward = PointF1Reward()
point_consistency_reward = PointConsistencyReward()
