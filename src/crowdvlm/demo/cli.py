"""``crowdvlm demo``: the CrowdVLM-R1 experiment in miniature, on a CPU, resumable.

    crowdvlm demo                      # the full experiment (3 seeds, lr grid), report in runs/demo/report/
    crowdvlm demo --quick              # every stage in a few minutes (one seed, no grid)
    crowdvlm demo --seeds 5            # more seeds
    crowdvlm demo --set n_train=1000   # change any plan field (see plan.json of a run)
    crowdvlm demo --rebuild-base       # rebuild the shipped base checkpoint from scratch, then stop

Re-running the same command continues an interrupted demo: finished stages are skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from crowdvlm.errors import UsageError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crowdvlm demo",
        description="Train SFT, GRPO with the 0/1 reward and GRPO with FGRPR from one tiny base on synthetic "
        "counting data, evaluate them in- and out-of-domain, and test the paper's three claims.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--quick", action="store_true", help="a few-minute run: one seed, no lr grid, small sets")
    p.add_argument("--seeds", type=int, default=None, help="number of training seeds (default: 3; quick: 1)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/demo, or runs/demo-quick)"
    )
    p.add_argument(
        "--base", type=Path, default=None, help="base model folder (default: the shipped demo base)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a plan field, e.g. --set n_train=1000 --set grpo_lrs=1e-5,3e-5")  # fmt: skip
    p.add_argument(
        "--rebuild-base", action="store_true", help="rebuild the base checkpoint (into --base) and stop"
    )
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from a finished --out folder"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")
    return p


def _plan(args: argparse.Namespace):
    from crowdvlm.demo.plan import default_plan, quick_plan

    plan = quick_plan() if args.quick else default_plan()
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value.strip()
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        overrides["seeds"] = tuple(range(args.seeds))
    plan = plan.with_overrides(overrides)
    plan.validate()
    return plan


class _DemoLogFilter(logging.Filter):
    """The demo's own INFO lines pass; other libraries' (trainers, evaluation) only from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith("crowdvlm.demo")


def _setup_output() -> None:
    """Keep the terminal to the demo's progress: stage lines, progress bars, warnings and errors."""
    import warnings

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DemoLogFilter())
    root = logging.getLogger()
    if not any(isinstance(f, _DemoLogFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)  # the trainers' logging.basicConfig then finds a handler and adds none
    root.setLevel(logging.INFO)
    # transformers' deprecation notices about its own defaults say nothing to a demo user.
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _setup_output()
    try:
        plan = _plan(args)
    except ValueError as err:  # a --set or --seeds value the plan refuses: bad input (exit 2)
        raise UsageError(str(err)) from err

    import torch

    from crowdvlm.demo.base_model import BASE_DIR, check_base, rebuild_base
    from crowdvlm.demo.pipeline import DemoLayout, build_stages, check_plan_matches
    from crowdvlm.demo.report import terminal_table, write_report
    from crowdvlm.demo.stages import run_stages
    from crowdvlm.demo.summary import collect

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    progress = not args.no_progress
    base = args.base or BASE_DIR

    if args.rebuild_base:
        print(f"rebuilding the demo base into {base} ...")
        rebuild_base(base, plan, progress=progress)
        print(f"base rebuilt: {base}")
        return 0

    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    try:
        info = check_base(base)
        check_plan_matches(out, plan)
    except (FileNotFoundError, RuntimeError, ValueError) as err:  # a missing base, a different plan in --out
        raise UsageError(str(err)) from err
    print(f"crowdvlm demo: plan {plan.name!r}, seeds {list(plan.seeds)}, base {base} "
          f"({info['parameters']['total']:,} parameters), output {out}")  # fmt: skip

    layout = DemoLayout(out, plan, base)
    start = time.perf_counter()
    if not args.report_only:
        run_stages(build_stages(layout, progress=progress), progress=progress)
    results = collect(layout, wall_s=None if args.report_only else round(time.perf_counter() - start, 1))
    report = write_report(results, layout.report)
    print()
    print(terminal_table(results))
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
