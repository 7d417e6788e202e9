"""`crowdvlm eval` / `predict` end to end with the tiny random-weight Qwen2.5-VL on a few synthetic images.

A random model answers garbage: that is fine here, the tests check the mechanics (every file written, metrics
recomputable from the predictions, batching and left padding, resume, error handling), not the accuracy.
"""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from crowdvlm.errors import UsageError
from crowdvlm.evaluate.cli import eval_main, predict_main
from crowdvlm.evaluate.predictions import read_predictions
from crowdvlm.evaluate.report import PLOTS
from crowdvlm.evaluate.run import ImageEvaluationError, evaluate, items_from_manifests
from crowdvlm.metrics import count_metrics
from crowdvlm.parsing import parse_count

MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """Two small manifests with different questions and image sizes (so batches need padding), plus a
    manifest holding a missing and a corrupt image."""
    from crowdvlm.data.synth import generate

    root = tmp_path_factory.mktemp("eval-data")
    dots = generate(
        root / "dots", n=4, style="dots", min_count=1, max_count=30, size=(64, 64), seed=0, progress=False
    )
    people = generate(
        root / "people",
        n=3,
        style="people",
        min_count=5,
        max_count=120,
        size=(112, 84),
        seed=1,
        progress=False,
    )
    broken = root / "broken"
    broken.mkdir()
    (broken / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    Image.new("RGB", (70, 50), "white").save(broken / "empty.png")
    Image.new("RGB", (630, 3), "white").save(
        broken / "thin.png"
    )  # aspect ratio 210: the Qwen processor refuses it
    rows = [
        {
            "image": "missing.png",
            "problem": "How many people are in the image?",
            "solution": 3,
            "id": "missing",
        },
        {
            "image": "corrupt.png",
            "problem": "How many people are in the image?",
            "solution": 4,
            "id": "corrupt",
        },
        {"image": "empty.png", "problem": "How many people are in the image?", "solution": 0, "id": "empty"},
        {"image": "thin.png", "problem": "How many people are in the image?", "solution": 1, "id": "thin"},
    ]
    (broken / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [dots, people, broken / "manifest.jsonl"]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from crowdvlm.evaluate.backends.hf_backend import HFBackend

    return HFBackend.load(tiny_model_dir, max_new_tokens=MAX_NEW_TOKENS, device="cpu")


class CountingBackend:
    """Wraps a backend, recording which images reached ``generate``; can crash at a given batch."""

    def __init__(self, inner, crash_at_batch: int | None = None):
        self.inner, self.crash_at_batch = inner, crash_at_batch
        self.name, self.generated, self.batches = inner.name, [], 0

    def describe(self):
        return self.inner.describe()

    def prepare(self, items):
        return self.inner.prepare(items)

    def generate(self, prepared):
        self.batches += 1
        if self.batches == self.crash_at_batch:
            raise KeyboardInterrupt("simulated crash")
        self.generated += [item.id for item in prepared.loaded]
        return self.inner.generate(prepared)


def test_eval_cli_writes_every_file(tiny_model_dir, manifests, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--model", str(tiny_model_dir), "--data", ",".join(map(str, manifests)), "--out", str(out)]
    argv += [*"--batch-size 4 --device cpu --no-progress --max-new-tokens".split(), str(MAX_NEW_TOKENS)]
    assert eval_main(argv) == 0
    assert "images scored (3 errors)" in capsys.readouterr().out
    for name in ("predictions.jsonl", "metrics.json", "report.md", "run.json", *PLOTS.values()):
        assert (out / name).stat().st_size > 0, name

    predictions = read_predictions(out / "predictions.jsonl")
    assert len(predictions) == 11 and len({p.id for p in predictions}) == 11
    by_id = {p.id: p for p in predictions}
    assert by_id["missing"].error.startswith("cannot load image") and "missing.png" in by_id["missing"].error
    assert "corrupt.png" in by_id["corrupt"].error
    assert by_id["empty"].error is None and by_id["empty"].truth == 0
    assert by_id["thin"].error.startswith("cannot preprocess image") and "aspect ratio" in by_id["thin"].error

    # metrics.json is exactly a recomputation from predictions.jsonl, re-parsing every raw answer
    metrics = json.loads((out / "metrics.json").read_text())
    scored = [p for p in predictions if p.error is None]
    assert all(p.pred == parse_count(p.text) and p.parse_ok == (p.pred is not None) for p in scored)
    expected = count_metrics([p.pred for p in scored], [p.truth for p in scored])
    intervals = metrics["overall"].pop(
        "intervals"
    )  # the bootstrap intervals, checked in test_benchmark_metrics
    assert metrics["overall"] == {**expected, "errors": 3, "unlabelled": 0}
    assert set(intervals) == {"mae", "accuracy", "acc_within_1", "accuracy_per_count"}
    assert set(metrics["per_dataset"]) == {"synth-dots", "synth-people", "manifest"}
    assert metrics["per_dataset"]["manifest"]["errors"] == 3 and metrics["per_dataset"]["manifest"]["n"] == 1
    assert sum(b["n"] for b in metrics["per_bucket"].values()) == 8
    for group in (metrics["overall"], *metrics["per_dataset"].values(), *metrics["per_bucket"].values()):
        assert {"n", "mae", "rmse", "nae", "accuracy", "parse_failure_rate"} <= group.keys()

    run = json.loads((out / "run.json").read_text())
    assert run["prompt_template"] == "eval" and run["backend"] == "hf" and run["sessions"][0]["images"] == 11
    report = (out / "report.md").read_text()
    assert "## Per dataset" in report and "missing: cannot load image" in report

    # a second run into the same folder must not silently mix runs
    with pytest.raises(UsageError, match="--resume"):
        eval_main(argv)


def test_batching_and_left_padding_do_not_change_answers(backend, manifests, tmp_path):
    items = items_from_manifests(manifests[:2])
    prompt_lengths = {len(backend.prepare([item]).payload["input_ids"][0]) for item in items}
    assert len(prompt_lengths) > 1  # the batch really mixes prompt lengths, so it needs padding
    one = evaluate(backend, items, tmp_path / "b1", batch_size=1, report=False, progress=False)
    many = evaluate(backend, items, tmp_path / "b7", batch_size=7, report=False, progress=False)
    texts1 = {p.id: p.text for p in read_predictions(tmp_path / "b1" / "predictions.jsonl")}
    texts7 = {p.id: p.text for p in read_predictions(tmp_path / "b7" / "predictions.jsonl")}
    assert texts1 == texts7
    assert one == many
    # only new tokens are decoded: no prompt text leaks into an answer
    assert not any("How many" in text or "assistant" in text for text in texts1.values())


def test_interrupted_run_resumes_without_redoing_images(backend, manifests, tmp_path):
    items = items_from_manifests(manifests)
    out = tmp_path / "run"
    full = evaluate(backend, items, tmp_path / "full", batch_size=3, report=False, progress=False)

    crashing = CountingBackend(backend, crash_at_batch=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate(crashing, items, out, batch_size=3, progress=False)
    done = read_predictions(out / "predictions.jsonl")
    assert len(done) == 6  # two batches were flushed before the crash

    # and the crash also cut the last line in half
    lines = (out / "predictions.jsonl").read_bytes().splitlines(keepends=True)
    (out / "predictions.jsonl").write_bytes(b"".join(lines[:5]) + lines[5][:25])
    kept = {p.id for p in read_predictions(out / "predictions.jsonl")}
    assert len(kept) == 5

    resumed = CountingBackend(backend)
    metrics = evaluate(resumed, items, out, batch_size=3, resume=True, progress=False)
    loadable = {item.id for item in items} - {"missing", "corrupt", "thin"}
    assert sorted(resumed.generated) == sorted(loadable - kept)  # nothing answered is asked again
    final = read_predictions(out / "predictions.jsonl")
    assert {p.id for p in final} == {item.id for item in items}
    assert metrics == full  # same answers, same metrics as an uninterrupted run
    assert (
        len(json.loads((out / "run.json").read_text())["sessions"]) == 1
    )  # the crashed session never finished


def test_resume_refuses_other_settings(backend, manifests, tmp_path):
    items = items_from_manifests(manifests[:1])[:2]
    evaluate(backend, items, tmp_path, batch_size=2, report=False, progress=False)
    with pytest.raises(UsageError, match='--strict-parse "lenient" -> "strict"'):
        evaluate(backend, items, tmp_path, resume=True, parse_strict=True, progress=False)


def test_strict_stops_at_a_missing_image(tiny_model_dir, manifests, tmp_path, capsys):
    argv = ["--model", str(tiny_model_dir), "--data", str(manifests[2]), "--out", str(tmp_path / "s")]
    argv += "--strict --max-new-tokens 2 --device cpu --no-progress".split()
    with pytest.raises(ImageEvaluationError, match="missing: cannot load image"):
        eval_main(argv)


def test_predict_prints_counts(tiny_model_dir, manifests, tmp_path, capsys):
    images = sorted((manifests[0].parent / "images").iterdir())[:2]
    common = ["--model", str(tiny_model_dir), "--max-new-tokens", str(MAX_NEW_TOKENS), "--device", "cpu"]
    assert predict_main([*common, *map(str, images), "--json", "--show-thinking"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == list(map(str, images))
    for r in rows:
        assert r["count"] == parse_count(r["text"]) and r["error"] is None and "thinking" in r

    missing = tmp_path / "nope.png"
    shutil.copy(images[0], tmp_path / "copy.png")
    assert predict_main([*common, str(tmp_path / "copy.png"), str(missing)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'copy.png'}\t") and lines[1].startswith(
        f"{missing}\terror: cannot load"
    )
