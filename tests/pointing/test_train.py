"""Counting by pointing end to end on the tiny Qwen2.5-VL: SFT targets in the model's frame, a pointing SFT and
GRPO run from the tiny point recipes, and an eval with localisation metrics (CPU, small)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl
from crowdvlm.train.config import ConfigError, parse_job
from train_helpers import run  # the tiny recipes with quiet overrides

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"


@pytest.fixture(scope="session")
def point_manifest(tmp_path_factory) -> Path:
    """Dots at 224x168: the tiny processor (112x112 pixels at most) resizes them to a 112x84 frame."""
    from crowdvlm.data.synth import generate

    out = tmp_path_factory.mktemp("synth-dots-points")
    return generate(
        out, n=24, style="dots", min_count=0, max_count=3, size=(224, 168), seed=0, progress=False
    )


@pytest.fixture(scope="session")
def point_runs(tiny_model_dir, point_manifest, tmp_path_factory):
    """A pointing SFT until the tiny model lists points (about 30 s on two busy cores), then 3 GRPO steps."""
    sft, grpo = tmp_path_factory.mktemp("sft-points"), tmp_path_factory.mktemp("grpo-points")
    run(
        "sft",
        "sft_points.yaml",
        tiny_model_dir,
        point_manifest,
        sft,
        max_steps=100,
        learning_rate=2e-3,
        save_strategy="no",
        logging_steps=10,
    )
    result = run(
        "grpo",
        "grpo_points.yaml",
        sft,
        point_manifest,
        grpo,
        max_steps=3,
        save_strategy="no",
        logging_steps=1,
        sample_completions_steps=1,
        max_completion_length=160,
    )
    return sft, result


@pytest.fixture(scope="session")
def point_sft(point_runs) -> Path:
    return point_runs[0]


@pytest.fixture(scope="session")
def point_grpo(point_runs):
    return point_runs[1]


def test_sft_targets_are_the_manifest_points_in_the_frame_the_processor_gives(tiny_model_dir, point_manifest):
    from transformers import AutoProcessor

    from crowdvlm.data.manifest import manifest_to_dataset, read_manifest
    from crowdvlm.parsing import parse_points
    from crowdvlm.pointing.targets import add_frame_sizes, point_frame_for
    from crowdvlm.train.sft import add_point_sft_completions

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    ds = manifest_to_dataset(point_manifest, output="points", with_points=True)
    ds = add_point_sft_completions(add_frame_sizes(ds, "resized", point_frame_for(processor, "resized")))
    assert set(map(tuple, ds["frame_size"])) == {(112, 84)}
    for rec, completion in zip(read_manifest(point_manifest), ds["completion"], strict=True):
        answer = parse_points(completion[0]["content"][0]["text"], (112, 84))
        assert answer.consistent and answer.count == rec["solution"]
        expected = sorted((round(x / 2), round(y / 2)) for x, y in rec["points"])
        assert sorted(answer.points) == expected  # halved: 224x168 -> 112x84
        assert list(answer.points) == sorted(answer.points, key=lambda p: (p[1], p[0]))  # rows top to bottom


def test_point_sft_learns_the_point_answers(point_sft):
    logs = [r for r in read_jsonl(point_sft / "log.jsonl") if "loss" in r]
    assert all(math.isfinite(r["loss"]) for r in logs)
    assert logs[-1]["loss"] < logs[0]["loss"] / 4 and logs[-1]["mean_token_accuracy"] > 0.8


def test_point_grpo_scores_points_and_updates_the_model(point_grpo):
    logs = [
        r for r in read_jsonl(point_grpo.output_dir / "log.jsonl") if r["event"] == "log" and "reward" in r
    ]
    assert point_grpo.global_step == 3 and len(logs) == 3
    names = ("point_f1", "point_fgrpr", "point_consistency")
    assert all(f"rewards/{name}/mean" in r for r in logs for name in names)
    assert max(r["rewards/point_fgrpr/mean"] + r["rewards/point_consistency/mean"] for r in logs) > 0
    assert max(r["grad_norm"] for r in logs) > 0
    samples = [
        s
        for r in read_jsonl(point_grpo.output_dir / "log.jsonl")
        if r["event"] == "samples"
        for s in r["samples"]
    ]
    assert samples and all(set(s["rewards"]) == set(names) for s in samples)


def test_eval_with_points_writes_localisation_and_predict_draws_points(
    point_sft, point_manifest, tmp_path, capsys
):
    from crowdvlm.evaluate.cli import eval_main, predict_main

    common = [
        "--model",
        str(point_sft),
        "--device",
        "cpu",
        "--max-new-tokens",
        "120",
        "--prompt-template",
        "train",
    ]
    argv = [
        *common,
        "--data",
        str(point_manifest),
        "--out",
        str(tmp_path / "run"),
        "--output-format",
        "points",
        "--limit",
        "4",
        "--no-progress",
        "--radii",
        "4,16",
        "--overlays",
        "2",
    ]
    assert eval_main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    loc = metrics["localisation"]
    assert loc["frame"] == "resized" and loc["overall"]["n"] == 4 and set(loc["overall"]) >= {"r4", "r16"}
    assert loc["overall"]["points_true"] == metrics["overall"]["mean_truth"] * 4
    assert len(list((tmp_path / "run" / "overlays").glob("*.png"))) == 2
    assert "## Localisation" in (tmp_path / "run" / "report.md").read_text()

    image = next((point_manifest.parent / "images").iterdir())
    assert predict_main([*common, str(image), "--points", str(tmp_path / "drawn"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(row["points"], list) and (tmp_path / "drawn" / f"{image.stem}.png").is_file()


def test_point_rewards_need_the_points_output(tiny_model_dir, point_manifest, tmp_path):
    with pytest.raises(ConfigError, match="output_format: points"):
        parse_job(
            "grpo",
            recipe=RECIPES / "grpo_fgrpr.yaml",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(point_manifest)],
            output_dir=str(tmp_path),
            rewards=["point_f1"],
            reward_weights=[1.0],
        )
    with pytest.raises(ConfigError, match="point_frame must be one of"):
        parse_job(
            "sft",
            recipe=RECIPES / "sft_points.yaml",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(point_manifest)],
            output_dir=str(tmp_path),
            point_frame="pixels",
        )
