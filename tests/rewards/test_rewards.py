"""FGRPR precision, strict format and binary rewards: table-driven, against hand-computed values."""

import pickle

import pytest

from crowdvlm.rewards import (
    POINT_REWARDS,
    REWARDS,
    binary_count_reward,
    build_reward,
    count_format_reward,
    fgrpr_precision,
    fgrpr_precision_reward,
)

T = "<think>x</think>"

# completion, truth, fgrpr (strict), format, binary
TABLE = [
    (f"{T}<answer>20</answer>", 22, 1.5 - 2 / 22, 1.0, 0.0),  # the paper's worked example (2.41 total)
    (f"{T}<answer>22</answer>", 22, 1.5, 1.0, 1.0),
    (f"{T}\n<answer>22</answer>", 22, 1.5, 1.0, 1.0),
    (f"{T}<answer> 22 </answer>", 22, 0.0, 0.0, 0.0),  # strict: spaces inside the tags fail
    (f"{T}<answer>22 people</answer>", 22, 0.0, 0.0, 0.0),
    (f"\n{T}<answer>22</answer>", 22, 1.5, 0.0, 1.0),  # leading newline: format fails
    (f"{T}<answer>22</answer> done", 22, 1.5, 0.0, 1.0),  # trailing text: format fails
    ("<answer>5</answer>", 5, 1.5, 0.0, 1.0),  # no think block
    (f"{T}<answer>11</answer>", 22, 0.0, 1.0, 0.0),  # rel exactly 0.5: outside the band
    (f"{T}<answer>12</answer>", 22, 1.5 - 10 / 22, 1.0, 0.0),  # rel 0.4545
    (f"{T}<answer>32</answer>", 22, 1.5 - 10 / 22, 1.0, 0.0),  # over-count, same rel
    (f"{T}<answer>33</answer>", 22, 0.0, 1.0, 0.0),  # over-count, rel 0.5
    (f"{T}<answer>0</answer>", 0, 1.5, 1.0, 1.0),  # y = 0: our documented choice
    (f"{T}<answer>3</answer>", 0, 0.0, 1.0, 0.0),
    (f"{T}<answer>1</answer>", 1, 1.5, 1.0, 1.0),
    (f"{T}<answer>2</answer>", 1, 0.0, 1.0, 0.0),  # y = 1: only exact earns r_p
    (f"{T}<answer>1</answer>", 2, 0.0, 1.0, 0.0),  # y = 2: off by one is rel 0.5
    (f"{T}<answer>3</answer>", 2, 0.0, 1.0, 0.0),
    (f"{T}<answer>2</answer>", 3, 1.5 - 1 / 3, 1.0, 0.0),  # y = 3 accepts 2..4
    (f"{T}<answer>4</answer>", 3, 1.5 - 1 / 3, 1.0, 0.0),
    (f"{T}<answer>5</answer>", 3, 0.0, 1.0, 0.0),
    (f"{T}<answer>1100</answer>", 1000, 1.4, 1.0, 0.0),  # thousands
    (f"{T}<answer>1499</answer>", 1000, 1.5 - 0.499, 1.0, 0.0),  # just under the band edge
    (f"{T}<answer>1500</answer>", 1000, 0.0, 1.0, 0.0),
    (f"{T}<answer>501</answer>", 1000, 1.5 - 0.499, 1.0, 0.0),
    (f"{T}<answer>4</answer><answer>5</answer>", 5, 1.5 - 0.2, 0.0, 0.0),  # first answer counts
    ("garbage", 5, 0.0, 0.0, 0.0),
    ("x" * 100_000, 5, 0.0, 0.0, 0.0),
    (f"{T}<answer>1,234</answer>", 1234, 0.0, 0.0, 0.0),  # separators are not strict digits
]


@pytest.mark.parametrize(("completion", "truth", "fgrpr", "fmt", "binary"), TABLE)
def test_reward_table(completion, truth, fgrpr, fmt, binary):
    assert fgrpr_precision_reward([completion], solution=[truth]) == [pytest.approx(fgrpr)]
    assert count_format_reward([completion], solution=[truth]) == [fmt]
    assert binary_count_reward([completion], solution=[truth]) == [binary]


@pytest.mark.parametrize(
    ("completion", "truth", "strict", "lenient"),
    [
        (f"{T}<answer> 22 </answer>", 22, 0.0, 1.5),
        (f"{T}<answer>22 people</answer>", 22, 0.0, 1.5),
        (f"{T}<answer>1,234</answer>", 1234, 0.0, 1.5),
        ("I think there are 20 of them", 22, 0.0, 1.5 - 2 / 22),
    ],
)
def test_lenient_option(completion, truth, strict, lenient):
    assert build_reward("fgrpr", strict=True)([completion], [truth]) == [pytest.approx(strict)]
    assert build_reward("fgrpr", strict=False)([completion], [truth]) == [pytest.approx(lenient)]
    assert build_reward("binary", strict=False)([completion], [truth]) == [1.0 if lenient == 1.5 else 0.0]


@pytest.mark.parametrize("solution", [22, "22", "22.0", " 22 ", "<answer>22</answer>", 22.0])
def test_solution_forms_agree(solution):
    completion = f"{T}<answer>20</answer>"
    assert fgrpr_precision_reward([completion], solution=[solution]) == [pytest.approx(1.5 - 2 / 22)]
    assert binary_count_reward([f"{T}<answer>22</answer>"], solution=[solution]) == [1.0]


@pytest.mark.parametrize("bad", [None, "many", -3, "-3", 2.5, "2.5", float("nan"), True, [22]])
def test_unreadable_solution_is_a_data_error(bad):
    # the rule itself is tested in test_counts.py; here: the rewards apply it
    with pytest.raises(ValueError, match="solution"):
        fgrpr_precision_reward(["<answer>1</answer>"], solution=[bad])


def test_conversational_completions_and_batch():
    completions = [
        [{"role": "assistant", "content": f"{T}<answer>22</answer>"}],
        [{"role": "assistant", "content": [{"type": "text", "text": f"{T}<answer>11</answer>"}]}],
    ]
    assert fgrpr_precision_reward(completions, solution=[22, 22]) == [1.5, 0.0]
    assert count_format_reward(completions, solution=[22, 22]) == [1.0, 1.0]
    assert binary_count_reward(completions, solution=[22, 22], extra_column=["ignored", "x"]) == [1.0, 0.0]


def test_band_and_ceiling_are_parameters():
    wide = build_reward("fgrpr", band=0.8, ceiling=2.0)
    assert wide([f"{T}<answer>11</answer>"], [22]) == [pytest.approx(1.5)]
    assert fgrpr_precision(11, 22, band=0.8, ceiling=2.0) == pytest.approx(1.5)
    assert fgrpr_precision(0, 0, ceiling=2.0) == 2.0


def test_answer_only_format():
    reward = REWARDS["answer_format"]
    assert reward(["<answer>5</answer>", f"{T}<answer>5</answer>"], [5, 5]) == [1.0, 0.0]


def test_registry_names_picklable_and_logged_by_name():
    assert {"fgrpr", "format", "binary"} <= set(REWARDS)
    for name, reward in REWARDS.items():
        assert reward.__name__ == name
        clone = pickle.loads(pickle.dumps(reward))
        assert clone.__name__ == name
        if name in POINT_REWARDS:  # they also need point columns: tests/pointing/test_pointing.py
            continue
        assert clone(["<answer>3</answer>"], [3]) == reward(["<answer>3</answer>"], [3])
    with pytest.raises(KeyError, match="valid rewards: answer_format, binary, fgrpr, "):
        build_reward("accuracy")


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        fgrpr_precision_reward(["a", "b"], solution=[1])
