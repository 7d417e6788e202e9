"""thinking_text: the reasoning of an answer, read by crowdvlm.parsing (predict --show-thinking and the app)."""

from __future__ import annotations

import pytest

from crowdvlm.evaluate import cli
from crowdvlm.parsing import thinking_text


@pytest.mark.parametrize(
    ("text", "thinking"),
    [
        ("<think> three rows of four </think><answer>12</answer>", "three rows of four"),
        ("<think>a\nb</think><answer>2</answer>", "a\nb"),  # spans lines
        ("<think>cut off by the token budget", "cut off by the token budget"),  # unclosed: to the end
        ("<think>one</think><think>two</think>", "one"),  # the first block
        ("<think></think><answer>3</answer>", ""),
        ("<answer>12</answer>", None),
        ("", None),
        ([{"role": "assistant", "content": "<think>why</think><answer>1</answer>"}], "why"),  # TRL's form
    ],
)
def test_thinking_text(text, thinking):
    assert thinking_text(text) == thinking


def test_the_cli_name_is_the_same_reader():
    assert cli.thinking_of is thinking_text
    assert cli.DEFAULT_QUESTION == "How many people are in the image?"
