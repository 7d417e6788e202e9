"""What a training run writes besides checkpoints: a JSONL log of metrics and sampled completions.

- :class:`JsonlLogCallback` appends every ``Trainer.log`` call (loss, rewards, KL, learning rate, ...) and the
  start and end of training to ``OUTPUT_DIR/log.jsonl``, one JSON object per line, from the main process.
- :class:`RewardRecorder` wraps the GRPO reward functions without changing what they return or how TRL
  names them; it keeps the last batch's completions and per-function rewards.
- :class:`SampleCompletionsCallback` writes a few of those completions, with their rewards, to the JSONL log
  and the console every N optimiser steps; :mod:`crowdvlm.train.tensorboard_samples` shows a few whole groups
  (image, true count, completions, parsed counts, rewards) in TensorBoard at the same steps.

The console progress bar (with ETA) and the metric lines are Hugging Face's own ``ProgressCallback``;
TensorBoard and Weights & Biases come from ``report_to``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from crowdvlm.jsonl import read_jsonl as read_jsonl  # re-exported: the log is read back by this name
from crowdvlm.parsing import completion_text

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the information as text
    if isinstance(value, int | float | str | bool | type(None)):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):  # torch / numpy scalars
        return _jsonable(value.item())
    return str(value)


class JsonlWriter:
    """Appends JSON objects, one per line, flushed at once (a killed run keeps everything logged so far)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(record), ensure_ascii=False) + "\n")


class JsonlLogCallback(TrainerCallback):
    """Append each logged metrics dict, plus train begin/end events, to a JSONL file (main process only)."""

    def __init__(self, path: str | Path, run_info: dict[str, Any] | None = None):
        self.writer = JsonlWriter(path)
        self.run_info = run_info or {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.writer.write(
                {
                    "event": "train_begin",
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "world_size": args.world_size,
                    "backend": getattr(args.distributed_state, "backend", None),
                    "time": time.time(),
                    **self.run_info,
                }
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.writer.write(
                {"event": "log", "step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
            )

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.writer.write({"event": "checkpoint", "step": state.global_step, "time": time.time()})

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.writer.write({"event": "train_end", "step": state.global_step, "time": time.time()})


class RecordedReward:
    """A reward function that also reports each batch it scores to a :class:`RewardRecorder`.

    It keeps the wrapped function's ``__name__`` so TRL logs ``rewards/<name>/mean`` exactly as before.
    """

    def __init__(self, func, recorder: RewardRecorder):
        self.func = func
        self.recorder = recorder
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, completions, **kwargs) -> list[float | None]:
        scores = self.func(completions=completions, **kwargs)
        self.recorder.record(self.__name__, completions, kwargs, scores)
        return scores


class RewardRecorder:
    """Keeps the last scored batch: completion texts, ground truths, ids and each reward function's scores."""

    def __init__(self) -> None:
        self.batch: dict[str, Any] = {}

    def wrap(self, funcs: list) -> list[RecordedReward]:
        return [RecordedReward(f, self) for f in funcs]

    def record(self, name: str, completions, columns: dict[str, Any], scores) -> None:
        if not self.batch or name in self.batch["rewards"]:  # the first function of a new batch
            self.batch = {
                "completions": [completion_text(c) for c in completions],
                "solution": list(columns.get("solution") or []),
                "id": list(columns.get("id") or []),
                "image": list(columns.get("image") or []),  # the decoded images (references, not copies)
                "rewards": {},
            }
        self.batch["rewards"][name] = list(scores)

    def samples(self, k: int) -> list[dict[str, Any]]:
        """Up to ``k`` completions, taking the first of each prompt group before any second one."""
        batch = self.batch
        if not batch:
            return []
        n = len(batch["completions"])
        ids = batch["id"] or [str(i) for i in range(n)]
        first_of_group = [i for i in range(n) if i == 0 or ids[i] != ids[i - 1]]
        order = first_of_group + [i for i in range(n) if i not in first_of_group]
        out = []
        for i in order[:k]:
            out.append(
                {
                    "id": ids[i],
                    "solution": batch["solution"][i] if batch["solution"] else None,
                    "completion": batch["completions"][i],
                    "rewards": {name: scores[i] for name, scores in batch["rewards"].items()},
                }
            )
        return out

    def groups(self, k: int) -> list[dict[str, Any]]:
        """The first ``k`` groups of the batch (consecutive completions of one prompt): ``{id, solution, image,
        completions: [text], rewards: {name: [score]}}``, rows in the batch's order."""
        batch = self.batch
        if not batch:
            return []
        n = len(batch["completions"])
        ids = batch["id"] or [str(i) for i in range(n)]
        starts = [i for i in range(n) if i == 0 or ids[i] != ids[i - 1]][:k]
        out = []
        for start in starts:
            end = next((j for j in range(start + 1, n) if ids[j] != ids[start]), n)
            out.append(
                {
                    "id": ids[start],
                    "solution": batch["solution"][start] if batch["solution"] else None,
                    "image": batch["image"][start] if batch["image"] else None,
                    "completions": batch["completions"][start:end],
                    "rewards": {name: scores[start:end] for name, scores in batch["rewards"].items()},
                }
            )
        return out


class SampleCompletionsCallback(TrainerCallback):
    """Every ``every`` optimiser steps, write ``k`` recorded completions with their rewards to log and console."""

    def __init__(self, recorder: RewardRecorder, writer: JsonlWriter, every: int, k: int):
        self.recorder, self.writer, self.every, self.k = recorder, writer, every, k

    def on_step_end(self, args, state, control, **kwargs):
        if not (
            self.every and self.k and state.is_world_process_zero and state.global_step % self.every == 0
        ):
            return
        samples = self.recorder.samples(self.k)
        if not samples:
            return
        self.writer.write(
            {"event": "samples", "step": state.global_step, "time": time.time(), "samples": samples}
        )
        lines = [f"step {state.global_step}: {len(samples)} sampled completions"]
        for s in samples:
            rewards = " ".join(
                f"{name}={value:.3g}" for name, value in s["rewards"].items() if value is not None
            )
            lines.append(f"  [{s['id']}] truth={s['solution']} {rewards} | {s['completion']!r}")
        logger.info("\n".join(lines))
