"""What the app hands back: CSV cells that cannot become formulas, messages without server paths, compact
result images, and no request files left on disk once a request is answered."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from crowdvlm.app.handlers import PageHandlers
from crowdvlm.app.service import CountingService, Prediction, to_csv
from crowdvlm.app.uploads import without_paths
from crowdvlm.evaluate.backends.base import Prepared
from test_app_service import ScriptedBackend, png


@pytest.fixture
def service(tmp_path):
    svc = CountingService(
        ScriptedBackend({30: "<answer>2</answer>", 3000: "<answer>9</answer>"}), work_dir=tmp_path / "work"
    )
    yield svc
    svc.close()


@pytest.fixture
def uploads(tmp_path):
    """gradio's upload folder stand-in: the only folder the handlers open files from."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(cell):
    rows = list(csv.reader(io.StringIO(to_csv([Prediction(cell, error=cell, answer=cell)]), newline="")))
    safe = "'" + cell.replace("\r", "\n")  # a bare CR would split the row: it becomes a (quoted) newline
    assert rows[1] == [safe, "", safe, safe]


def test_csv_leaves_ordinary_cells_and_counts_alone():
    rows = list(csv.reader(io.StringIO(to_csv([Prediction("a.png", 3, "<answer>3</answer>")]))))
    assert rows[1] == ["a.png", "3", "", "<answer>3</answer>"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot load image /tmp/gradio/4f2a/crowd.png: truncated", "cannot load image crowd.png: truncated"),
        (
            "[Errno 2] No such file or directory: '/srv/models/secret/x.bin'",
            "[Errno 2] No such file or directory: 'x.bin'",
        ),
        ("C:\\Users\\me\\AppData\\x.png is bad", "x.png is bad"),
        (
            "b.zip/photos/a.png: refused",
            "b.zip/photos/a.png: refused",
        ),  # a zip member's name is the user's own
        ("see http://host/v1/models", "see http://host/v1/models"),
    ],
)
def test_messages_lose_server_paths(text, shown):
    assert without_paths(text) == shown


def test_errors_on_the_page_and_in_the_csv_show_no_server_path(service, uploads):
    good = uploads / "thirty.png"
    good.write_bytes(png(30))
    handlers = PageHandlers(service, [uploads])

    def boom(items):
        raise FileNotFoundError(2, "No such file or directory", "/srv/secret/weights/model.bin")

    service.backend.prepare = boom
    _, message, _ = handlers.count_one(str(good), "How many?")
    assert "/srv/secret" not in message and "model.bin" in message

    def unloadable(items):
        return Prepared(items, [f"cannot load image {item.image}: truncated" for item in items], [])

    service.backend.prepare = unloadable
    rows, csv_path, _ = handlers.count_many([str(good)], "How many?")
    assert str(uploads) not in rows[0][2] and "thirty.png" in rows[0][2]
    with open(csv_path, encoding="utf-8") as f:
        assert str(uploads) not in f.read()


def test_a_big_upload_is_served_back_as_a_compact_jpeg(service, uploads):
    big = uploads / "crowd.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (2000, 3000, 3), dtype=np.uint8)).save(big)
    service.limits = type(service.limits)(max_upload_bytes=100 * 1024 * 1024)
    shown, result, _ = PageHandlers(service, [uploads]).count_one(str(big), "How many?")
    assert "crowdvlm-count'>9<" in result
    assert isinstance(shown, str) and shown.endswith(
        ".jpg"
    )  # a file, not a PIL image gradio re-encodes as PNG
    with Image.open(shown) as served:
        assert served.format == "JPEG" and served.size == (3000, 2000)


def test_zip_members_are_removed_once_the_request_is_answered(service, uploads):
    archive = uploads / "b.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("thirty.png", png(30))
    rows, _, _ = PageHandlers(service, [uploads]).count_many([str(archive)], "How many?")
    assert rows[0][:2] == ["b.zip/thirty.png", 2]
    assert not [p for p in service.work_dir.rglob("*") if p.is_file() and p.suffix != ".csv"]
