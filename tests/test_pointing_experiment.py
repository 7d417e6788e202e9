"""The pointing experiment (crowdvlm/recipes/experiments/pointing.yaml) end to end at toy sizes.

This checks the mechanics, not the science (ten images cannot show anything): the point arms are evaluated
with point answers and get localisation metrics, the answer-only arms do not, and the report holds the claim
row with numbers. The toy starts from the demo's answer-only base (quick to load and already shipped), as a
user would shrink the experiment; the real file starts from the pointing base.
"""

import json

import pytest

from crowdvlm.cli import main as crowdvlm
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.yamlfile import SHIPPED_EXPERIMENTS

POINTING = SHIPPED_EXPERIMENTS / "pointing.yaml"
POINT_ARMS = ("base_points", "sft_points", "grpo_points")
SHORT = "{max_new_tokens: 40, batch_size: 10}"
TOY = f"""extends: {POINTING}
name: pointing-toy
base: package:demo/base
data: {{sets: {{train: {{n: 8}}, test: {{n: 10}}}}}}
seeds: [0]
arms:
  base_points: {{eval: {SHORT}}}
  sft_answer: {{overrides: {{per_device_train_batch_size: 4}}}}
  sft_points: {{overrides: {{per_device_train_batch_size: 4}}, eval: {SHORT}}}
  grpo_fgrpr: {{overrides: {{per_device_train_batch_size: 8}}}}
  grpo_points: {{overrides: {{per_device_train_batch_size: 8, max_completion_length: 40}}, eval: {SHORT}}}
report: {{n_boot: 100}}
"""


def test_pointing_experiment_declares_the_issue_arms():
    exp = load_experiment(POINTING)
    assert exp.seeds == (0, 1, 2) and exp.sets["train"].counts == (0, 15) == exp.sets["test"].counts
    assert {a: exp.eval_of(a)["output"] for a in exp.arms} == {
        "base_answer": "answer-only",
        "base_points": "points",
        "sft_answer": "answer-only",
        "sft_points": "points",
        "grpo_fgrpr": "answer-only",
        "grpo_points": "points",
    }
    fgrpr, points = exp.arms["grpo_fgrpr"], exp.arms["grpo_points"]
    assert fgrpr.recipe == points.recipe and fgrpr.lr_grid == points.lr_grid  # one GRPO recipe, one lr
    assert fgrpr.overrides["rewards"] == ["fgrpr", "answer_format"]
    claim = next(c for c in exp.comparisons if c.id == "P")
    assert (claim.a, claim.b, claim.expect) == ("grpo_points", "grpo_fgrpr", "lower")
    assert [c.parts for c in exp.claims] == [("P",)]


def test_an_arm_eval_output_is_checked(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {POINTING}\narms: {{sft_points: {{eval: {{output: boxes}}}}}}\n")
    assert crowdvlm(["experiment", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "arms.sft_points.eval.output: expected think or answer-only or points, got 'boxes'" in err
    bad.write_text(f"extends: {POINTING}\narms: {{sft_points: {{eval: {{radius: 3}}}}}}\n")
    assert crowdvlm(["experiment", "check", str(bad)]) == 2
    assert "arms.sft_points.eval.radius: unknown key" in capsys.readouterr().err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pointing")
    (tmp / "toy.yaml").write_text(TOY)
    out = tmp / "out"
    assert crowdvlm(["experiment", "run", str(tmp / "toy.yaml"), "--out", str(out), "--no-progress"]) == 0
    return out


def test_point_arms_answer_with_points_and_get_localisation(toy_run):
    for arm in ("base_answer", *POINT_ARMS, "sft_answer", "grpo_fgrpr"):
        folder = toy_run / "evals" / arm / ("test" if arm.startswith("base") else "s0/test")
        output = json.loads((folder / "run.json").read_text())["output"]
        assert output == ("points" if arm in POINT_ARMS else "answer-only"), arm
        assert (folder / "localisation.json").is_file() == (arm in POINT_ARMS), arm
    # the point GRPO arm trained on the point rewards, the answer-only one on FGRPR
    logs = {
        arm: (toy_run / "runs" / arm / "lr3e-05" / "s0" / "log.jsonl").read_text()
        for arm in ("grpo_points", "grpo_fgrpr")
    }
    assert (
        "rewards/point_f1/mean" in logs["grpo_points"] and "rewards/point_f1/mean" not in logs["grpo_fgrpr"]
    )
    assert "rewards/fgrpr/mean" in logs["grpo_fgrpr"]


def test_report_holds_the_claim_row_and_the_localisation_table(toy_run):
    results = json.loads((toy_run / "report" / "results.json").read_text())
    rows = {r["id"]: r for r in results["comparisons"]["rows"]}
    assert set(rows) == {"P", "P-sft", "P-mixed", "G"}
    p = rows["P"]
    assert isinstance(p["mae_a"], float) and isinstance(p["mae_b"], float) and p["ci"]["n_images"] == 10
    assert results["comparisons"]["claims"]["P"] in ("reproduces", "does not reproduce", "inconclusive")
    assert set(results["localisation"]["test"]) == set(POINT_ARMS)
    for arm in POINT_ARMS:
        located = results["localisation"]["test"][arm]
        assert located["n"] == 10 and set(located["f1"]) == {"r4", "r8", "r16"}
        assert located["mae_points"]["mean"] is not None
    report = (toy_run / "report" / "report.md").read_text()
    assert "| **P** | pointing beats answer-only on count MAE" in report
    assert "| P: pointing beats answer-only on count MAE | P |" in report
    assert "| GRPO pointing | 10 |" in report  # its localisation row
    assert "Evaluation of SFT (pointing): output `points`" in report
