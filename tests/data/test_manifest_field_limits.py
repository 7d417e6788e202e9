"""A manifest's ``problem`` is a question, not a document: a huge one is refused naming the file and record.

A 50 MB ``problem`` once reached the tokenizer during ``eval`` and aborted it out of memory.
"""

from __future__ import annotations

import json

import pytest

import data_writers as native
from crowdvlm.data.errors import DataError
from crowdvlm.data.manifest import MAX_PROBLEM_CHARS, read_manifest, validate_record


def test_a_huge_problem_is_refused_naming_file_and_record(tmp_path):
    native.write_image(tmp_path / "a.png")
    rows = [
        {"image": "a.png", "id": "ok", "problem": "How many?", "solution": 1},
        {"image": "a.png", "id": "huge", "problem": "How many? " + "x" * 5_000_000, "solution": 1},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataError,
        match=rf"m.jsonl \(line 2\): problem is 5000010 characters; the limit is {MAX_PROBLEM_CHARS}",
    ):
        read_manifest(path)


def test_a_problem_at_the_limit_is_kept():
    record = {"image": "a.png", "problem": "q" * MAX_PROBLEM_CHARS, "solution": 1}
    assert validate_record(record, "m.jsonl", "line 1")["problem"] == record["problem"]
