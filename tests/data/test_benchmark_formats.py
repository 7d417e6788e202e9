"""The counting benchmarks' formats, each on small files written here in the publisher's layout and schema:
CountBenchQA (HF parquet, embedded images), PixMo-Count (parquet of URLs + SHA-256, images fetched), TallyQA
(JSON over COCO / Visual Genome folders) and any parquet/arrow table with an image and a count column."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark_writers import HF_IMAGE, image_bytes, write_countbenchqa, write_pixmo
from crowdvlm.cli import main as crowdvlm
from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError
from crowdvlm.data.manifest import read_manifest
from crowdvlm.data.tables import split_tables


def test_countbenchqa_converts_with_the_benchmark_question_and_images_written_once(tmp_path):
    root = tmp_path / "CountBenchQA"
    write_countbenchqa(
        root,
        [
            (image_bytes(fmt="PNG"), "three cats on a sofa", "How many cats are there in the image?", 3),
            (
                image_bytes(fmt="JPEG", size=(64, 48)),
                "ten apples",
                "How many apples are there in the image?",
                10,
            ),
        ],
    )
    out = tmp_path / "cb.jsonl"
    assert (
        crowdvlm(["data", "convert", "--format", "countbenchqa", "--root", str(root), "--out", str(out)]) == 0
    )
    records = read_manifest(out)
    assert [(r["solution"], r["problem"], r["split"], r["dataset"]) for r in records] == [
        (3, "How many cats are there in the image?", "test", "countbenchqa"),
        (10, "How many apples are there in the image?", "test", "countbenchqa"),
    ]
    assert records[0]["meta"] == {"text": "three cats on a sofa"}
    assert (records[1]["width"], records[1]["height"]) == (64, 48)
    images = sorted(p.name for p in (tmp_path / "cb_images").iterdir())
    assert images == ["countbenchqa-test-0.png", "countbenchqa-test-1.jpg"]
    before = (tmp_path / "cb_images" / images[0]).stat().st_mtime_ns
    convert("countbenchqa", root, out, progress=False)  # a second convert reuses the written images
    assert (tmp_path / "cb_images" / images[0]).stat().st_mtime_ns == before


def test_countbenchqa_bad_rows_name_the_table_and_the_row(tmp_path):
    root = tmp_path / "cb"
    write_countbenchqa(root, [(image_bytes(), "", "How many?", 2), (b"not an image", "", "How many?", 4)])
    with pytest.raises(
        DataError, match=r"test-00000-of-00001.parquet \(row 1\): the embedded image is not readable"
    ):
        convert("countbenchqa", root, tmp_path / "out.jsonl", progress=False)
    result = convert("countbenchqa", root, tmp_path / "out.jsonl", skip_bad=True, progress=False)
    assert result.n_records == 1 and result.skips.summary() == "1 bad records skipped: 1 bad-image"


def test_countbenchqa_missing_column_lists_the_columns_found(tmp_path):
    (tmp_path / "cb" / "data").mkdir(parents=True)
    pq.write_table(
        pa.table({"image": [b"x"], "count": [3]}), tmp_path / "cb" / "data" / "test-00000-of-00001.parquet"
    )
    with pytest.raises(
        DataError, match=r"expected the column\(s\) \['number', 'question'\], found \['image', 'count'\]"
    ):
        convert("countbenchqa", tmp_path / "cb", tmp_path / "o.jsonl", progress=False)


def test_pixmo_count_reads_fetched_images_and_counts_the_missing_ones(tmp_path):
    root, images = tmp_path / "pixmo", tmp_path / "pixmo" / "images"
    images.mkdir(parents=True)
    good = image_bytes(size=(50, 40))
    sha = hashlib.sha256(good).hexdigest()
    (images / f"{sha}.png").write_bytes(good)
    write_pixmo(
        root,
        "train",
        [
            ("http://x/a.png", sha, 2, [(5.0, 6.0), (30.0, 20.0)], "boat"),
            ("http://x/b.png", "b" * 64, 1, [(1.0, 1.0)], "dog"),
        ],
    )
    write_pixmo(root, "test", [("http://x/a.png", sha, 7, None, "people")], points=False)
    out = tmp_path / "pixmo.jsonl"
    result = convert("pixmo-count", root, out, skip_bad=True, progress=False)
    assert (
        result.n_records == 2 and result.skips.summary() == "1 bad records skipped: 1 missing-image"
    )  # b was never fetched
    assert "missing-image" in result.report.read_text() and "crowdvlm data fetch" in result.report.read_text()
    by_split = {r["split"]: r for r in read_manifest(out)}
    assert by_split["train"]["points"] == [[5.0, 6.0], [30.0, 20.0]] and by_split["train"]["solution"] == 2
    assert by_split["train"]["problem"] == "How many boat are in the image?"
    assert by_split["test"]["solution"] == 7 and "points" not in by_split["test"]
    assert by_split["test"]["meta"]["sha256"] == sha


def test_pixmo_count_points_must_match_the_count(tmp_path):
    root = tmp_path / "pixmo"
    (root / "images").mkdir(parents=True)
    data = image_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (root / "images" / f"{sha}.png").write_bytes(data)
    write_pixmo(root, "train", [("http://x/a.png", sha, 3, [(1.0, 1.0)], "cup")])
    with pytest.raises(
        DataError, match=r"\(row 0 \(http://x/a.png\)\): solution is 3 but there are 1 points"
    ):
        convert("pixmo-count", root, tmp_path / "o.jsonl", progress=False)


def test_tallyqa_one_record_per_question_split_by_simple_and_complex(tmp_path):
    root = tmp_path / "tallyqa"
    for name in ("VG_100K_2/2410408.jpg", "train2014/COCO_train2014_000000000009.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(image_bytes(fmt="JPEG"))
    test = [
        {
            "answer": 4,
            "data_source": "imported_genome",
            "image": "VG_100K_2/2410408.jpg",
            "image_id": 92410408,
            "issimple": False,
            "question": "How many headlights does the black bus have?",
            "question_id": 30095774,
        },
        {
            "answer": 0,
            "data_source": "amt",
            "image": "VG_100K_2/2410408.jpg",
            "image_id": 92410408,
            "issimple": True,
            "question": "How many dogs are there?",
            "question_id": 30095775,
        },
        {
            "answer": 2,
            "data_source": "imported_vqa",
            "image": "train2014/COCO_train2014_000000000009.jpg",
            "image_id": 9,
            "issimple": True,
            "question": "How many plates?",
            "question_id": 1,
        },
    ]
    (root / "test.json").write_text(json.dumps(test))
    (root / "train.json").write_text(json.dumps(test[:1]))
    out = tmp_path / "tally.jsonl"
    convert("tallyqa", root, out, split="test", progress=False)
    records = read_manifest(out)
    assert [(r["dataset"], r["solution"], r["problem"]) for r in records] == [
        ("tallyqa-complex", 4, "How many headlights does the black bus have?"),
        ("tallyqa-simple", 0, "How many dogs are there?"),
        ("tallyqa-simple", 2, "How many plates?"),
    ]
    assert (
        records[0]["id"] == "tallyqa/test/30095774" and records[0]["meta"]["data_source"] == "imported_genome"
    )
    assert (
        len(
            convert("tallyqa", root, tmp_path / "all.jsonl", progress=False).manifest.read_text().splitlines()
        )
        == 4
    )


def test_tallyqa_missing_image_and_bad_answer_name_the_entry(tmp_path):
    root = tmp_path / "tallyqa"
    root.mkdir()
    (root / "test.json").write_text(
        json.dumps([{"image": "VG_100K/1.jpg", "question": "How many?", "answer": 2, "question_id": 5}])
    )
    with pytest.raises(DataError, match=r"entry 0 \(question_id 5\)"):
        convert("tallyqa", root, tmp_path / "o.jsonl", split="test", progress=False)
    (root / "VG_100K").mkdir()
    (root / "VG_100K" / "1.jpg").write_bytes(image_bytes(fmt="JPEG"))
    (root / "test.json").write_text(
        json.dumps([{"image": "VG_100K/1.jpg", "question": "How many?", "answer": "two"}])
    )
    with pytest.raises(DataError, match=r"test.json \(entry 0 \(question_id \?\)\)"):
        convert("tallyqa", root, tmp_path / "o.jsonl", split="test", progress=False)


def test_generic_table_reads_parquet_and_arrow_with_named_columns(tmp_path):
    folder = tmp_path / "mine"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "a.png").write_bytes(image_bytes())
    table = pa.table(
        {
            "picture": pa.array(
                [{"bytes": image_bytes(fmt="JPEG"), "path": "x.jpg"}, {"bytes": None, "path": "pics/a.png"}],
                HF_IMAGE,
            ),
            "n": [5, 12],
            "q": ["How many birds?", "How many bees?"],
        }
    )
    pq.write_table(table, folder / "val.parquet")
    with (
        pa.OSFile(str(tmp_path / "train.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table.slice(0, 1))  # what datasets' save_to_disk writes
    out = tmp_path / "mine.jsonl"
    args = [
        "--image-column",
        "picture",
        "--count-column",
        "n",
        "--question-column",
        "q",
        "--dataset",
        "birds",
    ]
    assert (
        crowdvlm(["data", "convert", "--format", "parquet", "--root", str(folder), "--out", str(out), *args])
        == 0
    )
    records = read_manifest(out)
    assert [(r["split"], r["solution"], r["problem"], r["dataset"]) for r in records] == [
        ("val", 5, "How many birds?", "birds"),
        ("val", 12, "How many bees?", "birds"),
    ]
    assert records[1]["image"] == str(
        (folder / "pics" / "a.png").resolve()
    )  # a path cell: relative to the table
    arrow = convert(
        "parquet",
        tmp_path / "train.arrow",
        tmp_path / "arrow.jsonl",
        progress=False,
        count_column="n",
        image_column="picture",
    )
    assert (
        arrow.n_records == 1
        and read_manifest(arrow.manifest)[0]["problem"] == "How many objects are in the image?"
    )
    with pytest.raises(DataError, match=r"val.parquet \(row 0\): .*count"):
        pq.write_table(pa.table({"image": table.column("picture"), "count": [-1, 2]}), folder / "val.parquet")
        convert("parquet", folder / "val.parquet", tmp_path / "bad.jsonl", progress=False)


def test_split_tables_give_each_file_its_record_id_prefix(tmp_path):
    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    table = pa.table({"n": [1]})
    for name in ("train-00000-of-00002", "train-00001-of-00002", "test-00000-of-00001"):
        pq.write_table(table, data / f"{name}.parquet")
    assert [(sp, t.name, prefix) for sp, t, prefix in split_tables(tmp_path / "repo", None, "set")] == [
        ("test", "test-00000-of-00001.parquet", "set/test/"),
        ("train", "train-00000-of-00002.parquet", "set/train/train-00000-of-00002-"),
        ("train", "train-00001-of-00002.parquet", "set/train/train-00001-of-00002-"),
    ]
