"""Watch GRPO count in TensorBoard: every ``sample_completions_steps``, a few groups of the last batch.

TRL 1.16's ``log_completions`` (on in the GRPO recipes) prints a table of prompts, completions and rewards and
sends it, with the images, to W&B and trackio only. For TensorBoard, the recipes' default ``report_to``, this
callback adds what a counting run needs to be watched, per group (one image, its G completions):

* ``samples/group<k>/image``: the image (downscaled to at most :data:`MAX_SIDE` px);
* ``samples/group<k>``: a markdown table with the true count and, per completion, the count the project's
  one parser (:func:`crowdvlm.parsing.parse_count`) reads from it, each reward and the completion text.

It reads the batch the reward functions last scored (:class:`~crowdvlm.train.callbacks.RewardRecorder`), so it
changes nothing TRL computes. It writes its own event file under ``<output_dir>/runs/samples`` (TensorBoard
shows it as the run ``samples`` beside the scalars' run): ``tensorboard --logdir <output_dir>/runs``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from crowdvlm.parsing import parse_count

__all__ = ["MAX_SIDE", "TensorBoardSamplesCallback", "group_table"]

logger = logging.getLogger(__name__)

MAX_SIDE = 256  # px: enough to see what was counted, small enough to keep the event file light
SAMPLES_DIR = "samples"


def _cell(text: str, limit: int = 400) -> str:
    text = text if len(text) <= limit else text[:limit] + " …"
    return text.replace("|", "\\|").replace("\n", " ⏎ ")


def group_table(group: dict[str, Any]) -> str:
    """The markdown TensorBoard shows for one group: the true count, then one row per completion.

    >>> print(group_table({"id": "a", "solution": 3, "completions": ["<answer>3</answer>", "x"],
    ...                    "rewards": {"fgrpr": [1.5, 0.0]}}))
    **a**: true count **3**
    <BLANKLINE>
    | # | parsed | fgrpr | completion |
    |---|---|---|---|
    | 1 | 3 | 1.5 | <answer>3</answer> |
    | 2 | – | 0 | x |
    """
    names = list(group["rewards"])
    lines = [
        f"**{group['id']}**: true count **{group['solution']}**",
        "",
        "| # | parsed | " + " | ".join(names) + " | completion |",
        "|---" * (len(names) + 3) + "|",
    ]
    for i, text in enumerate(group["completions"]):
        parsed = parse_count(text)
        scores = [group["rewards"][name][i] for name in names]
        cells = ["–" if s is None else f"{s:.3g}" for s in scores]
        lines.append(
            f"| {i + 1} | {'–' if parsed is None else parsed} | " + " | ".join(cells) + f" | {_cell(text)} |"
        )
    return "\n".join(lines)


def _image_array(image: Any) -> np.ndarray | None:
    """An (H, W, 3) uint8 array of a PIL image, at most :data:`MAX_SIDE` px on its longer side."""
    if image is None or not hasattr(image, "convert"):
        return None
    image = image.convert("RGB")
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return np.asarray(image, dtype=np.uint8)


class TensorBoardSamplesCallback(TrainerCallback):
    """Every ``every`` optimiser steps, ``groups`` groups of the last scored batch to TensorBoard (main process).

    Active only when ``report_to`` includes ``tensorboard``; the writer opens at the first sample.
    """

    def __init__(self, recorder, every: int, groups: int = 2):
        self.recorder, self.every, self.groups = recorder, every, groups
        self.writer = None

    def _open(self, args):
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(args.output_dir) / "runs" / SAMPLES_DIR
        self.writer = SummaryWriter(log_dir=str(log_dir))
        logger.info("sampled groups go to TensorBoard: %s", log_dir)

    def on_step_end(self, args, state, control, **kwargs):
        if not (
            self.every and self.groups and state.is_world_process_zero and state.global_step % self.every == 0
        ):
            return
        if "tensorboard" not in (args.report_to or []):
            return
        groups = self.recorder.groups(self.groups)
        if not groups:
            return
        if self.writer is None:
            self._open(args)
        for k, group in enumerate(groups):
            image = _image_array(group.get("image"))
            if image is not None:
                self.writer.add_image(f"samples/group{k}/image", image, state.global_step, dataformats="HWC")
            self.writer.add_text(f"samples/group{k}", group_table(group), state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
