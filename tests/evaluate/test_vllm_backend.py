"""``crowdvlm eval --backend vllm`` on vLLM's CPU build: the same greedy answers as ``--backend hf`` for the same
tiny model (head_dim 32, float32 on both sides), and ``num_samples`` answers per image. Subprocesses, as users
run them (vLLM spawns its engine). Runs in the `make setup-vllm` environment only.
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
PROBE = ROOT / "tests" / "vllm_probe.py"
ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def dots(tmp_path_factory) -> Path:
    from crowdvlm.data.synth import generate

    out = tmp_path_factory.mktemp("dots")
    return generate(out, n=6, style="dots", min_count=2, max_count=8, size=(112, 112), seed=0, progress=False)


def answers(run: Path) -> dict[str, str]:
    lines = (run / "predictions.jsonl").read_text().splitlines()
    return {record["id"]: record["text"] for record in map(json.loads, lines)}


def test_vllm_backend_answers_as_the_hf_backend(tiny_vllm_model_dir, dots, tmp_path):
    common = ["--model", str(tiny_vllm_model_dir), "--data", str(dots), "--dtype", "float32"]
    common += ["--max-new-tokens", "16", "--batch-size", "4", "--no-progress"]
    runs = {}
    for backend in ("vllm", "hf"):
        runs[backend] = tmp_path / backend
        command = [
            sys.executable,
            "-m",
            "crowdvlm",
            "eval",
            "--backend",
            backend,
            "--out",
            str(runs[backend]),
        ]
        done = subprocess.run(
            command + common, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-4000:]
    vllm_answers, hf_answers = answers(runs["vllm"]), answers(runs["hf"])
    assert len(vllm_answers) == 6 and all(vllm_answers.values())
    assert vllm_answers == hf_answers
    assert json.loads((runs["vllm"] / "run.json").read_text())["backend"] == "vllm"


def test_vllm_backend_samples_several_answers_per_image(tiny_vllm_model_dir, dots, tmp_path):
    out = tmp_path / "samples.json"
    command = [sys.executable, str(PROBE), "samples", str(tiny_vllm_model_dir), str(dots), str(out)]
    subprocess.run(command, env=ENV, cwd=ROOT, check=True, timeout=600)
    result = json.loads(out.read_text())
    assert len(result) == 6
    for answer in result:
        assert len(answer["samples"]) == 4 and answer["text"] == answer["samples"][0]
    assert any(len(set(answer["samples"])) > 1 for answer in result), "sampled, not greedy"
