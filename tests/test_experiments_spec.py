"""Experiment files: every shipped one validates; a bad one fails in one line naming the file and the key."""

from pathlib import Path

import pytest
import yaml

from crowdvlm.errors import UsageError
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.yamlfile import SHIPPED_EXPERIMENTS as EXPERIMENTS

SHIPPED = sorted(EXPERIMENTS.glob("*.yaml"))
DEMO = EXPERIMENTS / "demo.yaml"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_experiments_validate_and_name_their_command(path):
    exp = load_experiment(path)
    assert exp.arms and exp.test_sets and exp.seeds
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert f"crowdvlm experiment run {path.stem}" in header, (
        f"{path}: the header must show the command that runs it"
    )
    for arm in exp.arms.values():
        assert arm.recipe is None or arm.recipe.is_file()


def test_quick_demo_extends_the_demo_and_is_smaller():
    demo, quick = load_experiment(DEMO), load_experiment(EXPERIMENTS / "demo_quick.yaml")
    assert quick.sets["train"].n < demo.sets["train"].n and len(quick.seeds) == 1 < len(demo.seeds)
    assert all(len(a.lr_grid) == 1 for a in quick.arms.values() if a.trained)
    assert quick.arms["sft"].recipe == demo.arms["sft"].recipe  # relative to demo.yaml, where it is written
    assert quick.sets["test"].styles == demo.sets["test"].styles  # merged, not replaced
    assert [c.id for c in quick.comparisons] == [c.id for c in demo.comparisons]
    assert quick.eval_sets() == ("test", "ood", "ood_near") and demo.eval_sets()[0] == "val"


def _write(tmp_path, change: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"extends": str(DEMO), **change}))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": [0]}, "seed: unknown key; valid keys"),
        ({"seeds": []}, "seeds: expected distinct integer seeds"),
        ({"seeds": [0, 0]}, "seeds: expected distinct integer seeds"),
        ({"test_sets": ["test", "nope"]}, "test_sets: 'nope' is not a set"),
        ({"test_sets": ["train"]}, "test_sets: a test set may not be the training"),
        ({"data": {"sets": {"ood": {"styles": ["ringz"]}}}}, "data.sets.ood.styles: unknown style"),
        ({"data": {"sets": {"ood": {"counts": [40, 10]}}}}, "data.sets.ood.counts: expected [min, max]"),
        ({"data": {"sets": {"val": {"n": 0}}}}, "data.sets.val.n: expected a positive number"),
        ({"arms": {"sft": {"recipe": "../demo/nope.yaml"}}}, "arms.sft.recipe: ../demo/nope.yaml not found"),
        ({"arms": {"sft": {"train": "ppo"}}}, "arms.sft.train: expected sft or grpo"),
        ({"arms": {"sft": {"lr_grid": []}}}, "arms.sft.lr_grid: expected a non-empty list"),
        (
            {"arms": {"sft": {"overrides": {"learning_rate": 1e-3}}}},
            "arms.sft.overrides.learning_rate: set by",
        ),
        ({"arms": {"base": {"model": "base", "train": "sft"}}}, "arms.base.model: an arm is either trained"),
        (
            {
                "comparisons": [
                    {"id": "X", "a": "sft", "b": "sft", "set": "test", "expect": "lower", "margin": 0}
                ]
            },
            "comparisons[0].b: expected another arm",
        ),
        (
            {
                "comparisons": [
                    {"id": "X", "a": "sft", "b": "base", "set": "test", "expect": "better", "margin": 0}
                ]
            },
            "comparisons[0].expect: expected lower or higher or equal",
        ),
        ({"claims": {"C9": {"parts": ["C7"]}}}, "claims.C9.parts: expected comparison ids"),
        ({"base": "nowhere"}, "base: nowhere holds no model"),
        ({"report": {"ci_level": 1.5}}, "report.ci_level: expected a level in (0, 1)"),
        ({"selection": {"metric": "accuracy"}}, "selection.metric: expected mae or rmse or mae_parsed"),
        ({"validation_set": None}, "validation_set: an arm has an lr grid"),
    ],
)
def test_bad_experiment_names_file_and_key(tmp_path, change, message):
    path = _write(tmp_path, change)
    with pytest.raises(UsageError) as info:
        load_experiment(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text


def test_bad_yaml_and_missing_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="broken.yaml: not valid YAML"):
        load_experiment(tmp_path / "broken.yaml")
    (tmp_path / "child.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(UsageError, match="child.yaml: experiment file .*missing.yaml not found"):
        load_experiment(tmp_path / "child.yaml")
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(UsageError, match="loops back"):
        load_experiment(tmp_path / "loop.yaml")


def test_manifest_sets_resolve_relative_to_their_file(tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    path = _write(tmp_path, {"data": {"sets": {"ood": {"manifests": ["m.jsonl"]}}}})
    exp = load_experiment(path)
    assert exp.sets["ood"].manifests == (tmp_path / "m.jsonl",) and not exp.sets["ood"].synthetic
