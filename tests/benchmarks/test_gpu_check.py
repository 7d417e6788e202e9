"""benchmarks/gpu_check.py end to end on the CPU in miniature (--size tiny --device cpu): the same code path and
the same JSON keys as on a GPU, so that the first GPU run does not die on a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {
    "model",
    "size",
    "environment",
    "setting",
    "build_seconds",
    "equivalence",
    "speed",
    "degraded",
    "seconds",
}
RUN_KEYS = {
    "status", "timed_steps", "s_per_step", "generation_share", "decode_ms_per_token", "peak_gib",
    "planned_peak_gib", "mfu", "fallbacks",
}  # fmt: skip


def run_gpu_check(tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--size", "tiny", "--device", "cpu",
         "--out", str(out), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    return last, json.loads(out.read_text(encoding="utf-8"))


def test_gpu_check_runs_end_to_end_on_cpu(tmp_path):
    last, written = run_gpu_check(tmp_path)
    assert last == written  # the last line is the file
    assert set(last) == TOP_KEYS
    assert last["equivalence"]["status"] == "passed", last["equivalence"]
    sdpa = last["equivalence"]["kernels"]["sdpa"]  # the only kernel on a CPU
    assert sdpa["status"] == "passed" and sdpa["parameters_compared"] > 0 and sdpa["fallbacks"] == {}
    speed = last["speed"]
    for key in ("stock/hf", "crowdvlm/hf"):
        assert speed[key]["status"] == "measured" and set(speed[key]) == RUN_KEYS
        assert speed[key]["s_per_step"] > 0 and 0 < speed[key]["generation_share"] < 1
        assert speed[key]["planned_peak_gib"] is not None
    assert speed["ratio/hf"] > 0
    for key in ("stock/vllm", "crowdvlm/vllm"):  # skipped here with a reason, measured where vLLM is
        assert speed[key]["status"] in ("skipped", "measured")
    assert last["degraded"] == []


def test_gpu_check_degrades_when_the_budget_runs_short(tmp_path):
    last, _ = run_gpu_check(tmp_path, "--budget-s", "3", "--backends", "hf")
    assert set(last) == TOP_KEYS
    assert last["equivalence"]["status"] == "skipped" and last["equivalence"]["reason"] == "budget"
    assert last["speed"]["stock/hf"]["status"] == "measured"  # the first run always measures
    assert last["speed"]["crowdvlm/hf"] == {"status": "skipped", "reason": "budget"}
    assert len(last["degraded"]) == 2
