"""benchmarks/plan_recipes.py: one `crowdvlm plan --json` process per recipe, the docs table and the JSON line."""

from __future__ import annotations

import json

import pytest


def test_plans_a_recipe_in_its_own_process_and_prints_the_row(benchmark_module, capsys):
    plan_recipes = benchmark_module("plan_recipes")
    assert (
        plan_recipes.main(["recipes/qwen3_5_9b/grpo_fgrpr.yaml", "--gpus", "2", "--gpu-memory", "16GiB"]) == 0
    )
    *table, last = capsys.readouterr().out.strip().splitlines()
    result = json.loads(last)
    (recipe,) = result["recipes"]
    assert recipe["gpus"] == 2 and recipe["fits"] is False
    assert recipe["command_seconds"] >= recipe["seconds"] > 0
    row = table[2]
    assert row.startswith(
        "| `qwen3_5_9b/grpo_fgrpr` | DeepSpeed ZeRO-2, 2 GPUs | crowdvlm packed, 1x2881 tok"
    )
    assert "| no: " in row and f"**{recipe['peak_gib']:.1f}**" in row


def test_a_failing_plan_names_the_recipe(benchmark_module, tmp_path):
    plan_recipes = benchmark_module("plan_recipes")
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model_name_or_path: " + str(tmp_path / "no-such-model") + "\n")
    with pytest.raises(SystemExit, match="broken.yaml failed"):
        plan_recipes.plan(recipe, plan_recipes.parse_args([]))
