"""Resume that notices change: markers that survive a full disk, fingerprints of what each stage depends on,
presentation keys that change nothing, and a killed training stage that continues from its checkpoint."""

import json
import logging
import shutil

import pytest

from crowdvlm.cli import main as crowdvlm
from crowdvlm.errors import UsageError
from crowdvlm.experiments.pipeline import Layout, build_stages
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.stages import DONE_FILE, Stage, is_done, run_stages


def _counting_stage(folder, calls, inputs):
    return Stage("train sft seed=0", folder, "train-sft", 1, lambda: calls.append(1) or {"steps": 2}, inputs)


def test_an_empty_marker_is_not_done_and_is_named(tmp_path, caplog):
    folder, calls = tmp_path / "runs" / "sft", []
    run_stages([_counting_stage(folder, calls, {})], owner="exp", progress=False)
    (folder / DONE_FILE).write_text("")  # the disk filled while the marker was written
    with caplog.at_level(logging.WARNING):
        assert not is_done(folder)
        run_stages([_counting_stage(folder, calls, {})], owner="exp", progress=False)
    assert str(folder / DONE_FILE) in caplog.text and calls == [1, 1] and is_done(folder)


def test_a_finished_stage_with_changed_inputs_is_refused_or_redone(tmp_path):
    folder, calls = tmp_path / "runs" / "sft", []
    run_stages([_counting_stage(folder, calls, {"recipe": {"max_steps": 2}})], owner="exp", progress=False)
    changed = [_counting_stage(folder, calls, {"recipe": {"max_steps": 6}})]
    with pytest.raises(UsageError, match=rf"train sft seed=0 \({folder}\): recipe.max_steps changed"):
        run_stages(changed, owner="exp", progress=False)
    assert calls == [1]
    run_stages(changed, owner="exp", progress=False, redo_changed=True)
    assert calls == [1, 1]
    assert run_stages(changed, owner="exp", progress=False)["skipped"] == 1


def _fingerprints(path, out):
    return {s.name: s.fingerprint for s in build_stages(Layout(out, load_experiment(path)), progress=False)}


def test_fingerprints_follow_the_recipe_and_ignore_presentation(toy_file, tmp_path):
    before = _fingerprints(toy_file(), tmp_path / "out")
    shown = toy_file(
        'notes: ["a note"]\ncomparisons: []\nclaims: {}\nreport: {n_boot: 50, bucket_edges: [1, 2]}\n'
    )
    shown.write_text(shown.read_text().replace("title: A toy", "title: Another title"))
    assert _fingerprints(shown, tmp_path / "out") == before
    recipe = tmp_path / "sft.yaml"
    toy = toy_file()
    original = next(line.split(": ", 1)[1] for line in toy.read_text().splitlines() if "recipe:" in line)
    recipe.write_text(
        open(original).read().replace("lr_scheduler_type: constant", "lr_scheduler_type: linear")
    )
    toy.write_text(toy.read_text().replace(original, str(recipe)))
    after = _fingerprints(toy, tmp_path / "out")
    differ = sorted(name for name in before if before[name] != after[name])
    assert differ == ["eval sft seed=0 on test", "train sft lr=0.0001 seed=0"]


def test_run_resumes_redoes_and_continues_a_killed_training_stage(toy_file, tmp_path, capsys):
    out = tmp_path / "out"
    run = ["experiment", "run", str(toy_file()), "--out", str(out), "--no-progress"]
    assert crowdvlm(run) == 0
    train = out / "runs" / "sft" / "lr0.0001" / "s0"
    assert json.loads((train / DONE_FILE).read_text())["steps"] == 2

    # presentation keys only: the same experiment, nothing redone
    toy_file().write_text(toy_file().read_text().replace("title: A toy", "title: Renamed") + "notes: [x]\n")
    capsys.readouterr()
    assert crowdvlm(run) == 0
    shown = capsys.readouterr()
    assert "resuming: 4 of 4 stages already done" in shown.out + shown.err

    # the recipe after overrides changed: refused, naming the stage and the key; redone when asked
    toy_file().write_text(toy_file().read_text().replace("max_steps: 2", "max_steps: 3"))
    assert crowdvlm(run) == 2
    err = capsys.readouterr().err
    assert f"train sft lr=0.0001 seed=0 ({train}): recipe.training.max_steps changed" in err
    assert "--redo-changed" in err
    assert crowdvlm([*run, "--redo-changed"]) == 0
    assert json.loads((train / DONE_FILE).read_text())["steps"] == 3

    # killed after its first checkpoint: the stage continues from it, not from step 0
    (train / DONE_FILE).unlink()
    for name in ("model.safetensors", "trainer_state.json"):
        (train / name).unlink()
    for later in ("checkpoint-2", "checkpoint-3"):
        shutil.rmtree(train / later)
    assert crowdvlm(run) == 0
    marker = json.loads((train / DONE_FILE).read_text())
    assert marker["resumed_from"] == "checkpoint-1" and marker["steps"] == 3
