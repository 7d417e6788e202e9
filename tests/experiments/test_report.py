"""An experiment's report from a fabricated finished folder: no model, no training, exact numbers; a report
beside a run still writing the folder, and beside another report."""

import json
import os
import socket
import threading

import numpy as np
import pytest

from crowdvlm.cli import main as crowdvlm
from crowdvlm.demo.cli import DEMO_FILE
from crowdvlm.errors import UsageError
from crowdvlm.evaluate.predictions import Prediction, PredictionWriter
from crowdvlm.experiments.cli import run_experiment
from crowdvlm.experiments.pipeline import Layout, claim_folder, lr_tag
from crowdvlm.experiments.report import terminal_table, write_report
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.stages import DONE_FILE, OWNER_FILE, Stage, eta, is_done, run_stages
from crowdvlm.experiments.summary import collect
from crowdvlm.runlock import LOCK_FILE, RunLock
from crowdvlm.train.config import CONFIG_FILE

# Per arm, how far its answers are off (constant error per image); binary also fails to parse some OOD answers.
OFFSET = {"base": 4, "sft": 2, "grpo_binary": 3, "grpo_fgrpr": 1}
SMALL = """extends: {demo}
seeds: [0, 1]
data: {{sets: {{test: {{n: 40}}, ood: {{n: 20}}, ood_near: {{n: 20}}}}}}
arms:
  sft: {{lr_grid: [1.0e-4, 3.0e-4]}}
  grpo_binary: {{lr_grid: [2.0e-5]}}
  grpo_fgrpr: {{lr_grid: [2.0e-5]}}
report: {{n_boot: 200}}
"""


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
    (folder / "metrics.json").write_text(json.dumps(_metrics(rows)))
    _marker(folder)


def _metrics(rows):
    from crowdvlm.evaluate.scoring import compute_metrics

    return compute_metrics(rows)


@pytest.fixture
def finished(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(demo=DEMO_FILE))
    exp = load_experiment(path)
    layout = Layout(tmp_path / "out", exp)
    claim_folder(layout.out, exp)
    rng = np.random.default_rng(0)
    styles = list(exp.sets["test"].styles)
    sets = {
        "test": (rng.integers(0, 41, 40), [f"synth-{s}" for s in styles] * 8),
        "ood": (rng.integers(10, 41, 20), ["synth-rings"] * 20),
        "ood_near": (rng.integers(10, 41, 20), ["synth-shapes"] * 20),
    }
    for set_name, (truths, names) in sets.items():
        _predictions(layout.seed_eval("base", 0, set_name), "base", set_name, truths, names)
    grid = [{"lr": lr, "val_mae": 1.0 + k} for k, lr in enumerate(exp.arms["sft"].lr_grid)]
    _marker(layout.selection("sft"), lr=exp.arms["sft"].lr_grid[0], metric="mae", grid=grid)
    for arm in ("sft", "grpo_binary", "grpo_fgrpr"):
        for seed in exp.seeds:
            run = layout.seed_run(arm, seed)
            _marker(run, steps=10, log="log.jsonl", units=100, wall_s=5.0 if arm == "sft" else 50.0)
            if arm != "sft":
                reward = "binary" if arm == "grpo_binary" else "fgrpr"
                config = {"kind": "grpo", "script": {"rewards": [reward, "answer_format"]}}
                (run / CONFIG_FILE).write_text(json.dumps(config))  # what the run trained with
                with (run / "log.jsonl").open("w") as f:
                    f.write(json.dumps({"event": "train_begin", "step": 0}) + "\n")
                    for step in range(1, 21):
                        row = {
                            "event": "log",
                            "step": step,
                            f"rewards/{reward}/mean": 0.01 * step,
                            "frac_reward_zero_std": 0.5,
                            "kl": 0.001 * step,
                            "entropy": 0.3,
                        }
                        f.write(json.dumps(row) + "\n")
            for set_name, (truths, names) in sets.items():
                _predictions(layout.seed_eval(arm, seed, set_name), arm, set_name, truths, names)
    return exp, layout, sets


def test_collect_and_report(finished):
    exp, layout, sets = finished
    results = collect(layout, wall_s=123.0)
    assert results["complete"]
    test = results["sets"]["test"]["arms"]
    for arm, offset in OFFSET.items():
        assert test[arm]["overall"]["mae"]["mean"] == pytest.approx(offset)
    assert test["base"]["seeds"] == [0] and test["sft"]["seeds"] == [0, 1]
    # OOD binary: every 5th answer unparsed -> error = truth on those images.
    truths = sets["ood"][0]
    expected = np.mean([t if i % 5 == 0 else 3 for i, t in enumerate(truths)])
    ood_binary = results["sets"]["ood"]["arms"]["grpo_binary"]["overall"]
    assert ood_binary["mae"]["mean"] == pytest.approx(expected)
    assert ood_binary["parse_failure_rate"]["mean"] == pytest.approx(0.2)
    assert ood_binary["mae_parsed"]["mean"] == pytest.approx(3.0)
    verdicts = results["comparisons"]
    assert verdicts["claims"] == {"C1": "reproduces", "C2": "reproduces", "C3": "does not reproduce"}
    assert [r["id"] for r in verdicts["rows"]] == ["C1", "C2", "C3a", "C3b", "M", "C3a-near", "C3b-near"]
    train = results["training"]
    assert train["sft"]["lr"] == 1e-4 and train["sft"]["grid"][1]["val_mae"] == 2.0
    assert train["grpo_fgrpr"]["lr"] == 2e-5 and train["grpo_fgrpr"]["task_reward"] == "fgrpr"
    diag = train["grpo_fgrpr"]["diagnostics"]
    assert diag["task_reward"]["first"] == pytest.approx(0.03) and diag["task_reward"][
        "last"
    ] == pytest.approx(0.18)

    report = write_report(results, exp, layout)
    text = report.read_text()
    for needle in (
        "C1",
        "C2",
        "C3",
        "reproduces",
        "Equal images ≠ equal compute",
        "reward_curves.png",
        "shapes",
        "compare-ood/compare.md",
        "`../demo/grpo.yaml`",
        "`package:demo/base`",
    ):
        assert needle in text, needle
    assert (
        str(layout.out) not in text and str(DEMO_FILE.parent) not in text
    )  # no absolute path of this machine
    for name in ("reward_curves.png", "mae_per_dataset.png", "error_by_bucket.png"):
        assert (layout.report / name).stat().st_size > 1000
    compare = json.loads((layout.report / "compare-test" / "compare.json").read_text())
    assert compare["seeds"] == {"base": 1, "SFT": 2, "GRPO 0/1": 2, "GRPO FGRPR": 2}
    assert compare["diffs"]["SFT"]["overall"]["diff"] == pytest.approx(-2.0)  # 2 - 4, every seed
    table = terminal_table(results)
    assert "GRPO FGRPR" in table and "C3b" in table


def test_a_folder_is_claimed_once_and_a_foreign_one_refused(tmp_path, finished):
    exp, layout, _ = finished
    owner = claim_folder(layout.out, exp)
    assert claim_folder(layout.out, exp) == owner  # the same folder: the same owner
    other = tmp_path / "other.yaml"
    other.write_text(SMALL.format(demo=DEMO_FILE).replace("seeds: [0, 1]", "seeds: [0, 2]"))
    assert claim_folder(layout.out, load_experiment(other)) == owner  # its stages decide what is redone
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a user's file")
    with pytest.raises(UsageError, match="not empty and was not made by crowdvlm experiment"):
        claim_folder(foreign, exp)
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(SMALL.format(demo=DEMO_FILE) + "name: another\n")
    with pytest.raises(UsageError, match="holds the run of experiment 'demo', not 'another'"):
        claim_folder(layout.out, load_experiment(renamed))


def test_stages_skip_finished_clear_half_written_and_measure_eta(tmp_path):
    calls = []

    def work(name, folder):
        def run():
            calls.append(name)
            (folder / "out.txt").write_text(name)
            return {"value": name}

        return run

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    b.mkdir()
    (b / "stale.txt").write_text("half-written by a killed run")
    (b / OWNER_FILE).write_text(json.dumps({"experiment": "exp"}))  # ... of this experiment
    stages = [
        Stage("a", a, "eval", 10, work("a", a)),
        Stage("b", b, "eval", 30, work("b", b)),
        Stage("c", c, "train", 5, work("c", c)),
    ]
    _marker(a, kind="eval", units=10, wall_s=2.0)  # stage a finished in an earlier session: 0.2 s per image
    assert eta([json.loads((a / DONE_FILE).read_text())], stages[1:]) == (pytest.approx(6.0), 1)
    lines = []
    out = run_stages(stages, owner="exp", progress=True, echo=lines.append)
    assert calls == ["b", "c"] and out["skipped"] == 1
    assert not (b / "stale.txt").exists() and is_done(b)
    marker = json.loads((b / DONE_FILE).read_text())
    assert marker["value"] == "b" and marker["kind"] == "eval" and marker["units"] == 30
    assert lines[0] == "resuming: 1 of 3 stages already done" and "1 stages unmeasured" in lines[1]
    assert run_stages(stages, owner="exp", progress=False)["skipped"] == 3 and calls == ["b", "c"]


def test_lr_tag_is_folder_safe():
    assert "/" not in lr_tag(3e-4) and lr_tag(1e-5) == "1e-05"


def test_partial_folder_reports_the_seeds_done(finished):
    exp, layout, _ = finished
    (layout.seed_eval("grpo_fgrpr", 1, "ood") / DONE_FILE).unlink()  # seed 1 of FGRPR still running
    for set_name in exp.test_sets:  # GRPO 0/1 not started
        for seed in exp.seeds:
            (layout.seed_eval("grpo_binary", seed, set_name) / DONE_FILE).unlink()
    results = collect(layout)
    assert not results["complete"] and results["seeds_done"]["grpo_fgrpr"] == [0]
    assert "grpo_binary" not in results["seeds_done"] and "grpo_binary" not in results["sets"]["test"]["arms"]
    rows = {r["id"]: r for r in results["comparisons"]["rows"]}
    assert rows["C1"]["verdict"] == "inconclusive" and rows["C1"]["reason"] == "grpo_binary not run yet"
    assert rows["C2"]["ci"]["n_seeds"] == 1  # FGRPR vs SFT on the seed both have
    text = write_report(results, exp, layout).read_text()
    assert "**Partial report**" in text and "GRPO FGRPR [0]" in text
    compare = json.loads((layout.report / "compare-test" / "compare.json").read_text())
    assert compare["models"] == ["base", "SFT", "GRPO FGRPR"] and compare["seeds"]["SFT"] == 1


def test_a_report_of_a_folder_a_run_holds_is_partial_and_names_the_run(finished, capsys):
    exp, layout, _ = finished
    (layout.seed_eval("grpo_fgrpr", 1, "ood") / DONE_FILE).unlink()  # the run is evaluating it now
    with RunLock(layout.out, what="crowdvlm experiment run small.yaml"):
        argv = ["experiment", "report", str(exp.path), "--out", str(layout.out)]
        assert crowdvlm(argv) == 0
        assert is_done(layout.seed_eval("sft", 1, "ood"))  # the report cleared nothing
    err = capsys.readouterr().err
    assert f"{layout.out} is still being written by pid {os.getpid()} on {socket.gethostname()} since " in err
    assert "reporting the stages finished so far (a partial report)" in err
    text = (layout.report / "report.md").read_text()
    assert "**Partial report**" in text and "GRPO FGRPR [0]" in text
    assert f"Written while a run was still writing this folder (pid {os.getpid()}" in text
    results = json.loads((layout.report / "results.json").read_text())
    assert results["running"]["command"] == "crowdvlm experiment run small.yaml" and not results["complete"]
    assert not (layout.report / LOCK_FILE).exists()


def test_a_report_waits_for_one_being_written_instead_of_interleaving(finished, caplog, lock_waited):
    exp, layout, _ = finished
    other = RunLock(layout.report, what="crowdvlm experiment run small.yaml").acquire()
    written = []
    second = threading.Thread(
        target=lambda: written.append(run_experiment(exp.path, layout.out, report_only=True)[0])
    )
    try:
        second.start()
        lock_waited.wait(timeout=60)  # the second report waits for the first one's lock ...
        assert lock_waited.is_set() and not (layout.report / "report.md").exists()
        (layout.report / "report.md").write_text("the first report\n")  # ... which ends now
        other.release()
        second.join(timeout=600)
    finally:
        other.release()
    assert written and "## Verdicts" in (layout.report / "report.md").read_text()  # whole, and written after
    assert f"{layout.report} is in use by pid {os.getpid()}" in caplog.text
