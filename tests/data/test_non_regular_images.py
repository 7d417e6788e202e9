"""A named pipe (or any file that is not a regular file) given as an image is refused before it is opened.

Opening a FIFO for reading blocks until a writer comes, so each test keeps a writer ready that unblocks a
reader after a few seconds (:func:`fifo`): code that opens the pipe still ends, and fails on its message.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest

import data_writers as native
from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError
from crowdvlm.data.images import ImageCheck, check_image, open_image

UNBLOCK_AFTER_S = 3.0


def fifo(path: Path) -> Path:
    """A named pipe at ``path``; a thread opens it for writing (then closes it) if a reader ever waits on it."""
    os.mkfifo(path)

    def unblock() -> None:
        deadline = time.monotonic() + UNBLOCK_AFTER_S
        while time.monotonic() < deadline:
            time.sleep(0.2)
        while time.monotonic() < deadline + 1.0:  # a reader that waits makes this open succeed
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: nobody is reading
                    return
            time.sleep(0.05)

    threading.Thread(target=unblock, daemon=True).start()
    return path


def test_check_image_refuses_a_named_pipe_naming_it(tmp_path):
    pipe = fifo(tmp_path / "crowd.jpg")
    with pytest.raises(DataError, match="not a regular file") as caught:
        check_image(pipe, record="line 3")
    assert (
        caught.value.kind == "bad-image"
        and "crowd.jpg" in str(caught.value)
        and "line 3" in str(caught.value)
    )
    with pytest.raises(DataError, match="not a regular file"):
        ImageCheck()(pipe, record="line 3")  # the training image check


def test_open_image_refuses_a_named_pipe(tmp_path):
    with pytest.raises(OSError, match="not a regular file"):
        open_image(fifo(tmp_path / "crowd.png"))


def test_eval_image_loaders_refuse_a_named_pipe(tmp_path):
    from crowdvlm.evaluate.backends.base import try_load_image
    from crowdvlm.evaluate.backends.openai_backend import image_data_url

    pipe = fifo(tmp_path / "crowd.png")
    image, why = try_load_image(pipe)
    assert image is None and "not a regular file" in why
    with pytest.raises(OSError, match="not a regular file"):
        image_data_url(pipe)


def test_pointing_image_size_refuses_a_named_pipe(tmp_path):
    from crowdvlm.pointing.targets import image_size

    with pytest.raises(OSError, match="not a regular file"):
        image_size(fifo(tmp_path / "crowd.png"))


def test_a_manifest_that_is_a_named_pipe_is_refused(tmp_path):
    from crowdvlm.data.manifest import read_manifest

    with pytest.raises(DataError, match=r"m.jsonl: not a regular file \(a named pipe\)"):
        read_manifest(fifo(tmp_path / "m.jsonl"))


def test_convert_counts_a_named_pipe_as_a_skipped_bad_image(tmp_path):
    native.write_image(tmp_path / "imgs" / "0.png")
    fifo(tmp_path / "imgs" / "1.png")
    records = [{"image": f"imgs/{i}.png", "problem": "How many?", "solution": i} for i in range(2)]
    (tmp_path / "r.json").write_text(json.dumps(records))
    result = convert("crowdvlm", tmp_path / "r.json", tmp_path / "m.jsonl", skip_bad=True, progress=False)
    assert result.n_records == 1
    (skipped,) = result.skips.skipped
    assert skipped.kind == "bad-image" and "not a regular file" in skipped.problem
