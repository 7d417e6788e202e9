"""Reliability classes 6 (evaluation half) and 8 for `crowdvlm eval`, `compare` and `predict`.

Class 6: ``--resume`` with other data, limit, model, prompt settings, parse mode or backend is refused with
one line that names what differs; the same settings resume. Class 8: bad input and failures are one
stderr line naming what and where, exit 2 (bad input) or 1 (failed), no traceback without ``-v``.

Everything runs in-process through ``crowdvlm.cli.main`` (the one place errors become lines and codes),
with the openai backend against the local server of :mod:`endpoint_server` where a model is needed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from crowdvlm import cli
from crowdvlm.errors import UsageError
from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared
from crowdvlm.evaluate.predictions import read_predictions
from crowdvlm.evaluate.run import evaluate
from endpoint_server import serve, write_manifest


@pytest.fixture(autouse=True)
def fresh_log_handlers():
    """In-process commands call ``logging.basicConfig``: an earlier test's handler may write to a closed
    capture stream. Each test here starts without such handlers (pytest's own stay) and leaves none behind."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [h for h in saved if type(h).__module__.startswith("_pytest")]
    yield
    root.handlers = saved


@pytest.fixture
def endpoint():
    with serve() as (handler, url):
        yield handler, url


def _manifest(folder: Path, truths: list[int]) -> Path:
    return write_manifest(folder, [("ok", truth) for truth in truths])


def _error_line(capsys, command: str = "eval") -> str:
    """The one error line on stderr (log lines aside), checked to be alone and without a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"crowdvlm {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _eval_argv(url: str, data: Path, out: Path, *extra: str) -> list[str]:
    fixed = "eval --backend openai --model fake-gpt --api-key sk-test-key --no-progress --max-retries 0"
    return [*fixed.split(), "--base-url", url, "--data", str(data), "--out", str(out), *extra]


# -- class 6: resume only the same evaluation -------------------------------------------------------------

RESUME_CHANGES = {
    # what changes: (extra options of the resumed run, what the message must name)
    "limit": (["--limit", "1"], "--limit null -> 1"),
    "model": (["--model", "other-gpt"], '--model "fake-gpt" -> "other-gpt"'),
    "prompt": (["--prompt", "train"], '--prompt "eval" -> "train"'),
    "output": (["--output", "answer-only"], '--output "think" -> "answer-only"'),
    "parse": (["--strict-parse"], '--strict-parse "lenient" -> "strict"'),
    "max_new_tokens": (["--max-new-tokens", "17"], "--max-new-tokens 256 -> 17"),
}


@pytest.mark.parametrize("change", sorted(RESUME_CHANGES))
def test_resume_with_other_settings_is_refused(endpoint, tmp_path, capsys, change):
    _, url = endpoint
    data, out = _manifest(tmp_path / "d", [3, 5]), tmp_path / "run"
    assert cli.main(_eval_argv(url, data, out)) == 0
    before = (out / "predictions.jsonl").read_bytes()
    extra, says = RESUME_CHANGES[change]
    argv = _eval_argv(url, data, out, "--resume")
    # a later option wins in argparse, so appending changes exactly one setting
    assert cli.main([*argv, *extra]) == 2
    line = _error_line(capsys)
    assert f"cannot resume {out}" in line and says in line, line
    assert (out / "predictions.jsonl").read_bytes() == before  # nothing was merged


def test_resume_with_other_data_is_refused(endpoint, tmp_path, capsys):
    _, url = endpoint
    data, out = _manifest(tmp_path / "a", [3, 5]), tmp_path / "run"
    other = _manifest(tmp_path / "b", [3, 5])  # the same images and counts, another manifest
    assert cli.main(_eval_argv(url, data, out)) == 0
    assert cli.main(_eval_argv(url, other, out, "--resume")) == 2
    line = _error_line(capsys)
    assert f"--data {json.dumps([str(data.resolve())])} -> {json.dumps([str(other.resolve())])}" in line


def test_resume_after_the_manifest_changed_is_refused(endpoint, tmp_path, capsys):
    _, url = endpoint
    data, out = _manifest(tmp_path / "d", [3, 5]), tmp_path / "run"
    assert cli.main(_eval_argv(url, data, out)) == 0
    data.write_text(data.read_text().replace('"solution": 5', '"solution": 6'))  # edited in place
    assert cli.main(_eval_argv(url, data, out, "--resume")) == 2
    assert "the manifests' images, counts or questions changed since the run started" in _error_line(capsys)


def test_resume_with_the_same_settings_continues(endpoint, tmp_path, capsys):
    handler, url = endpoint
    data, out = _manifest(tmp_path / "d", [3, 5, 7]), tmp_path / "run"
    assert cli.main(_eval_argv(url, data, out, "--limit", "2")) == 0
    assert handler.calls["ok"] == 2
    # relative or absolute, the same manifest is the same data
    assert cli.main(_eval_argv(url, data.resolve(), out, "--limit", "2", "--resume")) == 0
    assert handler.calls["ok"] == 2  # nothing left to do
    run = json.loads((out / "run.json").read_text())
    assert len(run["sessions"]) == 2 and run["limit"] == 2 and len(run["items_sha256"]) == 64


class NamedBackend:
    """A backend that answers "<answer>1</answer>" and calls itself ``name``."""

    def __init__(self, name: str):
        self.name = name

    def describe(self):
        return {"backend": self.name, "model": "m", "max_new_tokens": 8}

    def prepare(self, items):
        return Prepared(items=items, errors=[None] * len(items))

    def generate(self, prepared):
        return [Answer(text="<answer>1</answer>") for _ in prepared.items]


def test_resume_with_another_backend_is_refused(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    items = [EvalItem("a", "d", tmp_path / "x.png", "How many?", 1)]
    evaluate(NamedBackend("hf"), items, tmp_path / "run", report=False, progress=False)
    with pytest.raises(UsageError, match='--backend "hf" -> "vllm"'):
        evaluate(NamedBackend("vllm"), items, tmp_path / "run", resume=True, report=False, progress=False)


def test_resume_of_a_run_from_before_the_fingerprint_warns(tmp_path, caplog):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    items = [EvalItem("a", "d", tmp_path / "x.png", "How many?", 1)]
    out = tmp_path / "run"
    evaluate(NamedBackend("hf"), items, out, report=False, progress=False)
    run = json.loads((out / "run.json").read_text())
    del run["items_sha256"]
    (out / "run.json").write_text(json.dumps(run))
    evaluate(NamedBackend("hf"), items, out, resume=True, report=False, progress=False)
    assert "predates the run fingerprint" in caplog.text


# -- class 8: one line, the documented exit code ------------------------------------------------------------


def test_eval_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    data = _manifest(tmp_path / "d", [3])
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(data.read_text() + '{"image": "0.png", "problem": \n')
    not_object = tmp_path / "list.jsonl"
    not_object.write_text("[1, 2]\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    out = str(tmp_path / "run")
    cases = [
        (["--data", str(tmp_path / "nope.jsonl"), "--out", out], "--data", "no such manifest file"),
        (["--data", str(tmp_path), "--out", out], "is a directory; expected a manifest file", ""),
        (["--data", str(bad_json), "--out", out], "bad.jsonl (line 2)", "not valid JSON"),
        (["--data", str(not_object), "--out", out], "list.jsonl (line 1)", "expected a JSON object"),
        (["--data", str(data), "--out", str(a_file)], "--out", "is a file; expected a directory"),
        (["--data", str(data), "--out", str(a_file / "sub")], "--out", "is a file; expected a directory"),
        (
            ["--data", str(data), "--out", out, "--batch-size", "0"],
            "argument --batch-size",
            "positive integer",
        ),
        (["--data", str(data), "--out", out, "--batch-size", "-3"], "argument --batch-size", "got -3"),
        (["--data", str(data), "--out", out, "--batch-size", "many"], "argument --batch-size", "'many'"),
        (["--data", str(data), "--out", out, "--limit", "0"], "argument --limit", "positive integer"),
        (["--data", str(data), "--out", out, "--max-new-tokens", "0"], "argument --max-new-tokens", ""),
        (["--data", str(data), "--out", out, "--model", str(tmp_path / "no-model")], "no-model", ""),
        (["--data", str(data), "--out", out, "--model", str(data)], "is a file; expected a model folder", ""),
        (["--data", str(data), "--out", out, "--no-such-option"], "unrecognized arguments", ""),
        (["--out", out], "the following arguments are required: --data", ""),
    ]
    for argv, names, says in cases:
        full = ["eval", "--model", str(tmp_path / "d"), *argv] if "--model" not in argv else ["eval", *argv]
        assert cli.main(full) == 2, argv
        line = _error_line(capsys)
        assert names in line and says in line, (argv, line)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_openai_options_are_checked_before_any_request(tmp_path, capsys):
    data = _manifest(tmp_path / "d", [3])
    base = "eval --backend openai --model m --base-url http://127.0.0.1:9/v1".split()
    base += ["--data", str(data), "--out", str(tmp_path / "run")]
    bad = [
        ("--concurrency", "0"),
        ("--request-timeout", "0"),
        ("--request-timeout", "nan"),
        ("--max-retries", "-1"),
    ]
    for option, value in bad:
        assert cli.main([*base, option, value]) == 2
        assert f"argument {option}" in _error_line(capsys)


def test_device_cuda_without_a_gpu(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine that has one
    data = _manifest(tmp_path / "d", [3])
    tails = {
        "eval": ["--data", str(data), "--out", str(tmp_path / "run")],
        "predict": [str(tmp_path / "d" / "0.png")],
    }
    for command, tail in tails.items():
        for device in ("cuda", "cuda:1"):
            # the device is checked before the model loads: this model folder does not even exist
            argv = [command, "--model", str(tmp_path / "nothing"), "--device", device, *tail]
            assert cli.main(argv) == 2
            assert f"--device {device}: no CUDA GPU is available" in _error_line(capsys, command)
    assert cli.main(["predict", "--model", "m", "--device", "tpu:x", str(tmp_path / "d" / "0.png")]) == 2
    assert "--device 'tpu:x' is not a device" in _error_line(capsys, "predict")


def test_a_full_disk_is_one_line_exit_1_and_the_run_resumes(endpoint, tmp_path, capsys, monkeypatch):
    import os

    _, url = endpoint
    data, out = _manifest(tmp_path / "d", [3, 5, 7, 9]), tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync_fills_up(fd):  # the second batch finds the disk full (other files' fsyncs do not count)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("predictions.jsonl"):
            calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fills_up)
    assert cli.main(_eval_argv(url, data, out, "--batch-size", "2")) == 1
    line = _error_line(capsys)
    assert f"cannot write {out / 'predictions.jsonl'}: No space left on device" in line
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert cli.main(_eval_argv(url, data, out, "--batch-size", "2", "--resume")) == 0
    assert sorted(p.id for p in read_predictions(out / "predictions.jsonl"))[:4] == [
        f"img{i}" for i in range(4)
    ]

    # run.json / metrics.json: an atomic JSON write that fails names its file
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the rename that ends every atomic write
    assert cli.main(_eval_argv(url, data, tmp_path / "run2")) == 1
    assert f"cannot write {tmp_path / 'run2' / 'run.json'}: No space left on device" in _error_line(capsys)


def test_verbose_shows_the_traceback(tmp_path):
    with pytest.raises(UsageError, match="no such manifest file"):
        cli.main(
            ["-v", "eval", "--model", "m", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)]
        )


def _run_dir(folder: Path, truths: list[int]) -> Path:
    Image.new("RGB", (8, 8)).save(folder.parent / "x.png")
    items = [EvalItem(f"i{n}", "d", folder.parent / "x.png", "How many?", t) for n, t in enumerate(truths)]
    evaluate(NamedBackend("hf"), items, folder, report=False, progress=False)
    return folder


def test_compare_bad_input_and_full_disk(tmp_path, capsys, monkeypatch):
    good = _run_dir(tmp_path / "good", [1, 2])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    broken_metrics = _run_dir(tmp_path / "broken-metrics", [1, 2])
    (broken_metrics / "metrics.json").write_text('{"overall": ')
    broken_predictions = _run_dir(tmp_path / "broken-predictions", [1, 2])
    lines = (broken_predictions / "predictions.jsonl").read_text().splitlines(keepends=True)
    (broken_predictions / "predictions.jsonl").write_text("{oops\n" + "".join(lines))
    out = str(tmp_path / "cmp")
    cases = [
        ([str(tmp_path / "nope"), str(good)], "nope: no such run directory"),
        ([str(a_file), str(good)], "file.txt is a file; expected an eval run directory"),
        ([str(tmp_path), str(good)], "is not an evaluation run: predictions.jsonl is missing"),
        ([str(good), str(broken_metrics)], "metrics.json: not valid JSON"),
        (
            [str(good), str(broken_predictions)],
            "predictions.jsonl, line 1: expected a JSON prediction record",
        ),
        ([str(good), str(good), "--bootstrap", "0"], "argument --bootstrap"),
        ([str(good), str(good), "--names", "a,b,c"], "--names: 3 names for 2 runs"),
        ([str(good), str(good), "--out", str(a_file)], "is a file; expected a directory"),
    ]
    for argv, says in cases:
        assert cli.main(["compare", *argv, "--out", out] if "--out" not in argv else ["compare", *argv]) == 2
        assert says in _error_line(capsys, "compare"), argv

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the rename that ends every atomic write
    assert cli.main(["compare", str(good), str(good), "--out", out, "--bootstrap", "10"]) == 1
    assert f"cannot write {Path(out) / 'compare.md'}: No space left on device" in _error_line(
        capsys, "compare"
    )


def test_predict_bad_input(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert cli.main(["predict", "--model", "m", "--batch-size", "0", str(image)]) == 2
    assert "argument --batch-size" in _error_line(capsys, "predict")
    assert cli.main(["predict", "--model", str(tmp_path / "none"), str(image)]) == 2
    assert "none" in _error_line(capsys, "predict")


def test_predict_a_directory_is_that_image_s_error(endpoint, tmp_path, capsys):
    _, url = endpoint
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    argv = [*"predict --backend openai --model m --api-key sk-test-key".split(), "--base-url", url]
    argv += ["--question", "How many? [case=ok answer=4]", str(image), str(tmp_path)]
    assert cli.main(argv) == 1  # one image could not be counted
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{image}\t4"
    assert out[1].startswith(f"{tmp_path}\terror: cannot load image {tmp_path}: NotRegularFileError")
    assert out[1].endswith("not a regular file (a folder)")


def test_strict_mode_failure_is_a_run_error(endpoint, tmp_path, capsys):
    _, url = endpoint
    data = _manifest(tmp_path / "d", [3])
    gone = {"image": "gone.png", "id": "gone", "problem": "q", "solution": 1, "dataset": "fake"}
    data.write_text(data.read_text() + json.dumps(gone) + "\n")
    assert cli.main(_eval_argv(url, data, tmp_path / "run", "--strict")) == 1
    assert "gone: cannot load image" in _error_line(capsys)


def test_an_endpoint_that_never_answers_is_a_failed_run(endpoint, tmp_path, capsys):
    _, url = endpoint
    data = write_manifest(tmp_path / "d", [("bad_request", 1), ("bad_request", 2)])
    out = tmp_path / "run"
    assert cli.main(_eval_argv(url, data, out)) == 1
    line = _error_line(capsys)
    assert "none of the images could be evaluated: 2 of 2 failed, the first img0: HTTP 400" in line
    assert json.loads((out / "metrics.json").read_text())["overall"]["errors"] == 2  # still recorded


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://bob:pw-s3cret/x@[::1/v1", "--base-url is not a valid URL"),
        (
            "http://bob:pw-s3cret/x@127.0.0.1/v1",
            "--base-url is not a valid URL",
        ),  # "pw-s3cret" read as a port
        ("localhost:8000/v1?token=pw-s3cret", "--base-url must be an http:// or https:// URL"),
        ("ftp://bob:pw-s3cret@127.0.0.1/v1", "--base-url must be an http:// or https:// URL"),
    ],
)
def test_a_bad_base_url_is_named_without_its_credentials(tmp_path, capsys, url, says):
    data = _manifest(tmp_path / "d", [3])
    assert cli.main(_eval_argv(url, data, tmp_path / "run")) == 2
    line = _error_line(capsys)
    assert says in line and "s3cret" not in line, line
