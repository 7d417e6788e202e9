"""Every shipped recipe parses, names its launch command, and the paper recipes hold the paper's values."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from crowdvlm.train.config import parse_job

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# The recipes the shipped experiments use (demo, pointing) live in the package, so they run installed.
PACKAGE_RECIPES = Path(__file__).resolve().parents[1] / "src" / "crowdvlm" / "recipes"
NOT_TRAIN = ("accelerate", "experiments", "eval")  # launch configs; experiments; eval recipes
TRAIN_RECIPES = sorted(
    p for root in (RECIPES, PACKAGE_RECIPES) for p in root.glob("*/*.yaml") if p.parent.name not in NOT_TRAIN
)
ACCELERATE = sorted((RECIPES / "accelerate").glob("*.yaml"))


def kind_of(recipe: Path) -> str:
    return "sft" if "sft" in recipe.stem.split("_") else "grpo"


def header(path: Path) -> str:
    """The leading comment block of a YAML file."""
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return "\n".join(lines[:end])


def test_the_expected_recipes_exist():
    names = {f"{p.parent.name}/{p.stem}" for p in TRAIN_RECIPES + ACCELERATE}
    for family in ("tiny", "qwen2_5_vl_3b", "qwen2_5_vl_7b"):
        assert {f"{family}/sft", f"{family}/grpo_fgrpr", f"{family}/grpo_binary"} <= names
    assert {"accelerate/single", "accelerate/ddp", "accelerate/zero2", "accelerate/zero3"} <= names
    for size in ("4b", "8b"):
        assert {
            f"qwen3_vl_{size}/sft",
            f"qwen3_vl_{size}/grpo_fgrpr",
            f"qwen3_vl_{size}/grpo_fgrpr_lora",
        } <= names
    assert {"qwen3_5_9b/sft", "qwen3_5_9b/grpo_fgrpr"} <= names


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_names_its_launch_command(recipe):
    text = " ".join(re.sub(r"\\\n#", " ", header(recipe)).split())  # join continued command lines
    folder = "src/crowdvlm/recipes" if recipe.is_relative_to(PACKAGE_RECIPES) else "recipes"
    command = rf"crowdvlm train {kind_of(recipe)} (\S+ )*--config {folder}/{recipe.parent.name}/{recipe.name}"
    assert re.search(command, text), f"{recipe}: header must show `crowdvlm train ... --config {recipe}`"


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses(recipe, tiny_model_dir, tmp_path):
    from crowdvlm.data.synth import generate

    manifest = generate(
        tmp_path / "d", n=2, style="dots", min_count=1, max_count=3, size=(56, 56), progress=False
    )
    raw = yaml.safe_load(recipe.read_text())
    # On this CPU-only, single-process machine: no bf16, and the paper's 8-GPU batch (8 x 1 x 2 completions)
    # needs 8 accumulation steps to form whole groups of 8.
    overrides = {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(manifest)],
        "output_dir": str(tmp_path / "out"),
        "bf16": False,
        "use_cpu": True,
    }
    if raw.get("num_generations", 8) > raw.get("per_device_train_batch_size", 8):
        overrides["gradient_accumulation_steps"] = 8
    if raw.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        overrides["use_vllm"] = False  # refused where vLLM is not installed (tests/train/test_config.py)
    job = parse_job(kind_of(recipe), recipe=recipe, **overrides)
    for key, value in raw.items():  # every other value comes through unchanged
        if key in overrides:
            continue
        parsed = next(
            getattr(part, key) for part in (job.model, job.script, job.training) if hasattr(part, key)
        )
        parsed = getattr(parsed, "value", parsed)  # enums (lr_scheduler_type, ...)
        if key == "report_to":
            assert list(parsed) == list(value)
        else:
            assert parsed == value, (key, parsed, value)


PAPER = {
    "loss_type": "grpo",
    "beta": 0.04,
    "epsilon": 0.2,
    "num_generations": 8,
    "max_completion_length": 256,
    "temperature": 1.0,
    "num_train_epochs": 2,
    "scale_rewards": "group",
}


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        ("qwen2_5_vl_3b/grpo_fgrpr", {**PAPER, "learning_rate": 1e-6, "rewards": ["fgrpr", "format"]}),
        ("qwen2_5_vl_3b/grpo_binary", {**PAPER, "learning_rate": 1e-6, "rewards": ["binary", "format"]}),
        (
            "qwen2_5_vl_7b/grpo_fgrpr",
            {
                **PAPER,
                "learning_rate": 1e-5,
                "use_peft": True,
                "lora_r": 64,
                "lora_alpha": 128,
                "lora_dropout": 0.05,
                "freeze_vision": True,
            },
        ),
        ("qwen2_5_vl_7b/grpo_binary", {**PAPER, "learning_rate": 1e-5, "rewards": ["binary", "format"]}),
        ("qwen3_vl_4b/grpo_fgrpr", {**PAPER, "learning_rate": 1e-6, "freeze_vision": False}),
        (
            "qwen3_vl_4b/grpo_fgrpr_lora",
            {**PAPER, "learning_rate": 1e-5, "use_peft": True, "lora_r": 64, "freeze_vision": True},
        ),
        ("qwen3_vl_8b/grpo_fgrpr", {**PAPER, "learning_rate": 1e-6, "freeze_vision": False}),
        (
            "qwen3_vl_8b/grpo_fgrpr_lora",
            {**PAPER, "learning_rate": 1e-5, "use_peft": True, "lora_r": 64, "freeze_vision": True},
        ),
        ("qwen3_5_9b/grpo_fgrpr", {**PAPER, "learning_rate": 1e-5, "use_peft": True, "freeze_vision": True}),
        ("tiny/grpo_fgrpr", {"loss_type": "grpo", "beta": 0.04, "rewards": ["fgrpr", "format"]}),
        ("tiny/grpo_binary", {"loss_type": "grpo", "beta": 0.04, "rewards": ["binary", "format"]}),
    ],
)
def test_paper_values(recipe, expected):
    raw = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
    assert {key: raw.get(key) for key in expected} == expected
    assert raw.get("reward_weights") == [1.0, 1.0]


@pytest.mark.parametrize(
    ("recipe", "accelerate"),
    [("qwen2_5_vl_3b", "zero3"), ("qwen2_5_vl_7b", "zero2")],
)
def test_cluster_recipes_launch_with_their_deepspeed_stage(recipe, accelerate):
    for path in (RECIPES / recipe).glob("*.yaml"):
        assert f"--config_file recipes/accelerate/{accelerate}.yaml" in header(path)


@pytest.mark.parametrize(
    ("recipe", "model"),
    [
        ("qwen3_vl_4b", "Qwen/Qwen3-VL-4B-Instruct"),
        ("qwen3_vl_8b", "Qwen/Qwen3-VL-8B-Instruct"),
        ("qwen3_5_9b", "Qwen/Qwen3.5-9B"),
    ],
)
def test_qwen3_recipes_hold_whole_groups_per_process(recipe, model):
    """Each process gets whole GRPO groups (what the sharing needs); full tuning on ZeRO-3, LoRA on ZeRO-2."""
    for path in (RECIPES / recipe).glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        assert raw["model_name_or_path"] == model
        stage = "zero2" if raw.get("use_peft") else "zero3"
        assert f"--config_file recipes/accelerate/{stage}.yaml" in header(path), path
        if kind_of(path) == "grpo":
            assert raw["per_device_train_batch_size"] % raw["num_generations"] == 0, path
            assert "whole GRPO groups per process" in header(path), path


@pytest.mark.parametrize("config", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_machines == 1
    expected = {"single": "NO", "ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[config.stem]
    assert str(getattr(loaded.distributed_type, "value", loaded.distributed_type)) == expected
    if config.stem.startswith("zero"):
        assert loaded.deepspeed_config["zero_stage"] == int(config.stem[-1])
    assert "accelerate launch --config_file recipes/accelerate/" in header(config)


GPU_GRPO = sorted(RECIPES.glob("qwen*/grpo*.yaml"))


@pytest.mark.parametrize("recipe", GPU_GRPO, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_gpu_recipes_pack_prompts_on_their_attention_kernel(recipe, tiny_family_dir, monkeypatch):
    """Every GPU GRPO recipe runs the packed log-prob passes with the attention it sets (flash_attention_2
    included): no packing fallback for its family (train/sharing/families.py)."""
    from transformers import AutoModelForImageTextToText

    from crowdvlm.train.sharing.families import FAMILIES
    from crowdvlm.train.sharing.packing import prefix_unsupported_reason

    raw = yaml.safe_load(recipe.read_text())
    assert raw["share_prompt"] and raw["share_prefix"] and raw.get("share_vision", True)
    family = next(f for f in FAMILIES if recipe.parent.name.startswith(f))
    if not FAMILIES[family].packing:
        pytest.skip(f"{family} does not pack yet (its entry in train/sharing/families.py)")
    model = AutoModelForImageTextToText.from_pretrained(tiny_family_dir(family))
    monkeypatch.setattr(model.config.get_text_config(), "_attn_implementation", raw["attn_implementation"])
    assert prefix_unsupported_reason(model, {"mm_token_type_ids": None}, compute_aux_loss=False) is None
