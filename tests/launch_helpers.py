"""`accelerate launch` of `crowdvlm train` in 2 CPU processes with a DeepSpeed config, and checks of its ranks."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl

ROOT = Path(__file__).resolve().parents[1]

ACCELERATE = ROOT / "recipes" / "accelerate"

DEMO_BASE = (
    ROOT / "src" / "crowdvlm" / "demo" / "base"
)  # answers <answer>N</answer>: GRPO rewards have spread


def launch(config: Path, kind: str, out: Path, model: Path, manifest: Path, *extra: str) -> list[str]:
    recipe = ROOT / "recipes" / "tiny" / f"{'sft' if kind == 'sft' else 'grpo_fgrpr'}.yaml"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "crowdvlm",
        "train",
        kind,
        "--config",
        str(recipe),
        "--model_name_or_path",
        str(model),
        "--dataset",
        str(manifest),
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1",
    ]
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


def write_zero3_cpu_variant(config_file: str | Path, out_dir: str | Path, num_processes: int = 2) -> Path:
    """``benchmarks/zero3_cpu.py``'s ZeRO-3 config that partitions every parameter (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmarks_zero3_cpu", ROOT / "benchmarks" / "zero3_cpu.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_zero3_cpu_variant(config_file, out_dir, num_processes)
