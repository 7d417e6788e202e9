"""Supervised fine-tuning on counting manifests, with TRL's ``SFTTrainer``.

Each manifest row becomes a prompt/completion pair (TRL's prompt-completion format, so the loss covers the
completion only): the prompt is the paper's user turn (image + question + output instruction), the completion
the answer in the requested format:

- ``think``:       ``<think>{sft_reasoning}</think><answer>N</answer>`` where the reasoning is a short fixed
  sentence ending in the count (we have no human reasoning to imitate, and the paper's format reward only asks
  that the block exists);
- ``answer-only``: ``<answer>N</answer>``;
- ``points``: the manifest's points in the model's frame, in reading order, as Qwen's grounding JSON, then
  ``<answer>N</answer>`` (see ``docs/pointing.md``).

Targets longer than the model takes are refused (or, with ``skip_long_targets``, left out and counted) before
the model loads: see :mod:`crowdvlm.train.target_lengths`.

Run: ``crowdvlm train sft --config recipes/tiny/sft.yaml [--key value ...]``
"""

from __future__ import annotations

import logging
import sys

from crowdvlm.train.common import (
    TrainResult,
    add_point_frames,
    build_callbacks,
    load_model,
    load_processor,
    load_train_dataset,
    train_and_save,
    write_config,
)
from crowdvlm.train.config import TrainJob
from crowdvlm.train.target_lengths import fit_targets, model_token_limit

logger = logging.getLogger(__name__)


def sft_target(count: int, output_format: str, reasoning: str) -> str:
    """The completion text SFT teaches for a ground-truth ``count``.

    >>> sft_target(3, "answer-only", "")
    '<answer>3</answer>'
    >>> sft_target(12, "think", "I see {count} dots.")
    '<think>I see 12 dots.</think><answer>12</answer>'
    """
    answer = f"<answer>{count}</answer>"
    if output_format == "answer-only":
        return answer
    return f"<think>{reasoning.format(count=count)}</think>{answer}"


def add_sft_completions(dataset, output_format: str, reasoning: str):
    """Add the ``completion`` column (one assistant turn per row) built from ``solution``.

    Only the ``solution`` column is read, so no image is decoded here.
    """
    completions = [
        [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": sft_target(int(n), output_format, reasoning)}],
            }
        ]
        for n in dataset["solution"]
    ]
    return dataset.add_column("completion", completions)


def add_point_sft_completions(dataset):
    """Point runs: the ``completion`` lists the manifest's points in the model's frame, then the count.

    Reads the ``points``, ``image_size`` and ``frame_size`` columns (no image is decoded); see
    :func:`crowdvlm.pointing.targets.point_answer` for the text and its fixed order.
    """
    from crowdvlm.pointing.targets import frame_of_row, point_answer

    completions = []
    for points, image_size, frame_size in zip(
        dataset["points"], dataset["image_size"], dataset["frame_size"], strict=True
    ):
        text = point_answer(frame_of_row(image_size, frame_size).to_frame(points))
        completions.append([{"role": "assistant", "content": [{"type": "text", "text": text}]}])
    return dataset.add_column("completion", completions)


def run_sft(job: TrainJob) -> TrainResult:
    """Run one SFT job end to end: seed, data, model, trainer, train, save."""
    from transformers import set_seed
    from trl import SFTTrainer

    set_seed(job.training.seed)
    write_config(job)

    dataset = load_train_dataset(job)
    processor = load_processor(job)  # the targets and their length in tokens come before the model
    if job.script.output_format == "points":  # targets are in the frame the processor's resize gives
        dataset = add_point_sft_completions(add_point_frames(dataset, job, processor))
    else:
        dataset = add_sft_completions(dataset, job.script.output_format, job.script.sft_reasoning)
    tokenizer = getattr(processor, "tokenizer", processor)
    limit = model_token_limit(job.model.model_name_or_path, tokenizer, job.training.max_length)
    dataset = fit_targets(dataset, tokenizer, limit, skip=job.script.skip_long_targets)
    model, processor, peft_config = load_model(job)

    trainer = SFTTrainer(
        model=model,
        args=job.training,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=build_callbacks(job),
    )
    result = train_and_save(trainer, job, processor)
    logger.info("SFT done: %d steps, model saved to %s", result.global_step, result.output_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    """``crowdvlm train sft --config RECIPE.yaml [--key value ...]``."""
    from crowdvlm.cli import main as crowdvlm_main  # dispatches by name: no import cycle with train.cli

    return crowdvlm_main(["train", "sft", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
