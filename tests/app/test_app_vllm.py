"""`crowdvlm app --backend vllm`: the page served through vLLM's CPU build, asked over gradio's own API, gives the
answer `crowdvlm predict --backend vllm` gives for the same image. Runs in the `make setup-vllm` environment only
(which installs the `app` extra beside vLLM).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from app_helpers import served_app

pytestmark = pytest.mark.vllm

START_TIMEOUT = 600  # vLLM's engine starts inside the app: minutes on a busy 2-core machine
QUESTION = "How many dots are in the image?"


def test_the_app_counts_through_vllm_as_predict_does(tiny_vllm_model_dir, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    image = tmp_path / "dots.png"
    Image.new("RGB", (112, 112), "white").save(image)
    options = ["--backend", "vllm", "--model", str(tiny_vllm_model_dir), "--dtype", "float32"]
    options += ["--max-new-tokens", "16"]

    predicted = subprocess.run(
        [sys.executable, "-m", "crowdvlm", "predict", *options, "--question", QUESTION, "--json", str(image)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (expected,) = [json.loads(line) for line in predicted.stdout.splitlines() if line.startswith("{")]

    with served_app([*options, "--question", QUESTION], tmp_path / "app.log", START_TIMEOUT) as url:
        _, result_html, reasoning = Client(url, verbose=False).predict(
            handle_file(str(image)), QUESTION, api_name="/count_one"
        )
    assert expected["error"] is None
    count = "no count in the answer" if expected["count"] is None else str(expected["count"])
    assert f"<span id='crowdvlm-count'>{count}</span>" in result_html, result_html
    assert reasoning.endswith(f"--- raw answer ---\n{expected['text']}"), (expected, reasoning)
