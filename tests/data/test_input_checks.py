"""Data that passes one reader must not fail another: one image rule, checked values, one-line errors.

The same photo is seen the same way everywhere, values are refused where they enter, and bad input is one
line with the documented exit code from ``crowdvlm data`` / ``crowdvlm model``.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crowdvlm.data.convert import convert
from crowdvlm.data.errors import DataError
from crowdvlm.data.images import ImageCheck, open_image, orient_points, processor_size_rule
from crowdvlm.data.manifest import manifest_to_dataset, read_manifest, write_manifest
from data_writers import write_fsc147, write_jhu, write_nwpu, write_shanghaitech
from image_writers import (
    empty_file,
    good_jpeg,
    huge_png_header,
    oriented_jpeg,
    thin_png,
    truncated_jpeg,
)

RED = np.array([255, 0, 0])


def marked(size=(200, 100), box=(20, 40, 30, 50)) -> np.ndarray:
    """(H, W, 3) grey pixels with a red box ``(x0, y0, x1, y1)``; its centre is the annotated point."""
    raw = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    x0, y0, x1, y1 = box
    raw[y0:y1, x0:x1] = RED
    return raw


def is_red(image: Image.Image, point) -> bool:
    x, y = (int(v) for v in point)
    return bool(np.abs(np.asarray(image)[y, x].astype(int) - RED).max() < 40)


# ----------------------------------------------------------------------------- one decoding rule


@pytest.mark.parametrize("orientation", range(1, 9))
def test_points_follow_every_exif_orientation(tmp_path, orientation):
    path = oriented_jpeg(tmp_path / "o.jpg", marked(), orientation)
    upright = open_image(path)
    expected = (100, 200) if orientation >= 5 else (200, 100)
    assert upright.size == expected
    [point] = orient_points(np.array([[25.0, 45.0]]), (200, 100), orientation)
    assert is_red(upright, point), (orientation, point.tolist())


def test_one_orientation_6_photo_is_the_same_in_every_path(tmp_path):
    """Conversion (width, height, points), the training dataset row, eval's and predict's image, the API payload."""
    from crowdvlm.evaluate.backends.base import load_image
    from crowdvlm.evaluate.backends.openai_backend import image_data_url

    split = write_shanghaitech(
        tmp_path / "sha", samples={1: [[25.0, 45.0]]}
    )  # raw-frame point, as MATLAB sees it
    image = oriented_jpeg(split / "images" / "IMG_1.jpg", marked(), 6)
    [rec] = read_manifest(
        convert("shanghaitech", tmp_path / "sha", tmp_path / "m.jsonl", progress=False).manifest
    )
    assert (rec["width"], rec["height"]) == (100, 200)  # upright: 200x100 raw, rotated 90 degrees
    upright = open_image(image)
    assert is_red(upright, rec["points"][0])

    row = manifest_to_dataset(tmp_path / "m.jsonl")[0]["image"]  # datasets decodes it for training
    evaluated = load_image(image)  # evaluation and `crowdvlm predict` (every backend)
    url = image_data_url(image)  # what an OpenAI-compatible server receives
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    for seen in (row, evaluated, sent):
        assert seen.size == (100, 200)
        assert np.array_equal(np.asarray(seen), np.asarray(upright))


def test_fsc147_points_and_exemplar_boxes_follow_the_orientation(tmp_path):
    write_fsc147(tmp_path, {"train": {"1.jpg": ("dots", [[25.0, 45.0]])}})
    raw = marked(box=(20, 40, 30, 50))
    oriented_jpeg(tmp_path / "images_384_VarV2" / "1.jpg", raw, 8)  # rotated 90 degrees counter-clockwise
    [rec] = read_manifest(
        convert("fsc147", tmp_path, tmp_path / "m.jsonl", split="train", progress=False).manifest
    )
    assert (rec["width"], rec["height"]) == (100, 200) and rec["points"] == [[45.0, 175.0]]
    # the writer's box (1, 2)-(11, 12) maps under (x, y) -> (y, W - x) to (2, 189)-(12, 199)
    assert rec["meta"]["exemplars"] == [[2.0, 189.0, 12.0, 199.0]] * 3
    assert is_red(open_image(tmp_path / "images_384_VarV2" / "1.jpg"), rec["points"][0])


def test_upright_jpeg_is_sent_to_the_api_as_is(tmp_path):
    from crowdvlm.evaluate.backends.openai_backend import image_data_url

    path = good_jpeg(tmp_path / "g.jpg")
    assert base64.b64decode(image_data_url(path).split(",", 1)[1]) == path.read_bytes()


# ----------------------------------------------------------------------------- the image check


BAD_IMAGES = {  # writer -> the kind of DataError
    truncated_jpeg: "bad-image",
    empty_file: "bad-image",
    huge_png_header: "bad-image",
    thin_png: "rejected-image",
}


@pytest.fixture(scope="module")
def size_rule(tiny_model_dir):
    from transformers import AutoProcessor

    return processor_size_rule(AutoProcessor.from_pretrained(tiny_model_dir))


@pytest.mark.parametrize("writer", list(BAD_IMAGES), ids=lambda w: w.__name__)
def test_image_check_names_file_record_and_kind(tmp_path, size_rule, writer):
    path = writer(tmp_path / f"x{'.png' if 'png' in writer.__name__ else '.jpg'}")
    with pytest.raises(DataError) as info:
        ImageCheck(size_rule)(path, record="m.jsonl id 7")
    assert info.value.kind == BAD_IMAGES[writer]
    assert str(path) in str(info.value) and "m.jsonl id 7" in str(info.value)


def test_image_check_passes_a_good_image_and_both_rules_agree(tmp_path, size_rule):
    assert ImageCheck(size_rule)(good_jpeg(tmp_path / "g.jpg", (80, 60))) == (80, 60)

    class Generic:  # a processor without Qwen's smart_resize: the processor itself is run, once per size
        calls = 0

        def __call__(self, images, return_tensors):
            Generic.calls += 1
            w, h = images[0].size
            if max(w, h) / min(w, h) > 200:
                raise ValueError("aspect ratio too large")

    rule = processor_size_rule(Generic())
    for _ in range(3):
        rule(80, 60)
        with pytest.raises(ValueError, match="aspect"):
            rule(1, 5000)
    assert Generic.calls == 2


# ----------------------------------------------------------------------------- values where they enter


def _manifest(tmp_path: Path, records: list, raw: bytes | None = None) -> Path:
    good_jpeg(tmp_path / "a.jpg")
    path = tmp_path / "m.jsonl"
    path.write_bytes(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in records).encode())
    return path


REC = {"image": "a.jpg", "problem": "How many?", "solution": 3}
BAD_MANIFESTS = {  # case -> (records or raw bytes, words of the error, which must also name the line)
    "beyond-int64": ([{**REC, "solution": 2**63}], "beyond the 64-bit integer range"),
    "duplicate-id": ([{**REC, "id": "x"}, {**REC, "id": "x"}], "id 'x' appears twice (first at line 1)"),
    "null-problem": ([{**REC, "problem": None}], "problem must be a non-empty string"),
    "not-utf8": (
        b'{"image": "a.jpg", "problem": "How many?", "solution": 3}\n{"image": "\xe9"}\n',
        "not UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifest_value_is_refused_at_read_naming_file_and_line(tmp_path, case):
    content, words = BAD_MANIFESTS[case]
    path = _manifest(
        tmp_path,
        content if isinstance(content, list) else [],
        content if isinstance(content, bytes) else None,
    )
    with pytest.raises(DataError) as info:
        read_manifest(path)
    assert str(path) in str(info.value) and words in str(info.value) and "line " in str(info.value)


def test_values_beyond_int64_and_duplicate_ids_are_refused_at_write(tmp_path):
    good_jpeg(tmp_path / "a.jpg")
    image = str(tmp_path / "a.jpg")
    with pytest.raises(DataError, match=r"record 0.*beyond the 64-bit"):
        write_manifest([{**REC, "image": image, "solution": 10**20}], tmp_path / "m.jsonl")
    with pytest.raises(DataError, match=r"record 1.*appears twice"):
        write_manifest(
            [{**REC, "image": image, "id": "a"}, {**REC, "image": image, "id": "a"}], tmp_path / "m.jsonl"
        )
    assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "m.jsonl.tmp").exists()


def test_manifest_with_a_bom_reads(tmp_path):
    path = _manifest(tmp_path, [], b"\xef\xbb\xbf" + (json.dumps(REC) + "\n").encode())
    assert read_manifest(path)[0]["solution"] == 3


def _records_file(tmp_path: Path, lines: list[bytes]) -> Path:
    good_jpeg(tmp_path / "a.jpg")
    good_jpeg(tmp_path / "b.jpg")
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_crowdvlm_records_refuse_null_problem_and_duplicate_ids(tmp_path):
    path = _records_file(tmp_path, [b'{"image": "a.jpg", "problem": null, "solution": 2}\n'])
    with pytest.raises(DataError, match=r"line 1.*problem must be a non-empty question, got None"):
        convert("crowdvlm", path, tmp_path / "m.jsonl", progress=False)
    dup = b'{"id": "same", "image": "a.jpg", "problem": "How many?", "solution": 2}\n'
    path = _records_file(tmp_path, [dup, dup.replace(b"a.jpg", b"b.jpg")])
    with pytest.raises(DataError, match="id 'same' appears twice"):
        convert("crowdvlm", path, tmp_path / "m.jsonl", progress=False)
    result = convert("crowdvlm", path, tmp_path / "m.jsonl", skip_bad=True, progress=False)
    assert result.n_records == 1 and [e.kind for e in result.skips.skipped] == ["duplicate-id"]


@pytest.mark.parametrize("solution", ['"99999999999999999999"', "1e30", '"\\u0663"'])
def test_crowdvlm_records_refuse_solutions_outside_ascii_int64(tmp_path, solution):
    path = _records_file(
        tmp_path, [f'{{"image": "a.jpg", "problem": "How many?", "solution": {solution}}}\n'.encode()]
    )
    with pytest.raises(DataError, match="line 1.*solution .*(beyond the 64-bit|not a count)"):
        convert("crowdvlm", path, tmp_path / "m.jsonl", progress=False)


def test_non_utf8_record_line_names_the_file_and_honours_skip_bad(tmp_path):
    good = b'{"image": "a.jpg", "problem": "How many?", "solution": 2}\n'
    path = _records_file(tmp_path, [good, b'{"image": "b.jpg", "problem": "Combien \xe0?", "solution": 1}\n'])
    with pytest.raises(DataError, match=r"records.jsonl \(line 2\): not UTF-8"):
        convert("crowdvlm", path, tmp_path / "m.jsonl", progress=False)
    result = convert("crowdvlm", path, tmp_path / "m.jsonl", skip_bad=True, progress=False)
    assert result.n_records == 1 and [e.kind for e in result.skips.skipped] == ["not-utf8"]


def test_folder_csv_with_a_bom_header_and_a_non_utf8_line(tmp_path):
    good_jpeg(tmp_path / "a.jpg")
    good_jpeg(tmp_path / "b.jpg")
    (tmp_path / "counts.csv").write_bytes(b"\xef\xbb\xbfimage,count\na.jpg,3\nb\xe9.jpg,4\n")
    with pytest.raises(DataError, match=r"counts.csv \(line 3\): not UTF-8"):
        convert("folder", tmp_path, tmp_path / "m.jsonl", progress=False)
    result = convert("folder", tmp_path, tmp_path / "m.jsonl", skip_bad=True, progress=False)
    assert result.n_records == 1  # the header was recognised despite the BOM, the bad line skipped
    assert read_manifest(result.manifest)[0]["solution"] == 3


def _latin1_jhu_gt(root: Path) -> tuple[str, Path, int]:
    folder = write_jhu(root, samples={"0001": [[3, 4]], "0002": [[5, 6]]})
    bad = folder / "gt" / "0002.txt"
    bad.write_bytes(b"5 6 4 5 1 0 # t\xeate\n")
    return "jhu-crowd", bad, 1


def _latin1_nwpu_list(root: Path) -> tuple[str, Path, int]:
    write_nwpu(root, train={"0001": [[3, 4]], "0002": [[5, 6]]})
    bad = root / "train.txt"
    bad.write_bytes(b"0001 2 1\n0002 2 1 \xe9\n")
    return "nwpu", bad, 1


@pytest.mark.parametrize("writer", [_latin1_jhu_gt, _latin1_nwpu_list], ids=["jhu-gt", "nwpu-split-list"])
def test_native_reader_names_a_non_utf8_file_and_honours_skip_bad(tmp_path, writer):
    fmt, bad, kept = writer(tmp_path / "data")
    with pytest.raises(DataError, match="not UTF-8") as info:
        convert(fmt, tmp_path / "data", tmp_path / "m.jsonl", split="train", progress=False)
    assert str(bad) in str(info.value) and "line " in str(info.value)
    result = convert(
        fmt, tmp_path / "data", tmp_path / "m.jsonl", split="train", skip_bad=True, progress=False
    )
    assert result.n_records == kept and [e.kind for e in result.skips.skipped] == ["not-utf8"]


# ----------------------------------------------------------------------------- one line, exit code


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["data", "stats", "{tmp}/missing.jsonl"], "missing.jsonl"),
        (["data", "stats", "{tmp}"], "is a folder"),
        (["data", "show", "{tmp}/bad.jsonl", "--out", "{tmp}/g.png"], "not valid JSON"),
        (
            ["data", "convert", "--format", "folder", "--root", "{tmp}/nowhere", "--out", "{tmp}/m.jsonl"],
            "not a folder",
        ),
    ],
    ids=["missing-manifest", "folder-for-manifest", "malformed-manifest", "missing-root"],
)
def test_data_errors_are_one_line_with_status_2(tmp_path, capsys, argv, words):
    from crowdvlm.cli import main

    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = _one_line(capsys)
    assert err.startswith("crowdvlm data: error:") and words in err


def test_a_full_disk_is_one_line_with_status_1_and_no_half_manifest(tmp_path, capsys, monkeypatch):
    import errno

    from crowdvlm.cli import main

    def full_disk(fd):  # the written bytes never reach the disk: what a full one reports
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    good_jpeg(tmp_path / "a.jpg")
    (tmp_path / "counts.csv").write_text("a.jpg,3\n")
    out = tmp_path / "out" / "m.jsonl"
    out.parent.mkdir()
    monkeypatch.setattr("crowdvlm.atomic.os.fsync", full_disk)
    assert (
        main(
            [
                "data",
                "convert",
                "--format",
                "folder",
                "--root",
                str(tmp_path),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "No space left on device" in _one_line(capsys)
    assert list(out.parent.iterdir()) == []  # neither the manifest nor its temporary file


def test_model_tiny_refuses_a_non_empty_folder_without_overwrite(tmp_path, capsys):
    from crowdvlm.cli import main

    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["model", "tiny", "--out", str(out)]) == 2
    assert "--overwrite" in _one_line(capsys)
    assert main(["model", "tiny", "--out", str(out / "notes.txt")]) == 2
    assert "is a file" in _one_line(capsys)
    assert main(["model", "info", str(tmp_path / "no-model")]) == 2
    assert "not found" in _one_line(capsys)
    assert (out / "notes.txt").read_text() == "keep me"
