"""Training configuration: bad recipes fail before any model is loaded, with a message that says what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crowdvlm.train.config import ConfigError, overrides_to_argv, parse_job

CPU = {"use_cpu": True, "bf16": False, "report_to": "none"}


def write_yaml(path: Path, lines: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(lines))
    return path


def test_overrides_to_argv():
    argv = overrides_to_argv(
        {"max_steps": 5, "dataset": ["a", "b"], "bf16": False, "reward_kwargs": {"fgrpr": {}}}
    )
    assert argv == [
        "--max_steps",
        "5",
        "--dataset",
        "a",
        "b",
        "--bf16",
        "false",
        "--reward_kwargs",
        '{"fgrpr": {}}',
    ]


def test_good_grpo_job_parses_recipe_and_overrides(tmp_path, tiny_model_dir, small_dots_manifest):
    recipe = write_yaml(
        tmp_path / "r.yaml",
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": str(small_dots_manifest),
            "num_generations": 4,
            "per_device_train_batch_size": 4,
            "beta": 0.04,
            "loss_type": "grpo",
            "share_prefix": False,
            **CPU,
        },
    )
    job = parse_job(
        "grpo", ["--config", str(recipe), "--learning_rate", "3e-4", "--output_dir", str(tmp_path / "o")]
    )
    assert job.script.dataset == [str(small_dots_manifest)]  # a single YAML string becomes a list
    assert (job.training.beta, job.training.loss_type, job.training.learning_rate) == (0.04, "grpo", 3e-4)
    assert job.script.rewards == ["fgrpr", "format"] and job.script.share_prompt is True
    assert job.script.sharing_switches == {
        "share_processing": True,
        "share_prefill": True,
        "share_vision": True,
        "share_prefix": False,
    }


# (extra recipe keys or overrides, the words the error message must contain)
BAD_GRPO = [
    ({"not_a_key": 1}, ["unknown key", "not_a_key", "--help"]),
    ({"learning_rte": 1e-3}, ["learning_rte", "did you mean learning_rate"]),
    ({"model_name_or_path": None}, ["no model", "--model_name_or_path"]),
    ({"model_name_or_path": "/no/such/model"}, ["/no/such/model", "--model_name_or_path"]),
    ({"dataset": []}, ["no training data", "--dataset"]),
    ({"dataset": ["/no/such/manifest.jsonl"]}, ["/no/such/manifest.jsonl", "not found"]),
    ({"num_generations": 3}, ["num_generations", "multiple of num_generations"]),
    ({"rewards": ["fgrpr", "nope"]}, ["unknown reward", "nope", "binary"]),
    ({"reward_weights": [1.0]}, ["reward_weights has 1", "one weight per reward"]),
    ({"reward_kwargs": {"binary": {}}}, ["binary", "not in rewards"]),
    ({"reward_kwargs": {"fgrpr": {"bandwidth": 2}}}, ["reward_kwargs for 'fgrpr'", "bandwidth"]),
    ({"output_format": "answer-only"}, ["answer_format"]),
    ({"output_format": "essay"}, ["output_format", "answer-only"]),
    ({"save_merged": True}, ["save_merged", "use_peft"]),
    ({"share_vision": False}, ["share_prefix: true needs share_vision: true"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD_GRPO, ids=[str(list(e)[0]) for e, _ in BAD_GRPO])
def test_bad_grpo_config_says_what_to_change(tmp_path, tiny_model_dir, small_dots_manifest, extra, words):
    base = {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(small_dots_manifest)],
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "output_dir": str(tmp_path / "o"),
        **CPU,
    }
    base.update(extra)
    recipe = write_yaml(tmp_path / "bad.yaml", {k: v for k, v in base.items() if v is not None})
    with pytest.raises(ConfigError) as info:
        parse_job("grpo", recipe=recipe)
    message = str(info.value)
    assert str(recipe) in message
    for word in words:
        assert word in message


def hide_module(monkeypatch, missing: str) -> None:
    """Make ``importlib.util.find_spec`` answer ``None`` for ``missing``, as if it were not installed."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a)
    )


def test_missing_report_backend_is_named(tiny_model_dir, small_dots_manifest, tmp_path, monkeypatch):
    hide_module(monkeypatch, "wandb")
    with pytest.raises(ConfigError, match="wandb but it is not installed"):
        parse_job(
            "sft",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(small_dots_manifest)],
            output_dir=str(tmp_path),
            use_cpu=True,
            bf16=False,
            report_to="wandb",
        )


def test_save_merged_is_refused_under_zero3(tiny_model_dir, small_dots_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ConfigError, match="crowdvlm model merge"):
        parse_job(
            "grpo",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(small_dots_manifest)],
            num_generations=2,
            per_device_train_batch_size=2,
            use_peft=True,
            save_merged=True,
            output_dir=str(tmp_path),
            **CPU,
        )


def test_unknown_command_line_option_is_rejected(tiny_model_dir, small_dots_manifest, tmp_path):
    with pytest.raises(ConfigError, match="lerning_rate.*did you mean learning_rate"):
        parse_job(
            "sft",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(small_dots_manifest)],
            lerning_rate=1e-3,
            output_dir=str(tmp_path),
            **CPU,
        )


def test_existing_checkpoint_needs_resume(tmp_path, tiny_model_dir, small_dots_manifest):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    args = {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(small_dots_manifest)],
        "output_dir": str(tmp_path),
        **CPU,
    }
    with pytest.raises(ConfigError, match="checkpoint-4.*--resume"):
        parse_job("sft", **args)
    assert parse_job("sft", resume=True, **args).script.resume


@pytest.mark.parametrize(
    ("records", "words"),
    [
        ([], ["no usable records"]),
        ([{"image": "a.png", "problem": "How many?", "solution": None}], ["no ground truth"]),
    ],
    ids=["empty", "no-ground-truth"],
)
def test_bad_manifest_fails_before_the_model_loads(tmp_path, tiny_model_dir, monkeypatch, records, words):
    from PIL import Image

    import crowdvlm.train.common as common
    from crowdvlm.train.grpo import run_grpo

    Image.new("RGB", (28, 28)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))

    def no_model(job):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(common, "load_model", no_model)
    job = parse_job(
        "grpo",
        model_name_or_path=str(tiny_model_dir),
        dataset=[str(manifest)],
        num_generations=2,
        per_device_train_batch_size=2,
        output_dir=str(tmp_path / "o"),
        **CPU,
    )
    with pytest.raises(ConfigError) as info:
        run_grpo(job)
    for word in words:
        assert word in str(info.value)


def test_cli_reports_config_errors_with_status_2(tmp_path, capsys, small_dots_manifest):
    from crowdvlm.cli import main

    code = main(
        [
            "train",
            "grpo",
            "--model_name_or_path",
            str(tmp_path / "missing"),
            "--dataset",
            str(small_dots_manifest),
            "--output_dir",
            str(tmp_path / "o"),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("crowdvlm train: error:") and "missing" in err and len(err.splitlines()) == 1


def test_train_help_and_unknown_kind(capsys):
    from crowdvlm.cli import main

    assert main(["train", "--help"]) == 0
    assert "sft" in capsys.readouterr().out
    assert main(["train", "dpo"]) == 2


def test_use_vllm_without_vllm_is_refused_before_the_model_loads(
    tiny_model_dir, small_dots_manifest, tmp_path, monkeypatch
):
    hide_module(monkeypatch, "vllm")
    with pytest.raises(ConfigError, match="use_vllm is true but vLLM is not installed.*make setup-vllm"):
        parse_job(
            "grpo",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(small_dots_manifest)],
            output_dir=str(tmp_path),
            use_cpu=True,
            bf16=False,
            report_to="none",
            use_vllm=True,
        )


def test_share_prompt_selects_the_trainer():
    from trl import GRPOTrainer

    from crowdvlm.train.grpo import trainer_class
    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    assert trainer_class(True) is GroupSharedGRPOTrainer
    assert trainer_class(False) is GRPOTrainer


def test_use_vllm_puts_the_encoder_cache_sync_in_front_of_either_trainer():
    from trl import GRPOTrainer

    from crowdvlm.train.grpo import trainer_class
    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
    from crowdvlm.train.vllm_sync import VLLMSyncMixin

    for share_prompt, base in ((True, GroupSharedGRPOTrainer), (False, GRPOTrainer)):
        cls = trainer_class(share_prompt, use_vllm=True)
        assert cls.__mro__[1:3] == (VLLMSyncMixin, base)
