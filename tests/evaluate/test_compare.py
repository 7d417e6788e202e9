"""`crowdvlm compare`: tables of several runs and paired bootstrap intervals, from synthetic predictions."""

from __future__ import annotations

import json

import pytest

from crowdvlm.errors import UsageError
from crowdvlm.evaluate.cli import compare_main
from crowdvlm.evaluate.compare import compare_runs, load_run, write_comparison
from run_writers import write_run as _write_run


def test_compare_matches_images_by_id(tmp_path):
    base = _write_run(
        tmp_path / "base",
        [("x1", "crowd", 10, 14, None), ("x2", "crowd", 200, 150, None), ("x3", "sheep", 5, 5, None),
         ("x4", "sheep", 7, None, "cannot load image")],
    )  # fmt: skip
    # the other run answered in another order, missed x3 and recovered x4
    other = _write_run(
        tmp_path / "other",
        [("x4", "sheep", 7, 7, None), ("x2", "crowd", 200, 190, None), ("x1", "crowd", 10, 10, None),
         ("x3", "sheep", 5, None, "HTTP 500")],
    )  # fmt: skip
    result = compare_runs([load_run(base), load_run(other)], n_bootstrap=200)
    assert result["models"] == ["base", "other"] and result["baseline"] == "base"
    assert result["datasets"] == ["crowd", "sheep"]
    assert result["table"]["base"]["crowd"]["mae"] == pytest.approx((4 + 50) / 2)
    assert result["table"]["other"]["sheep"]["mae"] == 0.0
    assert result["bucket_table"]["base"]["101-500"] == {"n": 1, "mae": 50.0}
    overall = result["diffs"]["other"]["overall"]
    # only x1 and x2 were scored by both: (0 + 10)/2 - (4 + 50)/2
    assert overall["n_images"] == 2 and overall["diff"] == pytest.approx(5 - 27)
    assert "sheep" not in result["diffs"]["other"]  # no shared scored sheep image


def test_write_comparison_and_cli(tmp_path, capsys):
    rows = [
        (f"i{k}", "ds1" if k % 2 else "ds2", t, t + d, None)
        for k, (t, d) in enumerate([(3, 1), (20, -5), (80, 9), (700, 100)])
    ]
    _write_run(tmp_path / "m1", rows)
    _write_run(tmp_path / "m2", [(i, ds, t, t, e) for i, ds, t, _, e in rows], with_metrics=False)
    out = tmp_path / "cmp"
    assert (
        compare_main([str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(out), "--bootstrap", "300"])
        == 0
    )
    md = (out / "compare.md").read_text()
    assert "| model | ds2 | ds1 | overall |" in md
    assert "| m2 | 0.00 / 0.00 / 100.0% |" in md
    assert "## MAE difference vs m1" in md and "| m2 |" in md.split("### per true-count bucket")[1]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "compare.json").read_text())
    assert saved["diffs"]["m2"]["overall"]["diff"] == pytest.approx(-(1 + 5 + 9 + 100) / 4)
    assert "compare.md" in capsys.readouterr().out


def test_same_names_are_made_unique(tmp_path):
    rows = [("i1", "d", 3, 3, None)]
    a = _write_run(tmp_path / "a" / "eval", rows)
    b = _write_run(tmp_path / "b" / "eval", rows)
    result = write_comparison([a, b], tmp_path / "out", n_bootstrap=10)
    assert result["models"] == ["eval", "eval#2"]


def test_compare_rejects_a_directory_without_predictions(tmp_path):
    with pytest.raises(UsageError, match="predictions.jsonl is missing"):
        load_run(tmp_path)
