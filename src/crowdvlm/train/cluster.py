"""What a multi-process run adds to the log: where the parameters live, and whether the ranks agree.

Under DDP or DeepSpeed every rank must end each step with the same model; a rank that drifts (a gradient not
reduced, a module called a different number of times under ZeRO-3, a checkpoint resumed on one rank only)
trains a different model without any error. :class:`RankAgreementCallback` writes one ``ranks`` event per
rank set to ``OUTPUT_DIR/log.jsonl`` at train begin, at every checkpoint and at train end, with per rank:

- ``trainable`` / ``frozen``: a fingerprint (sum plus sum of squares, float64) of the full trainable and
  frozen parameters, gathered one parameter at a time under ZeRO-3, so equal values mean equal models;
- ``optimizer``: the same fingerprint of the optimizer state the rank holds (its ZeRO partition);
- ``partitioned`` / ``local_numel`` / ``full_numel``: how many parameters ZeRO-3 partitions and how many
  elements this rank keeps of how many.

It logs a warning when the ranks' parameter fingerprints differ.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch
from transformers import TrainerCallback

from crowdvlm.train.callbacks import JsonlWriter

logger = logging.getLogger(__name__)


def _gathered(param: torch.nn.Parameter):
    """The full parameter for reading: DeepSpeed ZeRO-3 gathers its partitions, anything else is as is."""
    if hasattr(param, "ds_id"):
        import deepspeed

        return deepspeed.zero.GatheredParameters([param], modifier_rank=None)
    return contextlib.nullcontext()


def _add(total: float, tensor: torch.Tensor) -> float:
    # In chunks of 16M elements: a 7B model's embedding in float64 at once would take gigabytes.
    for chunk in tensor.detach().reshape(-1).split(1 << 24):
        t = chunk.double()
        total += float(t.sum() + (t * t).sum())
    return total


def fingerprint(param: torch.nn.Parameter) -> float:
    """Sum plus sum of squares (float64) of the full parameter; a collective under ZeRO-3 (all ranks call)."""
    with _gathered(param):
        return _add(0.0, param)


def parameter_fingerprints(model: torch.nn.Module) -> dict[str, float]:
    """``{"trainable": f, "frozen": f}`` over the full parameters; a collective under ZeRO-3 (all ranks call)."""
    totals = {"trainable": 0.0, "frozen": 0.0}
    for param in model.parameters():
        totals["trainable" if param.requires_grad else "frozen"] += fingerprint(param)
    return totals


def optimizer_fingerprint(optimizer: Any) -> float:
    """Fingerprint of the state this rank's optimizer holds (accelerate / DeepSpeed wrappers unwrapped)."""
    inner = optimizer
    while hasattr(inner, "optimizer"):  # AcceleratedOptimizer -> DeepSpeed ZeRO optimizer -> torch optimizer
        inner = inner.optimizer
    total = 0.0
    for state in getattr(inner, "state", {}).values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                total = _add(total, value)
            elif isinstance(value, int | float):
                total += float(value)
    return total


def partition_counts(model: torch.nn.Module) -> dict[str, int]:
    """How many parameters ZeRO-3 partitions and how many elements this rank holds, of how many."""
    counts = {"params": 0, "partitioned": 0, "local_numel": 0, "full_numel": 0}
    for param in model.parameters():
        counts["params"] += 1
        full = int(getattr(param, "ds_numel", param.numel()))
        counts["full_numel"] += full
        if hasattr(param, "ds_tensor"):  # ZeRO-3: param.data is empty outside forward, ds_tensor the shard
            counts["local_numel"] += int(param.ds_tensor.numel())
            counts["partitioned"] += int(param.ds_tensor.numel() < full)
        else:
            counts["local_numel"] += full
    return counts


def _all_ranks(value: Any) -> list[Any]:
    import torch.distributed as dist

    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _zero_stage(model: torch.nn.Module) -> int:
    params = list(model.parameters())
    return 3 if params and hasattr(params[0], "ds_id") else 0


class RankAgreementCallback(TrainerCallback):
    """Log every rank's parameter and optimizer fingerprints at begin, each checkpoint and end (world > 1)."""

    def __init__(self, path) -> None:
        self.writer = JsonlWriter(path)

    def _record(self, when: str, args, state, model, optimizer) -> None:
        import torch.distributed as dist

        if model is None or not (dist.is_available() and dist.is_initialized()) or args.world_size < 2:
            return
        rank = {
            **parameter_fingerprints(model),
            "optimizer": optimizer_fingerprint(optimizer) if optimizer is not None else None,
            **partition_counts(model),
        }
        ranks = _all_ranks(rank)
        if not state.is_world_process_zero:
            return
        self.writer.write(
            {
                "event": "ranks",
                "when": when,
                "step": state.global_step,
                "zero3": _zero_stage(model) == 3,
                "time": time.time(),
                "ranks": ranks,
            }
        )
        for key in ("trainable", "frozen"):
            values = [r[key] for r in ranks]
            if any(not math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-9) for v in values):
                logger.warning(
                    "ranks disagree on %s parameters at step %d: %s", key, state.global_step, values
                )

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._record("train_begin", args, state, model, optimizer)

    def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._record("checkpoint", args, state, model, optimizer)

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._record("train_end", args, state, model, optimizer)


def release_process_group() -> None:
    """Destroy the default process group, if any, so that no gloo thread outlives the interpreter.

    A torchrun child that exits with the group alive can abort in C++ teardown ("terminate called without an
    active exception", SIGABRT) after a run that finished; torchrun then reports the run as failed.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
