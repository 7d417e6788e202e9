"""The paper's prompts and the counting question asked for each dataset.

CrowdVLM-R1 uses two different prompts (in its released code, which builds on VLM-R1):

- training (``grpo_rec.py``)::

    "{Question}. First output the thinking process in <think> </think> tags and then output the final
    answer in <answer> </answer> tags and the answer should be a number only."

- evaluation (``test_rec_r1*.py``)::

    "{Question} First output the thinking process in <think> </think> tags and then output the final
    answer in <answer> </answer> tags."

Both are kept verbatim in :data:`PAPER_TEMPLATES`. :func:`build_prompt` picks one by name
(``template="train" | "eval"``) and an output instruction by name (``output="think"`` is the paper's,
``output="answer-only"`` asks for just ``<answer>N</answer>``, which is what a tiny model learns best;
``output="points"`` asks for one Qwen-style ``point_2d`` per object, then ``<answer>N</answer>``, see
``docs/pointing.md``).

**The "." quirk.** The paper's training template inserts "." after the question blindly, so a question that
already ends with "?" or "." becomes "...image?. First ..." or "...image.. First ...". By default
:func:`build_prompt` adds the "." only when the question does not already end with sentence punctuation
(``.``, ``?``, ``!``); ``verbatim=True`` reproduces the original string byte for byte.
"""

from __future__ import annotations

# The paper's two templates, verbatim.
TRAIN_PROMPT_TEMPLATE = (
    "{Question}. First output the thinking process in <think> </think> tags and then output the final "
    "answer in <answer> </answer> tags and the answer should be a number only."
)
EVAL_PROMPT_TEMPLATE = (
    "{Question} First output the thinking process in <think> </think> tags and then output the final "
    "answer in <answer> </answer> tags."
)
PAPER_TEMPLATES: dict[str, str] = {"train": TRAIN_PROMPT_TEMPLATE, "eval": EVAL_PROMPT_TEMPLATE}

# "points" (ours, counting by pointing): Qwen's grounding JSON, one point per object, then the count. The
# coordinates are in the frame the model family points in (crowdvlm.pointing.frame); the label is fixed.
POINT_LABEL = "object"
POINTS_INSTRUCTION = (
    f'Point to each one as JSON, [{{"point_2d": [x, y], "label": "{POINT_LABEL}"}}, ...], then output the '
    "number of points in <answer> </answer> tags"
)

# Output instructions: (template, output) -> the sentence that follows the question.
# "think" is the paper's (its train and eval wordings differ); "answer-only" is ours.
INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("train", "think"): TRAIN_PROMPT_TEMPLATE.removeprefix("{Question}. "),
    ("eval", "think"): EVAL_PROMPT_TEMPLATE.removeprefix("{Question} "),
    ("train", "answer-only"): (
        "Output only the final answer in <answer> </answer> tags, for example <answer>3</answer>, "
        "and the answer should be a number only."
    ),
    (
        "eval",
        "answer-only",
    ): "Output only the final answer in <answer> </answer> tags, for example <answer>3</answer>.",
    ("train", "points"): POINTS_INSTRUCTION + " and the answer should be a number only.",
    ("eval", "points"): POINTS_INSTRUCTION + ".",
}
TEMPLATES = ("train", "eval")
OUTPUTS = ("think", "answer-only", "points")

# What each dataset counts; the question is "How many <objects> are in the image?".
DATASET_OBJECTS: dict[str, str] = {
    "shanghaitech": "people",
    "shanghaitech-a": "people",
    "shanghaitech-b": "people",
    "fsc147": "objects",
    "ucf-qnrf": "people",
    "ucf-cc-50": "people",
    "jhu-crowd": "people",
    "nwpu": "people",
    "gcc": "people",
    "sheep": "sheep",
    "vehicles": "vehicles",
    "trancos": "vehicles",
    "carpk": "vehicles",
    "wheat": "wheat heads",
    "manatees": "manatees",
}
_SENTENCE_END = (".", "?", "!")


def question_for(objects: str) -> str:
    """The counting question for a kind of object.

    >>> question_for("people")
    'How many people are in the image?'
    >>> question_for("  sea shells ")
    'How many sea shells are in the image?'
    """
    objects = " ".join(objects.split())
    if not objects:
        raise ValueError("question_for: the object name is empty")
    return f"How many {objects} are in the image?"


def dataset_question(dataset: str) -> str:
    """The question for a named dataset (crowd datasets ask about people).

    >>> dataset_question("shanghaitech")
    'How many people are in the image?'
    """
    try:
        return question_for(DATASET_OBJECTS[dataset])
    except KeyError:
        known = ", ".join(sorted(DATASET_OBJECTS))
        raise KeyError(f"no question known for dataset {dataset!r}; known: {known}") from None


def build_prompt(
    problem: str, template: str = "train", output: str = "think", *, verbatim: bool = False
) -> str:
    """The text of the user turn: the question followed by the output instruction.

    Args:
        problem: the question, e.g. "How many people are in the image?".
        template: "train" (the paper's training wording) or "eval" (its evaluation wording).
        output: "think" (the paper's <think>...</think><answer>N</answer>), "answer-only" (<answer>N</answer>)
            or "points" (one ``{"point_2d": [x, y], ...}`` per object, then <answer>N</answer>).
        verbatim: with template="train", insert "." after the question even when it already ends with
            punctuation, exactly as the paper's code does.

    >>> build_prompt("How many sheep are in the image?", "eval", "answer-only")
    'How many sheep are in the image? Output only the final answer in <answer> </answer> tags, for example <answer>3</answer>.'
    >>> build_prompt("Count the sheep", "train").split(". First")[0]
    'Count the sheep'
    >>> build_prompt("Count the sheep.", "train", verbatim=True).startswith("Count the sheep.. First")
    True
    """
    if (template, output) not in INSTRUCTIONS:
        raise ValueError(
            f"unknown prompt template={template!r} / output={output!r}; templates: {TEMPLATES}, outputs: {OUTPUTS}"
        )
    if not verbatim:
        problem = problem.strip()
    instruction = INSTRUCTIONS[(template, output)]
    if template == "eval":
        return f"{problem} {instruction}"
    separator = ". " if verbatim or not problem.endswith(_SENTENCE_END) else " "
    return f"{problem}{separator}{instruction}"


def conversational_prompt(text: str) -> list[dict]:
    """The paper's message structure: one user turn, an image placeholder then the text (no system prompt).

    Training (TRL puts the image into the placeholder) and every evaluation backend build their messages
    here, so the two can never disagree.

    >>> conversational_prompt("How many?")
    [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'How many?'}]}]
    """
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
