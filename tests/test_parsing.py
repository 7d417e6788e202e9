"""parse_count: the one reader of model answers, in strict (reward) and lenient (evaluation) modes."""

import pytest

from crowdvlm.parsing import completion_text, parse_count

CASES = [
    # text, strict, lenient
    ("<think>x</think><answer>22</answer>", 22, 22),
    ("<answer>0</answer>", 0, 0),
    ("<answer>007</answer>", 7, 7),
    ("<answer> 22 </answer>", None, 22),
    ("<answer>\n22\n</answer>", None, 22),
    ("<answer>22 people</answer>", None, 22),
    ("<answer>1,234</answer>", None, 1234),
    ("<answer>1 234</answer>", None, 1234),
    ("<answer>12,345,678</answer>", None, 12345678),
    ("<answer>22.5</answer>", None, 23),  # half up
    ("<answer>22.49</answer>", None, 22),
    ("<answer>0.5</answer>", None, 1),
    ("<answer>-5</answer>", None, None),
    ("<answer></answer>", None, None),
    ("<answer>   </answer>", None, None),
    ("<answer>many</answer>", None, None),
    ("<answer>4</answer><answer>5</answer>", 4, 4),  # the first block counts
    ("<answer>x</answer><answer>5</answer>", 5, None),  # strict: first DIGITS block; lenient: first block
    ("There are 17 sheep in the picture.", None, 17),
    ("first 3 then 9", None, 9),  # no tags: the last number
    ("I count -3", None, None),
    ("<answer>22", None, 22),  # unclosed tag (truncated): falls back to the last number
    ("<answer>" + "1" * 12 + "</answer>", 111111111111, 111111111111),
    ("<answer>" + "1" * 13 + "</answer>", None, None),  # longer than 12 digits
    ("<answer>" + "1" * 200, None, None),  # digit loop clipped at the token limit
    ("", None, None),
    ("no number here", None, None),
]


@pytest.mark.parametrize(("text", "strict", "lenient"), CASES)
def test_parse_count_modes(text, strict, lenient):
    assert parse_count(text, strict=True) == strict
    assert parse_count(text, strict=False) == lenient


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>8</answer>",
        [{"role": "assistant", "content": "<answer>8</answer>"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "<answer>8</answer>"}]}],
        [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "<answer>"}, {"type": "text", "text": "8</answer>"}],
            }
        ],
    ],
)
def test_conversational_completions(completion):
    assert completion_text(completion) == "<answer>8</answer>"
    assert parse_count(completion, strict=True) == 8


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        12,
        ["<answer>", None, 3],
        "<answer>" * 20_000,
        "9" * 100_000,
        "<think>" + "x" * 100_000,
        ("<answer>1 " * 10_000) + "</answer>",
        "\x00\ufffd<answer>\u0663</answer>",  # Arabic-Indic digit: not an ASCII count
    ],
)
def test_never_raises(garbage):
    for strict in (True, False):
        result = parse_count(garbage, strict=strict)
        assert result is None or (isinstance(result, int) and 0 <= result < 10**12)


def test_long_text_with_answer_at_end():
    text = "x" * 100_000 + "<answer>42</answer>"
    assert parse_count(text, strict=True) == 42
    assert parse_count(text) == 42
