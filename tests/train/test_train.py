"""SFT and GRPO end to end on the tiny Qwen2.5-VL (CPU, in-process, the tiny recipes with small overrides).

The runs are session fixtures shared by the tests: 3 SFT steps from the random model; a short SFT "warm-up"
that teaches the answer format (a random model never writes <answer>, so every reward would be 0 and GRPO's
gradient exactly 0); 3 GRPO steps from the warm model; a 2-step LoRA GRPO run with merged weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from crowdvlm.train.callbacks import read_jsonl
from train_helpers import run


def state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def changed(before: dict, after: dict) -> list[str]:
    import torch

    assert before.keys() == after.keys()
    return [k for k in before if not torch.equal(before[k], after[k])]


def assert_reloads(folder: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert (
        processor.tokenizer.eos_token == "<|im_end|>" and processor.image_processor.size["longest_edge"] > 0
    )


@pytest.fixture(scope="session")
def sft_3(tiny_model_dir, dots_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft-3")
    return run(
        "sft", "sft.yaml", tiny_model_dir, dots_manifest, out, max_steps=3, save_steps=3, logging_steps=1
    )


@pytest.fixture(scope="session")
def warm_model(tiny_model_dir, dots_manifest, tmp_path_factory) -> Path:
    """SFT until the tiny model writes `<think>..</think><answer>N</answer>` (about 6 s of training)."""
    out = tmp_path_factory.mktemp("sft-warm")
    run(
        "sft",
        "sft.yaml",
        tiny_model_dir,
        dots_manifest,
        out,
        max_steps=120,
        learning_rate=2e-3,
        save_strategy="no",
        logging_steps=20,
    )
    return out


@pytest.fixture(scope="session")
def grpo_3(warm_model, dots_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo-3")
    return run(
        "grpo",
        "grpo_fgrpr.yaml",
        warm_model,
        dots_manifest,
        out,
        max_steps=3,
        save_steps=3,
        logging_steps=1,
        sample_completions_steps=1,
    )


def test_sft_steps_change_parameters_and_checkpoint_reloads(sft_3, tiny_model_dir):
    assert sft_3.global_step == 3
    checkpoint = sft_3.output_dir / "checkpoint-3"
    assert len(changed(state_dict(tiny_model_dir), state_dict(checkpoint))) > 0
    assert_reloads(checkpoint)
    assert_reloads(sft_3.output_dir)
    losses = [r["loss"] for r in read_jsonl(sft_3.output_dir / "log.jsonl") if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) and x > 0 for x in losses)


def test_sft_trains_on_the_completion_only(warm_model):
    """The warm model's final loss is low: it learned the (completion-only) target, not the prompt."""
    logs = [r for r in read_jsonl(warm_model / "log.jsonl") if "loss" in r]
    assert logs[-1]["loss"] < logs[0]["loss"] / 4
    assert logs[-1]["mean_token_accuracy"] > 0.85


def test_grpo_steps_change_parameters_and_checkpoint_reloads(grpo_3, warm_model):
    assert grpo_3.global_step == 3
    checkpoint = grpo_3.output_dir / "checkpoint-3"
    assert len(changed(state_dict(warm_model), state_dict(checkpoint))) > 0
    assert_reloads(checkpoint)


def test_grpo_from_warm_model_has_rewards_and_gradient(grpo_3):
    logs = [r for r in read_jsonl(grpo_3.output_dir / "log.jsonl") if r["event"] == "log" and "reward" in r]
    assert len(logs) == 3
    assert max(r["rewards/fgrpr/mean"] for r in logs) > 0
    assert max(r["rewards/format/mean"] for r in logs) > 0
    assert max(r["grad_norm"] for r in logs) > 0
    assert all(r["kl"] >= 0 for r in logs)  # beta 0.04: a reference model is in play


def test_grpo_logs_sampled_completions_with_rewards(grpo_3):
    samples = [r for r in read_jsonl(grpo_3.output_dir / "log.jsonl") if r["event"] == "samples"]
    assert [r["step"] for r in samples] == [1, 2, 3]
    for event in samples:
        assert len(event["samples"]) == 4
        for sample in event["samples"]:
            assert set(sample["rewards"]) == {"fgrpr", "format"}
            assert isinstance(sample["completion"], str) and sample["solution"] >= 2


def test_resolved_config_is_saved(grpo_3):
    import json

    config = json.loads((grpo_3.output_dir / "crowdvlm_config.json").read_text())
    assert config["kind"] == "grpo" and config["script"]["rewards"] == ["fgrpr", "format"]
    assert config["training"]["beta"] == 0.04 and config["training"]["loss_type"] == "grpo"


def test_lora_grpo_saves_adapter_and_merged_weights(warm_model, dots_manifest, tmp_path):
    import torch

    from crowdvlm.cli import main

    result = run(
        "grpo",
        "grpo_binary.yaml",
        warm_model,
        dots_manifest,
        tmp_path / "run",
        max_steps=2,
        save_strategy="no",
        use_peft=True,
        lora_r=4,
        lora_alpha=8,
        save_merged=True,
        sample_completions_steps=0,
    )
    assert (result.output_dir / "adapter_config.json").is_file()
    assert result.merged_dir == result.output_dir / "merged"
    assert_reloads(result.merged_dir)
    merged = state_dict(result.merged_dir)
    assert not any("lora" in k for k in merged)
    # Vision weights are never adapted, so merging leaves them exactly as they were.
    assert not [k for k in changed(state_dict(warm_model), merged) if ".visual." in k]

    # `crowdvlm model merge` on the saved adapter gives the same weights.
    assert main(["model", "merge", str(result.output_dir), "--out", str(tmp_path / "cli-merged")]) == 0
    assert_reloads(tmp_path / "cli-merged")
    by_cli = state_dict(tmp_path / "cli-merged")
    assert by_cli.keys() == merged.keys()
    assert all(torch.allclose(by_cli[k], merged[k], atol=1e-6) for k in merged)
