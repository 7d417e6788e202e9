"""Which checkpoint a ``--resume`` continues from, and whether there is anything left to train.

A run killed while writing a checkpoint can leave its newest ``checkpoint-N`` folder incomplete: a truncated
``trainer_state.json``, a zero-byte or truncated weights file, no optimizer state. Such a folder is skipped,
with a logged line, and the newest complete one is used. A run whose final model is saved and whose
``max_steps`` is reached is *finished*: resuming it trains nothing and overwrites nothing.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME
OPTIMIZER = "optimizer.pt"  # transformers.trainer.OPTIMIZER_NAME
WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")
SHARD_INDEX = "model.safetensors.index.json"


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Every ``checkpoint-N`` folder of ``output_dir``, oldest first (transformers' own ordering)."""
    from transformers.trainer_utils import sort_checkpoints

    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return [Path(p) for p in sort_checkpoints(str(output_dir))]


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable (empty, truncated header or data), or None."""
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is empty or truncated ({size} bytes)"
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if 8 + header_len > size:
            return f"{path.name} is truncated (header of {header_len} bytes, file of {size})"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path.name} has an unreadable header"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        return f"{path.name} is truncated ({size} bytes of {8 + header_len + end})"
    return None


def _weights_problem(folder: Path) -> str | None:
    index = folder / SHARD_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return f"{SHARD_INDEX} is unreadable"
        files = [folder / name for name in shards]
    else:
        files = [folder / name for name in WEIGHTS if (folder / name).is_file()][:1]
    if not files:
        return "no model weights"
    for file in files:
        if not file.is_file():
            return f"{file.name} is missing"
        problem = _safetensors_problem(file) if file.suffix == ".safetensors" else None
        if problem is None and file.stat().st_size == 0:
            problem = f"{file.name} is empty"
        if problem:
            return problem
    return None


def read_state(folder: str | Path) -> dict[str, Any] | None:
    """``trainer_state.json`` of a checkpoint or run folder, or None if it is missing or unreadable."""
    path = Path(folder) / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("global_step"), int) else None


def checkpoint_problem(folder: str | Path, *, need_optimizer: bool = True) -> str | None:
    """Why ``folder`` cannot be resumed from, or None if it is complete.

    Args:
        folder: a ``checkpoint-N`` folder.
        need_optimizer: also require the optimizer state (False for runs with ``save_only_model``).
    """
    folder = Path(folder)
    if read_state(folder) is None:
        return f"{TRAINER_STATE} is missing, truncated or not a trainer state"
    problem = _weights_problem(folder)
    if problem:
        return problem
    if need_optimizer:
        deepspeed = any(p.is_dir() for p in folder.glob("global_step*"))  # DeepSpeed keeps its own files
        optimizer = folder / OPTIMIZER
        if not deepspeed and (not optimizer.is_file() or optimizer.stat().st_size == 0):
            return f"{OPTIMIZER} is missing or empty"
    return None


def last_checkpoint(output_dir: str | Path, *, need_optimizer: bool = True) -> Path | None:
    """The newest complete ``checkpoint-N`` of ``output_dir`` (incomplete newer ones are logged and skipped).

    ``transformers.trainer_utils.get_last_checkpoint`` returns the newest folder whatever its state, so a
    checkpoint cut short by a crash would block every resume; this walks back to the newest usable one.
    """
    for folder in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(folder, need_optimizer=need_optimizer)
        if problem is None:
            return folder
        logger.warning("skipping incomplete checkpoint %s: %s", folder, problem)
    return None


def finished_state(output_dir: str | Path, max_steps: int) -> dict[str, Any] | None:
    """The final trainer state of a finished run in ``output_dir``, or None if there is more to train.

    A run is finished when its final save is there (``trainer_state.json`` and weights next to the
    checkpoints, written only after training ended) and it reached its own ``max_steps`` and the one asked
    for now (``max_steps`` <= 0: the run's own).
    """
    output_dir = Path(output_dir)
    state = read_state(output_dir)
    if state is None or _weights_problem(output_dir) is not None:
        return None
    done = state["global_step"]
    target = max_steps if max_steps > 0 else int(state.get("max_steps") or 0)
    return state if done >= max(target, int(state.get("max_steps") or 0)) else None
