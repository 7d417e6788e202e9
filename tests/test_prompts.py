"""The paper's prompts, verbatim, and the per-dataset questions."""

from __future__ import annotations

import pytest

from crowdvlm.prompts import (
    EVAL_PROMPT_TEMPLATE,
    TRAIN_PROMPT_TEMPLATE,
    build_prompt,
    dataset_question,
    question_for,
)

PAPER_TRAIN = (
    "{Question}. First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags and the answer should be a number only."
)
PAPER_EVAL = (
    "{Question} First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags."
)


def test_templates_are_the_papers_verbatim():
    assert TRAIN_PROMPT_TEMPLATE == PAPER_TRAIN
    assert EVAL_PROMPT_TEMPLATE == PAPER_EVAL


@pytest.mark.parametrize(
    "question",
    ["Please count the number of sheep in the image.", "How many people are in the image?", "Count"],
)
def test_verbatim_reproduces_the_papers_strings(question):
    assert build_prompt(question, "train", "think", verbatim=True) == PAPER_TRAIN.format(Question=question)
    assert build_prompt(question, "eval", "think", verbatim=True) == PAPER_EVAL.format(Question=question)


@pytest.mark.parametrize(
    "question,expected_start",
    [
        ("How many people are in the image?", "How many people are in the image? First output"),
        ("Please count the sheep.", "Please count the sheep. First output"),  # no ".." as in the original
        ("Count the sheep", "Count the sheep. First output"),  # the paper's "." where it is needed
        ("  How many cars?  ", "How many cars? First output"),
    ],
)
def test_train_template_adds_the_period_only_when_missing(question, expected_start):
    prompt = build_prompt(question, "train", "think")
    assert prompt.startswith(expected_start)
    assert prompt.endswith("and the answer should be a number only.")


@pytest.mark.parametrize(
    "template,output,must_have,must_not_have",
    [
        ("train", "think", ["<think> </think>", "number only"], []),
        ("eval", "think", ["<think> </think>", "<answer> </answer> tags."], ["number only"]),
        ("train", "answer-only", ["<answer>3</answer>", "number only"], ["<think>"]),
        ("eval", "answer-only", ["<answer>3</answer>"], ["<think>"]),
    ],
)
def test_output_instructions(template, output, must_have, must_not_have):
    prompt = build_prompt("How many dots are in the image?", template, output)
    assert prompt.startswith("How many dots are in the image? ")
    for text in must_have:
        assert text in prompt
    for text in must_not_have:
        assert text not in prompt


@pytest.mark.parametrize("template,output", [("test", "think"), ("train", "cot"), ("eval", "")])
def test_unknown_names_are_refused(template, output):
    with pytest.raises(ValueError, match="unknown prompt"):
        build_prompt("How many?", template, output)


@pytest.mark.parametrize(
    "dataset,question",
    [
        ("shanghaitech", "How many people are in the image?"),
        ("nwpu", "How many people are in the image?"),
        ("sheep", "How many sheep are in the image?"),
        ("vehicles", "How many vehicles are in the image?"),
    ],
)
def test_dataset_questions(dataset, question):
    assert dataset_question(dataset) == question


def test_question_for_and_unknown_dataset():
    assert question_for("sea shells") == "How many sea shells are in the image?"
    with pytest.raises(ValueError):
        question_for("  ")
    with pytest.raises(KeyError, match="no question known"):
        dataset_question("imagenet")
