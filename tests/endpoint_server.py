"""A misbehaving OpenAI-compatible server on 127.0.0.1, for the tests of `crowdvlm eval --backend openai`.

Each image's prompt carries a marker ``[case=NAME answer=N]`` that picks the server's behaviour for that
request, so cases do not depend on the order in which concurrent requests arrive. Every loop here is
bounded in count and time, and the server stops with the test (:func:`serve`).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

MARKER = re.compile(r"\[case=(\w+) answer=(\d+)\]")
TRICKLE_BYTES = 40  # at one byte per 0.5 s: 20 s, far past any timeout the tests use
TRICKLE_PERIOD_S = 0.5
HANG_S = 30.0


class MisbehavingOpenAI(BaseHTTPRequestHandler):
    """``POST .../chat/completions``; the case in the prompt says how to (mis)behave."""

    calls: Counter  # case -> requests seen
    cut: Counter  # case -> trickled responses the client hung up on
    seen: list  # (Authorization header, query string) of each request
    lock: threading.Lock
    release: threading.Event  # set: "hang" answers at once (and a hanging request ends)

    def log_message(self, *args):  # keep pytest output clean
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (cut by its deadline, or interrupted): what several tests expect

    def _send(self, status: int, body: bytes, content_type: str = "application/json", echo: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if echo:
            self.send_header("X-Echo", echo)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, content: object, *, echo: str = "") -> None:
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        self._send(200, json.dumps({"object": "chat.completion", "choices": [choice]}).encode(), echo=echo)

    def _trickle(self, case: str, headers_too: bool) -> None:
        body = json.dumps({"choices": [{"message": {"content": "<answer>1</answer>"}}]}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        data = (head.encode() + body) if headers_too else body
        if not headers_too:
            self.wfile.write(head.encode())
        try:
            for byte in data[:TRICKLE_BYTES]:
                self.wfile.write(bytes([byte]))
                time.sleep(TRICKLE_PERIOD_S)
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                self.cut[case] += 1
        self.close_connection = True

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = next(part["text"] for part in body["messages"][0]["content"] if part["type"] == "text")
        case, answer = MARKER.search(text).groups()
        auth = self.headers.get("Authorization", "")
        query = self.path.partition("?")[2]
        echo = f"you sent {auth} with ?{query}"
        with self.lock:
            self.calls[case] += 1
            self.seen.append((auth, query))
        if case == "ok":
            return self._answer(f"<think>counted</think><answer>{answer}</answer>")
        if case == "html":  # a login page behind a wrong --base-url
            return self._send(200, b"<html><body>Please log in</body></html>", "text/html; charset=utf-8")
        if case == "no_choices":
            return self._send(200, json.dumps({"object": "chat.completion", "choices": []}).encode())
        if case == "no_choices_key":
            return self._send(200, json.dumps({"id": "x"}).encode())
        if case == "null_content":
            return self._answer(None)
        if case == "number_content":
            return self._answer(42)
        if case == "list_json":
            return self._send(200, b"[1, 2, 3]")
        if case == "choices_string":
            return self._send(200, json.dumps({"choices": "<answer>3</answer>"}).encode())
        if case == "bad_request":
            return self._send(400, json.dumps({"error": {"message": "unsupported image"}}).encode())
        if case == "trickle_body":
            return self._trickle(case, headers_too=False)
        if case == "trickle_headers":
            return self._trickle(case, headers_too=True)
        if case == "hang":
            self.release.wait(HANG_S)
            return self._answer(f"<answer>{answer}</answer>")
        # a careless server that echoes the credentials back everywhere it can
        if case == "echo_answer":
            return self._answer(f"<answer>{answer}</answer> {echo}", echo=echo)
        if case == "echo_error":
            error = {"error": {"message": f"rejected: {echo}", "type": echo}}
            return self._send(500, json.dumps(error).encode(), echo=echo)
        if case == "echo_key_variants":  # the key's case changed or cut short by one character
            key = auth.removeprefix("Bearer ")
            variants = f"lower {key.lower()} upper {key.upper()} cut {key[:-1]} tail {key[1:].swapcase()}"
            return self._send(500, json.dumps({"error": {"message": variants}}).encode(), echo=variants)
        if case == "echo_bad_request":
            return self._send(401, json.dumps({"error": {"message": f"bad key: {echo}"}}).encode(), echo=echo)
        raise AssertionError(f"unknown case {case}")


def write_manifest(folder: Path, cases: list[tuple[str, int]], name: str = "m.jsonl") -> Path:
    """A manifest of one small image per ``(case, truth)``; ids ``img0``, ``img1``, ... in order."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (case, truth) in enumerate(cases):
        Image.new("RGB", (16, 16), (i * 30 % 255, 0, 0)).save(folder / f"{i}.png")
        problem = f"How many? [case={case} answer={truth}]"
        rows.append(
            {"image": f"{i}.png", "id": f"img{i}", "problem": problem, "solution": truth, "dataset": "fake"}
        )
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@contextlib.contextmanager
def serve() -> Iterator[tuple[type[MisbehavingOpenAI], str]]:
    """Run a fresh server on 127.0.0.1; yields its handler class (for counters) and its ``/v1`` URL."""
    handler = type(
        "Handler",
        (MisbehavingOpenAI,),
        {
            "calls": Counter(),
            "cut": Counter(),
            "seen": [],
            "lock": threading.Lock(),
            "release": threading.Event(),
        },
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        handler.release.set()  # no request may hang on past the test
        httpd.shutdown()
        httpd.server_close()


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` of a command that is sent Ctrl-C: SIGINT back to its default, so that Python raises
    ``KeyboardInterrupt`` in it. A shell starts background jobs (``cmd &``, ``nohup``) with SIGINT ignored, and a
    child inherits that: the command would then never see the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
