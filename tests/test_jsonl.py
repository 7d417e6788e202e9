"""The one reader of crowdvlm's own JSONL files: strict for logs, tolerant of a torn last line for predictions."""

from __future__ import annotations

import pytest

from crowdvlm.jsonl import read_jsonl
from crowdvlm.train.callbacks import JsonlWriter
from crowdvlm.train.callbacks import read_jsonl as log_reader

GOOD = b'{"step": 1}\n\n{"step": 2}\n'


@pytest.mark.parametrize(
    ("tail", "raise_reads", "drop_reads"),
    [
        (b"", [1, 2], [1, 2]),  # nothing torn
        (b'{"step": 3}', [1, 2, 3], [1, 2]),  # a whole object whose newline never came
        (b'{"st', None, [1, 2]),  # half an object
        (b'{"st\n', None, [1, 2]),  # a complete last line that is not JSON
        (b"[3]\n", None, [1, 2]),  # a last line that is JSON but not an object
    ],
)
def test_torn_tail_rules(tmp_path, tail, raise_reads, drop_reads):
    path = tmp_path / "log.jsonl"
    path.write_bytes(GOOD + tail)
    if raise_reads is None:
        with pytest.raises(ValueError, match=r"log\.jsonl, line 4: expected a JSON object"):
            read_jsonl(path)
    else:
        assert [r["step"] for r in read_jsonl(path)] == raise_reads
    assert [r["step"] for r in read_jsonl(path, torn_tail="drop")] == drop_reads
    assert path.read_bytes() == GOOD + tail  # "drop" leaves the file alone
    assert [r["step"] for r in read_jsonl(path, torn_tail="truncate")] == drop_reads
    assert path.read_bytes() == (GOOD + tail if tail == b"" else GOOD)


@pytest.mark.parametrize("torn_tail", ["raise", "drop", "truncate"])
def test_a_bad_line_before_the_last_names_file_and_line(tmp_path, torn_tail):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl, line 2: expected a JSON prediction record"):
        read_jsonl(path, torn_tail=torn_tail, record="JSON prediction record")
    assert path.read_bytes() == b'{"a": 1}\nnot json\n{"a": 2}\n'


def test_the_training_log_reads_back_through_the_same_reader(tmp_path):
    assert log_reader is read_jsonl
    writer = JsonlWriter(tmp_path / "log.jsonl")
    writer.write({"event": "log", "loss": 0.5})
    writer.write({"event": "train_end"})
    assert log_reader(tmp_path / "log.jsonl") == [{"event": "log", "loss": 0.5}, {"event": "train_end"}]
