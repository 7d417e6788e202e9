"""Every native format converts from files written here, with the right counts and points."""

from __future__ import annotations

import json

import pytest
import yaml

import data_writers as native  # the writers of every native format, shared by the data tests
from crowdvlm.data.convert import FORMATS, convert
from crowdvlm.data.manifest import read_manifest, write_manifest
from crowdvlm.data.ucf_cc_50 import folds


def by_id(records):
    return {r["id"]: r for r in records}


@pytest.mark.parametrize("final,hyphen", [(True, False), (False, True), (True, True), (False, False)])
def test_shanghaitech_both_layouts(tmp_path, final, hyphen):
    root = tmp_path / "ShanghaiTech"
    pts1 = [[1.5, 2.25], [10.0, 20.0], [63.0, 47.0]]
    native.write_shanghaitech(
        root, part="A", split="train", final=final, hyphen=hyphen, samples={1: pts1, 2: [], 10: [[5, 5]]}
    )
    native.write_shanghaitech(
        root, part="B", split="test", final=final, hyphen=hyphen, samples={3: [[4, 4], [6, 6]]}
    )
    result = convert("shanghaitech", root, tmp_path / "m.jsonl", progress=False)
    recs = by_id(read_manifest(result.manifest))
    assert {k: r["solution"] for k, r in recs.items()} == {
        "shanghaitech-a/train/IMG_1": 3,
        "shanghaitech-a/train/IMG_2": 0,
        "shanghaitech-a/train/IMG_10": 1,
        "shanghaitech-b/test/IMG_3": 2,
    }
    first = recs["shanghaitech-a/train/IMG_1"]
    assert first["points"] == pts1
    assert (first["width"], first["height"]) == (64, 48)
    assert first["problem"] == "How many people are in the image?"
    assert [r["id"] for r in read_manifest(result.manifest)][:3] == [  # natural order: 1, 2, 10
        "shanghaitech-a/train/IMG_1",
        "shanghaitech-a/train/IMG_2",
        "shanghaitech-a/train/IMG_10",
    ]


def test_shanghaitech_split_part_and_part_folder_root(tmp_path):
    root = tmp_path / "sh"
    native.write_shanghaitech(root, part="A", split="train", samples={1: [[1, 1]]})
    native.write_shanghaitech(root, part="A", split="test", samples={1: [[1, 1], [2, 2]]})
    native.write_shanghaitech(root, part="B", split="test", samples={1: []})
    only = convert("shanghaitech", root, tmp_path / "a.jsonl", split="test", parts=("A",), progress=False)
    assert [(r["dataset"], r["split"], r["solution"]) for r in read_manifest(only.manifest)] == [
        ("shanghaitech-a", "test", 2)
    ]
    part_root = convert("shanghaitech", root / "part_B_final", tmp_path / "b.jsonl", progress=False)
    assert [r["dataset"] for r in read_manifest(part_root.manifest)] == ["shanghaitech-b"]
    with pytest.raises(ValueError, match="unknown split 'val'"):
        convert("shanghaitech", root, tmp_path / "c.jsonl", split="val", progress=False)


@pytest.mark.parametrize("keep_outside,expected,dropped", [(False, 2, 3), (True, 5, 0)])
def test_ucf_qnrf_points_outside(tmp_path, keep_outside, expected, dropped):
    # Image 50 x 40: borders count as inside (BL / DM-Count rule); 51, -1 and 41 are outside.
    pts = [[0, 0], [50, 40], [51, 10], [-1, 5], [10, 41]]
    native.write_qnrf(tmp_path, "Train", {"img_0001": pts})
    native.write_qnrf(tmp_path, "Test", {"img_0001": [[3, 3]]})
    result = convert(
        "ucf-qnrf", tmp_path, tmp_path / "m.jsonl", split="train", keep_outside=keep_outside, progress=False
    )
    (rec,) = read_manifest(result.manifest)
    assert rec["solution"] == expected and len(rec["points"]) == expected
    assert result.dropped_outside == dropped
    assert rec.get("meta", {}).get("dropped_outside", 0) == dropped
    both = convert("ucf-qnrf", tmp_path / "UCF-QNRF_ECCV18", tmp_path / "all.jsonl", progress=False)
    assert sorted(r["split"] for r in read_manifest(both.manifest)) == ["test", "train"]


def test_ucf_cc_50_folds(tmp_path):
    assert sorted(i for ids in folds().values() for i in ids) == list(range(1, 51))
    assert all(len(ids) == 10 for ids in folds().values()) and len(folds()) == 5
    fold1, fold2 = folds()["fold1"][:2], folds()["fold2"][:1]
    samples = {fold1[0]: [[1, 1], [2, 2]], fold1[1]: [[3, 3]], fold2[0]: []}
    native.write_ucf_cc_50(tmp_path, samples)
    everything = read_manifest(
        convert("ucf-cc-50", tmp_path, tmp_path / "all.jsonl", progress=False).manifest
    )
    assert {r["id"]: (r["split"], r["solution"]) for r in everything} == {
        f"ucf-cc-50/{fold1[0]}": ("fold1", 2),
        f"ucf-cc-50/{fold1[1]}": ("fold1", 1),
        f"ucf-cc-50/{fold2[0]}": ("fold2", 0),
    }
    test = read_manifest(
        convert("ucf-cc-50", tmp_path, tmp_path / "t.jsonl", split="fold1", progress=False).manifest
    )
    train = read_manifest(
        convert("ucf-cc-50", tmp_path, tmp_path / "tr.jsonl", split="train-fold1", progress=False).manifest
    )
    assert len(test) == 2 and [r["id"] for r in train] == [f"ucf-cc-50/{fold2[0]}"]
    assert train[0]["split"] == "train-fold1"


def test_jhu_crowd_with_empty_and_one_line_gt(tmp_path):
    samples = {"0001": [[1, 2], [3, 4], [5, 6]], "0002": [], "0003": [[7, 8]]}
    labels = {"0001": (3, "stadium", 0, 0), "0002": (0, "cocnert", 2, 1), "0003": (1, "marathon", 1, 0)}
    native.write_jhu(tmp_path, "val", samples, labels)
    native.write_jhu(tmp_path, "train", {"0100": [[1, 1]]})  # no image_labels.txt: no metadata
    recs = by_id(read_manifest(convert("jhu-crowd", tmp_path, tmp_path / "m.jsonl", progress=False).manifest))
    assert recs["jhu-crowd/val/0001"]["points"] == [[1, 2], [3, 4], [5, 6]]
    assert recs["jhu-crowd/val/0002"]["solution"] == 0
    assert recs["jhu-crowd/val/0003"]["points"] == [[7, 8]]
    assert recs["jhu-crowd/val/0002"]["meta"] == {"scene": "cocnert", "weather": 2, "distractor": 1}
    assert "meta" not in recs["jhu-crowd/train/0100"]


def test_nwpu_test_split_has_no_ground_truth(tmp_path):
    native.write_nwpu(
        tmp_path, train={"0001": [[1, 1], [2, 2]], "0002": []}, val={"3110": [[4, 4]]}, test=["3610"]
    )
    recs = by_id(read_manifest(convert("nwpu", tmp_path, tmp_path / "m.jsonl", progress=False).manifest))
    assert {k: r["solution"] for k, r in recs.items()} == {
        "nwpu/0001": 2, "nwpu/0002": 0, "nwpu/3110": 1, "nwpu/3610": None
    }  # fmt: skip
    assert recs["nwpu/0001"]["meta"] == {"illumination": 2, "scene_level": 1}
    assert "points" not in recs["nwpu/3610"] and recs["nwpu/3610"]["split"] == "test"


def test_fsc147_class_in_question_and_384_space_points(tmp_path):
    native.write_fsc147(tmp_path, {
        "train": {"2.jpg": ("sea shells", [[10.5, 300.0], [90, 380]])},
        "val": {"7.jpg": ("apples", [[1, 1]])},
        "test": {"9.jpg": ("cars", [])},
    })  # fmt: skip
    recs = by_id(read_manifest(convert("fsc147", tmp_path, tmp_path / "m.jsonl", progress=False).manifest))
    shells = recs["fsc147/2"]
    assert shells["problem"] == "How many sea shells are in the image?"
    assert shells["points"] == [[10.5, 300.0], [90, 380]]  # not rescaled by the json's H/W
    assert (shells["width"], shells["height"]) == (96, 384)
    assert shells["meta"]["class"] == "sea shells" and shells["meta"]["exemplars"][0] == [1, 2, 11, 12]
    assert {k: r["split"] for k, r in recs.items()} == {
        "fsc147/2": "train",
        "fsc147/7": "val",
        "fsc147/9": "test",
    }


def _paper_records(tmp_path, n=5):
    for i in range(n):
        native.write_image(tmp_path / "imgs" / f"{i}.png")
    return [
        {"image": f"imgs/{i}.png", "problem": "Please count the number of sheep in the image.", "solution": i}
        for i in range(n)
    ]


def test_crowdvlm_json_list_and_string_solution(tmp_path):
    recs = _paper_records(tmp_path)
    recs[1]["solution"] = "1"  # the paper's data sometimes stores strings; must become an int
    (tmp_path / "train.json").write_text(json.dumps(recs))
    out = read_manifest(
        convert("crowdvlm", tmp_path / "train.json", tmp_path / "m.jsonl", progress=False).manifest
    )
    assert [r["solution"] for r in out] == [0, 1, 2, 3, 4]
    assert all(r["dataset"] == "train" and r["problem"].startswith("Please count") for r in out)


@pytest.mark.parametrize(
    "strategy,expected",
    [
        ("all", [0, 1, 2, 3, 4]),
        ("first:2", [0, 1]),
        ("end:2", [3, 4]),
        ("first:50%", [0, 1, 2]),
        ("end:20%", [4]),
    ],
)
def test_crowdvlm_yaml_sampling(tmp_path, strategy, expected):
    recs = _paper_records(tmp_path)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (tmp_path / "list.yaml").write_text(
        yaml.safe_dump({"datasets": [{"json_path": "a.jsonl", "sampling_strategy": strategy}]})
    )
    out = read_manifest(
        convert("crowdvlm", tmp_path / "list.yaml", tmp_path / "m.jsonl", progress=False).manifest
    )
    assert [r["solution"] for r in out] == expected


def test_crowdvlm_yaml_random_is_seeded_and_bare_percent_refused(tmp_path):
    recs = _paper_records(tmp_path, n=10)
    (tmp_path / "a.json").write_text(json.dumps(recs))
    spec = tmp_path / "list.yaml"
    spec.write_text(yaml.safe_dump({"datasets": [{"json_path": "a.json", "sampling_strategy": "random:4"}]}))
    runs = [
        [
            r["solution"]
            for r in read_manifest(
                convert("crowdvlm", spec, tmp_path / f"m{s}.jsonl", seed=s, progress=False).manifest
            )
        ]
        for s in (1, 1, 2)
    ]
    assert runs[0] == runs[1] and len(set(runs[0])) == 4 and runs[0] != runs[2]
    spec.write_text(yaml.safe_dump({"datasets": [{"json_path": "a.json", "sampling_strategy": "10%"}]}))
    with pytest.raises(ValueError, match="sampling_strategy '10%' not understood"):
        convert("crowdvlm", spec, tmp_path / "x.jsonl", progress=False)


def test_crowdvlm_vlm_r1_conversations(tmp_path):
    native.write_image(tmp_path / "a.jpg")
    rows = [
        {"id": 1, "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>How many cars?"},
                                                      {"from": "gpt", "value": "<answer>12</answer>"}]},
        {"id": 2, "image": ["a.jpg"], "conversations": [{"from": "human", "value": "<image>\nHow many?"},
                                                        {"from": "gpt", "value": "3"}]},
    ]  # fmt: skip
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = read_manifest(
        convert("crowdvlm", tmp_path / "r.jsonl", tmp_path / "m.jsonl", progress=False).manifest
    )
    assert [(r["problem"], r["solution"]) for r in out] == [("How many cars?", 12), ("How many?", 3)]


def test_crowdvlm_reads_our_own_manifest(tmp_path):
    recs = _paper_records(tmp_path, n=2)
    recs[1]["points"] = [[1, 1]]
    write_manifest(
        [{**r, "image": str(tmp_path / r["image"]), "dataset": "d", "split": "val"} for r in recs],
        tmp_path / "ours.jsonl",
    )
    out = read_manifest(
        convert("crowdvlm", tmp_path / "ours.jsonl", tmp_path / "m.jsonl", progress=False).manifest
    )
    assert [(r["dataset"], r["split"], r.get("points")) for r in out] == [
        ("d", "val", None),
        ("d", "val", [[1, 1]]),
    ]


def test_folder_with_and_without_csv(tmp_path):
    for name in ("a.jpg", "b.png", "c.jpg"):
        native.write_image(tmp_path / "imgs" / name)
    (tmp_path / "imgs" / "counts.csv").write_text("image,count\na.jpg,4\nb.png,\n")
    out = read_manifest(
        convert("folder", tmp_path / "imgs", tmp_path / "m.jsonl", objects="birds", progress=False).manifest
    )
    assert [(r["id"], r["solution"]) for r in out] == [("imgs/a.jpg", 4), ("imgs/b.png", None)]
    assert out[0]["problem"] == "How many birds are in the image?"
    (tmp_path / "imgs" / "counts.csv").unlink()
    out = read_manifest(convert("folder", tmp_path / "imgs", tmp_path / "n.jsonl", progress=False).manifest)
    assert [(r["id"], r["solution"]) for r in out] == [
        ("imgs/a.jpg", None),
        ("imgs/b.png", None),
        ("imgs/c.jpg", None),
    ]


def test_every_format_is_tested():
    tested = {"shanghaitech", "ucf-qnrf", "ucf-cc-50", "jhu-crowd", "nwpu", "fsc147", "crowdvlm", "folder"}
    # the counting benchmarks' formats are tested in tests/data/test_benchmark_formats.py
    benchmarks = {"countbenchqa", "pixmo-count", "tallyqa", "parquet"}
    assert set(FORMATS) == tested | benchmarks
