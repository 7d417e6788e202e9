"""Reward functions for GRPO on counting, by concern:

- :mod:`~crowdvlm.rewards.count`: the paper's FGRPR precision, the strict format reward, the 0/1 baseline;
- :mod:`~crowdvlm.rewards.shapes`: precision rewards beyond FGRPR (ratio, FGRPR with a tolerance, Gaussian, rank);
- :mod:`~crowdvlm.rewards.points`: rewards for counting by pointing;
- :mod:`~crowdvlm.rewards.params`: the one set of rules for their parameters;
- :mod:`~crowdvlm.rewards.registry`: every reward by name (``REWARDS``, ``build_reward``).

The paper's reward is ``fgrpr + format`` (weights 1 and 1, so at most 2.5); its baseline ``binary + format``.
"""

from crowdvlm.rewards.count import (
    BinaryCountReward,
    CountFormatReward,
    CountReward,
    FGRPRPrecisionReward,
    binary_count_reward,
    count_format_reward,
    fgrpr_precision,
    fgrpr_precision_reward,
    is_count_format,
)
from crowdvlm.rewards.points import (
    PointConsistencyReward,
    PointCountReward,
    PointF1Reward,
    PointReward,
    point_consistency_reward,
    point_f1_reward,
)
from crowdvlm.rewards.registry import COUNT_REWARDS, POINT_REWARDS, REWARDS, build_reward
from crowdvlm.rewards.shapes import (
    FGRPRToleranceReward,
    GaussianPrecisionReward,
    GroupRankReward,
    RatioPrecisionReward,
    fgrpr_tolerance_precision,
    gaussian_precision,
    group_rank_scores,
    ratio_precision,
    ratio_precision_reward,
)

__all__ = [
    "COUNT_REWARDS",
    "POINT_REWARDS",
    "REWARDS",
    "BinaryCountReward",
    "CountFormatReward",
    "CountReward",
    "FGRPRPrecisionReward",
    "FGRPRToleranceReward",
    "GaussianPrecisionReward",
    "GroupRankReward",
    "PointConsistencyReward",
    "PointCountReward",
    "PointF1Reward",
    "PointReward",
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
