"""`crowdvlm compare` with groups of runs (one per seed): means over seeds, intervals over seeds and images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crowdvlm.evaluate.cli import compare_main
from crowdvlm.evaluate.compare import compare_runs, load_run, write_comparison
from crowdvlm.evaluate.predictions import Prediction, PredictionWriter
from crowdvlm.evaluate.scoring import compute_metrics

TRUTHS = list(range(1, 21))


def _run(path, offset):
    """An eval run whose answers are ``truth + offset`` (a constant error per image)."""
    preds = [
        Prediction(f"img{i}", "synth-dots", f"{i}.png", t, "", t + offset, True) for i, t in enumerate(TRUTHS)
    ]
    path.mkdir(parents=True)
    with PredictionWriter(path / "predictions.jsonl") as w:
        w.write_batch(preds)
    (path / "metrics.json").write_text(json.dumps(compute_metrics(preds)))
    return path


def test_groups_average_over_seeds_and_pair_seed_by_seed(tmp_path):
    base = _run(tmp_path / "base", 6)
    sft = [_run(tmp_path / f"sft{s}", 2 + s) for s in range(2)]  # MAE 2 and 3
    grpo = [_run(tmp_path / f"grpo{s}", 1 + 3 * s) for s in range(2)]  # MAE 1 and 4
    result = compare_runs(
        [load_run(base), [load_run(p) for p in sft], [load_run(p) for p in grpo]], n_bootstrap=300
    )
    assert result["models"] == ["base", "sft0", "grpo0"] and result["seeds"] == {
        "base": 1,
        "sft0": 2,
        "grpo0": 2,
    }
    assert result["table"]["sft0"]["overall"]["mae"] == pytest.approx(2.5)
    assert result["table"]["grpo0"]["overall"]["n"] == 20
    overall = result["diffs"]["sft0"]["overall"]
    assert overall["diff"] == pytest.approx(2.5 - 6) and overall["n_seeds"] == 2 and overall["significant"]
    # The groups' per-seed MAEs differ (2, 3 vs 1, 4): resampling seeds widens the interval beyond 0 width.
    two = compare_runs([[load_run(p) for p in sft], [load_run(p) for p in grpo]], n_bootstrap=500)["diffs"][
        "grpo0"
    ]
    assert two["overall"]["diff"] == pytest.approx(0.0) and two["overall"]["low"] < 0 < two["overall"]["high"]
    assert not two["overall"]["significant"]


def test_cli_takes_comma_separated_groups_and_rejects_uneven_ones(tmp_path, capsys):
    runs = {
        name: [_run(tmp_path / f"{name}{s}", off + s) for s in range(k)]
        for name, off, k in (("a", 2, 2), ("b", 1, 2), ("c", 0, 3))
    }
    group = lambda name: ",".join(str(p) for p in runs[name])  # noqa: E731
    out = tmp_path / "cmp"
    assert (
        compare_main([group("a"), group("b"), "--out", str(out), "--names", "A,B", "--bootstrap", "200"]) == 0
    )
    saved = json.loads((out / "compare.json").read_text())
    assert saved["models"] == ["A", "B"] and saved["diffs"]["B"]["overall"]["diff"] == pytest.approx(-1.0)
    assert (
        "A (2 runs, means over seeds)" in (out / "compare.md").read_text() and (out / "compare.png").is_file()
    )
    from crowdvlm.cli import main

    assert main(["compare", group("a"), group("c"), "--out", str(tmp_path / "x")]) == 2  # bad input
    assert "one run per seed, as many in each" in capsys.readouterr().err
    with pytest.raises(ValueError, match="as many in each"):
        write_comparison([runs["a"], runs["c"]], tmp_path / "y")
    assert np.isfinite(saved["diffs"]["B"]["overall"]["low"])
