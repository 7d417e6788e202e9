"""Dynamic sampling in 2-process runs (CPU, ``accelerate launch``: DDP and ZeRO-3), with gradient accumulation.

ZeRO-3 all-gathers each layer's shards at every model call, so a rank that generated once more than the other
would hang the run (the test's timeout). ``resample`` is the mode that adds generation calls: every rank must
make the same number of draws, decided on the gathered count of filtered groups. The ``ranks`` events
(:mod:`crowdvlm.train.cluster`) say whether both ranks hold the same model throughout.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl
from launch_helpers import ACCELERATE, DEMO_BASE, ROOT, env, launch, write_zero3_cpu_variant


@pytest.fixture(scope="module")
def counting_manifest(tmp_path_factory) -> Path:
    from crowdvlm.data.synth import generate

    out = tmp_path_factory.mktemp("synth-dots")
    return generate(
        out, n=16, style="dots", min_count=1, max_count=9, size=(112, 112), seed=0, progress=False
    )


@pytest.mark.parametrize("launcher", ["ddp", "zero3"])
def test_resample_keeps_ranks_in_step(counting_manifest, tmp_path, launcher):
    if launcher == "zero3":
        pytest.importorskip("deepspeed")
        config = write_zero3_cpu_variant(ACCELERATE / "zero3.yaml", tmp_path / "zero3")
    else:
        config = ACCELERATE / "ddp.yaml"
    out = tmp_path / "run"
    command = launch(config, "grpo", out, DEMO_BASE, counting_manifest)
    command += ["--gradient_accumulation_steps", "2", "--max_steps", "2"]
    command += ["--dynamic_sampling", "resample", "--dynamic_sampling_signal", "exact"]
    command += ["--dynamic_sampling_max_resamples", "1"]
    # the timeout allows DeepSpeed's first build of its CPU communication op (minutes on a loaded machine)
    done = subprocess.run(command, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]

    events = read_jsonl(out / "log.jsonl")
    ranks = [e for e in events if e["event"] == "ranks"]
    assert ranks[0]["zero3"] == (launcher == "zero3") and ranks[-1]["when"] == "train_end"
    for event in ranks:
        first, second = event["ranks"]
        assert first["trainable"] == pytest.approx(second["trainable"], rel=1e-9), (
            event["when"],
            event["step"],
        )
    logs = [e for e in events if e["event"] == "log" and "loss" in e]
    assert [e["step"] for e in logs] == [1, 2]
    for log in logs:
        assert 0.0 <= log["dynamic_sampling/frac_groups_filtered"] <= 1.0
        assert log["dynamic_sampling/resample_draws"] in (0.0, 1.0)
        assert 0.0 <= log["dynamic_sampling/frac_rows_in_loss"] <= 1.0
