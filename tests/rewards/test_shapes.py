"""Precision rewards beyond FGRPR (ratio, fgrpr_tol, gaussian, rank): table-driven against hand-computed values,
then the properties they were designed for (no cliff, symmetry in ratio, monotonicity, partial credit at
small counts, rank signal in all-wrong groups, grouping as TRL calls rewards)."""

import math
import pickle

import pytest

from crowdvlm.rewards import (
    REWARDS,
    build_reward,
    fgrpr_precision,
    fgrpr_tolerance_precision,
    gaussian_precision,
    group_rank_scores,
    ratio_precision,
)

T = "<think>x</think>"
NEW = ("ratio", "fgrpr_tol", "gaussian", "rank")

# completion, truth, ratio, fgrpr_tol, gaussian (defaults: tau 0.5, tolerance 1.5, rel_sigma 0.25, min_sigma 1)
TABLE = [
    (f"{T}<answer>0</answer>", 0, 1.5, 1.5, 1.5),  # y = 0, correct
    (f"{T}<answer>1</answer>", 0, 1.5 * 0.25, 1.5 - 0.5 / 1.5, 1.5 * math.exp(-0.5)),  # y = 0, off by one
    (f"{T}<answer>2</answer>", 0, 1.5 / 9, 0.0, 1.5 * math.exp(-2)),  # ratio 3 -> exp(-2 log 3)
    (f"{T}<answer>1</answer>", 1, 1.5, 1.5, 1.5),  # y = 1
    (f"{T}<answer>0</answer>", 1, 1.5 * 0.25, 1.5 - 0.5 / 1.5, 1.5 * math.exp(-0.5)),
    (f"{T}<answer>2</answer>", 1, 1.5 * (2 / 3) ** 2, 1.5 - 0.5 / 1.5, 1.5 * math.exp(-0.5)),
    (f"{T}<answer>3</answer>", 2, 1.5 * (3 / 4) ** 2, 1.5 - 0.5 / 1.5, 1.5 * math.exp(-0.5)),  # y = 2, +1
    (f"{T}<answer>5</answer>", 4, 1.5 * (5 / 6) ** 2, 1.25, 1.5 * math.exp(-0.5)),  # = FGRPR from y = 3 on
    (
        f"{T}<answer>20</answer>",
        22,
        1.5 * (21 / 23) ** 2,
        1.5 - 2 / 22,
        1.5 * math.exp(-0.5 * (2 / 5.5) ** 2),
    ),
    (f"{T}<answer>11</answer>", 22, 1.5 * (12 / 23) ** 2, 0.0, 1.5 * math.exp(-2)),  # FGRPR's edge
    (f"{T}<answer>10</answer>", 100, 1.5 * (11 / 101) ** 2, 0.0, 1.5 * math.exp(-0.5 * 3.6**2)),  # 90 % off
    (f"{T}<answer>999999999999</answer>", 5, 1.5 * (6 / 1e12) ** 2, 0.0, 0.0),  # huge answer (12 digits)
    (f"{T}<answer>1000</answer>", 1000, 1.5, 1.5, 1.5),
    (f"{T}<answer>9999999999999</answer>", 5, 0.0, 0.0, 0.0),  # 13 digits: unparseable by design
    ("garbage", 5, 0.0, 0.0, 0.0),
    ("", 0, 0.0, 0.0, 0.0),
    ("x" * 100_000, 5, 0.0, 0.0, 0.0),
    (f"{T}<answer>1,234</answer>", 1234, 0.0, 0.0, 0.0),  # strict by default, as FGRPR
]


@pytest.mark.parametrize(("completion", "truth", "ratio", "tol", "gauss"), TABLE)
def test_reward_table(completion, truth, ratio, tol, gauss):
    assert REWARDS["ratio"]([completion], solution=[truth]) == [pytest.approx(ratio, rel=1e-9, abs=1e-12)]
    assert REWARDS["fgrpr_tol"]([completion], solution=[truth]) == [pytest.approx(tol)]
    assert REWARDS["gaussian"]([completion], solution=[truth]) == [pytest.approx(gauss, abs=1e-12)]


@pytest.mark.parametrize("truth", [0, 1, 5, 29, 999])
def test_ratio_symmetric_in_ratio(truth):
    """A k-fold overcount of truth + 1 scores as a k-fold undercount; FGRPR's window is not symmetric."""
    for factor in (1.5, 2, 3, 5):
        over, under = factor * (truth + 1) - 1, (truth + 1) / factor - 1
        assert ratio_precision(over, truth) == pytest.approx(ratio_precision(under, truth))
    assert ratio_precision(59, 29) == pytest.approx(ratio_precision(14, 29))  # whole counts, factor 2
    assert fgrpr_precision(51, 100) > 0.9 and fgrpr_precision(196, 100) == 0.0  # ~1.96x under vs over


@pytest.mark.parametrize("name", ["ratio", "fgrpr_tol", "gaussian"])
@pytest.mark.parametrize("truth", [0, 1, 3, 22, 300])
def test_monotone_in_error(name, truth):
    score = {
        "ratio": ratio_precision,
        "fgrpr_tol": fgrpr_tolerance_precision,
        "gaussian": gaussian_precision,
    }[name]
    up = [score(truth + d, truth) for d in range(3 * truth + 5)]
    down = [score(truth - d, truth) for d in range(truth + 1)]
    for side in (up, down):
        assert side[0] == 1.5
        assert all(a >= b for a, b in zip(side, side[1:], strict=False)), side
    assert score(None, truth) == 0.0


@pytest.mark.parametrize("truth", [40, 100, 1000])
def test_no_cliff(truth):
    """The ratio and Gaussian rewards change by little between neighbouring answers; FGRPR jumps by 1 at 50 %."""
    preds = range(0, 4 * truth)

    def max_step(f):
        return max(abs(f(p + 1, truth) - f(p, truth)) for p in preds)

    assert max_step(fgrpr_precision) >= 0.99
    assert max_step(ratio_precision) < 3.0 / truth  # derivative of the ratio reward <= 3 / (y + 1)
    assert max_step(gaussian_precision) < 0.25  # ~1 / (rel_sigma * y) * 1.5 * exp(-0.5)


def test_ratio_gives_signal_where_fgrpr_gives_none():
    """An all-wrong group (every answer > 50 % off): FGRPR scores all 0, the ratio reward ranks them."""
    group = [f"<answer>{n}</answer>" for n in (5, 10, 20, 30)]
    assert len(set(REWARDS["fgrpr"](group, [100] * 4))) == 1
    ratio = REWARDS["ratio"](group, [100] * 4)
    assert ratio == sorted(ratio) and len(set(ratio)) == 4


def test_tolerance_equals_fgrpr_for_large_counts_and_parameters_are_fields():
    for truth in (3, 10, 22, 500):
        for pred in range(0, 2 * truth + 2):
            assert fgrpr_tolerance_precision(pred, truth) == pytest.approx(fgrpr_precision(pred, truth))
    wide = build_reward("fgrpr_tol", tolerance=3.5)
    assert wide(["<answer>4</answer>"], [1]) == [pytest.approx(1.5 - 0.5 * 3 / 3.5)]
    assert build_reward("ratio", tau=1.0)(["<answer>1</answer>"], [0]) == [pytest.approx(0.75)]
    assert build_reward("gaussian", rel_sigma=0.5)(["<answer>15</answer>"], [20]) == [
        pytest.approx(1.5 * math.exp(-0.125))
    ]
    with pytest.raises(ValueError, match="ratio tau must be a number > 0"):
        build_reward("ratio", tau=0)


# ---------------------------------------------------------------- rank within the group


@pytest.mark.parametrize(
    ("errors", "scores"),
    [
        ([0, 1, 2, 3], [1.0, 2 / 3, 1 / 3, 0.0]),
        ([5, 5, 5, 5], [0.5] * 4),  # a zero-variance group stays zero-variance
        ([7], [0.5]),
        ([math.inf, 90, math.inf, 80], [1 / 6, 2 / 3, 1 / 6, 1.0]),  # unparseable ranks last
        ([2, 0, 2], [0.25, 1.0, 0.25]),
    ],
)
def test_group_rank_scores(errors, scores):
    assert group_rank_scores(errors) == pytest.approx(scores)


def test_rank_groups_by_id_as_trl_passes_them():
    """TRL: one call per generation batch, the G completions of each prompt contiguous, dataset columns as kwargs."""
    answers = [50, 10, 30, 20, 3, 3, 4, 9]
    completions = [[{"role": "assistant", "content": f"<answer>{a}</answer>"}] for a in answers]
    solution = [100] * 4 + [3] * 4
    ids = ["img-a"] * 4 + ["img-b"] * 4
    scores = REWARDS["rank"](completions, solution=solution, id=ids, prompts=[["p"]] * 8, trainer_state=None)
    assert scores == pytest.approx([1.5, 0.0, 1.0, 0.5, 1.25, 1.25, 0.5, 0.0])


def test_rank_groups_split_on_id_even_when_solutions_match():
    scores = REWARDS["rank"](
        ["<answer>1</answer>", "<answer>3</answer>"] * 2, solution=[2] * 4, id=list("aabb")
    )
    assert scores == [0.75] * 4  # each pair is a tie (|1-2| = |3-2|), not one group of four
    one_group = REWARDS["rank"](["<answer>2</answer>", "<answer>3</answer>", "<answer>9</answer>"], [2] * 3)
    assert one_group == pytest.approx([1.5, 0.75, 0.0])  # no id: same prompt and solution = one group


def test_rank_without_id_splits_on_prompt():
    scores = REWARDS["rank"](
        ["<answer>2</answer>", "<answer>5</answer>"] * 2, solution=[2] * 4, prompts=["p1", "p1", "p2", "p2"]
    )
    assert scores == [1.5, 0.0, 1.5, 0.0]


def test_new_rewards_registered_picklable_and_length_checked():
    for name in NEW:
        reward = REWARDS[name]
        assert reward.__name__ == name
        clone = pickle.loads(pickle.dumps(build_reward(name)))
        batch = ["<answer>3</answer>", "<answer>4</answer>"]
        assert clone(batch, [3, 3], id=["a", "a"]) == reward(batch, [3, 3], id=["a", "a"])
        with pytest.raises(ValueError, match="2 completions but 1 solutions"):
            reward(batch, solution=[1])
