"""The app tests' stand-ins (a backend that answers from a table keyed by image width, PNG bytes) and the app
served as a process (a free port, ``crowdvlm app`` started and stopped)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from crowdvlm.evaluate.backends.base import Answer, Prepared, try_load_image


class ScriptedBackend:
    """A backend that answers from a table keyed by image width, through the real prepare/generate protocol."""

    name = "scripted"

    def __init__(self, answers: dict[int, str]):
        self.answers = answers
        self.batches: list[list[str]] = []
        self.files: list[str] = []  # the file names the service handed over

    def prepare(self, items):
        self.files += [item.image.name for item in items]
        loaded = [try_load_image(item.image) for item in items]
        return Prepared(items, [error for _, error in loaded], [image for image, _ in loaded if image])

    def generate(self, prepared: Prepared):
        self.batches.append([item.prompt for item in prepared.loaded])
        return [Answer(text=self.answers[image.width]) for image in prepared.payload]

    def describe(self):
        return {"backend": self.name}


def png(width: int, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_app(options: list[str], log_path: Path, start_timeout: float) -> Iterator[str]:
    """``crowdvlm app OPTIONS --port P`` as a process, its output in ``log_path``; yields its URL once it serves,
    fails the test naming the log's end if it does not within ``start_timeout`` s; stopped (and waited for) after.
    """
    import pytest

    port = free_port()
    command = [sys.executable, "-m", "crowdvlm", "app", *options, "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + start_timeout
        while "crowdvlm app: serving" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the app did not start within {start_timeout} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        assert f"http://127.0.0.1:{port}" in log_path.read_text()
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
