"""Atomic writes: the old file or the new one, never half of one; a failed write names its path."""

import errno
import json
import os

import pytest

from crowdvlm.atomic import atomic_write_json, atomic_write_text
from crowdvlm.errors import RunError


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and os.listdir(path.parent) == ["state.json"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_a_full_disk_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    path = tmp_path / ".done.json"
    atomic_write_json(path, {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunError, match=f"cannot write {path}: No space left on device"):
        atomic_write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == [".done.json"]  # no temporary file left behind


def test_a_value_json_cannot_hold_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"mae": 1.0})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"mae": float("nan")}, allow_nan=False)
    assert json.loads(path.read_text()) == {"mae": 1.0}


def test_an_unwritable_folder_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match=f"cannot write {blocker / 'state.json'}"):
        atomic_write_json(blocker / "state.json", {})
