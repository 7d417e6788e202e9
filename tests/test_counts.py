"""The one rule for a ground-truth count (crowdvlm.counts), and that every caller applies it."""

import json

import numpy as np
import pytest

from crowdvlm.counts import INT64_MAX, read_count, read_whole_number
from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError, SkipLog
from crowdvlm.data.folder import read_counts
from crowdvlm.data.manifest import read_manifest, write_manifest
from crowdvlm.rewards import POINT_REWARDS, REWARDS
from image_writers import good_jpeg

ACCEPTED = [  # stored value -> count
    (22, 22),
    (0, 0),
    (np.int64(22), 22),
    (22.0, 22),
    ("22", 22),
    (" 22 ", 22),
    ("22.0", 22),
    ("22.", 22),
    ("<answer>22</answer>", 22),
    (" <answer> 22 </answer>\n", 22),
    ("<answer>22.0</answer>", 22),
    (INT64_MAX, INT64_MAX),
    (str(INT64_MAX), INT64_MAX),
    ("0" * 30 + "7", 7),
]

REFUSED = [  # stored value -> words of the message
    (True, "is a bool"),
    (False, "is a bool"),
    (-1, ">= 0"),
    ("-3", ">= 0"),
    (2.5, "not a whole number"),
    ("2.5", "not a count"),
    (float("nan"), "not a whole number"),
    (float("inf"), "not a whole number"),
    (INT64_MAX + 1, "beyond the 64-bit"),
    ("99999999999999999999", "beyond the 64-bit"),
    ("9" * 5000, "beyond the 64-bit"),  # past Python's int() digit limit, still our message
    (1e30, "beyond the 64-bit"),
    ("\u0662\u0662", "not a count"),  # Arabic-Indic 22: int() would accept it
    ("\uff12\uff12", "not a count"),  # fullwidth 22
    (None, "missing"),
    ("", "not a count"),
    ("many", "not a count"),
    ("<answer>22", "not a count"),  # one tag without the other
    ("<think>x</think><answer>22</answer>", "not a count"),  # a completion, not a stored count
    ("1e3", "not a count"),
    ("1,234", "not a count"),
    ("+5", "not a count"),
    ([22], "non-negative integer"),
]


@pytest.mark.parametrize("value,count", ACCEPTED)
def test_accepted_counts(value, count):
    assert read_count(value) == count and type(read_count(value)) is int


@pytest.mark.parametrize("value,words", REFUSED)
def test_refused_counts_name_the_field_and_the_reason(value, words):
    with pytest.raises(ValueError, match="solution") as info:
        read_count(value)
    assert words in str(info.value)


def test_none_only_where_allowed_and_numbers_only_for_sizes():
    assert read_count(None, allow_none=True) is None
    assert read_whole_number(224.0, "width") == 224
    with pytest.raises(ValueError, match="width"):
        read_whole_number("224", "width")


def test_a_long_bad_value_is_shortened_in_the_message():
    with pytest.raises(ValueError) as info:
        read_count("x" * 10_000)
    assert len(str(info.value)) < 200


# --------------------------------------------------------------------------- every caller applies the rule

REC = {"image": "a.jpg", "problem": "How many?"}


@pytest.fixture
def folder(tmp_path):
    good_jpeg(tmp_path / "a.jpg")
    return tmp_path


@pytest.mark.parametrize("value,count", [("22.0", 22), ("<answer>7</answer>", 7), (3.0, 3)])
def test_manifest_reads_and_writes_by_the_rule(folder, value, count):
    (folder / "m.jsonl").write_text(json.dumps({**REC, "solution": value}) + "\n")
    assert read_manifest(folder / "m.jsonl")[0]["solution"] == count
    write_manifest([{**REC, "image": str(folder / "a.jpg"), "solution": value}], folder / "w.jsonl")
    assert json.loads((folder / "w.jsonl").read_text())["solution"] == count


@pytest.mark.parametrize("value,words", [(True, "is a bool"), ("\u0663", "not a count"), (2**63, "beyond")])
def test_manifest_refuses_by_the_rule(folder, value, words):
    (folder / "m.jsonl").write_text(json.dumps({**REC, "solution": value}) + "\n")
    with pytest.raises(DataError, match=f"m.jsonl \\(line 1\\): solution.*{words}") as info:
        read_manifest(folder / "m.jsonl")
    assert info.value.kind == "bad-field"
    with pytest.raises(DataError, match=words):
        write_manifest([{**REC, "image": str(folder / "a.jpg"), "solution": value}], folder / "w.jsonl")


@pytest.mark.parametrize("value,count", [("22.0", 22), ("<answer>7</answer>", 7), (5, 5)])
def test_crowdvlm_records_read_by_the_rule(folder, value, count):
    (folder / "r.jsonl").write_text(json.dumps({**REC, "solution": value}) + "\n")
    convert("crowdvlm", folder / "r.jsonl", folder / "m.jsonl", progress=False)
    assert read_manifest(folder / "m.jsonl")[0]["solution"] == count


@pytest.mark.parametrize("value,words", [(True, "is a bool"), (-2, ">= 0"), ("\u0663", "not a count")])
def test_crowdvlm_records_refuse_by_the_rule(folder, value, words):
    (folder / "r.jsonl").write_text(json.dumps({**REC, "solution": value}) + "\n")
    with pytest.raises(DataError, match=f"line 1.*solution.*{words}") as info:
        convert("crowdvlm", folder / "r.jsonl", folder / "m.jsonl", progress=False)
    assert info.value.kind == "bad-field"


def test_folder_csv_counts_by_the_rule(tmp_path):
    csv = tmp_path / "counts.csv"
    csv.write_text("image,count\na.jpg,22.0\nb.jpg,\nc.jpg,\u0663\nd.jpg,-1\n", encoding="utf-8")
    skips = SkipLog(skip_bad=True)
    assert read_counts(csv, skips) == [("line 2", "a.jpg", 22), ("line 3", "b.jpg", None)]
    assert [e.record for e in skips.skipped] == ["line 4", "line 5"]
    assert "not a count" in skips.skipped[0].problem and ">= 0" in skips.skipped[1].problem


def _point_columns(n: int) -> dict:
    return {"points": [[[10, 10]]] * n, "image_size": [[64, 64]] * n, "frame_size": [[64, 64]] * n}


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_reward_reads_solutions_by_the_rule(name):
    reward = REWARDS[name]
    completion = (
        '[{"point_2d": [10, 10]}]<answer>1</answer>' if name in POINT_REWARDS else "<answer>1</answer>"
    )
    columns = _point_columns(2) if name in POINT_REWARDS else {}
    same = reward([completion] * 2, solution=["<answer>1</answer>", 1.0], **columns)
    assert same == reward([completion] * 2, solution=[1, 1], **columns)
    with pytest.raises(ValueError, match="is a bool"):
        reward([completion] * 2, solution=[True, 1], **columns)
    with pytest.raises(ValueError, match="not a count"):  # a completion is not a stored count
        reward([completion] * 2, solution=["<think>x</think><answer>1</answer>", 1], **columns)
