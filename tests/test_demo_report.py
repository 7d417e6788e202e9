"""The demo's report from a fabricated finished demo folder: no model, no training, exact numbers."""

import json

import numpy as np
import pytest

from crowdvlm.demo.pipeline import DemoLayout, check_plan_matches, lr_tag
from crowdvlm.demo.plan import ARMS, DemoPlan
from crowdvlm.demo.report import terminal_table, write_report
from crowdvlm.demo.stages import DONE_FILE, Stage, is_done, run_stages
from crowdvlm.demo.summary import collect
from crowdvlm.evaluate.predictions import Prediction, PredictionWriter

PLAN = DemoPlan(seeds=(0, 1), sft_lrs=(1e-4, 3e-4), grpo_lrs=(2e-5,), n_boot=200, n_test=40, n_ood=20)
# Per arm, how far its answers are off (constant error per image); binary also fails to parse some OOD answers.
OFFSET = {"base": 4, "sft": 2, "grpo_binary": 3, "grpo_fgrpr": 1}


def _marker(folder, **info):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE_FILE).write_text(json.dumps({"stage": "x", "wall_s": 1.0, **info}))


def _predictions(folder, arm, set_name, truths, styles):
    with PredictionWriter(folder / "predictions.jsonl") as w:
        rows = []
        for i, (t, style) in enumerate(zip(truths, styles, strict=True)):
            pred = int(t) + OFFSET[arm]
            if arm == "grpo_binary" and set_name == "ood" and i % 5 == 0:
                pred = None  # a parse failure: scored as 0
            rows.append(
                Prediction(f"{set_name}-{i}", style, f"{i}.png", int(t), str(pred), pred, pred is not None)
            )
        w.write_batch(rows)
    _marker(folder)


@pytest.fixture
def finished_demo(tmp_path):
    layout = DemoLayout(tmp_path / "demo", PLAN, tmp_path / "base")
    check_plan_matches(layout.out, PLAN)
    rng = np.random.default_rng(0)
    sets = {
        "test": (rng.integers(0, 41, 40), [f"synth-{s}" for s in PLAN.styles] * 8),
        "ood": (rng.integers(10, 41, 20), ["synth-rings"] * 20),
        "ood_near": (rng.integers(10, 41, 20), ["synth-shapes"] * 20),
    }
    for set_name, (truths, styles) in sets.items():
        _predictions(layout.base_eval(set_name), "base", set_name, truths, styles)
    for arm, (kind, rewards) in ARMS.items():
        grid = [{"lr": lr, "val_mae": 1.0 + k} for k, lr in enumerate(PLAN.lrs(arm))]
        _marker(layout.selection(arm), lr=PLAN.lrs(arm)[0], grid=grid)
        for seed in PLAN.seeds:
            run = layout.seed_run(arm, seed)
            log = run / "log.jsonl"
            _marker(run, steps=10, log=str(log), wall_s=5.0 if kind == "sft" else 50.0)
            if kind == "grpo":
                with log.open("w") as f:
                    f.write(json.dumps({"event": "train_begin", "step": 0}) + "\n")
                    for step in range(1, 21):
                        row = {"event": "log", "step": step, f"rewards/{rewards[0]}/mean": 0.01 * step,
                               "frac_reward_zero_std": 0.5, "kl": 0.001 * step, "entropy": 0.3}  # fmt: skip
                        f.write(json.dumps(row) + "\n")
            for set_name, (truths, styles) in sets.items():
                _predictions(layout.seed_eval(arm, seed, set_name), arm, set_name, truths, styles)
    return layout, sets


def test_collect_and_report(finished_demo):
    layout, sets = finished_demo
    results = collect(layout, wall_s=123.0)
    assert results["complete"]
    test = results["sets"]["test"]["arms"]
    for arm, offset in OFFSET.items():
        assert test[arm]["overall"]["mae"]["mean"] == pytest.approx(offset)
    # OOD binary: every 5th answer unparsed -> error = truth on those images.
    truths = sets["ood"][0]
    expected = np.mean([t if i % 5 == 0 else 3 for i, t in enumerate(truths)])
    ood_binary = results["sets"]["ood"]["arms"]["grpo_binary"]["overall"]
    assert ood_binary["mae"]["mean"] == pytest.approx(expected)
    assert ood_binary["parse_failure_rate"]["mean"] == pytest.approx(0.2)
    assert ood_binary["mae_parsed"]["mean"] == pytest.approx(3.0)
    assert results["claims"]["claims"] == {"C1": "reproduces", "C2": "reproduces", "C3": "does not reproduce"}
    rows = [r["claim"] for r in results["claims"]["rows"]]
    assert rows == ["C1", "C2", "C3a", "C3b", "M", "C3a-near", "C3b-near"]
    diag = results["training"]["grpo_fgrpr"]["diagnostics"]
    assert diag["task_reward"]["first"] == pytest.approx(0.03) and diag["task_reward"][
        "last"
    ] == pytest.approx(0.18)

    report = write_report(results, layout.report)
    text = report.read_text()
    for needle in (
        "C1",
        "C2",
        "C3",
        "reproduces",
        "Equal images ≠ equal compute",
        "reward_curves.png",
        "shapes",
    ):
        assert needle in text
    for name in ("reward_curves.png", "mae_per_dataset.png", "error_by_bucket.png", "results.json"):
        assert (layout.report / name).stat().st_size > 1000 or name == "results.json"
    table = terminal_table(results)
    assert "GRPO FGRPR" in table and "C3b" in table


def test_resumed_folder_refuses_another_plan(tmp_path):
    check_plan_matches(tmp_path, PLAN)
    check_plan_matches(tmp_path, PLAN)  # same plan: fine
    with pytest.raises(ValueError, match="n_train"):
        check_plan_matches(tmp_path, PLAN.with_overrides({"n_train": "7"}))


def test_stages_skip_finished_and_clear_half_written(tmp_path):
    calls = []

    def work(name, folder):
        def run():
            calls.append(name)
            (folder / "out.txt").write_text(name)
            return {"value": name}

        return run

    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    (b / "stale.txt").write_text("half-written by a killed run")
    stages = [Stage("a", a, 1.0, work("a", a)), Stage("b", b, 1.0, work("b", b))]
    _marker(a)  # stage a already finished
    lines = []
    out = run_stages(stages, progress=True, echo=lines.append)
    assert calls == ["b"] and out["skipped"] == 1
    assert not (b / "stale.txt").exists() and is_done(b)
    assert json.loads((b / DONE_FILE).read_text())["value"] == "b"
    assert run_stages(stages, progress=False)["skipped"] == 2 and calls == ["b"]


def test_lr_tag_is_folder_safe():
    assert "/" not in lr_tag(3e-4) and lr_tag(1e-5) == "1e-05"
