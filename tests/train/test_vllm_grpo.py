"""``crowdvlm train grpo`` with ``use_vllm: true, vllm_mode: colocate``: vLLM generates, GroupSharedGRPOTrainer's
sharing stays on in the log-prob passes. Two steps on the tiny Qwen2.5-VL with head_dim 32 (vLLM's CPU attention
takes no smaller), in a subprocess as users run it. Runs in the `make setup-vllm` environment only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "tiny" / "grpo_fgrpr.yaml"


def test_two_colocated_vllm_steps_with_group_sharing(tiny_vllm_model_dir, tmp_path):
    from crowdvlm.data.synth import generate

    manifest = generate(
        tmp_path / "dots",
        n=8,
        style="dots",
        min_count=2,
        max_count=8,
        size=(112, 112),
        seed=0,
        progress=False,
    )
    out = tmp_path / "grpo"
    overrides = {
        "model_name_or_path": tiny_vllm_model_dir,
        "dataset": manifest,
        "output_dir": out,
        "use_vllm": "true",
        "vllm_mode": "colocate",
        "max_steps": 2,
        "max_completion_length": 16,
        "logging_steps": 1,
        "sample_completions_steps": 1,
        "save_steps": 2,
        "report_to": "none",
        "disable_tqdm": "true",
    }
    command = [sys.executable, "-m", "crowdvlm", "train", "grpo", "--config", str(RECIPE)]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]

    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / "model.safetensors").is_file()
    # vLLM generated (GroupSharedGRPOTrainer leaves generation to it, and says so once) ...
    assert "group sharing off for generation (vLLM" in done.stderr
    # ... and every log-prob pass shared the image and the prompt across the group.
    assert "group sharing off for vision" not in done.stderr
    assert "group sharing off for prefix" not in done.stderr
