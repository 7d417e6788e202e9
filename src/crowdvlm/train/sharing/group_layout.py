"""Where TRL 1.16 puts the G completions of a prompt, and whether that leaves group sharing anything to share.

``RepeatSampler`` repeats each prompt ``num_generations`` (G) times in a row; each process takes
``per_device_train_batch_size`` (b) consecutive rows per micro-step, and the reference, old-policy and training
passes run on b rows at a time. With ``steps_per_generation`` > 1, TRL shuffles the generation batch before
cutting it into micro-batches. So :class:`~crowdvlm.train.sharing.trainer.GroupSharedGRPOTrainer` shares a
whole group only when b is a multiple of G and ``steps_per_generation`` is 1. With b = 1 (the paper's layout:
8 GPUs x 1 x 2 accumulation steps) every forward holds one row and nothing is shared.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def group_layout_problem(
    per_device_train_batch_size: int, num_generations: int, steps_per_generation: int
) -> str | None:
    """Why this layout splits GRPO groups across forwards, with the setting to change; ``None`` when it does not.

    >>> group_layout_problem(8, 8, 1) is None
    True
    >>> print(group_layout_problem(1, 8, 2))
    per_device_train_batch_size 1 holds 1 row per forward: nothing of a group of num_generations 8 to share; set --per_device_train_batch_size 8 --steps_per_generation 1 (and divide gradient_accumulation_steps by 8 to keep the batch)
    """
    b, g = per_device_train_batch_size, num_generations
    fix = f"set --per_device_train_batch_size {g * max(1, round(b / g))} --steps_per_generation 1"
    if b % g:
        if b == 1:
            what = f"holds 1 row per forward: nothing of a group of num_generations {g} to share"
        else:
            what = (
                f"is not a multiple of num_generations {g}: groups are split between forwards and processes"
            )
        keep = f" (and divide gradient_accumulation_steps by {g // b} to keep the batch)" if b < g else ""
        return f"per_device_train_batch_size {b} {what}; {fix}{keep}"
    if steps_per_generation > 1:
        return (
            f"steps_per_generation {steps_per_generation} shuffles each generation batch across micro-batches, "
            "so each forward holds parts of several groups; set --steps_per_generation 1"
        )
    return None


def warn_if_groups_split(training, share_prompt: bool) -> str | None:
    """Log a warning (and return it) when group sharing is on and the layout leaves it little or nothing.

    Args:
        training: the parsed ``trl.GRPOConfig`` (its ``steps_per_generation`` already resolved by TRL).
        share_prompt: whether the run uses ``GroupSharedGRPOTrainer``.
    """
    if not share_prompt:
        return None
    problem = group_layout_problem(
        training.per_device_train_batch_size, training.num_generations, training.steps_per_generation or 1
    )
    if problem is not None:
        logger.warning("group sharing will save little: %s (see docs/cluster.md)", problem)
    return problem
