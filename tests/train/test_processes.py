"""Training as users launch it, in subprocesses: two CPU processes through accelerate, and SIGKILL + --resume.

Each test runs exactly 2 processes: on a 2-core machine more would only slow every one of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from crowdvlm.train.callbacks import read_jsonl
from train_helpers import RECIPES, quiet_train_args

ROOT = Path(__file__).resolve().parents[2]
RECIPE = RECIPES / "grpo_fgrpr.yaml"


def grpo_args(model: Path, manifest: Path, out: Path, **overrides) -> list[str]:
    args = [*quiet_train_args(RECIPE, model, manifest, out), "--max_completion_length", "16"]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


def env(threads: int = 2) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


def crowdvlm(*args: str) -> list[str]:
    return [sys.executable, "-m", "crowdvlm", *args]


def final_step(out: Path) -> int:
    return json.loads((out / "trainer_state.json").read_text())["global_step"]


def step_prompts(out: Path) -> list[tuple[int, str]]:
    """(optimiser step, id of the prompt trained on) in log order; one prompt per step in the tiny recipe."""
    return [
        (e["step"], e["samples"][0]["id"]) for e in read_jsonl(out / "log.jsonl") if e["event"] == "samples"
    ]


def test_two_cpu_processes_with_accelerate(tiny_model_dir, dots_manifest, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes/accelerate/ddp.yaml"),
        "--num_processes",
        "2",
        "-m",
        "crowdvlm",
        "train",
        "grpo",
        *grpo_args(tiny_model_dir, dots_manifest, out, max_steps=3, per_device_train_batch_size=2),
    ]
    done = subprocess.run(command, env=env(threads=1), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    begin = next(e for e in read_jsonl(out / "log.jsonl") if e["event"] == "train_begin")
    assert (begin["world_size"], begin["backend"]) == (2, "gloo")
    assert final_step(out) == 3
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()


def test_sigkill_then_resume_loses_only_steps_since_last_checkpoint(tiny_model_dir, dots_manifest, tmp_path):
    steps = {"max_steps": 24, "save_steps": 4, "logging_steps": 1, "sample_completions_steps": 1}

    # Reference: the same run, never interrupted.
    reference = tmp_path / "reference"
    subprocess.run(
        crowdvlm("train", "grpo", *grpo_args(tiny_model_dir, dots_manifest, reference, **steps)),
        env=env(),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )

    # Killed with SIGKILL once a checkpoint exists, well before the end.
    out = tmp_path / "killed"
    process = subprocess.Popen(
        crowdvlm("train", "grpo", *grpo_args(tiny_model_dir, dots_manifest, out, **steps)),
        env=env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (out / "checkpoint-4" / "trainer_state.json").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = max((step for step, _ in step_prompts(out)), default=0)
    saved = sorted(
        int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
    )
    assert killed_at < steps["max_steps"] and saved and saved[-1] <= killed_at

    # The same command with --resume continues from the last complete checkpoint.
    resumed = subprocess.run(
        crowdvlm("train", "grpo", *grpo_args(tiny_model_dir, dots_manifest, out, **steps), "--resume"),
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    begins = [e for e in read_jsonl(out / "log.jsonl") if e["event"] == "train_begin"]
    assert [b["step"] for b in begins] == [0, saved[-1]]  # lost only the steps after the last checkpoint
    assert final_step(out) == steps["max_steps"]

    # Same data order as the uninterrupted run, before and after the kill.
    expected = dict(step_prompts(reference))
    assert sorted(expected) == list(range(1, steps["max_steps"] + 1))
    seen = step_prompts(out)  # steps between the last checkpoint and the kill appear twice
    assert {step for step, _ in seen} == set(expected)
    assert all(prompt == expected[step] for step, prompt in seen)
