"""The runner deletes only what it created (adopting a folder from before owner markers only when it is
recognisably the experiment's), takes one run per folder, and writes names as one folder each."""

import json
import logging

import pytest
import yaml

from crowdvlm.cli import main as crowdvlm
from crowdvlm.errors import UsageError
from crowdvlm.experiments.pipeline import claim_folder
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.stages import DONE_FILE, OWNER_FILE, Stage, is_done, run_stages
from crowdvlm.runlock import RunLock


def _stage(folder, calls):
    def run():
        calls.append(folder.name)
        (folder / "out.txt").write_text("stage output")

    return Stage(folder.name, folder, "eval", 1, run)


def test_a_stage_never_clears_a_folder_it_did_not_create(tmp_path):
    mine, users = tmp_path / "data" / "train", tmp_path / "data" / "test"
    users.mkdir(parents=True)
    (users / "manifest.jsonl").write_text("the user's own data\n")
    calls = []
    with pytest.raises(UsageError, match=f"{users} holds files this experiment did not create"):
        run_stages([_stage(mine, calls), _stage(users, calls)], owner="exp-1", progress=False)
    assert calls == [] and (users / "manifest.jsonl").read_text() == "the user's own data\n"
    users.joinpath("manifest.jsonl").unlink()  # an empty folder is adopted
    run_stages([_stage(mine, calls), _stage(users, calls)], owner="exp-1", progress=False)
    assert (
        calls == ["train", "test"] and json.loads((users / OWNER_FILE).read_text())["experiment"] == "exp-1"
    )


def test_a_half_written_stage_of_this_experiment_is_cleared_and_redone(tmp_path):
    folder, calls = tmp_path / "evals" / "base", []
    run_stages([_stage(folder, calls)], owner="exp-1", progress=False)
    (folder / DONE_FILE).unlink()  # killed before its marker
    (folder / "stale.txt").write_text("half written")
    run_stages([_stage(folder, calls)], owner="exp-1", progress=False)
    assert calls == ["base", "base"] and not (folder / "stale.txt").exists() and is_done(folder)
    (folder / DONE_FILE).unlink()
    with pytest.raises(UsageError, match="did not create"):  # the same folder, another experiment's id
        run_stages([_stage(folder, calls)], owner="exp-2", progress=False)


def test_run_refuses_a_non_empty_out_no_experiment_made(toy_file, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "data" / "test").mkdir(parents=True)
    (out / "data" / "test" / "keep.txt").write_text("mine")
    assert crowdvlm(["experiment", "run", str(toy_file()), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty and was not made by crowdvlm experiment" in err
    assert (out / "data" / "test" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["data"]  # no lock or marker left behind


def test_run_refuses_a_folder_another_run_holds(toy_file, tmp_path, capsys):
    out = tmp_path / "out"
    with RunLock(out, what="crowdvlm experiment run other.yaml"):
        assert crowdvlm(["experiment", "run", str(toy_file()), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{out} is in use by another run: pid" in err and "other.yaml" in err
    assert not (out / "data").exists()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (
            {"data": {"sets": {"..": {"styles": ["dots"], "counts": [0, 5], "n": 2, "seed": 3}}}},
            "data.sets...",
        ),
        (
            {"data": {"sets": {"../../x": {"styles": ["dots"], "counts": [0, 5], "n": 2, "seed": 3}}}},
            "data.sets.../../x",
        ),
        ({"arms": {"a/b": {"model": "base"}}}, "arms.a/b"),
        ({"arms": {".": {"model": "base"}}}, "arms.."),
        ({"name": "../elsewhere"}, "name"),
    ],
)
def test_names_that_are_not_one_folder_are_refused_by_check(toy_file, change, key, capsys):
    path = toy_file()
    raw = yaml.safe_load(path.read_text())
    for top, value in change.items():
        raw[top] = {**raw[top], **value} if isinstance(value, dict) and top != "data" else value
        if top == "data":
            raw["data"]["sets"].update(value["sets"])
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match="is not a usable name"):
        load_experiment(path)
    assert crowdvlm(["experiment", "check", str(path)]) == 2
    assert f"{key}: " in capsys.readouterr().err


def test_two_sets_writing_one_data_folder_are_refused(toy_file):
    path = toy_file()
    raw = yaml.safe_load(path.read_text())
    raw["data"]["sets"]["train-s0"] = {"styles": ["dots"], "counts": [0, 5], "n": 2, "seed": 3}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match="would both write data/train-s0"):
        load_experiment(path)


def test_a_folder_from_before_owner_markers_is_adopted_with_a_warning_only_when_recognisable(
    toy_file, tmp_path, caplog
):
    exp = load_experiment(toy_file())

    def old_folder(name, spec, *extra):
        out = tmp_path / name
        (out / "data" / "test").mkdir(parents=True)
        (out / "data" / "test" / DONE_FILE).write_text(json.dumps({"stage": "synthesise test"}))
        (out / "experiment.json").write_text(json.dumps(spec))
        for file in extra:
            (out / file).write_text("a user's file")
        return out

    out = old_folder("old", {"name": "toy"})
    with caplog.at_level(logging.WARNING, logger="crowdvlm.experiments"):
        owner = claim_folder(out, exp)
    marker = json.loads((out / OWNER_FILE).read_text())
    assert marker["experiment"] == owner and marker["adopted"] and marker["name"] == "toy"
    assert f"{out}: a folder of experiment 'toy' made before ownership markers existed" in caplog.text
    assert f"adopted, {out / OWNER_FILE} written" in caplog.text and is_done(out / "data" / "test")
    for name, spec, extra, reason in [
        ("notes", {"name": "toy"}, ["notes.txt"], "it holds notes.txt, which no experiment writes"),
        ("nameless", {"title": "A toy"}, [], "experiment.json names no experiment"),
    ]:
        out = old_folder(name, spec, *extra)
        with pytest.raises(UsageError, match=f"--out {out} is not empty and was not made by .*{reason}"):
            claim_folder(out, exp)
        assert not (out / OWNER_FILE).exists()  # nothing was touched
    with pytest.raises(UsageError, match="holds the run of experiment 'other', not 'toy'"):
        claim_folder(old_folder("other", {"name": "other"}), exp)


def test_report_refuses_a_folder_not_recognisably_the_experiments(toy_file, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"name": "toy"}))
    (out / "notes.txt").write_text("a user's file")
    assert crowdvlm(["experiment", "report", str(toy_file()), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds no run of experiment 'toy' (no {OWNER_FILE}, and it holds notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["experiment.json", "notes.txt"]
