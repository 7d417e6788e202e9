"""Whole GRPO groups per process: the cluster recipes hold them, and a layout that splits them is warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from crowdvlm.train.sharing.group_layout import group_layout_problem, warn_if_groups_split

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CLUSTER_GRPO = sorted(RECIPES.glob("qwen2_5_vl_*/grpo_*.yaml"))


@pytest.mark.parametrize("recipe", CLUSTER_GRPO, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cluster_recipes_hold_whole_groups_per_process(recipe):
    raw = yaml.safe_load(recipe.read_text())
    b, g = raw["per_device_train_batch_size"], raw["num_generations"]
    assert b % g == 0 and raw["steps_per_generation"] == 1
    assert group_layout_problem(b, g, raw["steps_per_generation"]) is None
    header = recipe.read_text().split("\n# ---")[0]
    assert "2 prompts x 8" in header and "--num_processes" in header  # the batch kept, and how to change it


@pytest.mark.parametrize(
    ("b", "g", "spg", "expected"),
    [
        (8, 8, 1, None),
        (16, 8, 1, None),
        (1, 8, 2, "nothing of a group"),  # the paper's layout
        (4, 8, 1, "--per_device_train_batch_size 8"),
        (12, 8, 1, "--per_device_train_batch_size 16"),
        (8, 8, 2, "--steps_per_generation 1"),
    ],
)
def test_layout_problem_names_the_setting_to_change(b, g, spg, expected):
    problem = group_layout_problem(b, g, spg)
    assert problem is None if expected is None else expected in problem


def test_grpo_warns_only_when_sharing(tiny_model_dir, tmp_path, caplog):
    from crowdvlm.data.synth import generate
    from crowdvlm.train.config import parse_job

    manifest = generate(
        tmp_path / "d", n=2, style="dots", min_count=1, max_count=3, size=(56, 56), progress=False
    )
    paper_layout = {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(manifest)],
        "use_cpu": True,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "num_generations": 8,
    }
    job = parse_job("grpo", recipe=RECIPES / "tiny" / "grpo_fgrpr.yaml", **paper_layout)
    with caplog.at_level(logging.WARNING, logger="crowdvlm.train.sharing.group_layout"):
        assert "nothing of a group" in warn_if_groups_split(job.training, share_prompt=True)
        assert warn_if_groups_split(job.training, share_prompt=False) is None
    assert [r.message for r in caplog.records if "group sharing will save little" in r.message]
