"""`accelerate launch` of `crowdvlm train` in 2 CPU processes with a DeepSpeed config, and checks of its ranks.

The launch command and the ZeRO-3 CPU config come from ``benchmarks/zero3_cpu.py``, which the benchmarks use too.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl
from train_helpers import RECIPES, quiet_train_args

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """``benchmarks/<name>.py``, imported by path (benchmarks/ is not a package), as conftest's ``benchmark_module``
    fixture imports it for tests; module level here, so the helpers below can use it."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_zero3_cpu = _benchmark("zero3_cpu")
#: ``launch_command(config_file, *target)``: ``accelerate launch`` of ``target`` in 2 processes.
launch_command = _zero3_cpu.launch_command
#: ``write_zero3_cpu_variant(config_file, out_dir)``: a ZeRO-3 CPU config that partitions every parameter.
write_zero3_cpu_variant = _zero3_cpu.write_zero3_cpu_variant

ACCELERATE = ROOT / "recipes" / "accelerate"

DEMO_BASE = (
    ROOT / "src" / "crowdvlm" / "demo" / "base"
)  # answers <answer>N</answer>: GRPO rewards have spread


def launch(config: Path, kind: str, out: Path, model: Path, manifest: Path, *extra: str) -> list[str]:
    recipe = RECIPES / f"{'sft' if kind == 'sft' else 'grpo_fgrpr'}.yaml"
    command = launch_command(config, "-m", "crowdvlm", "train", kind)
    command += [*quiet_train_args(recipe, model, manifest, out), "--logging_steps", "1"]
    if kind == "grpo":  # the demo base answers without <think>; 16 tokens hold its answer
        command += [
            "--output_format",
            "answer-only",
            "--rewards",
            "fgrpr",
            "answer_format",
            "--max_completion_length",
            "16",
            "--per_device_train_batch_size",
            "4",
        ]
    else:
        command += ["--per_device_train_batch_size", "2"]
    return command + list(extra)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def ranks_events(out: Path) -> list[dict]:
    return [e for e in read_jsonl(out / "log.jsonl") if e["event"] == "ranks"]


def logged_steps(out: Path) -> list[int]:
    return [e["step"] for e in read_jsonl(out / "log.jsonl") if e["event"] == "log" and "loss" in e]


def check_ranks_agree_and_trained(out: Path, frozen_changes: bool = True) -> dict:
    """Both ranks hold the same model at every event, and training changed the trainable parameters."""
    events = ranks_events(out)
    assert [e["when"] for e in events][0] == "train_begin" and events[-1]["when"] == "train_end"
    for e in events:
        first, second = e["ranks"]
        for key in ("trainable", "frozen"):
            assert first[key] == pytest.approx(second[key], rel=1e-9), (e["when"], e["step"], key)
    begin, end = events[0]["ranks"][0], events[-1]["ranks"][0]
    assert not math.isclose(begin["trainable"], end["trainable"], rel_tol=1e-9)
    if not frozen_changes:
        assert begin["frozen"] == pytest.approx(end["frozen"], rel=1e-12) and begin["frozen"] > 0
    return events[-1]
