"""``crowdvlm demo``: the CrowdVLM-R1 experiment in miniature, on a CPU, resumable.

    crowdvlm demo                      # the full experiment (3 seeds, lr grid), report in runs/demo/report/
    crowdvlm demo --quick              # every stage in a few minutes (one seed, no lr grid)
    crowdvlm demo --report-only        # rebuild the report from a finished --out folder
    crowdvlm demo --rebuild-base       # rebuild the shipped base checkpoint from scratch, then stop

It is `crowdvlm experiment run demo` (or demo_quick), the file crowdvlm/recipes/experiments/demo.yaml inside
the package: to change a size, a seed or an lr grid, write an experiment file that starts with
`extends: <that path>` and run it with --experiment.
Re-running the same command continues an interrupted demo: finished stages are skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crowdvlm.demo import DEMO_FILE, QUICK_FILE
from crowdvlm.errors import UsageError

__all__ = ["DEMO_FILE", "QUICK_FILE", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crowdvlm demo",
        description="Train SFT, GRPO with the 0/1 reward and GRPO with FGRPR from one tiny base on synthetic "
        "counting data, evaluate them in- and out-of-domain, and test the paper's three claims.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--quick", action="store_true", help="a few-minute run: one seed, no lr grid, small sets")
    p.add_argument(
        "--experiment",
        type=Path,
        default=None,
        help="run this experiment file instead (e.g. one that extends demo.yaml with other sizes)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/demo, or runs/demo-quick)"
    )
    p.add_argument(
        "--rebuild-base", action="store_true", help="rebuild the base checkpoint (into --base) and stop"
    )
    p.add_argument("--base", type=Path, default=None, help="with --rebuild-base: where to write the base")
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from a finished --out folder"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from crowdvlm.experiments.cli import run_experiment, setup_output

    setup_output()
    path = args.experiment or (QUICK_FILE if args.quick else DEMO_FILE)
    if not path.is_file():
        raise UsageError(f"{path}: experiment file not found")
    if args.rebuild_base:
        from crowdvlm.demo.base_model import BASE_DIR, rebuild_base

        base = args.base or BASE_DIR
        print(f"rebuilding the demo base into {base} ...")
        rebuild_base(base, progress=not args.no_progress)
        print(f"base rebuilt: {base}")
        return 0
    from crowdvlm.demo.base_model import check_base
    from crowdvlm.experiments.report import terminal_table
    from crowdvlm.experiments.spec import load_experiment

    info = check_base(load_experiment(path).base)
    print(f"crowdvlm demo: {path.name}, base {info['parameters']['total']:,} parameters")
    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    report, results = run_experiment(path, out, progress=not args.no_progress, report_only=args.report_only)
    print()
    print(terminal_table(results))
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
