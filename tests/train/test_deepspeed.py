"""`crowdvlm train` under DeepSpeed as users launch it: `accelerate launch` with the shipped ZeRO configs, 2 CPU processes.

ZeRO-2 runs the shipped ``recipes/accelerate/zero2.yaml`` with command-line overrides (``--num_processes 2
--mixed_precision no``). ZeRO-3 runs a CPU copy of the shipped ``zero3.yaml``
(``benchmarks/zero3_cpu.py``) that partitions every parameter, as a 3B model's are:
the tiny model's would otherwise all stay under DeepSpeed's persistence threshold, whole on each rank.

What the runs check comes from ``log.jsonl``: its ``ranks`` events (``crowdvlm.train.cluster``) hold each rank's
parameter and optimizer fingerprints at train begin, at every checkpoint and at train end. Saved weights are
fp32, not 16-bit: the tiny recipes train in fp32 on CPU (``bf16: false``), and ZeRO-3's "16-bit" save writes the
gathered weights in the dtype they train in.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl
from launch_helpers import (
    ACCELERATE,
    DEMO_BASE,
    ROOT,
    check_ranks_agree_and_trained,
    env,
    launch,
    logged_steps,
    ranks_events,
)


@pytest.fixture(scope="module", autouse=True)
def deepspeed_installed():
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        pytest.fail("deepspeed is not installed: `make setup` installs it (see the Makefile)")


@pytest.fixture(scope="module")
def zero3_config(tmp_path_factory) -> Path:
    from launch_helpers import write_zero3_cpu_variant

    return write_zero3_cpu_variant(ACCELERATE / "zero3.yaml", tmp_path_factory.mktemp("zero3"))


def run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def check_saved_weights(out: Path, numel: int, expected: float) -> None:
    """The saved model loads with from_pretrained, in fp32 and whole, and its fingerprint is ``expected``."""
    import torch
    from transformers import AutoModelForImageTextToText

    from crowdvlm.train.cluster import parameter_fingerprints

    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert sum(p.numel() for p in model.parameters()) == numel
    assert sum(parameter_fingerprints(model).values()) == pytest.approx(expected, rel=1e-6)


def check_saved_as_trained(out: Path, end: dict) -> None:
    """The saved weights are those both ranks held at train end."""
    rank = end["ranks"][0]
    check_saved_weights(out, rank["full_numel"], rank["trainable"] + rank["frozen"])


def test_sft_zero2(tiny_model_dir, dots_manifest, tmp_path):
    out = tmp_path / "sft-zero2"
    run(launch(ACCELERATE / "zero2.yaml", "sft", out, tiny_model_dir, dots_manifest, "--max_steps", "3"))
    begin = next(e for e in read_jsonl(out / "log.jsonl") if e["event"] == "train_begin")
    assert (begin["world_size"], begin["backend"]) == (2, "gloo")
    assert logged_steps(out) == [1, 2, 3]
    end = check_ranks_agree_and_trained(out)
    assert not end["zero3"] and end["ranks"][0]["local_numel"] == end["ranks"][0]["full_numel"]
    check_saved_as_trained(out, end)


def test_sft_zero3_partitioned(tiny_model_dir, dots_manifest, zero3_config, tmp_path):
    out = tmp_path / "sft-zero3"
    run(launch(zero3_config, "sft", out, tiny_model_dir, dots_manifest, "--max_steps", "3"))
    assert logged_steps(out) == [1, 2, 3]
    end = check_ranks_agree_and_trained(out)
    for rank in end["ranks"]:  # every parameter split in two: each rank holds about half the elements
        assert end["zero3"] and rank["partitioned"] == rank["params"] > 0
        assert rank["full_numel"] / 2 <= rank["local_numel"] <= rank["full_numel"] / 2 + rank["params"]
    check_saved_as_trained(out, end)


def test_grpo_lora_zero2_as_the_7b_recipe(dots_manifest, tmp_path):
    out = tmp_path / "grpo-lora-zero2"
    done = run(
        launch(
            ACCELERATE / "zero2.yaml",
            "grpo",
            out,
            DEMO_BASE,
            dots_manifest,
            "--max_steps",
            "2",
            "--use_peft",
            "true",
            "--lora_r",
            "8",
            "--lora_alpha",
            "16",
            "--freeze_vision",
            "true",
            "--save_merged",
            "true",
        )
    )
    assert "group sharing off" not in done.stderr
    assert logged_steps(out) == [1, 2]
    end = check_ranks_agree_and_trained(out, frozen_changes=False)  # only the adapters train
    assert (out / "adapter_model.safetensors").is_file()
    check_saved_weights(out / "merged", end["ranks"][0]["full_numel"] - _adapter_numel(out), _merged(out))


def _adapter_numel(out: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(out / "adapter_model.safetensors").values())


def _merged(out: Path) -> float:
    """The fingerprint the merged weights must have: the base with the saved adapters merged in, here."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from crowdvlm.train.cluster import parameter_fingerprints

    base = AutoModelForImageTextToText.from_pretrained(DEMO_BASE, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, out).merge_and_unload()
    return sum(parameter_fingerprints(merged).values())


def test_grpo_zero3_frozen_vision_sigkill_then_resume(dots_manifest, zero3_config, tmp_path):
    out = tmp_path / "grpo-zero3"
    command = launch(
        zero3_config,
        "grpo",
        out,
        DEMO_BASE,
        dots_manifest,
        "--max_steps",
        "5",
        "--save_steps",
        "2",
        "--freeze_vision",
        "true",
    )

    # Killed, every process of it at once (as a node that dies), once checkpoint-2 is written.
    process = subprocess.Popen(
        command, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while not any(e["when"] == "checkpoint" for e in _events_so_far(out)):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    kill_tree(process)
    saved = [e for e in ranks_events(out) if e["when"] == "checkpoint"]
    assert not any(e["when"] == "train_end" for e in ranks_events(out)), "killed too late"

    # The same command with --resume: back at the last checkpoint's step, with its weights and optimizer state.
    done = run([*command, "--resume"])
    assert "group sharing off" not in done.stderr
    resumed = [e for e in ranks_events(out) if e["when"] == "train_begin"][-1]
    last = saved[-1]
    assert resumed["step"] == last["step"] >= 2
    for now, then in zip(resumed["ranks"], last["ranks"], strict=True):  # per rank: its own ZeRO partition
        assert now["optimizer"] == pytest.approx(then["optimizer"], rel=1e-9) and then["optimizer"] != 0
        assert now["trainable"] == pytest.approx(then["trainable"], rel=1e-9)
    steps = logged_steps(out)
    assert steps[-(5 - last["step"]) :] == list(range(last["step"] + 1, 6))  # the count continues to 5
    end = check_ranks_agree_and_trained(out, frozen_changes=False)  # the vision tower stayed frozen
    assert end["step"] == 5 and all(r["partitioned"] == r["params"] for r in end["ranks"])
    check_saved_as_trained(out, end)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it (torchrun starts its workers in sessions of their own)."""
    import psutil

    parent = psutil.Process(process.pid)
    tree = [*parent.children(recursive=True), parent]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    process.wait(timeout=30)


def _events_so_far(out: Path) -> list[dict]:
    try:
        return ranks_events(out)
    except (FileNotFoundError, ValueError):  # not written yet, or a line being written
        return []
