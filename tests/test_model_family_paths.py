"""SFT, GRPO (GroupSharedGRPOTrainer), `crowdvlm eval` and `predict` on each tiny family, in a few steps on 64-px
images: the mechanics every family must support (the learning checks are in test_train.py and benchmarks/)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from crowdvlm.modeling.tiny_families import FAMILIES
from crowdvlm.train.callbacks import read_jsonl
from crowdvlm.train.config import parse_job
from crowdvlm.train.sharing import trainer as sharing_trainer

WARM_STEPS = 60
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"
QUIET = {"report_to": "none", "disable_tqdm": True, "save_strategy": "no"}
CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
}


@pytest.fixture(scope="module")
def small_dots(tmp_path_factory) -> Path:
    from crowdvlm.data.synth import generate

    out = tmp_path_factory.mktemp("family-dots")
    return generate(out, n=8, style="dots", min_count=1, max_count=6, size=(64, 64), seed=0, progress=False)


def _run(kind: str, recipe: str, model: Path, manifest: Path, out: Path, **overrides):
    from crowdvlm.train import run_grpo, run_sft

    job = parse_job(
        kind,
        recipe=RECIPES / recipe,
        model_name_or_path=str(model),
        dataset=[str(manifest)],
        output_dir=str(out),
        **QUIET,
        **overrides,
    )
    return (run_sft if kind == "sft" else run_grpo)(job)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("family", FAMILIES)
def test_sft_then_grpo_train_each_family(family, tiny_family_dir, small_dots, tmp_path, caplog):
    import torch
    from transformers import AutoModelForImageTextToText

    base = tiny_family_dir(family)
    # Answer-only targets, long enough at a high learning rate that the model writes <answer>N</answer> and
    # GRPO gets rewards (a random model never does: every advantage, and so the gradient, would be 0).
    sft = _run(
        "sft",
        "sft.yaml",
        base,
        small_dots,
        tmp_path / "sft",
        max_steps=WARM_STEPS,
        learning_rate=3e-3,
        logging_steps=WARM_STEPS,
        output_format="answer-only",
    )
    assert sft.global_step == WARM_STEPS
    before, after = _weights(base), _weights(sft.output_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)

    with caplog.at_level(logging.WARNING, logger=sharing_trainer.__name__):
        grpo = _run(
            "grpo",
            "grpo_fgrpr.yaml",
            sft.output_dir,
            small_dots,
            tmp_path / "grpo",
            max_steps=2,
            logging_steps=1,
            max_completion_length=8,
            output_format="answer-only",
            rewards=["fgrpr", "answer_format"],
        )
    assert grpo.global_step == 2
    from test_model_families import is_packing_fallback

    unexpected = [
        r
        for r in caplog.records
        if r.name == sharing_trainer.__name__ and not is_packing_fallback(family, r.getMessage())
    ]
    assert not unexpected  # every sharing path on (prompt packing: Qwen2.5-VL only, one logged reason)
    logs = [e for e in read_jsonl(grpo.output_dir / "log.jsonl") if e["event"] == "log" and "loss" in e]
    assert len(logs) == 2 and all(math.isfinite(e["loss"]) and "rewards/fgrpr/mean" in e for e in logs)
    assert any(e["reward"] > 0 and e["grad_norm"] > 0 for e in logs)
    assert any(not torch.equal(after[k], v) for k, v in _weights(grpo.output_dir).items())
    assert type(AutoModelForImageTextToText.from_pretrained(grpo.output_dir)).__name__ == CLASSES[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_and_predict_each_family(family, tiny_family_dir, small_dots, tmp_path, capsys):
    from crowdvlm.evaluate.cli import eval_main, predict_main
    from crowdvlm.parsing import parse_count

    model = str(tiny_family_dir(family))
    common = ["--model", model, "--max-new-tokens", "4", "--device", "cpu"]
    out = tmp_path / "eval"
    argv = [*common, "--data", str(small_dots), "--out", str(out), "--batch-size", "4", "--no-progress"]
    assert eval_main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["overall"]["n"] == 8
    capsys.readouterr()

    images = sorted((small_dots.parent / "images").iterdir())[:2]
    assert predict_main([*common, *map(str, images), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == list(map(str, images))
    assert all(r["error"] is None and r["count"] == parse_count(r["text"]) for r in rows)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_model_cli_builds_each_family(family, tmp_path, capsys):
    from crowdvlm.cli import main

    assert main(["model", "tiny", "--family", family, "--out", str(tmp_path / "m")]) == 0
    assert main(["model", "info", str(tmp_path / "m")]) == 0
    assert f'"architecture": "{CLASSES[family]}"' in capsys.readouterr().out
