"""Everything an experiment file can be wrong about is found by `experiment check`, before the first stage."""

import pytest
import yaml

from crowdvlm.cli import main as crowdvlm


def _changed(toy_file, tmp_path, edit) -> str:
    path = toy_file()
    raw = yaml.safe_load(path.read_text())
    edit(raw, tmp_path)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _set(raw, tmp_path, **spec):
    raw["data"]["sets"]["test"] = spec


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r, t: r.update(report={"bucket_edges": [30, 10]}),
            "report.bucket_edges: expected increasing",
        ),
        (
            lambda r, t: r.update(report={"bucket_edges": [10, "x"]}),
            "report.bucket_edges: expected increasing",
        ),
        (
            lambda r, t: r.update(report={"bucket_edges": [10, 10]}),
            "report.bucket_edges: expected increasing",
        ),
        (
            lambda r, t: r.update(report={"n_boot": True}),
            "report.n_boot: expected an integer >= 10, got True",
        ),
        (lambda r, t: r.update(report={"n_boot": 0}), "report.n_boot: expected an integer >= 10"),
        (lambda r, t: r.update(seeds=[-1]), "seeds: expected distinct integer seeds >= 0"),
        (lambda r, t: r.update(seeds=[True]), "seeds: expected distinct integer seeds >= 0"),
        (
            lambda r, t: r["data"]["sets"]["train"].update(counts=[True, 5]),
            "data.sets.train.counts: expected [min, max]",
        ),
        (
            lambda r, t: r["data"]["sets"]["train"].update(seed=-3),
            "data.sets.train.seed: expected an integer seed",
        ),
        (lambda r, t: _set(r, t, manifests=[str(t)]), "data.sets.test.manifests: {tmp} is not a file"),
        (
            lambda r, t: _set(r, t, manifests=[str(t / "no.jsonl")]),
            "data.sets.test.manifests: {tmp}/no.jsonl not found",
        ),
    ],
)
def test_check_finds_what_the_first_stage_would(toy_file, tmp_path, capsys, edit, message):
    path = _changed(toy_file, tmp_path, edit)
    assert crowdvlm(["experiment", "check", path]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
