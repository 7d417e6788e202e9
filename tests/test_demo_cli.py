"""`crowdvlm demo` end to end at toy sizes on the experiment runner: every stage runs, the report and plots
exist, a rerun resumes.

This checks the mechanics, not the science (a dozen images cannot show anything). It uses the shipped base
checkpoint, so it also checks that the base loads with the current code. The toy sizes are an experiment
file that extends ``crowdvlm/recipes/experiments/demo_quick.yaml``, as a user would shrink the demo.
"""

import json

from crowdvlm.cli import main as crowdvlm
from crowdvlm.demo.base_model import BASE_DIR, check_base
from crowdvlm.demo.cli import QUICK_FILE, main
from crowdvlm.experiments.stages import DONE_FILE

TOY = """extends: {quick}
name: demo-toy
data: {{sets: {{train: {{n: 8}}, val: {{n: 5}}, test: {{n: 10}}, ood: {{n: 6}}, ood_near: {{n: 6}}}}}}
eval: {{batch_size: 16}}
arms:
  sft: {{overrides: {{per_device_train_batch_size: 4}}}}
  grpo_binary: {{overrides: {{per_device_train_batch_size: 8, num_generations: 4}}}}
  grpo_fgrpr: {{overrides: {{per_device_train_batch_size: 8, num_generations: 4}}}}
report: {{n_boot: 100}}
"""


def test_shipped_base_loads():
    info = check_base(BASE_DIR)
    assert info["parameters"]["total"] > 100_000
    assert info["recipe"]["command"] == "crowdvlm demo --rebuild-base"


def test_demo_runs_every_stage_and_writes_the_report(tmp_path, capsys):
    toy = tmp_path / "toy.yaml"
    toy.write_text(TOY.format(quick=QUICK_FILE))
    out = tmp_path / "demo"
    assert main(["--experiment", str(toy), "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "C1" in printed and "report:" in printed

    markers = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(DONE_FILE))
    expected = {"data/train-s0", "data/test", "data/ood", "evals/base/test", "evals/base/ood"}
    for arm in ("sft", "grpo_binary", "grpo_fgrpr"):
        expected |= {f"runs/{arm}/lr3e-05/s0", f"evals/{arm}/s0/test", f"evals/{arm}/s0/ood"}
    assert expected <= set(markers)
    assert sum(m.startswith("runs/") for m in markers) == 3  # one training run per arm
    steps = {
        arm: json.loads((out / f"runs/{arm}/lr3e-05/s0" / DONE_FILE).read_text())["steps"]
        for arm in ("sft", "grpo_fgrpr")
    }
    assert steps == {
        "sft": 2,
        "grpo_fgrpr": 4,
    }  # one pass over 8 images: batches of 4, and of 2 x 4 completions

    report = out / "report"
    for name in (
        "report.md",
        "results.json",
        "reward_curves.png",
        "mae_per_dataset.png",
        "error_by_bucket.png",
        "compare-test/compare.md",
        "compare-ood/compare.png",
    ):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert set(results["comparisons"]["claims"]) == {"C1", "C2", "C3"}
    assert all(
        v in ("reproduces", "does not reproduce", "inconclusive")
        for v in results["comparisons"]["claims"].values()
    )
    assert results["sets"]["test"]["arms"]["sft"]["overall"]["n"] == 10
    for arm in ("grpo_binary", "grpo_fgrpr"):
        assert results["curves"][arm]["0"]["step"], f"{arm}: no reward curve in the trainer log"
    assert str(tmp_path) not in (report / "report.md").read_text()

    # A second run finds every stage done and only rebuilds the report.
    assert main(["--experiment", str(toy), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "resuming: 19 of 19 stages already done" in captured.out + captured.err


def test_demo_rejects_bad_experiment_files(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {QUICK_FILE}\nseeds: [zero]\n")
    assert crowdvlm(["demo", "--experiment", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: seeds: expected distinct integer seeds" in err and len(err.strip().splitlines()) == 1
    bad.write_text(f"extends: {QUICK_FILE}\narms: {{sft: {{overrides: {{lr_scheduler: cosine}}}}}}\n")
    assert crowdvlm(["experiment", "check", str(bad)]) == 2
    assert "arms.sft.overrides.lr_scheduler: not a key of crowdvlm train sft" in capsys.readouterr().err
    bad.write_text(
        f"extends: {QUICK_FILE}\narms: {{grpo_fgrpr: {{overrides: {{rewards: [fgrpr, format]}}}}}}\n"
    )
    assert crowdvlm(["experiment", "check", str(bad)]) == 2
    err = capsys.readouterr().err  # the recipe parser's own check, naming the arm
    assert "arms.grpo_fgrpr:" in err and "answer_format" in err


def test_rebuild_base_reproduces_a_loadable_base(tmp_path):
    """The recipe runs end to end (a few steps here; the full recipe is `crowdvlm demo --rebuild-base`)."""
    from crowdvlm.demo.base_model import rebuild_base

    out = rebuild_base(tmp_path / "base", data={"n_images": 32}, overrides={"max_steps": 3}, progress=False)
    info = check_base(out)
    assert info["recipe"]["steps_done"] == 3 and info["recipe"]["recipe"] == "recipes/demo/base_sft.yaml"
