"""Training refuses what would fail later, before any model loads, and restarts never redo or undo work.

Bad values in a recipe, bad images in a manifest, ``--resume`` of finished and half-saved runs, one-line
errors and no overwritten base model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crowdvlm.train.config import parse_job
from crowdvlm.train.errors import ConfigError
from image_writers import empty_file, good_jpeg, huge_png_header, thin_png, truncated_jpeg

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"
CPU = {"use_cpu": True, "bf16": False, "report_to": "none", "disable_tqdm": True}


def grpo_recipe(tmp_path: Path, model: Path, manifest: Path, **extra) -> Path:
    keys = {
        "model_name_or_path": str(model),
        "dataset": [str(manifest)],
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "output_dir": str(tmp_path / "o"),
        **CPU,
        **extra,
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in keys.items() if v is not None}))
    return path


# (recipe keys, words the one-line error must contain): each refused by parse_job, before any model loads
BAD_VALUES = [
    ({"learning_rate": -1e-4}, ["learning_rate must be > 0"]),
    ({"learning_rate": 0}, ["learning_rate must be > 0"]),
    ({"num_generations": 0}, ["num_generations must be an integer >= 2"]),
    ({"num_generations": 1}, ["num_generations must be an integer >= 2"]),
    ({"num_generations": 3}, ["multiple of num_generations"]),  # TRL's divisibility rule, with our hint
    ({"beta": -0.1}, ["beta", ">= 0"]),
    ({"max_steps": 2.7}, ["max_steps must be an integer", "2.7"]),
    ({"max_steps": 0}, ["max_steps must be > 0"]),
    ({"max_steps": "abc"}, ["max_steps", "invalid int value"]),
    ({"per_device_train_batch_size": 0}, ["per_device_train_batch_size"]),
    ({"temperature": "hot"}, ["temperature", "invalid float value"]),
    ({"rewards": ["fgrpr", 3]}, ["rewards must be a list of reward names"]),
    ({"reward_kwargs": {"fgrpr": {"band": 0}}}, ["'fgrpr'", "band must be a number > 0"]),
    ({"reward_kwargs": {"fgrpr": {"band": -0.5}}}, ["band must be a number > 0"]),
    ({"reward_kwargs": {"fgrpr": {"band": "wide"}}}, ["band must be a number > 0", "'wide'"]),
    ({"reward_kwargs": {"fgrpr": {"ceiling": 0.1}}}, ["ceiling must be a number >= band"]),
    ({"reward_kwargs": {"fgrpr": {"strict": "yes"}}}, ["strict must be true or false"]),
    ({"reward_kwargs": {"format": {"value": -1}}}, ["'format'", "value must be a number >= 0"]),
    ({"reward_kwargs": {"fgrpr": 0.5}}, ["reward_kwargs for 'fgrpr' must be a mapping"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD_VALUES, ids=[json.dumps(e) for e, _ in BAD_VALUES])
def test_bad_value_is_refused_before_the_model_loads(
    tmp_path, tiny_model_dir, small_dots_manifest, extra, words
):
    recipe = grpo_recipe(tmp_path, tiny_model_dir, small_dots_manifest, **extra)
    with pytest.raises(ConfigError) as info:
        parse_job("grpo", recipe=recipe)
    message = str(info.value)
    assert str(recipe) in message or "--help" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("given", "parsed"), [("fgrpr", ["fgrpr"]), ("fgrpr, format", ["fgrpr", "format"])])
def test_rewards_given_as_a_string_become_the_list(
    tmp_path, tiny_model_dir, small_dots_manifest, given, parsed
):
    job = parse_job("grpo", recipe=grpo_recipe(tmp_path, tiny_model_dir, small_dots_manifest, rewards=given))
    assert job.script.rewards == parsed


def test_integral_float_steps_are_accepted_as_ints(tmp_path, tiny_model_dir, small_dots_manifest):
    job = parse_job("grpo", recipe=grpo_recipe(tmp_path, tiny_model_dir, small_dots_manifest, max_steps=10.0))
    assert job.training.max_steps == 10 and isinstance(job.training.max_steps, int)


def test_output_dir_in_the_base_model_is_refused(tmp_path, tiny_model_dir, small_dots_manifest):
    for out in (tiny_model_dir, tiny_model_dir / "run"):
        with pytest.raises(ConfigError, match="inside the base model's folder"):
            parse_job(
                "sft",
                model_name_or_path=str(tiny_model_dir),
                dataset=[str(small_dots_manifest)],
                output_dir=str(out),
                **CPU,
            )


def test_finished_run_without_resume_is_refused(tmp_path, tiny_model_dir, small_dots_manifest):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "max_steps": 3}))
    with pytest.raises(ConfigError, match="already holds a finished run"):
        parse_job(
            "sft",
            model_name_or_path=str(tiny_model_dir),
            dataset=[str(small_dots_manifest)],
            output_dir=str(tmp_path),
            **CPU,
        )


# What is wrong with the recipe file itself -> the words of the one line
BAD_RECIPES = {
    "missing": (lambda d: d / "nope.yaml", "not found"),
    "folder": (lambda d: d, "is a folder"),
    "yaml-syntax": (
        lambda d: _write(d / "r.yaml", "max_steps: [1, 2\nseed: 0\n"),
        "YAML syntax error at line",
    ),
    "not-a-mapping": (lambda d: _write(d / "r.yaml", "- a\n- b\n"), "YAML mapping"),
    "not-utf8": (lambda d: _write(d / "r.yaml", b"seed: 0\n# caf\xe9\n"), "not UTF-8"),
}


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_bad_recipe_file_is_one_line_with_status_2(tmp_path, capsys, case):
    from crowdvlm.cli import main

    make, words = BAD_RECIPES[case]
    recipe = make(tmp_path)
    assert main(["train", "sft", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crowdvlm train: error:") and str(recipe) in err and words in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("dataset", "words"),
    [("{tmp}", "is a folder"), ("{tmp}/none.jsonl", "not found"), ("{tmp}/bad.jsonl", "not valid JSON")],
    ids=["folder", "missing", "malformed"],
)
def test_bad_dataset_is_one_line_with_status_2(tmp_path, tiny_model_dir, capsys, dataset, words):
    from crowdvlm.cli import main

    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "problem": "How many?", "solution": 1}\n{oops\n')
    code = main(
        [
            "train",
            "sft",
            "--model_name_or_path",
            str(tiny_model_dir),
            "--dataset",
            dataset.format(tmp=tmp_path),
            "--output_dir",
            str(tmp_path / "o"),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("crowdvlm train: error:") and words in err, err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- bad images


def bad_image_manifest(folder: Path) -> tuple[Path, list[str]]:
    """Two good images and one of each kind of bad image; returns the manifest and the bad file names."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        good_jpeg(folder / "good1.jpg"),
        truncated_jpeg(folder / "truncated.jpg"),
        thin_png(folder / "thin.png"),
        good_jpeg(folder / "good2.jpg"),
        empty_file(folder / "empty.jpg"),
        huge_png_header(folder / "huge.png"),
        folder / "missing.jpg",
    ]
    lines = [{"image": f.name, "problem": "How many dots?", "solution": 1, "id": f.stem} for f in files]
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return manifest, ["truncated.jpg", "thin.png", "empty.jpg", "huge.png", "missing.jpg"]


def test_bad_images_refuse_the_run_before_the_model_loads(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import crowdvlm.train.sft as sft  # imported first: it binds load_model at import
    from crowdvlm.cli import main

    manifest, bad = bad_image_manifest(tmp_path / "data")

    def no_model(job):
        raise AssertionError("the model was loaded before the images were checked")

    monkeypatch.setattr(sft, "load_model", no_model)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "sft",
            "--model_name_or_path",
            str(tiny_model_dir),
            "--dataset",
            str(manifest),
            "--output_dir",
            str(out),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--report_to",
            "none",
        ]
    )
    progress, _, err = capsys.readouterr().err.rpartition("\r")  # tqdm redraws its line with \r
    assert "checking images of m.jsonl" in progress  # the check shows its progress
    assert code == 2 and err.startswith("crowdvlm train: error:") and len(err.strip().splitlines()) == 1, err
    assert "5 image(s) cannot be trained on" in err and "skip_bad_images" in err
    report = (out / "bad_images.tsv").read_text().splitlines()
    assert report[0] == "kind\tfile\trecord\tproblem" and len(report) == 1 + len(bad)
    rows = {Path(line.split("\t")[1]).name: line.split("\t") for line in report[1:]}
    assert sorted(rows) == sorted(bad)
    assert rows["thin.png"][0] == "rejected-image" and "aspect ratio" in rows["thin.png"][3]
    assert rows["truncated.jpg"][0] == rows["empty.jpg"][0] == rows["huge.png"][0] == "bad-image"
    assert rows["missing.jpg"][0] == "missing-image"
    assert all(row[2] == f"m.jsonl id {Path(name).stem}" for name, row in rows.items())  # file and record


def test_skip_bad_images_trains_on_the_rest_and_counts_them(tmp_path, tiny_model_dir):
    from crowdvlm.train.sft import run_sft

    manifest, bad = bad_image_manifest(tmp_path / "data")
    out = tmp_path / "run"
    job = parse_job(
        "sft",
        recipe=RECIPES / "sft.yaml",
        model_name_or_path=str(tiny_model_dir),
        dataset=[str(manifest)],
        output_dir=str(out),
        skip_bad_images=True,
        max_steps=1,
        per_device_train_batch_size=2,
        save_strategy="no",
        logging_steps=1,
        **CPU,
    )
    result = run_sft(job)
    assert result.global_step == 1 and (out / "model.safetensors").is_file()
    report = (out / "bad_images.tsv").read_text().splitlines()[1:]
    assert sorted(Path(line.split("\t")[1]).name for line in report) == sorted(bad)


# --------------------------------------------------------------------------- resume


def _save_checkpoint(folder: Path, step: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "optimizer.pt").write_bytes(b"\x80\x02optimizer")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 9}))
    return folder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# How the newest checkpoint was left incomplete -> the words of the logged line
INCOMPLETE = {
    "truncated-state": (
        lambda c: _truncate(c / "trainer_state.json"),
        "trainer_state.json is missing, truncated",
    ),
    "empty-weights": (lambda c: (c / "model.safetensors").write_bytes(b""), "model.safetensors is empty"),
    "truncated-weights": (lambda c: _truncate(c / "model.safetensors"), "model.safetensors is truncated"),
    "no-weights": (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
    "no-optimizer": (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    "empty-optimizer": (lambda c: (c / "optimizer.pt").write_bytes(b""), "optimizer.pt is missing or empty"),
}


@pytest.mark.parametrize("case", list(INCOMPLETE))
def test_incomplete_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, case):
    from crowdvlm.train.resume import last_checkpoint

    _save_checkpoint(tmp_path / "checkpoint-2", 2)
    newest = _save_checkpoint(tmp_path / "checkpoint-10", 10)  # numeric order, not text order
    assert last_checkpoint(tmp_path) == newest
    damage, words = INCOMPLETE[case]
    damage(newest)
    with caplog.at_level("WARNING", logger="crowdvlm.train.resume"):
        assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert "skipping incomplete checkpoint" in caplog.text and words in caplog.text


def test_resume_finished_run_trains_nothing_then_a_torn_checkpoint_is_skipped(
    tmp_path, tiny_model_dir, small_dots_manifest, capsys
):
    from crowdvlm.cli import main
    from crowdvlm.train.resume import read_state
    from crowdvlm.train.sft import run_sft

    out = tmp_path / "run"
    args = {
        "recipe": RECIPES / "sft.yaml",
        "model_name_or_path": str(tiny_model_dir),
        "dataset": [str(small_dots_manifest)],
        "output_dir": str(out),
        "per_device_train_batch_size": 2,
        "save_steps": 1,
        "logging_steps": 1,
        **CPU,
    }
    assert run_sft(parse_job("sft", max_steps=2, **args)).global_step == 2
    final = (out / "model.safetensors").read_bytes()

    # --resume of the finished run: says so, exits 0, no third step, the final model untouched.
    argv = [
        "train",
        "sft",
        "--config",
        str(args["recipe"]),
        "--model_name_or_path",
        str(tiny_model_dir),
        "--dataset",
        str(small_dots_manifest),
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "2",
        "--resume",
        "true",
        "--use_cpu",
        "true",
        "--bf16",
        "false",
        "--report_to",
        "none",
    ]
    assert main(argv) == 0
    assert "is complete (2 steps" in capsys.readouterr().out
    assert read_state(out)["global_step"] == 2 and not (out / "checkpoint-3").exists()
    assert (out / "model.safetensors").read_bytes() == final
    # The same from Python (the demo's way): the finished result comes back, nothing trained.
    assert run_sft(parse_job("sft", max_steps=2, resume=True, **args)).global_step == 2
    assert (out / "model.safetensors").read_bytes() == final and not (out / "checkpoint-3").exists()

    # The newest checkpoint torn (as by a crash while saving): named explicitly it is refused; a longer
    # --resume run skips it and resumes from checkpoint-1.
    _truncate(out / "checkpoint-2" / "trainer_state.json")
    with pytest.raises(ConfigError, match="checkpoint-2 cannot be resumed from: trainer_state.json"):
        parse_job("sft", max_steps=3, resume_from_checkpoint=str(out / "checkpoint-2"), **args)
    result = run_sft(parse_job("sft", max_steps=3, resume=True, **args))
    assert result.resumed_from == out / "checkpoint-1" and result.global_step == 3
