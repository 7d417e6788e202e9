"""A counting benchmark from the publisher's file to a report: convert CountBenchQA, evaluate it with its
evaluation recipe on the demo's tiny base, and find the field's metrics in the report; every shipped
evaluation recipe is a valid set of `crowdvlm eval` options and names the command that runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_writers import image_bytes, write_countbenchqa
from crowdvlm.cli import main as crowdvlm

EVAL_RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "eval").glob("*.yaml"))


@pytest.mark.parametrize("recipe", EVAL_RECIPES, ids=lambda p: p.stem)
def test_eval_recipes_are_eval_options_and_name_their_command(recipe):
    import argparse

    import yaml

    from crowdvlm.evaluate.recipe import apply_recipe

    header = " ".join(line for line in recipe.read_text().splitlines() if line.startswith("#"))
    assert f"crowdvlm eval --config recipes/eval/{recipe.name}" in header
    parser = argparse.ArgumentParser(prog="crowdvlm eval")
    for option in ("--prompt", "--output", "--max-new-tokens", "--batch-size"):
        parser.add_argument(option)
    apply_recipe(parser, ["--config", str(recipe)])
    assert yaml.safe_load(recipe.read_text())["output"] == "answer-only"


def test_a_recipe_key_that_is_no_option_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: eval\nmax_tokens: 3\n")
    code = crowdvlm(
        ["eval", "--config", str(bad), "--model", "x", "--data", "y", "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "bad.yaml: max_tokens: not an option of crowdvlm eval" in capsys.readouterr().err


def test_countbenchqa_from_parquet_to_report(tmp_path):
    from crowdvlm.demo.base_model import BASE_DIR

    root = tmp_path / "CountBenchQA"
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    rows = [
        (image_bytes(c, size=(112, 112)), "", "How many dots are there in the image?", n)
        for c, n in zip(colors, (2, 3, 3, 5), strict=True)
    ]
    write_countbenchqa(root, rows)
    manifest = tmp_path / "countbenchqa.jsonl"
    assert (
        crowdvlm(
            [
                "data",
                "convert",
                "--format",
                "countbenchqa",
                "--root",
                str(root),
                "--out",
                str(manifest),
                "--no-progress",
            ]
        )
        == 0
    )
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "eval" / "countbenchqa.yaml"
    out = tmp_path / "eval"
    args = [
        "eval",
        "--config",
        str(recipe),
        "--model",
        str(BASE_DIR),
        "--data",
        str(manifest),
        "--out",
        str(out),
    ]
    assert crowdvlm([*args, "--max-new-tokens", "8", "--device", "cpu", "--no-progress"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["output"] == "answer-only" and run["max_new_tokens"] == 8  # recipe, then the flag that wins
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4
    from crowdvlm.evaluate.run import items_from_manifests

    (item, *_) = items_from_manifests([manifest], template="eval", output="answer-only")
    assert item.prompt.startswith("How many dots are there in the image? Output only the final answer")
    overall = json.loads((out / "metrics.json").read_text())["overall"]
    assert {"accuracy", "acc_within_1", "accuracy_per_count", "intervals"} <= set(overall)
    report = (out / "report.md").read_text()
    assert "| countbenchqa |" in report and "Acc/count" in report and "95 % bootstrap intervals" in report
