"""Precision rewards beyond FGRPR (docs/rewards.md compares their shapes): ratio, FGRPR with an absolute
tolerance, Gaussian, rank within the group. They share FGRPR's ceiling (1.5), so any of them can replace
``fgrpr`` in a recipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from crowdvlm.counts import read_count
from crowdvlm.parsing import completion_text, parse_count
from crowdvlm.rewards.count import CountReward
from crowdvlm.rewards.params import check_params

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


class RatioPrecisionReward(CountReward):
    """The ratio reward (see :func:`ratio_precision`).

    >>> ratio_precision_reward(["<answer>22</answer>", "<answer>0</answer>"], solution=[22, 0])
    [1.5, 1.5]
    """

    def __init__(self, tau: float = 0.5, ceiling: float = 1.5, strict: bool = True, name: str = "ratio"):
        check_params(name, tau=tau, ceiling=ceiling, strict=strict, name=name)
        self.tau, self.ceiling, self.strict = tau, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        return ratio_precision(parse_count(text, strict=self.strict), truth, self.tau, self.ceiling)


class FGRPRToleranceReward(CountReward):
    """FGRPR with an absolute tolerance for small counts (see :func:`fgrpr_tolerance_precision`).

    >>> FGRPRToleranceReward()(["<answer>2</answer>", "<answer>20</answer>"], solution=[1, 22])
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
        check_params(name, band=band, tolerance=tolerance, ceiling=ceiling, strict=strict, name=name)
        self.band, self.tolerance, self.ceiling, self.strict = band, tolerance, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        pred = parse_count(text, strict=self.strict)
        return fgrpr_tolerance_precision(pred, truth, self.band, self.tolerance, self.ceiling)


class GaussianPrecisionReward(CountReward):
    """Gaussian precision (see :func:`gaussian_precision`).

    >>> GaussianPrecisionReward()(["<answer>10</answer>", "none"], solution=[10, 10])
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
        check_params(
            name, rel_sigma=rel_sigma, min_sigma=min_sigma, ceiling=ceiling, strict=strict, name=name
        )
        self.rel_sigma, self.min_sigma, self.ceiling, self.strict = rel_sigma, min_sigma, ceiling, strict
        self.__name__ = name

    def score(self, text: str, truth: int) -> float:
        pred = parse_count(text, strict=self.strict)
        return gaussian_precision(pred, truth, self.rel_sigma, self.min_sigma, self.ceiling)


class GroupRankReward(CountReward):
    """Rank within the group by absolute error (see :func:`group_rank_scores`), times ``ceiling``.

    For groups where every answer is far off (FGRPR gives all of them 0, so GRPO learns nothing) the
    closest answer still wins. TRL calls a reward once per generation batch, with the ``num_generations``
    completions of each prompt next to each other; a group is a run of consecutive rows with the same
    ``id`` (the manifest column TRL passes on), or, without ``id``, the same prompt and solution.
    Unparseable answers rank last. Under DDP each process ranks the part of a group it holds (docs/rewards.md).

    >>> GroupRankReward()(["<answer>50</answer>", "<answer>10</answer>", "x", "<answer>3</answer>"],
    ...                      solution=[100] * 3 + [3], id=["a", "a", "a", "b"])
    [1.5, 0.75, 0.0, 0.75]
    """

    def __init__(self, ceiling: float = 1.5, strict: bool = True, name: str = "rank"):
        check_params(name, ceiling=ceiling, strict=strict, name=name)
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


ratio_precision_reward = RatioPrecisionReward()
