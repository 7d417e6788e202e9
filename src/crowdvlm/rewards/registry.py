"""The registry of rewards by name: the only place a new reward is added (docs/architecture.md says how).

>>> sorted(POINT_REWARDS)
['point_consistency', 'point_count', 'point_f1', 'point_fgrpr']
>>> build_reward("fgrpr", band=0.3).band
0.3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crowdvlm.parsing import MAX_POINTS
from crowdvlm.rewards.count import BinaryCountReward, CountFormatReward, CountReward, FGRPRPrecisionReward
from crowdvlm.rewards.points import PointConsistencyReward, PointCountReward, PointF1Reward, PointReward
from crowdvlm.rewards.shapes import (
    FGRPRToleranceReward,
    GaussianPrecisionReward,
    GroupRankReward,
    RatioPrecisionReward,
)

__all__ = ["COUNT_REWARDS", "POINT_REWARDS", "REWARDS", "build_reward"]

_COUNT_FACTORIES: dict[str, Callable[..., CountReward]] = {
    "fgrpr": FGRPRPrecisionReward,
    "format": CountFormatReward,
    # The format reward for the answer-only prompt (no <think> block), used by tiny models that cannot reason.
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
_POINT_FACTORIES: dict[str, Callable[..., PointReward]] = {
    "point_f1": PointF1Reward,
    "point_consistency": PointConsistencyReward,
    "point_count": lambda **kw: _point_count(**{"name": "point_count", **kw}),
    "point_fgrpr": lambda **kw: _point_count(**{"base": "fgrpr", **kw}),
}


def _point_count(
    base: str = "fgrpr", max_points: int = MAX_POINTS, name: str | None = None, **base_params: Any
) -> PointCountReward:
    """The count reward registered as ``base`` (with ``base_params``) scored on the pointed count."""
    if base not in _COUNT_FACTORIES:
        raise ValueError(
            f"point_count base must be a count reward ({', '.join(sorted(_COUNT_FACTORIES))}), got {base!r}"
        )
    return PointCountReward(_COUNT_FACTORIES[base](**base_params), max_points=max_points, name=name)


_FACTORIES = {**_COUNT_FACTORIES, **_POINT_FACTORIES}

#: The rewards that score a count answer (any of them can be the ``base`` of ``point_count``).
COUNT_REWARDS = frozenset(_COUNT_FACTORIES)
#: The rewards that need point columns (``output_format: points``).
POINT_REWARDS = frozenset(_POINT_FACTORIES)


def build_reward(name: str, **params: Any) -> CountReward | PointReward:
    """Build the reward registered as ``name`` with non-default parameters (e.g. ``band=0.3``).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
        ValueError: a parameter breaks its rule (:mod:`crowdvlm.rewards.params`).
        TypeError: a parameter the reward does not take.
    """
    if name not in _FACTORIES:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**params)


#: Short name -> reward with default parameters.
REWARDS: dict[str, CountReward | PointReward] = {name: build_reward(name) for name in _FACTORIES}
