"""The evaluation machinery without a model: predictions file, scoring, prefetch, report."""

from __future__ import annotations

import json
import threading

import pytest

from crowdvlm.evaluate.predictions import Prediction, PredictionWriter, latest_by_id, read_predictions
from crowdvlm.evaluate.prefetch import prefetch
from crowdvlm.evaluate.report import PLOTS, REPORT_FILE, write_report
from crowdvlm.evaluate.scoring import absolute_errors, compute_metrics


def P(i, truth, pred, dataset="a", error=None, text="t"):  # noqa: N802 - a short table-row constructor
    return Prediction(str(i), dataset, f"{i}.png", truth, text, pred, pred is not None, error)


def test_writer_appends_and_reader_round_trips(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = [P(1, 3, 3), P(2, 10, None, text="no idea"), P(3, None, 4)]
    with PredictionWriter(path) as w:
        w.write_batch(rows[:2])
    with PredictionWriter(path) as w:  # a second session appends
        w.write_batch(rows[2:])
    assert read_predictions(path) == rows


@pytest.mark.parametrize(
    ("tail", "kept"),
    [
        (b'{"id": "9", "dataset": "a", "ima', 2),  # cut mid-line, no newline
        (b'{"id": "9", "dataset": "a", "ima\n', 2),  # cut mid-line, then a newline
        (b"", 2),  # clean end
    ],
)
def test_truncated_last_line_is_dropped_and_repaired(tmp_path, tail, kept):
    path = tmp_path / "predictions.jsonl"
    with PredictionWriter(path) as w:
        w.write_batch([P(1, 3, 3), P(2, 4, 5)])
    clean_size = path.stat().st_size
    with path.open("ab") as f:
        f.write(tail)
    assert len(read_predictions(path)) == kept
    assert path.stat().st_size == clean_size + len(tail)  # not repaired unless asked
    assert len(read_predictions(path, repair=True)) == kept
    assert path.stat().st_size == clean_size
    with PredictionWriter(path) as w:  # appending after a repair gives a valid file
        w.write_batch([P(3, 1, 1)])
    assert [p.id for p in read_predictions(path)] == ["1", "2", "3"]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "1"}\nnot json\n{"id": "3"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl, line 2"):
        read_predictions(path)


def test_latest_by_id_keeps_the_newest_outcome():
    retried = [P(1, 3, None, error="timeout"), P(2, 4, 4), P(1, 3, 3)]
    latest = latest_by_id(retried)
    assert list(latest) == ["1", "2"] and latest["1"].pred == 3 and latest["1"].error is None


def test_compute_metrics_by_hand():
    preds = [
        P(1, 10, 12, "a"),  # |err| 2
        P(2, 4, None, "a"),  # parse failure: scored as 0 -> |err| 4
        P(3, 60, 60, "b"),  # exact
        P(4, 60, None, "b", error="cannot load image"),  # not scored, counted
        P(5, None, 7, "b"),  # unlabelled: not scored, counted
    ]
    m = compute_metrics(preds)
    overall = m["overall"]
    assert (overall["n"], overall["errors"], overall["unlabelled"]) == (3, 1, 1)
    assert overall["mae"] == pytest.approx((2 + 4 + 0) / 3)
    assert overall["rmse"] == pytest.approx(((4 + 16 + 0) / 3) ** 0.5)
    assert overall["accuracy"] == pytest.approx(1 / 3)
    assert overall["parse_failure_rate"] == pytest.approx(1 / 3)
    assert m["per_dataset"]["a"]["mae"] == pytest.approx(3.0)
    assert (
        m["per_dataset"]["b"]["n"],
        m["per_dataset"]["b"]["errors"],
        m["per_dataset"]["b"]["unlabelled"],
    ) == (1, 1, 1)
    assert list(m["per_bucket"]) == ["0-10", "51-100"]
    assert m["per_bucket"]["51-100"]["n"] == 1 and m["per_bucket"]["51-100"]["errors"] == 1
    json.dumps(m, allow_nan=False)  # strict JSON
    assert absolute_errors(preds) == {"1": 2.0, "2": 4.0, "3": 0.0}


def test_compute_metrics_when_everything_failed():
    m = compute_metrics([P(1, 5, None, error="gone"), P(2, 6, None, error="gone")])
    assert m["overall"]["n"] == 0 and m["overall"]["mae"] is None and m["overall"]["errors"] == 2
    assert m["per_dataset"]["a"]["errors"] == 2 and m["per_bucket"]["0-10"]["errors"] == 2


def test_prefetch_keeps_order_and_runs_in_another_thread():
    threads = set()

    def work(x):
        threads.add(threading.current_thread().name)
        return x * x

    assert list(prefetch(range(10), work, depth=3)) == [x * x for x in range(10)]
    assert threads == {"prefetch"}


def test_prefetch_reraises_at_the_failing_batch():
    def work(x):
        if x == 2:
            raise OSError("disk gone")
        return x

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for value in prefetch(range(5), work):
            seen.append(value)
    assert seen == [0, 1]


def test_prefetch_stops_its_worker_when_abandoned():
    produced = []

    def work(x):
        produced.append(x)
        return x

    results = prefetch(range(1000), work, depth=1)
    assert next(results) == 0
    results.close()
    assert len(produced) < 10  # the worker stopped instead of running through all 1000


def test_report_writes_tables_and_plots(tmp_path):
    preds = [
        P(i, t, p, d)
        for i, (t, p, d) in enumerate([(0, 0, "a"), (12, 15, "a"), (300, None, "b"), (1500, 900, "b")])
    ]
    preds.append(P(9, 40, None, "b", error="cannot load image x.png"))
    write_report(tmp_path, preds, compute_metrics(preds), {"model": "tiny", "backend": "hf"})
    report = (tmp_path / REPORT_FILE).read_text()
    for needle in (
        "| all | 4 |",
        "| a | 2 |",
        "| b | 2 |",
        "| >1000 | 1 |",
        "- **model**: tiny",
        "9: cannot load image",
    ):
        assert needle in report
    assert "## Unparsed answers (1" in report
    for name in PLOTS.values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report


def test_items_from_manifests_builds_eval_prompts_and_unique_ids(tmp_path):
    from crowdvlm.evaluate.run import items_from_manifests
    from crowdvlm.prompts import build_prompt

    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        rows = [
            {"image": "x.png", "problem": "How many sheep are in the image?", "solution": 2, "dataset": name},
            {
                "image": "y.png",
                "problem": "How many sheep are in the image?",
                "solution": None,
                "dataset": name,
            },
        ]
        (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = items_from_manifests([tmp_path / "a" / "m.jsonl", tmp_path / "b" / "m.jsonl"], limit=2)
    # the second manifest's ids collide with the first's (same relative paths): qualified by dataset
    assert [i.id for i in items] == ["x.png", "y.png", "b:x.png", "b:y.png"]
    assert items[0].image == tmp_path / "a" / "x.png" and not items[0].image.exists()  # missing: kept
    assert items[0].prompt == build_prompt("How many sheep are in the image?", "eval", "think")
    assert [i.truth for i in items] == [2, None, 2, None]
    assert len(items_from_manifests([tmp_path / "a" / "m.jsonl"], limit=1)) == 1
