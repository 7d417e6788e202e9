"""An endpoint that echoes the API key with its case changed or cut short never gets it into a file or output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crowdvlm.evaluate.backends.credentials import Endpoint
from endpoint_server import serve, write_manifest

KEY = "sk-live-DO-NOT-LEAK-4f9e2b7c1d"


def _fragments_left(text: str, key: str) -> list[str]:
    """Every case-insensitive substring of ``key`` of at least max(8, len // 2) characters found in ``text``."""
    size = max(8, len(key) // 2)
    low = text.lower()
    return [key[i : i + size] for i in range(len(key) - size + 1) if key[i : i + size].lower() in low]


@pytest.mark.parametrize(
    "echoed",
    [
        KEY.lower(),
        KEY.upper(),
        KEY[:-1],
        KEY[1:],
        KEY.swapcase(),
        KEY[:15],
        KEY[-15:].upper(),
        f"x{KEY[3:20]}y",
    ],
)
def test_scrub_removes_long_fragments_of_the_key_whatever_their_case(echoed):
    endpoint = Endpoint.parse("http://h/v1", KEY)
    scrubbed = endpoint.scrub(f"the key was {echoed}, fix it")
    assert not _fragments_left(scrubbed, KEY), scrubbed
    assert scrubbed.startswith("the key was ") and scrubbed.endswith(", fix it")
    assert "***" in scrubbed


def test_scrub_leaves_short_fragments_and_ordinary_text():
    endpoint = Endpoint.parse("http://h/v1", KEY)
    text = f"sk-live is a prefix; {KEY[:14]} is too short to tell; nothing else"  # 14 < 30 // 2
    assert endpoint.scrub(text) == text


def test_echoed_key_variants_reach_no_file_and_no_output(tmp_path):
    manifest = write_manifest(tmp_path, [("echo_key_variants", 1), ("ok", 2)])
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "crowdvlm", "-v", "eval", "--backend", "openai", "--model", "fake-gpt"]
    argv += ["--no-progress", "--max-retries", "0", "--data", str(manifest), "--out", str(out)]
    with serve() as (handler, url):
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        result = subprocess.run(
            [*argv, "--base-url", url], capture_output=True, text=True, timeout=240, env=env
        )
        assert result.returncode == 0, result.stderr
        assert handler.calls["echo_key_variants"] == 1
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    texts |= {path.name: path.read_bytes().decode("utf-8", "replace") for path in out.iterdir()}
    for where, text in texts.items():
        assert not _fragments_left(text, KEY), f"a fragment of the key leaked into {where}"
    assert "HTTP 500: lower *** upper *** cut *** tail ***" in texts["predictions.jsonl"]
