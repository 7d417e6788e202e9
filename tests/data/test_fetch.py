"""`crowdvlm data fetch` against a local HTTP server on 127.0.0.1 that serves good, corrupt, missing, slow and
flaky images: what is verified, counted, reported, retried and resumed."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from crowdvlm.cli import main as crowdvlm
from crowdvlm.data.convert import convert
from crowdvlm.data.fetch import FetchItem, fetch_images, fetched_image


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD, OTHER, FLAKY = png((255, 0, 0)), png((0, 255, 0)), png((0, 0, 255))
SLOW_S = 3.0  # the slow image answers after this long: past the short timeout, inside the long one


class Images(BaseHTTPRequestHandler):
    calls: Counter
    release: threading.Event

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.calls[self.path] += 1
        if self.path == "/missing.png":
            return self.send_error(404)
        if self.path == "/removed.png":
            return self.send_error(410)
        if self.path == "/flaky.png" and self.calls[self.path] == 1:
            return self.send_error(503)
        if self.path == "/slow.png":
            self.release.wait(SLOW_S)  # bounded: the server never holds a thread longer
        body = {"/good.png": GOOD, "/corrupt.png": OTHER, "/flaky.png": FLAKY, "/slow.png": GOOD}.get(
            self.path
        )
        if body is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that timed out and hung up: expected here
        pass


@pytest.fixture
def server():
    handler = type("Handler", (Images,), {"calls": Counter(), "release": threading.Event()})
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def items(base: str) -> list[FetchItem]:
    return [
        FetchItem(f"{base}/good.png", sha(GOOD)),
        FetchItem(f"{base}/good.png", sha(GOOD)),  # listed twice: fetched once
        FetchItem(f"{base}/corrupt.png", sha(png((9, 9, 9)))),  # the server's bytes no longer match
        FetchItem(f"{base}/missing.png", "a" * 64),
        FetchItem(f"{base}/removed.png", "b" * 64),
        FetchItem(f"{base}/flaky.png", sha(FLAKY)),
        FetchItem(f"{base}/slow.png", sha(GOOD)[::-1]),  # once it answers: bytes that do not match
    ]


def test_fetch_verifies_counts_reports_and_resumes(server, tmp_path):
    base, handler = server
    out = tmp_path / "images"
    result = fetch_images(items(base), out, workers=3, timeout=1.0, retries=1, progress=False)
    assert dict(result.counts) == {"downloaded": 2, "changed": 1, "gone": 2, "failed": 1}
    assert (
        fetched_image(out, sha(GOOD)).read_bytes() == GOOD and fetched_image(out, sha(GOOD)).suffix == ".png"
    )
    assert fetched_image(out, sha(FLAKY)).read_bytes() == FLAKY  # a 503, then a retry that worked
    assert fetched_image(out, sha(png((9, 9, 9)))) is None  # changed bytes are not kept
    assert handler.calls["/good.png"] == 1 and handler.calls["/missing.png"] == 1  # no retry of a 404
    assert handler.calls["/slow.png"] == 2  # timed out, retried once, timed out
    report = (out / "fetch_report.tsv").read_text().splitlines()
    assert report[0] == "status\treason\tsha256\turl" and len(report) == 5
    statuses = {line.split("\t")[0] + ":" + line.split("\t")[3].rsplit("/", 1)[1] for line in report[1:]}
    assert statuses == {"changed:corrupt.png", "gone:missing.png", "gone:removed.png", "failed:slow.png"}
    assert "HTTP 404" in "\n".join(report) and "after 2 attempts" in "\n".join(report)
    assert not list(out.glob("*.part"))

    # A rerun fetches only what is not there yet; a file whose bytes are wrong is fetched again.
    fetched_image(out, sha(FLAKY)).write_bytes(b"truncated")
    handler.release.set()  # the slow image now answers at once
    again = fetch_images(items(base), out, workers=2, timeout=5.0, retries=0, progress=False)
    assert dict(again.counts) == {"present": 1, "downloaded": 1, "changed": 2, "gone": 2}  # flaky re-fetched
    assert handler.calls["/good.png"] == 1
    assert fetched_image(out, sha(FLAKY)).read_bytes() == FLAKY


def test_fetch_rejects_bad_options_and_hashes(tmp_path):
    with pytest.raises(ValueError, match="workers >= 1"):
        fetch_images([], tmp_path, workers=0)
    with pytest.raises(ValueError, match="is not a SHA-256 in hex"):
        fetch_images([FetchItem("http://127.0.0.1:9/x.png", "xyz")], tmp_path)


def test_fetch_then_convert_pixmo_count_from_the_command_line(server, tmp_path, capsys):
    base, handler = server
    root = tmp_path / "pixmo"
    (root / "data").mkdir(parents=True)
    rows = [(f"{base}/good.png", sha(GOOD), 3), (f"{base}/missing.png", "f" * 64, 5)]
    pq.write_table(
        pa.table(
            {
                "image_url": [u for u, _, _ in rows],
                "image_sha256": [s for _, s, _ in rows],
                "count": pa.array([c for *_, c in rows], pa.int32()),
                "label": ["apple", "pear"],
            }
        ),
        root / "data" / "test-00000-of-00001.parquet",
    )
    images = tmp_path / "images"
    fetch = ["data", "fetch", "--format", "pixmo-count", "--root", str(root), "--out", str(images)]
    assert crowdvlm([*fetch, "--timeout", "5", "--no-progress"]) == 0  # gone is reported, not a failure
    printed = capsys.readouterr()
    assert "1 downloaded, 1 gone" in printed.out and "fetch_report.tsv" in printed.err
    result = convert(
        "pixmo-count", root, tmp_path / "p.jsonl", image_dir=images, skip_bad=True, progress=False
    )
    assert result.n_records == 1 and result.skips.summary() == "1 bad records skipped: 1 missing-image"

    handler.release.clear()
    (root / "data" / "test-00000-of-00001.parquet").unlink()
    pq.write_table(
        pa.table(
            {"image_url": [f"{base}/slow.png"], "image_sha256": ["0" * 64], "count": [2], "label": ["x"]}
        ),
        root / "data" / "test-00000-of-00001.parquet",
    )
    code = crowdvlm([*fetch, "--timeout", "0.5", "--retries", "0", "--no-progress"])
    assert code == 1 and "run the same command again" in capsys.readouterr().err
