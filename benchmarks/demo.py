"""Run the full demo and record its wall time and every arm's metrics as JSON.

Run (alone on the machine: two torch processes at once slow each other): .venv/bin/python benchmarks/demo.py [--out runs/demo-bench] [--json FILE]
     [-- extra `crowdvlm demo` arguments, e.g. --quick or --experiment FILE]

The demo runs in a child process (``python -m crowdvlm demo``), timed from start to exit; the output folder is
created fresh (an existing one is refused, so the time is never that of a resumed run). The JSON holds the
wall time, the experiment, per arm and set the MAE / RMSE / accuracy / parse-failure rate (mean and sd over seeds),
the claims' verdicts with their confidence intervals and the measured training time of every arm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _arm_metrics(results: dict) -> dict:
    out = {}
    for set_name, data in results["sets"].items():
        for arm, res in data["arms"].items():
            o = res["overall"]
            out.setdefault(arm, {})[set_name] = {
                key: o[key] for key in ("mae", "mae_parsed", "rmse", "accuracy", "parse_failure_rate")
            } | {"per_seed_mae": o["per_seed_mae"], "n": o["n"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo-bench"), help="demo output folder (must not exist)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="where to write the JSON (default OUT/benchmark.json)"
    )
    parser.add_argument(
        "demo_args", nargs=argparse.REMAINDER, help="extra arguments for `crowdvlm demo` (after --)"
    )
    args = parser.parse_args()
    extra = [a for a in args.demo_args if a != "--"]
    if args.out.exists():
        print(f"{args.out} exists: the benchmark times a fresh run; pass another --out", file=sys.stderr)
        return 2

    command = [sys.executable, "-m", "crowdvlm", "demo", "--out", str(args.out), *extra]
    print("running:", " ".join(command), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"the demo failed (exit {proc.returncode}) after {wall:.0f} s", file=sys.stderr)
        return proc.returncode

    results = json.loads((args.out / "report" / "results.json").read_text(encoding="utf-8"))
    record = {
        "benchmark": "demo",
        "command": " ".join(["crowdvlm", "demo", *extra]),
        "wall_s": round(wall, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "experiment": results["experiment"],
        "arms": _arm_metrics(results),
        "training": {
            arm: {k: t[k] for k in ("lr", "grid", "train_wall_s", "steps")}
            for arm, t in results["training"].items()
        },
        "comparisons": results["comparisons"],
        "report": str(args.out / "report" / "report.md"),
    }
    path = args.json or args.out / "benchmark.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"demo wall time {wall / 60:.1f} min; claims {results['comparisons']['claims']}; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
