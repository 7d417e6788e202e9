"""Metrics against hand-computed values."""

import math
import subprocess
import sys

import pytest

from crowdvlm.metrics import (
    METRICS,
    bucket_label,
    bucket_metrics,
    count_metrics,
    grouped_metrics,
    image_scores,
)


def test_hand_computed():
    preds = [10, 12, None, 0, 105]
    truths = [10, 10, 4, 0, 100]
    m = count_metrics(preds, truths)
    # abs errors (failure scored as 0): 0, 2, 4, 0, 5
    assert m["n"] == 5
    assert m["mae"] == pytest.approx(11 / 5)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 4 + 16 + 0 + 25) / 5))
    assert m["nae"] == pytest.approx((0 + 0.2 + 1.0 + 0.05) / 4)  # y = 0 left out
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["acc_within_1"] == pytest.approx(2 / 5)
    assert m["acc_within_10pct"] == pytest.approx(3 / 5)  # 10, 0, 105 (5 <= 10)
    assert m["parse_failures"] == 1
    assert m["parse_failure_rate"] == pytest.approx(0.2)
    assert m["mae_parsed"] == pytest.approx(7 / 4)
    assert m["mean_truth"] == pytest.approx(124 / 5)


def test_parse_failure_is_never_accurate_even_for_zero_truth():
    m = count_metrics([None], [0])
    assert m["mae"] == 0.0 and m["accuracy"] == 0.0 and m["nae"] is None and m["parse_failure_rate"] == 1.0


def test_empty_and_mismatch():
    m = count_metrics([], [])
    assert m["n"] == 0 and m["mae"] is None
    with pytest.raises(ValueError):
        count_metrics([1], [1, 2])


def test_custom_tolerances():
    m = count_metrics([12, 20], [10, 25], within_k=2, within_pct=20)
    assert m["acc_within_2"] == 0.5  # 2 <= 2, 5 > 2
    assert m["acc_within_20pct"] == 1.0  # 2 <= 2.0, 5 <= 5.0


@pytest.mark.parametrize(
    ("count", "label"),
    [(0, "0-10"), (10, "0-10"), (11, "11-50"), (50, "11-50"), (51, "51-100"), (101, "101-500"),
     (500, "101-500"), (501, "501-1000"), (1000, "501-1000"), (1001, ">1000"), (25_791, ">1000")],
)  # fmt: skip
def test_default_buckets(count, label):
    assert bucket_label(count) == label


def test_grouped_and_bucketed():
    preds = [1, 2, 60, None]
    truths = [1, 4, 50, 2000]
    groups = ["a", "b", "a", "b"]
    per_group = grouped_metrics(preds, truths, groups)
    assert list(per_group) == ["a", "b"]
    assert per_group["a"]["mae"] == pytest.approx(5.0)
    assert per_group["b"]["mae"] == pytest.approx(1001.0)
    per_bucket = bucket_metrics(preds, truths)
    assert list(per_bucket) == ["0-10", "11-50", ">1000"]
    assert per_bucket["0-10"]["n"] == 2 and per_bucket["0-10"]["mae"] == pytest.approx(1.0)
    custom = bucket_metrics(preds, truths, edges=(3, 100))
    assert list(custom) == ["0-3", "4-100", ">100"]
    with pytest.raises(ValueError):
        bucket_label(5, edges=(10, 5))


def test_metrics_do_not_import_torch():
    code = "import sys, crowdvlm.metrics, crowdvlm.parsing, crowdvlm.rewards; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("preds", "truths"),
    [([10, 12, None, 0, 105], [10, 10, 4, 0, 100]), ([], [])],
    ids=["images", "empty"],
)
def test_metric_registry_names_the_keys_count_metrics_returns(preds, truths):
    assert [m.name for m in METRICS] == list(count_metrics(preds, truths))


def test_interval_metrics_are_the_keys_image_scores_returns():
    scores = image_scores([10, None, 4], [12, 3, 4])
    assert [m.name for m in METRICS if m.interval] == list(scores)


def test_metric_registry_entries_are_well_formed():
    assert len({m.name for m in METRICS}) == len(METRICS)
    assert len({m.label for m in METRICS}) == len(METRICS)
    assert {m.kind for m in METRICS} <= {"float", "pct", "int"}
