"""The OpenAI-compatible backend against a small OpenAI-compatible server started here on 127.0.0.1.

The server (stdlib ``http.server``, one thread per request) scripts its behaviour per image from a marker in
the prompt text — ``[case=NAME answer=N]`` — so the cases do not depend on the order in which concurrent
requests arrive. Backoff delays are a few milliseconds.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from crowdvlm.evaluate.backends.openai_backend import OpenAIBackend, image_data_url
from crowdvlm.evaluate.predictions import read_predictions
from crowdvlm.evaluate.run import evaluate

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"
MARKER = re.compile(r"\[case=(\w+) answer=(\d+)\]")


class FakeOpenAI(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` with scripted failures."""

    calls: Counter  # case -> requests seen (set per server)
    requests: list  # parsed request bodies
    lock: threading.Lock

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        text = next(part["text"] for part in content if part["type"] == "text")
        case, answer = MARKER.search(text).groups()
        with self.lock:
            self.calls[case] += 1
            self.requests.append({"body": body, "auth": self.headers.get("Authorization")})
            attempt = self.calls[case]
        if case == "rate_limited_once" and attempt == 1:
            return self._reply(429, {"error": {"message": "slow down", "type": "rate_limit"}})
        if case == "server_error":  # always fails: the error must be recorded after the retries
            # echo the key back, as a careless server might: it must still never reach our files
            return self._reply(500, {"error": {"message": f"boom for {self.headers.get('Authorization')}"}})
        if case == "bad_request":
            return self._reply(400, {"error": {"message": "unsupported image"}})
        if case == "slow":
            time.sleep(1.0)  # longer than the client's timeout
        self._reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": f"<think>counted</think><answer>{answer}</answer>",
                        },
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.fixture
def server():
    handler = type("Handler", (FakeOpenAI,), {"calls": Counter(), "requests": [], "lock": threading.Lock()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _backend(url: str, **overrides) -> OpenAIBackend:
    settings = dict(
        base_url=url,
        api_key=SECRET,
        max_new_tokens=32,
        concurrency=4,
        timeout=0.3,
        max_retries=2,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    return OpenAIBackend("fake-gpt", **(settings | overrides))


def _items(tmp_path, cases):
    from crowdvlm.evaluate.backends.base import EvalItem

    items = []
    for i, (case, truth) in enumerate(cases):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (16, 16), (i * 40 % 255, 0, 0)).save(path)
        items.append(EvalItem(f"img{i}", "fake", path, f"How many? [case={case} answer={truth}]", truth))
    return items


def test_retries_recovers_and_records_persistent_errors(server, tmp_path, caplog):
    _, handler, url = server
    cases = [
        ("ok", 3),
        ("rate_limited_once", 5),
        ("server_error", 7),
        ("slow", 2),
        ("bad_request", 4),
        ("ok", 9),
    ]
    items = _items(tmp_path, cases)
    (tmp_path / "missing.png").unlink(missing_ok=True)
    items.append(
        items[0].__class__("gone", "fake", tmp_path / "missing.png", "How many? [case=ok answer=1]", 1)
    )
    backend = _backend(url)
    out = tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        metrics = evaluate(backend, items, out, batch_size=4, progress=False)
    backend.close()

    by_id = {p.id: p for p in read_predictions(out / "predictions.jsonl")}
    assert [by_id[f"img{i}"].pred for i in (0, 1, 5)] == [3, 5, 9]  # 429 then success is recovered
    assert by_id["img1"].error is None and handler.calls["rate_limited_once"] == 2
    # a 500 that persists: 1 attempt + 2 retries, then recorded
    assert handler.calls["server_error"] == 3
    assert "HTTP 500" in by_id["img2"].error and "after 3 attempts" in by_id["img2"].error
    assert by_id["img3"].error == "request timed out (after 3 attempts)"
    assert handler.calls["slow"] == 3
    # a 400 is not retried
    assert handler.calls["bad_request"] == 1 and "HTTP 400" in by_id["img4"].error
    assert "not retried" in by_id["img4"].error
    # a missing image never reaches the server
    assert by_id["gone"].error.startswith("cannot load image") and len(by_id) == 7

    assert metrics["overall"]["n"] == 3 and metrics["overall"]["errors"] == 4
    assert metrics["overall"]["mae"] == 0.0

    # every request carried the key, and the image as a data URL
    request = handler.requests[0]
    assert request["auth"] == f"Bearer {SECRET}"
    image_part = request["body"]["messages"][0]["content"][0]
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )
    assert request["body"]["temperature"] == 0 and request["body"]["model"] == "fake-gpt"

    # ... but the key is in no output file and no log line (the 500's body echoed it back)
    for path in out.iterdir():
        if path.suffix in {".json", ".jsonl", ".md"}:
            assert SECRET not in path.read_text(), path
    assert SECRET not in caplog.text
    assert "***" in by_id["img2"].error  # the echoed key was scrubbed


def test_concurrency_is_bounded(server, tmp_path):
    httpd, handler, url = server
    in_flight, peak, lock = [0], [0], threading.Lock()
    original = handler.do_POST

    def counting_post(self):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.05)
            original(self)
        finally:
            with lock:
                in_flight[0] -= 1

    handler.do_POST = counting_post
    backend = _backend(url, concurrency=2)
    items = _items(tmp_path, [("ok", i) for i in range(8)])
    answers = backend.generate(backend.prepare(items))
    backend.close()
    assert [a.text for a in answers] == [f"<think>counted</think><answer>{i}</answer>" for i in range(8)]
    assert peak[0] == 2


def test_key_and_url_from_environment(server, tmp_path, monkeypatch):
    _, handler, url = server
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    backend = OpenAIBackend("fake-gpt", timeout=2, max_retries=0)
    answers = backend.generate(backend.prepare(_items(tmp_path, [("ok", 12)])))
    backend.close()
    assert answers[0].text.endswith("<answer>12</answer>")
    assert handler.requests[0]["auth"] == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(backend.describe())


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o")


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("BMP", "image/png"), ("TIFF", "image/png")],
)
def test_image_data_url_formats(tmp_path, fmt, mime):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (8, 8), "blue").save(path, format=fmt)
    assert image_data_url(path).startswith(f"data:{mime};base64,")


def test_image_data_url_rejects_corrupt_file(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(OSError):
        image_data_url(path)


def test_eval_cli_with_the_openai_backend(server, tmp_path, capsys, caplog):
    from crowdvlm.evaluate.cli import eval_main

    _, handler, url = server
    rows = []
    for i, (case, truth) in enumerate([("ok", 3), ("rate_limited_once", 8), ("server_error", 2)]):
        Image.new("RGB", (16, 16), (0, i * 50, 0)).save(tmp_path / f"{i}.png")
        rows.append(
            {"image": f"{i}.png", "problem": f"How many? [case={case} answer={truth}]", "solution": truth}
        )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    argv = [*"--backend openai --model fake-gpt".split(), "--base-url", url, "--api-key", SECRET]
    argv += ["--data", str(tmp_path / "m.jsonl"), "--out", str(out)]
    argv += "--max-retries 1 --request-timeout 2 --no-progress".split()
    with caplog.at_level(logging.DEBUG):
        assert eval_main(argv) == 0
    captured = capsys.readouterr()
    assert "2 images scored (1 errors): MAE 0.00" in captured.out
    assert handler.calls == Counter({"ok": 1, "rate_limited_once": 2, "server_error": 2})
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "openai" and run["base_url"] == url and run["max_retries"] == 1
    for text in (
        captured.out,
        captured.err,
        caplog.text,
        *(p.read_text() for p in out.glob("*.*") if p.suffix != ".png"),
    ):
        assert SECRET not in text
