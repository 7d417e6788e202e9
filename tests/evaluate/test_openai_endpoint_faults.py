"""`crowdvlm eval --backend openai` against an endpoint that misbehaves.

Each test runs the real command (a subprocess, as a user would) against the server of
:mod:`endpoint_server` on 127.0.0.1, one misbehaviour per image. Malformed 200s become per-image
errors (never a crash, never a scored empty answer), a trickling server is cut by the total deadline, and
Ctrl-C stops at once with ``predictions.jsonl`` intact and resumable. A server that echoes the key
and the URL's credentials in its answers, error bodies and headers never gets them into a file, stdout or
stderr, with ``-v`` too; a one-letter key does not mangle messages.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crowdvlm.evaluate.predictions import read_predictions
from endpoint_server import HANG_S, ctrl_c_as_at_a_terminal, serve, write_manifest

KEY = "sk-live-DO-NOT-LEAK-4f9e2b7c1d"
URL_USER, URL_PASSWORD, URL_TOKEN = "leakyuser42", "pw-DO-NOT-LEAK-31337", "tok-DO-NOT-LEAK-8c8c8c"
# the URL's user and password also travel as an HTTP basic-auth token, which a server can echo too
BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
SECRETS = (KEY, URL_USER, URL_PASSWORD, URL_TOKEN, BASIC)


def _eval(url: str, manifest: Path, out: Path, *extra: str, verbose: bool = False, key: str = KEY):
    argv = [sys.executable, "-m", "crowdvlm", *(["-v"] if verbose else []), "eval"]
    argv += [*"--backend openai --model fake-gpt --no-progress".split(), "--base-url", url]
    argv += ["--data", str(manifest), "--out", str(out), *extra]
    # OPENAI_LOG=debug: the client's own debug logging, which prints URLs and headers, is on too
    env = {**os.environ, "OPENAI_API_KEY": key} | ({"OPENAI_LOG": "debug"} if verbose else {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)


def _by_id(out: Path) -> dict:
    return {p.id: p for p in read_predictions(out / "predictions.jsonl")}


MALFORMED = {
    # case: (what the error says, attempts the server sees with --max-retries 1)
    "html": ("body is not JSON (text/html", 1),
    "list_json": ("no choices", 2),
    "no_choices": ("no choices", 2),
    "no_choices_key": ("no choices", 2),
    "choices_string": ("no choices", 2),
    "null_content": ("null content", 2),
    "number_content": ("content of type int", 2),
    "bad_request": ("HTTP 400: unsupported image (not retried)", 1),
    "trickle_body": ("request timed out (after 2 attempts)", 2),
    "trickle_headers": ("request timed out (after 2 attempts)", 2),
}


def test_malformed_responses_and_trickles_are_per_image_errors(tmp_path):
    cases = [("ok", 3), *((case, 5) for case in MALFORMED), ("ok", 9)]
    manifest = write_manifest(tmp_path, cases)
    out = tmp_path / "run"
    with serve() as (handler, url):
        options = "--max-retries 1 --request-timeout 1.5 --concurrency 16 --batch-size 16".split()
        result = _eval(url, manifest, out, *options)
        assert result.returncode == 0, result.stderr
        by_id = _by_id(out)
        assert by_id["img0"].pred == 3 and by_id[f"img{len(cases) - 1}"].pred == 9
        for i, (case, (says, attempts)) in enumerate(MALFORMED.items(), start=1):
            p = by_id[f"img{i}"]
            assert p.error is not None and says in p.error, (case, p.error)
            assert p.text == "" and p.pred is None and not p.parse_ok, case  # never a scored empty answer
            assert handler.calls[case] == attempts, case
        # the trickling server saw the client hang up on every attempt (after at most a few more bytes)
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and min(handler.cut["trickle_body"], handler.cut["trickle_headers"]) < 2
        ):
            time.sleep(0.1)
        assert handler.cut["trickle_body"] == 2 and handler.cut["trickle_headers"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 2 and metrics["overall"]["errors"] == len(MALFORMED)
    assert "2 images scored" in result.stdout


def test_ctrl_c_stops_at_once_and_the_run_resumes(tmp_path):
    cases = [("ok", 1), ("ok", 2), ("hang", 3), ("hang", 4), ("hang", 5), ("hang", 6)]
    manifest = write_manifest(tmp_path, cases)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "crowdvlm", *"eval --backend openai --model fake-gpt".split()]
    argv += ["--data", str(manifest), "--out", str(out)]
    argv += "--no-progress --batch-size 2 --concurrency 2 --request-timeout 60".split()
    with serve() as (handler, url):
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        proc = subprocess.Popen(
            [*argv, "--base-url", url],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_at_a_terminal,
        )
        try:
            for _ in range(
                600
            ):  # up to 60 s for the first batch to be answered and both hangs to be in flight
                if handler.calls["hang"] == 2 and (out / "predictions.jsonl").exists():
                    if len((out / "predictions.jsonl").read_bytes().splitlines()) == 2:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("the run never reached its second batch")
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            # the hanging requests would answer after HANG_S (30 s), and their retries take minutes: a bound
            # below HANG_S fails only if Ctrl-C waited for them. It leaves room for the backend's own bounded
            # waits on the way out (up to 3 x 5 s when cancelled requests are slow to let go; 0.4 s measured
            # alone, benchmarks/eval_interrupt.py). Past it, the run gets 60 s more to say where it was.
            try:
                rc = proc.wait(timeout=HANG_S - 5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                finally:
                    proc.kill()
                    stderr = proc.stderr.read()
                raise AssertionError(
                    f"still running {HANG_S - 5:.0f} s after Ctrl-C (exit code {proc.returncode} after "
                    f"{time.monotonic() - sent:.1f} s and a second Ctrl-C); stderr:\n{stderr[-4000:]}"
                ) from None
        finally:
            proc.kill()
            stderr = proc.stderr.read() if not proc.stderr.closed else ""
            proc.stderr.close()
        assert rc == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert [p.id for p in read_predictions(out / "predictions.jsonl")] == ["img0", "img1"]
        assert handler.calls["hang"] == 2  # nothing was retried after the interrupt

        handler.release.set()  # the server is healthy again
        resumed = [*argv, "--base-url", url, "--resume"]
        result = subprocess.run(resumed, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        assert handler.calls["ok"] == 2  # the answered images were not asked again
    assert {p.id: p.pred for p in read_predictions(out / "predictions.jsonl")} == {
        f"img{i}": truth for i, (_, truth) in enumerate(cases)
    }


def _assert_no_secret(texts: dict[str, str], secrets=SECRETS) -> None:
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"


@pytest.mark.parametrize("verbose", [False, True])
def test_echoed_credentials_reach_no_file_and_no_output(tmp_path, verbose):
    cases = [("echo_answer", 3), ("echo_error", 4), ("echo_bad_request", 5), ("ok", 6)]
    manifest = write_manifest(tmp_path, cases)
    out = tmp_path / "run"
    with serve() as (handler, url):
        host_url = url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@") + f"?api-token={URL_TOKEN}"
        result = _eval(host_url, manifest, out, "--max-retries", "1", verbose=verbose)
        assert result.returncode == 0, result.stderr
        # the server really was sent the credentials (and so could echo them)
        assert all(URL_TOKEN in query for _, query in handler.seen)
        assert all(auth.startswith("Basic ") for auth, _ in handler.seen)  # userinfo is HTTP basic auth
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    texts |= {path.name: path.read_bytes().decode("utf-8", "replace") for path in out.iterdir()}
    _assert_no_secret(texts)
    if verbose:
        assert "DEBUG" in result.stderr  # -v really logged at debug level

    run = json.loads((out / "run.json").read_text())
    assert run["base_url"] == url + "?api-token=***"
    by_id = _by_id(out)
    assert by_id["img0"].pred == 3 and "***" in by_id["img0"].text  # the echo in the answer was scrubbed
    assert by_id["img1"].error.startswith("HTTP 500: rejected: you sent Basic ")
    assert "?api-token=***" in by_id["img1"].error


def test_key_in_a_bearer_header_never_leaks(tmp_path):
    cases = [("echo_answer", 3), ("echo_error", 4)]
    out = tmp_path / "run"
    with serve() as (handler, url):
        result = _eval(url, write_manifest(tmp_path, cases), out, "--max-retries", "0", verbose=True)
        assert result.returncode == 0, result.stderr
        assert handler.seen[0][0] == f"Bearer {KEY}"
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    _assert_no_secret(texts | {p.name: p.read_bytes().decode("utf-8", "replace") for p in out.iterdir()})
    assert "you sent Bearer ***" in _by_id(out)["img1"].error


def test_one_letter_key_does_not_mangle_messages(tmp_path):
    cases = [("bad_request", 1), ("echo_error", 2), ("ok", 3)]
    manifest = write_manifest(tmp_path, cases)
    missing = {"image": "missing-kkk.png", "id": "kkk", "problem": "[case=ok answer=1]", "solution": 1}
    rows = manifest.read_text() + json.dumps({**missing, "dataset": "fake"}) + "\n"
    manifest.write_text(rows)
    out = tmp_path / "run"
    with serve() as (handler, url):
        result = _eval(url, manifest, out, "--max-retries", "0", key="k")
        assert result.returncode == 0, result.stderr
        assert handler.seen[0][0] == "Bearer k"
    by_id = _by_id(out)
    # the server's text may hold the key and a one-letter key cannot be searched for: it is left out
    assert by_id["img0"].error == "HTTP 400 (not retried)"
    assert by_id["img1"].error == "HTTP 500 (after 1 attempt)"
    assert "missing-kkk.png" in by_id["kkk"].error and "***" not in by_id["kkk"].error  # our text is intact
    assert by_id["img2"].text == "<think>counted</think><answer>3</answer>"


@pytest.mark.parametrize(
    ("url", "public", "secrets"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", ()),
        ("https://u:p%40ss@h.example/v1", "https://h.example/v1", ("u", "p%40ss", "dTpwQHNz")),
        ("http://[::1]:8000/v1?k=v&empty=", "http://[::1]:8000/v1?k=***&empty=***", ("v",)),
        ("http://tok@host/v1#frag", "http://host/v1", ("tok", "dG9rOg==")),
    ],
)
def test_endpoint_public_url_and_secrets(url, public, secrets):
    from crowdvlm.evaluate.backends.credentials import Endpoint

    endpoint = Endpoint.parse(url, None)
    assert endpoint.public_url == public
    assert endpoint.secrets == secrets


def test_scrub_replaces_long_secrets_only():
    from crowdvlm.evaluate.backends.credentials import Endpoint

    long_key = Endpoint.parse("http://h/v1?token=a%2Fb%20c%2Bd%3De-long", "sk-0123456789")  # a/b c+d=e-long
    echoed = "sk-0123456789 a/b c+d=e-long a%2Fb%20c%2Bd%3De-long a%2Fb+c%2Bd%3De-long"
    assert long_key.scrub(echoed) == "*** *** *** ***"
    assert long_key.server_text("  bad\n key  sk-0123456789 ") == "bad key ***"
    short = Endpoint.parse("http://h/v1", "k")
    assert short.scrub("keep kk") == "keep kk" and short.server_text("the key was k") is None
