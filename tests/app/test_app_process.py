"""`crowdvlm app` as a process: option errors before the model loads, and SIGTERM removes its files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("gradio", reason="gradio is installed by `make setup` (see docs/app.md)")

from app_helpers import free_port  # noqa: E402


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be 1 to 65535, got 70000"),
        (["--port", "-1"], "--port must be 1 to 65535, got -1"),
        (["--cache-max-age-min", "0"], "--cache-max-age-min must be > 0"),
    ],
)
def test_option_errors_come_before_the_model_loads(args, message):
    # the model does not exist: an error about it would mean the model was opened first
    argv = [sys.executable, "-m", "crowdvlm", "app", "--model", "/nonexistent/model-dir", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "nonexistent" not in result.stderr


def test_sigterm_removes_the_request_files(tmp_path):
    # an OpenAI-compatible backend: the app starts without loading a model (nothing listens at the URL)
    port = free_port()
    argv = [sys.executable, "-m", "crowdvlm", "app", "--backend", "openai", "--model", "fake"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--port", str(port)]
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "OPENAI_API_KEY": "sk-test-key-0000",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:
            if "serving" in line:
                break
            assert time.monotonic() < deadline, "the app did not start"
        work = list(tmp_path.glob("crowdvlm-app-*"))
        assert len(work) == 1 and work[0].is_dir()
        (work[0] / "request-000001").mkdir()
        (work[0] / "request-000001" / "0000.img").write_bytes(b"a zip member")
        process.send_signal(signal.SIGTERM)
        rc = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert rc == 128 + signal.SIGTERM
    assert not list(tmp_path.glob("crowdvlm-app-*"))
