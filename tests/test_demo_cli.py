"""`crowdvlm demo` end to end at toy sizes: every stage runs, the report and plots exist, a rerun resumes.

This checks the mechanics, not the science (a dozen images cannot show anything). It uses the shipped base
checkpoint, so it also checks that the base loads with the current code.
"""

import json

from crowdvlm.demo.base_model import BASE_DIR, check_base
from crowdvlm.demo.cli import main
from crowdvlm.demo.stages import DONE_FILE

TOY = [
    "--quick",
    "--no-progress",
    "--set", "n_train=8",
    "--set", "n_val=5",
    "--set", "n_test=10",
    "--set", "n_ood=6",
    "--set", "grpo_prompts_per_step=2",
    "--set", "num_generations=4",
    "--set", "sft_batch_size=4",
    "--set", "n_boot=100",
    "--set", "eval_batch_size=16",
]  # fmt: skip


def test_shipped_base_loads():
    info = check_base(BASE_DIR)
    assert info["parameters"]["total"] > 100_000
    assert info["recipe"]["command"] == "crowdvlm demo --rebuild-base"


def test_demo_runs_every_stage_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main([*TOY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "C1" in printed and "report:" in printed

    markers = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(DONE_FILE))
    expected = {"data", "evals/base/val", "evals/base/test", "evals/base/ood"}
    for arm in ("sft", "grpo_binary", "grpo_fgrpr"):
        expected |= {f"selection/{arm}", f"evals/{arm}/s0/test", f"evals/{arm}/s0/ood"}
    assert expected <= set(markers)
    assert sum(m.startswith("runs/") for m in markers) == 3  # one training run per arm

    report = out / "report"
    for name in (
        "report.md",
        "results.json",
        "reward_curves.png",
        "mae_per_dataset.png",
        "error_by_bucket.png",
    ):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert set(results["claims"]["claims"]) == {"C1", "C2", "C3"}
    assert all(
        v in ("reproduces", "does not reproduce", "inconclusive")
        for v in results["claims"]["claims"].values()
    )
    assert results["sets"]["test"]["arms"]["sft"]["overall"]["n"] == 10
    for arm in ("grpo_binary", "grpo_fgrpr"):
        assert results["curves"][arm]["0"]["step"], f"{arm}: no reward curve in the trainer log"

    # A second run finds every stage done and only rebuilds the report.
    assert main([*TOY, "--out", str(out)]) == 0
    assert "stages already done" in capsys.readouterr().out


def test_demo_rejects_bad_options(tmp_path, capsys):
    from crowdvlm.cli import main as crowdvlm_main

    assert crowdvlm_main(["demo", "--set", "n_train=zero", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crowdvlm demo: error:") and "expected int" in err and len(err.splitlines()) == 1
    assert crowdvlm_main(["demo", "--base", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2
    assert "--rebuild-base" in capsys.readouterr().err


def test_rebuild_base_reproduces_a_loadable_base(tmp_path):
    """The recipe runs end to end (a few steps here; the full recipe is `crowdvlm demo --rebuild-base`)."""
    from crowdvlm.demo.base_model import rebuild_base
    from crowdvlm.demo.plan import quick_plan

    out = rebuild_base(tmp_path / "base", quick_plan(), recipe={"n_images": 32, "steps": 3}, progress=False)
    info = check_base(out)
    assert info["recipe"]["steps_done"] == 3
