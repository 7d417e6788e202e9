"""The manifest: JSONL round trip, validation with file/line errors, and the TRL dataset built from it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from crowdvlm.data.errors import DataError
from crowdvlm.data.manifest import manifest_to_dataset, read_manifest, write_manifest
from crowdvlm.prompts import build_prompt
from data_writers import write_image


@pytest.fixture
def images(tmp_path):
    return [write_image(tmp_path / "imgs" / f"{i}.png", size=(20 + i, 10), mode="L") for i in range(3)]


def test_round_trip_relative_paths_and_defaults(tmp_path, images):
    outside = write_image(tmp_path.parent / f"{tmp_path.name}-outside.png")
    records = [
        {"image": str(images[0]), "problem": "How many?", "solution": 2, "dataset": "d", "split": "train",
         "points": [[1.234, 2.0], [3, 4]], "width": 20, "height": 10},
        {"image": str(outside), "problem": "How many?", "solution": 0},
    ]  # fmt: skip
    path = write_manifest(records, tmp_path / "m.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["image"] == "imgs/0.png"  # inside the manifest's folder: relative
    assert lines[1]["image"] == str(outside)  # elsewhere: absolute
    assert lines[0]["points"] == [[1.23, 2.0], [3.0, 4.0]]
    back = read_manifest(path)
    assert back[0]["image"] == str(images[0].resolve())
    assert (back[0]["solution"], back[0]["dataset"], back[0]["split"], back[0]["id"]) == (
        2,
        "d",
        "train",
        "imgs/0.png",
    )
    assert (back[1]["dataset"], back[1]["split"]) == ("m", "all")  # defaults: file stem, "all"


def test_paper_records_read_as_manifest(tmp_path, images):
    (tmp_path / "paper.jsonl").write_text(
        json.dumps({"image": "imgs/1.png", "problem": "Please count the sheep.", "solution": 7}) + "\n\n"
    )
    (rec,) = read_manifest(tmp_path / "paper.jsonl")
    assert rec["solution"] == 7 and rec["image"].endswith("imgs/1.png")


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "not valid JSON"),
        ('{"image": "imgs/0.png", "problem": "q"}', "missing field(s) ['solution']"),
        (
            '{"image": "imgs/0.png", "problem": "q", "solution": "3 people"}',
            "solution '3 people' is not a count",
        ),
        ('{"image": "imgs/0.png", "problem": "q", "solution": 2.5}', "solution 2.5 is not a whole number"),
        ('{"image": "imgs/0.png", "problem": "q", "solution": -1}', "solution must be >= 0"),
        ('{"image": "imgs/0.png", "problem": "", "solution": 1}', "problem must be a non-empty string"),
        (
            '{"image": "imgs/0.png", "problem": "q", "solution": 2, "points": [[1, 1]]}',
            "solution is 2 but there are 1",
        ),
        (
            '{"image": "imgs/0.png", "problem": "q", "solution": 1, "points": [[1, NaN]]}',
            "NaN or infinite coordinate",
        ),
        (
            '{"image": "imgs/0.png", "problem": "q", "solution": 1, "points": [["a", 1]]}',
            "non-numeric coordinate",
        ),
        ('{"image": "imgs/9.png", "problem": "q", "solution": 1}', "image not found"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, images, line, message):
    good = json.dumps({"image": "imgs/0.png", "problem": "q", "solution": 1})
    (tmp_path / "m.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError) as info:
        read_manifest(tmp_path / "m.jsonl")
    text = str(info.value)
    assert "m.jsonl" in text and "line 2" in text and message in text


def test_write_refuses_bad_records_and_leaves_no_file(tmp_path, images):
    with pytest.raises(DataError, match="record 1"):
        write_manifest(
            [{"image": str(images[0]), "problem": "q", "solution": 1}, {"image": "x.png"}],
            tmp_path / "m.jsonl",
        )
    assert not (tmp_path / "m.jsonl").exists()


def _manifest(tmp_path, images, solutions, name="m.jsonl"):
    records = [
        {
            "image": str(img),
            "problem": "How many dots are in the image?",
            "solution": s,
            "dataset": "d",
            "split": "test",
            "id": f"d/{i}",
        }
        for i, (img, s) in enumerate(zip(images, solutions, strict=True))
    ]
    return write_manifest(records, tmp_path / name)


def test_manifest_to_dataset_columns_for_trl(tmp_path, images):
    a = _manifest(tmp_path, images[:2], [3, 0], "a.jsonl")
    b = _manifest(tmp_path, images[2:], [5], "b.jsonl")
    ds = manifest_to_dataset([a, b], template="eval", output="answer-only")
    assert {"prompt", "image", "solution", "dataset", "id", "problem"} <= set(ds.column_names)
    assert ds["solution"] == [3, 0, 5]
    assert ds.features["image"].decode  # a datasets.Image column...
    assert ds.data.column("image")[0].as_py()["path"] == str(
        images[0].resolve()
    )  # ...stored as a path (lazy)
    row = ds[1]
    assert (
        isinstance(row["image"], Image.Image) and row["image"].mode == "RGB" and row["image"].size == (21, 10)
    )
    (turn,) = row["prompt"]
    assert turn["role"] == "user"
    assert turn["content"][0]["type"] == "image"
    assert turn["content"][1] == {
        "type": "text",
        "text": build_prompt("How many dots are in the image?", "eval", "answer-only"),
    }


def test_manifest_to_dataset_refuses_missing_ground_truth(tmp_path, images):
    path = _manifest(tmp_path, images, [1, None, 2])
    with pytest.raises(
        ValueError, match=r"1 of 3 records have no ground truth \(solution null, first: d/1\)"
    ):
        manifest_to_dataset(path)
    ds = manifest_to_dataset(path, require_solution=False)
    assert ds["solution"] == [1, None, 2]


def test_manifest_to_dataset_empty_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no usable records"):
        manifest_to_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="no manifest"):
        manifest_to_dataset([])
