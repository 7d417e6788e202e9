"""A tiny recipe of recipes/tiny run in-process with quiet overrides (SFT or GRPO): the training tests' runner; and
the same quiet arguments for ``crowdvlm train`` on a command line (the subprocess tests')."""

from __future__ import annotations

from pathlib import Path

from crowdvlm.train.config import parse_job

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"

QUIET = {"report_to": "none", "disable_tqdm": True}


def run(kind: str, recipe: str, model: Path, manifest: Path, out: Path, **overrides):
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


def quiet_train_args(recipe: Path, model: Path, manifest: Path, out: Path) -> list[str]:
    """``crowdvlm train KIND``'s arguments that run ``recipe`` on ``model`` and ``manifest`` into ``out``, quiet (no
    reporting, no progress bars); the caller adds its own overrides after them."""
    return [
        "--config",
        str(recipe),
        "--model_name_or_path",
        str(model),
        "--dataset",
        str(manifest),
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]
