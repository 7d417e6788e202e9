"""``crowdvlm experiment``: run an experiment file, check it, or rebuild its report.

    crowdvlm experiment run reward_study [--out runs/reward_study]   # a shipped experiment, by name
    crowdvlm experiment check my_experiment.yaml                    # validate file + recipes, run nothing
    crowdvlm experiment report demo --out runs/demo                 # rebuild report.md

The shipped experiments (demo, demo_quick, reward_study, pointing) live in the package, in
crowdvlm/recipes/experiments/ (src/crowdvlm/recipes/ in a source checkout): name one, or write a file that
starts with `extends: <its path>`.

Re-running the same command continues an interrupted experiment: finished stages are skipped, a killed
training stage continues from its last checkpoint. A finished stage whose inputs changed (its recipe, the
base model, its data) is refused, or redone with --redo-changed; a non-empty --out that no experiment made is
refused, and one --out takes one run at a time. `report` beside a run still going reports the stages finished
so far, marked partial, naming the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from crowdvlm.argparsing import CommandParser
from crowdvlm.atomic import atomic_write_json
from crowdvlm.errors import UsageError
from crowdvlm.logs import DATE_FORMAT, FORMAT

__all__ = ["main", "run_experiment"]

logger = logging.getLogger(__name__)


class _ExperimentLogFilter(logging.Filter):
    """The experiment's own INFO lines pass; other libraries' (trainers, evaluation) only from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(
            ("crowdvlm.experiments", "crowdvlm.demo")
        )


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record (a caller that swaps it, as pytest does, sees them)."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


def setup_output() -> None:
    """Keep the terminal to the experiment's progress: stage lines, progress bars, warnings and errors."""
    import warnings

    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(_ExperimentLogFilter())
    root = logging.getLogger()
    if not any(isinstance(f, _ExperimentLogFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)  # the trainers' logging.basicConfig then finds a handler and adds none
    root.setLevel(logging.INFO)
    # transformers' deprecation notices about its own defaults say nothing to someone running an experiment.
    warnings.filterwarnings("ignore", category=FutureWarning)


def run_experiment(
    path: str | Path,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    report_only: bool = False,
    redo_changed: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) every stage of an experiment file, then write its report; ``(report path, results)``.

    The run holds ``OUT/.run.lock`` from its first stage to its report. ``report_only`` takes no lock on
    ``OUT``: it reports the stages finished so far, and when a run holds ``OUT`` it says so (one warning naming
    the holder) and marks the report partial. Every report is written holding ``OUT/report/.run.lock``, so
    two never interleave: the second waits for the first (up to :data:`REPORT_WAIT_S`).

    Args:
        report_only: only rebuild the report from the stages finished so far.
        redo_changed: redo finished stages whose inputs changed since they ran (default: refuse).

    Raises:
        UsageError: the file, a recipe or the output folder is not usable, or another run holds the folder
            (before anything runs); a report still being written after :data:`REPORT_WAIT_S`.
    """
    from crowdvlm.experiments.pipeline import Layout, build_stages, claim_folder, owner_of, unrecognised
    from crowdvlm.experiments.spec import load_experiment
    from crowdvlm.experiments.stages import run_stages
    from crowdvlm.runlock import RunLock, describe_holder, holder_of

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    exp = load_experiment(path)
    layout = Layout(Path(out) if out else Path("runs") / exp.name, exp)
    wall_file = layout.out / "wall.json"  # the last run's wall time, for reports rebuilt later
    start = time.perf_counter()
    if report_only:
        if not layout.out.is_dir():
            raise UsageError(f"{layout.out}: no such folder; run experiment {exp.name!r} first")
        reason = unrecognised(layout.out, exp) if owner_of(layout.out, exp) is None else None
        if reason is not None:  # a folder from before owner markers is reported as it is, never adopted here
            raise UsageError(f"{layout.out} holds no run of experiment {exp.name!r} ({reason}): run it first")
        running = holder_of(layout.out)
        if running is not None:
            logger.warning(
                "%s is still being written by %s: reporting the stages finished so far (a partial report)",
                layout.out,
                describe_holder(running),
            )
        return _report(layout, f"crowdvlm experiment report {exp.path.name}", running=running)
    stages = build_stages(layout, progress=progress)  # parses every arm's recipe before anything runs
    with RunLock(layout.out, what=f"crowdvlm experiment run {exp.path.name}"):
        owner = claim_folder(layout.out, exp)
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        print(
            f"crowdvlm experiment {exp.name}: {len(stages)} stages, seeds {list(exp.seeds)}, arms "
            f"{', '.join(exp.arms)}, output {layout.out}"
        )
        run_stages(stages, owner=owner, redo_changed=redo_changed, progress=progress, desc=exp.name)
        atomic_write_json(wall_file, {"wall_s": round(time.perf_counter() - start, 1)})
        return _report(layout, f"crowdvlm experiment run {exp.path.name}")  # the report is part of the run


# A report takes seconds to a few minutes; another one being written is waited for, never interleaved with.
REPORT_WAIT_S = 900.0


def _report(layout, what: str, *, running: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Collect the finished stages and write ``report/``, holding ``report/.run.lock`` while it does.

    Args:
        what: the command writing it (named to a report waiting for it).
        running: the holder of a run still writing the folder (the report says so).
    """
    from crowdvlm.experiments.report import write_report
    from crowdvlm.experiments.summary import collect
    from crowdvlm.runlock import RunLock

    with RunLock(layout.report, what=what, wait=REPORT_WAIT_S):
        results = collect(layout, wall_s=_read_wall(layout.out / "wall.json"), running=running)
        return write_report(results, layout.exp, layout), results


def _read_wall(path: Path) -> float | None:
    """The recorded wall time, or None (missing; unreadable: with a warning naming the file)."""
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["wall_s"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("%s: unreadable (%s): the report shows no wall time", path, err)
        return None


def _parser() -> argparse.ArgumentParser:
    from crowdvlm.experiments.yamlfile import experiment_file

    p = CommandParser(
        prog="crowdvlm experiment",
        description="Run an experiment file: data, arms (recipes + overrides), seeds, lr grids, test sets and "
        "comparisons with a verdict each (docs/experiments.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = p.add_subparsers(dest="action", required=True)
    for action, text in (
        ("run", "run or resume every stage, then write the report"),
        ("check", "validate the file and every arm's recipe; run nothing"),
        ("report", "rebuild the report of a finished (or partly finished) run"),
    ):
        a = sub.add_parser(action, help=text, description=text)
        a.add_argument(
            "file",
            type=experiment_file,
            help="the experiment YAML, or the name of a shipped one (demo, demo_quick, reward_study, pointing)",
        )
        if action != "check":
            a.add_argument("--out", type=Path, default=None, help="output folder (default runs/<name>)")
        if action == "run":
            a.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")
            a.add_argument(
                "--redo-changed",
                action="store_true",
                help="redo finished stages whose inputs (recipe, base model, data) changed, instead of refusing",
            )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    setup_output()
    if args.action == "check":
        from crowdvlm.experiments.jobs import preflight
        from crowdvlm.experiments.spec import load_experiment

        exp = load_experiment(args.file)
        jobs = preflight(exp)
        print(
            f"{args.file}: experiment {exp.name!r} is valid: {len(exp.arms)} arms ({len(jobs)} trained), "
            f"seeds {list(exp.seeds)}, test sets {', '.join(exp.test_sets)}, {len(exp.comparisons)} comparisons"
        )
        return 0
    report, results = run_experiment(
        args.file,
        args.out,
        progress=not getattr(args, "no_progress", False),
        report_only=args.action == "report",
        redo_changed=getattr(args, "redo_changed", False),
    )
    print_outcome(report, results)
    return 0


def print_outcome(report: Path, results: dict[str, Any]) -> None:
    """The terminal table of a finished run and where its report is (``experiment`` and ``demo``)."""
    from crowdvlm.experiments.report import terminal_table

    print()
    print(terminal_table(results))
    print(f"\nreport: {report}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
