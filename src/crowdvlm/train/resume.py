"""Which checkpoint a ``--resume`` continues from, and whether there is anything left to train.

A run killed while writing a checkpoint can leave its newest ``checkpoint-N`` folder incomplete: a truncated
``trainer_state.json``, a zero-byte or truncated weights file, no optimizer state, or under DeepSpeed a rank
whose shard in ``global_stepN/`` is missing, empty or torn. Such a folder is skipped,
with a logged line, and the newest complete one is used. A run whose final model is saved and whose
``max_steps`` is reached is *finished*: resuming it trains nothing and overwrites nothing.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME
OPTIMIZER = "optimizer.pt"  # transformers.trainer.OPTIMIZER_NAME
WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")
SHARD_INDEX = "model.safetensors.index.json"
DEEPSPEED_LATEST = "latest"  # DeepSpeed's file naming the newest global_stepN folder
_RANK_FILE = re.compile(r"(?:\w+_)?zero_pp_rank_(\d+)_mp_rank_\d+_(model|optim)_states\.pt")


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


def _torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file is unusable (empty, or a zip archive without its closing record), or None."""
    size = path.stat().st_size
    if size == 0:
        return f"{path.name} is empty"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip whose directory is the file's last bytes
        return f"{path.name} is truncated ({size} bytes, no zip directory at its end)"
    return None


def _deepspeed_problem(folder: Path, *, need_optimizer: bool, world_size: int | None) -> str | None:
    """Why the DeepSpeed shards of a checkpoint are incomplete, or None (also when it has none).

    Every rank writes its own ``*zero_pp_rank_R_mp_rank_00_optim_states.pt`` (and, under ZeRO-3, its own
    ``zero_pp_rank_R_mp_rank_00_model_states.pt``; below ZeRO-3 one ``mp_rank_00_model_states.pt``). A rank
    that died while saving leaves its file empty, torn or absent, and DeepSpeed's load then fails with
    ``EOFError`` naming no file. Ranks are counted from the files (and ``world_size`` when known, which
    also catches the highest rank missing altogether).
    """
    latest = folder / DEEPSPEED_LATEST
    if latest.is_file():
        tag = latest.read_text(encoding="utf-8", errors="replace").strip()
        shards = folder / tag
        if not tag or not shards.is_dir():
            return f"{tag or 'the folder'} named by {DEEPSPEED_LATEST} is missing"
    else:
        tags = sorted(p for p in folder.glob("global_step*") if p.is_dir())
        if not tags:
            return None
        shards = tags[-1]
    files: dict[tuple[int, str], Path] = {}
    for path in shards.iterdir():
        match = _RANK_FILE.fullmatch(path.name)
        if match:
            files[int(match[1]), match[2]] = path
    ranks = max([rank + 1 for rank, _ in files] + [world_size or 0])
    zero3 = any(kind == "model" for _, kind in files)
    wanted = (["model"] if zero3 else []) + (["optim"] if need_optimizer else [])
    if not zero3 and not (shards / "mp_rank_00_model_states.pt").is_file():
        return f"{shards.name}/mp_rank_00_model_states.pt is missing"
    checked = [] if zero3 else [shards / "mp_rank_00_model_states.pt"]
    for rank in range(max(ranks, 1)):
        for kind in wanted:
            path = files.get((rank, kind))
            if path is None:
                return f"{shards.name}: the {kind}_states.pt of rank {rank} is missing"
            checked.append(path)
    for path in checked:
        problem = _torch_file_problem(path)
        if problem:
            return f"{shards.name}/{problem}"
    return None


def read_state(folder: str | Path) -> dict[str, Any] | None:
    """``trainer_state.json`` of a checkpoint or run folder, or None if it is missing or unreadable."""
    path = Path(folder) / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("global_step"), int) else None


def checkpoint_problem(
    folder: str | Path, *, need_optimizer: bool = True, world_size: int | None = None
) -> str | None:
    """Why ``folder`` cannot be resumed from, or None if it is complete.

    Args:
        folder: a ``checkpoint-N`` folder.
        need_optimizer: also require the optimizer state (False for runs with ``save_only_model``).
        world_size: the number of processes the run has, when known: a DeepSpeed checkpoint must then hold
            a shard of every one of them.
    """
    folder = Path(folder)
    if read_state(folder) is None:
        return f"{TRAINER_STATE} is missing, truncated or not a trainer state"
    problem = _weights_problem(folder)
    if problem:
        return problem
    if need_optimizer:
        # DeepSpeed keeps its own files (checked below)
        deepspeed = (folder / DEEPSPEED_LATEST).is_file() or any(
            p.is_dir() for p in folder.glob("global_step*")
        )
        optimizer = folder / OPTIMIZER
        if not deepspeed and (not optimizer.is_file() or optimizer.stat().st_size == 0):
            return f"{OPTIMIZER} is missing or empty"
    return _deepspeed_problem(folder, need_optimizer=need_optimizer, world_size=world_size)


def last_checkpoint(
    output_dir: str | Path, *, need_optimizer: bool = True, world_size: int | None = None
) -> Path | None:
    """The newest complete ``checkpoint-N`` of ``output_dir`` (incomplete newer ones are logged and skipped).

    ``transformers.trainer_utils.get_last_checkpoint`` returns the newest folder whatever its state, so a
    checkpoint cut short by a crash would block every resume; this walks back to the newest usable one.
    """
    for folder in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(folder, need_optimizer=need_optimizer, world_size=world_size)
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
