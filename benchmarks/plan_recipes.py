"""`crowdvlm plan` on every shipped GPU recipe: the table of docs/plan.md, and how long each command takes.

Each recipe under ``recipes/qwen*/`` is planned by its own ``crowdvlm plan RECIPE --json`` process (the launch its
header names, ``--gpus``, ``--gpu-memory``, ``--image-size``), so the time printed is what a user waits for: the
command's wall time from start to exit, imports included, beside the planner's own figure (``seconds``: the
estimate after the lazy imports of torch and transformers it needs). Run:
    .venv/bin/python benchmarks/plan_recipes.py [--gpus 8] [--gpu-memory 80GiB] [--image-size 1024x768]
It prints a markdown table, then one JSON line with every recipe's result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8, help="processes (GPUs) of the launch")
    parser.add_argument("--gpu-memory", default="80GiB", help="memory of one GPU")
    parser.add_argument("--image-size", default="1024x768", help="WIDTHxHEIGHT of the images")
    parser.add_argument("recipes", nargs="*", type=Path, help="recipes (default: every recipes/qwen*/*.yaml)")
    return parser.parse_args(argv)


def plan(recipe: Path, args: argparse.Namespace) -> dict:
    """One ``crowdvlm plan --json`` process; its JSON plus ``command_seconds`` (its wall time)."""
    command = [sys.executable, "-m", "crowdvlm", "plan", str(recipe), "--json", "--gpus", str(args.gpus)]
    command += ["--gpu-memory", args.gpu_memory, "--image-size", args.image_size]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"crowdvlm plan {recipe} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"command_seconds": round(seconds, 2)}


def launch_words(result: dict) -> str:
    stage = result["assumptions"].get("zero_stage")
    how = f"DeepSpeed ZeRO-{stage}" if stage else "DDP"
    return f"{how}, {result['gpus']} GPUs"


def pass_words(result: dict) -> str:
    a = result["assumptions"]
    kind = "SFT" if a["trainer"] == "sft" else ("crowdvlm packed" if a.get("packed") else a["trainer"])
    checkpointing = "GC on" if a["gradient_checkpointing"] else "GC off"
    return f"{kind}, {a['text_rows']}x{a['tokens_per_row']} tok, {checkpointing}"


def table(results: list[dict], gpu_memory: str) -> str:
    lines = [
        f"| recipe | launch | training pass | states | reference | activations | vLLM | peak | fits {gpu_memory} "
        "| command s | planner s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        parts = r["parts_gib"]
        states = parts["parameters"] + parts["gradients"] + parts["optimizer"]
        path = Path(r["recipe"]).with_suffix("")
        name = path.relative_to("recipes").as_posix() if path.parts[:1] == ("recipes",) else path.as_posix()
        lines.append(
            f"| `{name}` | {launch_words(r)} | {pass_words(r)} | {states:.1f} | {parts['reference model']:.1f} "
            f"| {parts['activations']:.2f} | {parts['vLLM']:.1f} | **{r['peak_gib']:.1f}** "
            f"| {'yes' if r['fits'] else 'no: ' + str(r['fix'])} | {r['command_seconds']:.1f} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    recipes = args.recipes or sorted((ROOT / "recipes").glob("qwen*/*.yaml"))
    results = []
    for i, recipe in enumerate(recipes, 1):
        path = Path(recipe).resolve()
        results.append(plan(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, args))
        print(
            f"[{i}/{len(recipes)}] {recipe}: {results[-1]['command_seconds']} s", file=sys.stderr, flush=True
        )
    print(table(results, args.gpu_memory))
    slowest = max(r["command_seconds"] for r in results)
    print(json.dumps({"recipes": results, "slowest_command_seconds": slowest}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
