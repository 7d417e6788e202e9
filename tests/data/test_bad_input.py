"""Each kind of bad input, in both modes: a clear error by default; with --skip-bad, left out and reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.io import savemat

import data_writers as native  # the writers of every native format, shared by the data tests
from crowdvlm.data.cli import main as data_main
from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError
from crowdvlm.data.manifest import read_manifest
from crowdvlm.data.ucf_cc_50 import folds

# Every builder writes one good sample and one bad one, and returns (format, root, options, bad file name).


def sha_missing_image(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]]})
    native.shanghaitech_mat(split / "ground_truth" / "GT_IMG_2.mat", [[2, 2]])
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def sha_truncated_image(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, 2]]})
    image = split / "images" / "IMG_2.jpg"
    image.write_bytes(image.read_bytes()[:200])
    return "shanghaitech", tmp, {}, "IMG_2.jpg"


def sha_not_an_image(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, 2]]})
    (split / "images" / "IMG_2.jpg").write_text("not a jpeg")
    return "shanghaitech", tmp, {}, "IMG_2.jpg"


def sha_missing_key(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, 2]]})
    savemat(split / "ground_truth" / "GT_IMG_2.mat", {"annPoints": np.zeros((1, 2))})
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def sha_corrupt_mat(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, 2]]})
    (split / "ground_truth" / "GT_IMG_2.mat").write_bytes(b"garbage" * 20)
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def sha_nan(tmp):
    native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, math.nan]]})
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def sha_number_mismatch(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]], 2: [[2, 2]]})
    native.shanghaitech_mat(split / "ground_truth" / "GT_IMG_2.mat", [[2, 2]], number=5)
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def sha_missing_annotation(tmp):
    split = native.write_shanghaitech(tmp, samples={1: [[1, 1]]})
    native.write_image(split / "images" / "IMG_2.jpg")
    return "shanghaitech", tmp, {}, "GT_IMG_2.mat"


def qnrf_missing_key(tmp):
    folder = native.write_qnrf(tmp, "Train", {"img_0001": [[1, 1]]})
    native.write_image(folder / "img_0002.jpg")
    native.ann_points_mat(folder / "img_0002_ann.mat", [[1, 1]], key="points")
    return "ucf-qnrf", tmp, {}, "img_0002_ann.mat"


def qnrf_nan_even_when_keeping_outside(tmp):
    native.write_qnrf(tmp, "Train", {"img_0001": [[1, 1]], "img_0002": [[math.inf, 1]]})
    return "ucf-qnrf", tmp, {"keep_outside": True}, "img_0002_ann.mat"


def ucf50_negative(tmp):
    a, b = folds()["fold1"][:2]
    native.write_ucf_cc_50(tmp, {a: [[1, 1]], b: [[3, -2]]})
    return "ucf-cc-50", tmp, {}, f"{b}_ann.mat"


def jhu_malformed_line(tmp):
    folder = native.write_jhu(tmp, "train", {"0001": [[1, 1]], "0002": [[2, 2]]})
    (folder / "gt" / "0002.txt").write_text("12 13 4 5 1 0\n14\n")
    return "jhu-crowd", tmp, {}, "0002.txt"


def jhu_non_numeric(tmp):
    folder = native.write_jhu(tmp, "train", {"0001": [[1, 1]], "0002": [[2, 2]]})
    (folder / "gt" / "0002.txt").write_text("x y 4 5 1 0\n")
    return "jhu-crowd", tmp, {}, "0002.txt"


def jhu_total_count_mismatch(tmp):
    native.write_jhu(
        tmp,
        "train",
        {"0001": [[1, 1]], "0002": [[2, 2]]},
        labels={"0001": (1, "s", 0, 0), "0002": (7, "s", 0, 0)},
    )
    return "jhu-crowd", tmp, {}, "0002.txt"


def jhu_malformed_label_line(tmp):
    folder = native.write_jhu(tmp, "train", {"0001": [[1, 1]]})
    (folder / "image_labels.txt").write_text("0001,1,street,0,0\n0002;broken\n")
    return "jhu-crowd", tmp, {}, "image_labels.txt"


def nwpu_missing_image(tmp):
    native.write_nwpu(tmp, train={"0001": [[1, 1]]})
    (tmp / "train.txt").write_text("0001 2 1\n0002 2 1\n")
    return "nwpu", tmp, {"split": "train"}, "0002.jpg"


def nwpu_non_numeric(tmp):
    native.write_nwpu(tmp, train={"0001": [[1, 1]], "0002": [[2, 2]]})
    (tmp / "jsons" / "0002.json").write_text(json.dumps({"human_num": 1, "points": [["a", 2]]}))
    return "nwpu", tmp, {"split": "train"}, "0002.json"


def nwpu_human_num_mismatch(tmp):
    native.write_nwpu(tmp, train={"0001": [[1, 1]], "0002": [[2, 2]]})
    (tmp / "jsons" / "0002.json").write_text(json.dumps({"human_num": 3, "points": [[2, 2]]}))
    return "nwpu", tmp, {"split": "train"}, "0002.json"


def nwpu_malformed_json(tmp):
    native.write_nwpu(tmp, train={"0001": [[1, 1]], "0002": [[2, 2]]})
    (tmp / "jsons" / "0002.json").write_text('{"points": [[1, 2]')
    return "nwpu", tmp, {"split": "train"}, "0002.json"


def fsc_negative(tmp):
    native.write_fsc147(tmp, {"train": {"1.jpg": ("apples", [[1, 1]]), "2.jpg": ("apples", [[-4, 1]])}})
    return "fsc147", tmp, {"split": "train"}, "annotation_FSC147_384.json"


def crowdvlm_malformed_line(tmp):
    native.write_image(tmp / "a.jpg")
    good = json.dumps({"image": "a.jpg", "problem": "How many?", "solution": 1})
    (tmp / "r.jsonl").write_text(good + '\n{"image": "a.jpg", \n')
    return "crowdvlm", tmp / "r.jsonl", {}, "r.jsonl"


def crowdvlm_missing_image(tmp):
    native.write_image(tmp / "a.jpg")
    rows = [
        {"image": "a.jpg", "problem": "How many?", "solution": 1},
        {"image": "b.jpg", "problem": "?", "solution": 1},
    ]
    (tmp / "r.json").write_text(json.dumps(rows))
    return "crowdvlm", tmp / "r.json", {}, "b.jpg"


def crowdvlm_bad_solution(tmp):
    native.write_image(tmp / "a.jpg")
    rows = [
        {"image": "a.jpg", "problem": "How many?", "solution": 1},
        {"image": "a.jpg", "problem": "?", "solution": "many"},
    ]
    (tmp / "r.json").write_text(json.dumps(rows))
    return "crowdvlm", tmp / "r.json", {}, "r.json"


def crowdvlm_points_mismatch(tmp):
    native.write_image(tmp / "a.jpg")
    rows = [
        {"image": "a.jpg", "problem": "How many?", "solution": 1},
        {"image": "a.jpg", "problem": "?", "solution": 2, "points": [[1, 1]]},
    ]
    (tmp / "r.json").write_text(json.dumps(rows))
    return "crowdvlm", tmp / "r.json", {}, "r.json"


def folder_negative_count(tmp):
    native.write_image(tmp / "a.jpg")
    native.write_image(tmp / "b.jpg")
    (tmp / "counts.csv").write_text("a.jpg,3\nb.jpg,-1\n")
    return "folder", tmp, {}, "counts.csv"


def folder_missing_image(tmp):
    native.write_image(tmp / "a.jpg")
    (tmp / "counts.csv").write_text("a.jpg,3\nzz.jpg,1\n")
    return "folder", tmp, {}, "zz.jpg"


CASES = {  # builder -> (kind, words the error message must contain)
    sha_missing_image: ("missing-image", "image not found"),
    sha_truncated_image: ("bad-image", "truncated"),
    sha_not_an_image: ("bad-image", "unreadable"),
    sha_missing_key: ("missing-key", "expected the key 'image_info'"),
    sha_corrupt_mat: ("bad-annotation", "not a readable .mat"),
    sha_nan: ("bad-coordinates", "NaN"),
    sha_number_mismatch: ("count-mismatch", "number says 5 but there are 1 points"),
    sha_missing_annotation: ("missing-annotation", "annotation file not found"),
    qnrf_missing_key: ("missing-key", "expected the key 'annPoints', found ['points']"),
    qnrf_nan_even_when_keeping_outside: ("bad-coordinates", "infinite"),
    ucf50_negative: ("bad-coordinates", "negative coordinate"),
    jhu_malformed_line: ("bad-annotation", "line 2"),
    jhu_non_numeric: ("bad-coordinates", "non-numeric"),
    jhu_total_count_mismatch: ("count-mismatch", "total_count says 7"),
    jhu_malformed_label_line: ("bad-annotation", "expected 5 comma-separated fields"),
    nwpu_missing_image: ("missing-image", "image not found"),
    nwpu_non_numeric: ("bad-coordinates", "non-numeric coordinate 'a'"),
    nwpu_human_num_mismatch: ("count-mismatch", "human_num says 3"),
    nwpu_malformed_json: ("bad-annotation", "not valid JSON"),
    fsc_negative: ("bad-coordinates", "negative coordinate"),
    crowdvlm_malformed_line: ("malformed", "not valid JSON"),
    crowdvlm_missing_image: ("missing-image", "image not found"),
    crowdvlm_bad_solution: ("bad-field", "solution 'many' is not a count"),
    crowdvlm_points_mismatch: ("count-mismatch", "solution is 2 but there are 1 points"),
    folder_negative_count: ("bad-field", "count must be >= 0, got -1"),
    folder_missing_image: ("missing-image", "image not found"),
}


@pytest.mark.parametrize("builder", list(CASES), ids=lambda f: f.__name__)
def test_default_mode_raises_naming_file_and_problem(tmp_path, builder):
    kind, words = CASES[builder]
    fmt, root, options, bad_file = builder(tmp_path / "data")
    out = tmp_path / "m.jsonl"
    with pytest.raises(DataError) as info:
        convert(fmt, root, out, progress=False, **options)
    assert info.value.kind == kind
    assert bad_file in str(info.value) and words in str(info.value)
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("builder", list(CASES), ids=lambda f: f.__name__)
def test_skip_bad_leaves_out_and_reports(tmp_path, builder, capsys):
    kind, words = CASES[builder]
    fmt, root, options, bad_file = builder(tmp_path / "data")
    out = tmp_path / "m.jsonl"
    argv = ["convert", "--format", fmt, "--root", str(root), "--out", str(out), "--skip-bad", "--no-progress"]
    if "split" in options:
        argv += ["--split", options["split"]]
    if options.get("keep_outside"):
        argv += ["--keep-outside"]
    assert data_main(argv) == 0
    assert len(read_manifest(out)) == 1  # the good sample only
    report = (tmp_path / "m.skipped.tsv").read_text().splitlines()
    assert report[0] == "kind\tfile\trecord\tproblem" and len(report) == 2
    assert report[1].startswith(kind + "\t") and bad_file in report[1] and words in report[1]
    err = capsys.readouterr().err
    assert f"1 bad records skipped: 1 {kind}" in err and "m.skipped.tsv" in err


def test_default_mode_via_cli_exits_2_with_one_line(tmp_path, capsys):
    from crowdvlm.cli import main

    fmt, root, _, bad_file = sha_nan(tmp_path / "data")
    assert (
        main(
            [
                "data",
                "convert",
                "--format",
                fmt,
                "--root",
                str(root),
                "--out",
                str(tmp_path / "m.jsonl"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("crowdvlm data: error: ") and bad_file in err and "NaN" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_everything_bad_is_an_error_even_when_skipping(tmp_path):
    split = native.write_shanghaitech(tmp_path, samples={1: [[1, 1]]})
    (split / "images" / "IMG_1.jpg").write_text("broken")
    with pytest.raises(ValueError, match="no records found.*1 bad records skipped"):
        convert("shanghaitech", tmp_path, tmp_path / "m.jsonl", skip_bad=True, progress=False)
