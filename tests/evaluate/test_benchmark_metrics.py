"""The counting benchmarks' metrics: exact accuracy, accuracy within ±1 and the per-count macro average (Molmo's
evaluator), in the metrics, the eval report (with bootstrap intervals) and the comparison of runs."""

from __future__ import annotations

import json

import pytest

from crowdvlm.evaluate.compare import compare_runs, load_run, write_comparison
from crowdvlm.evaluate.predictions import Prediction
from crowdvlm.evaluate.report import write_report
from crowdvlm.evaluate.scoring import compute_metrics
from crowdvlm.metrics import count_metrics
from test_compare import _write_run


@pytest.mark.parametrize(
    ("preds", "truths", "accuracy", "within_1", "per_count"),
    [
        # count 2: 3 of 4 exact; count 9: 0 of 1 -> micro 3/5, macro (3/4 + 0) / 2
        ([2, 2, 2, 3, 8], [2, 2, 2, 2, 9], 0.6, 1.0, 0.375),
        # a parse failure is never accurate, not even within ±1 of a truth of 0 or 1
        ([None, 1], [1, 1], 0.5, 0.5, 0.5),
        # every count right once: macro = micro
        ([2, 3, 4], [2, 3, 4], 1.0, 1.0, 1.0),
        # one count fully right (10 images), another fully wrong (1 image)
        ([5] * 10 + [1], [5] * 10 + [7], 10 / 11, 10 / 11, 0.5),
    ],
)
def test_counting_benchmark_metrics_by_hand(preds, truths, accuracy, within_1, per_count):
    m = count_metrics(preds, truths)
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["acc_within_1"] == pytest.approx(within_1)
    assert m["accuracy_per_count"] == pytest.approx(per_count)


def test_no_images_leaves_the_macro_accuracy_undefined():
    assert count_metrics([], [])["accuracy_per_count"] is None


def _predictions(rows):
    return [
        Prediction(f"i{k}", "countbenchqa", f"i{k}.png", t, "", p, p is not None, None)
        for k, (t, p) in enumerate(rows)
    ]


def test_eval_metrics_hold_bootstrap_intervals_around_each_value(tmp_path):
    rows = [(c, c if k % 3 else c + 1) for k, c in enumerate([2, 3, 4, 5, 6, 7, 8, 9, 10] * 6)]
    preds = _predictions(rows)
    metrics = compute_metrics(preds)
    overall = metrics["overall"]
    assert set(overall["intervals"]) == {"mae", "accuracy", "acc_within_1", "accuracy_per_count"}
    for key, (low, high) in overall["intervals"].items():
        assert low <= overall[key] <= high, key
    assert overall["intervals"]["accuracy"][0] < overall["intervals"]["accuracy"][1]  # not a point
    assert overall["intervals"]["acc_within_1"] == [1.0, 1.0]  # every answer within one
    json.dumps(metrics, allow_nan=False)
    report = write_report(tmp_path, preds, metrics).read_text()
    assert "Acc/count" in report and "95 % bootstrap intervals" in report


def _run(path, rows):
    """An eval run of ``rows`` ``(truth, pred)`` on one dataset."""
    return _write_run(path, [(f"i{k}", "countbenchqa", t, p, None) for k, (t, p) in enumerate(rows)])


def test_compare_reports_accuracy_differences_with_intervals(tmp_path):
    truths = [2, 3, 4, 5, 6, 7, 8, 9, 10] * 10
    base = _run(tmp_path / "base", [(t, t + 1) for t in truths])  # always off by one: accuracy 0
    better = _run(tmp_path / "better", [(t, t if k % 2 else t + 1) for k, t in enumerate(truths)])
    result = compare_runs([load_run(base), load_run(better)], n_bootstrap=500)
    exact = result["accuracy_diffs"]["better"]["accuracy"]["overall"]
    assert exact["diff"] == pytest.approx(0.5) and exact["low"] > 0 and exact["significant"]
    within = result["accuracy_diffs"]["better"]["acc_within_1"]["overall"]
    assert within["diff"] == 0.0 and not within["significant"]
    per_count = result["accuracy_diffs"]["better"]["accuracy_per_count"]["countbenchqa"]
    assert per_count["diff"] == pytest.approx(
        count_metrics([t if k % 2 else t + 1 for k, t in enumerate(truths)], truths)["accuracy_per_count"]
    )
    assert result["table"]["better"]["overall"]["accuracy_per_count"] == pytest.approx(per_count["diff"])
    write_comparison([base, better], tmp_path / "cmp", n_bootstrap=200)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Acc / Acc ±1 / Acc per count" in md and "## Accuracy difference vs base" in md
    assert "| better | Acc | **+50.00" in md
