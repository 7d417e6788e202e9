"""Seconds per GRPO step on 2 processes under DeepSpeed ZeRO-3: stock trl.GRPOTrainer vs crowdvlm.

The same configuration for both: 2 processes (``accelerate launch``), ZeRO-3 with every parameter partitioned,
whole groups per process (each process holds one prompt's G = 8 completions per step, steps_per_generation 1),
the tiny random-weight Qwen2.5-VL built with max_pixels = 448*448 (a 448x448 image is 1,024 patch rows),
exactly 32 new tokens per completion, beta = 0.04 (a reference model, a ZeRO-3 engine of its own) and the same
seed. In one launch each rank trains stock TRL for ``--warmup + --steps`` steps, then crowdvlm's
``GroupSharedGRPOTrainer`` for as many; each step is timed from ``on_step_begin`` to ``on_step_end`` and the
warm-up steps are dropped. Forward hooks on the policy's and the reference model's vision towers count the
patch rows each rank encodes per step.

On CPU (no GPU) the ZeRO-3 config is the CPU copy of ``recipes/accelerate/zero3.yaml`` that the tests use
(``benchmarks/zero3_cpu.py``); ``--config_file`` takes another (on GPUs: the shipped
one). Run:
    .venv/bin/python benchmarks/grpo_cluster.py [--steps 4] [--warmup 1]
The last line printed is JSON; ``ratio`` is stock s/step / crowdvlm s/step (larger is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per trainer first")
    parser.add_argument("--num_generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--image_size", type=int, default=448)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--config_file", default=None, help="accelerate config (default: CPU copy of zero3.yaml)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the launched ranks: WORK_DIR
    # One prompt (a whole group of G rows) per process and step: the batch of grpo_step.py's trainer set-up.
    parser.set_defaults(prompts_per_step=1)
    return parser.parse_args(argv)


def train_variant(name: str, cls, work: Path, dataset, args) -> dict:
    """Train one trainer ``warmup + steps`` steps on this rank; its step times and vision rows per step."""
    import torch

    from grpo_step import timed_trainer, vision_rows_per_step

    trainer, timer, counters = timed_trainer(
        cls,
        work / "tiny",
        work / name,
        dataset,
        args,
        args.new_tokens,
        count_from=args.warmup,  # one train() of all the steps: the timer counts the timed steps only
        max_steps=args.warmup + args.steps,
        steps_per_generation=1,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer.train()
    return {
        "engine": type(trainer.model_wrapped).__name__,
        "seconds": timer.seconds[args.warmup :],
        "vision_rows": vision_rows_per_step(counters, args.steps),
        "fallbacks": getattr(trainer, "sharing_fallbacks", {}),
    }


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    import trl

    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
    from grpo_step import dot_dataset

    torch.set_num_threads(args.threads)
    work = Path(args.worker)
    # Two processes x one prompt per step each; the sampler deals prompts to the ranks.
    dataset = dot_dataset(2 * (args.warmup + args.steps), args.image_size, args.seed)
    result = {}
    for name, cls in (("stock", trl.GRPOTrainer), ("crowdvlm", GroupSharedGRPOTrainer)):
        result[name] = train_variant(name, cls, work, dataset, args)
    rank = dist.get_rank()
    (work / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return

    from crowdvlm.modeling.tiny import build_tiny_model
    from grpo_step import steps_and_versions  # beside this file
    from zero3_cpu import launch_command, write_zero3_cpu_variant

    work = Path(tempfile.mkdtemp(prefix="grpo_cluster_"))
    pixels = args.image_size * args.image_size
    build_tiny_model(work / "tiny", max_pixels=pixels, seed=args.seed)
    config = args.config_file or write_zero3_cpu_variant(
        ROOT / "recipes/accelerate/zero3.yaml", work / "config"
    )
    command = launch_command(config, str(Path(__file__).resolve()), "--worker", str(work), *sys.argv[1:])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1)]

    print(
        f"2 processes, ZeRO-3 (every parameter partitioned), tiny Qwen2.5-VL, one prompt x G={args.num_generations} "
        f"per process per step, {args.image_size}x{args.image_size} images, {args.new_tokens} new tokens, "
        f"beta={args.beta}, {args.threads} thread(s)/process; {args.warmup} warm-up + {args.steps} timed steps each"
    )
    summary: dict = {}
    for name in ("stock", "crowdvlm"):
        # A step ends when the slower rank's does (ZeRO-3 collectives hold the other): time the slowest rank.
        seconds = [max(pair) for pair in zip(*(r[name]["seconds"] for r in ranks), strict=True)]
        rows = [r[name]["vision_rows"] for r in ranks]
        summary[f"{name}_s_per_step"] = round(statistics.median(seconds), 4)
        summary[f"{name}_vision_rows_per_step_per_rank"] = [sum(r.values()) for r in rows]
        print(
            f"{name:<10} median {statistics.median(seconds):.3f} s/step ({min(seconds):.3f}-{max(seconds):.3f}); "
            f"vision rows/step per rank {rows}; engine {ranks[0][name]['engine']}; "
            f"fallbacks {ranks[0][name]['fallbacks']}"
        )
    ratio = summary["stock_s_per_step"] / summary["crowdvlm_s_per_step"]
    print(f"ratio (stock s/step / crowdvlm s/step): {ratio:.2f}x; whole launch {wall:.0f} s")
    summary = {
        "ratio": round(ratio, 3),
        **summary,
        "processes": 2,
        "zero_stage": 3,
        "num_generations": args.num_generations,
        "image_size": args.image_size,
        "new_tokens": args.new_tokens,
        "beta": args.beta,
        "threads_per_process": args.threads,
        **steps_and_versions(args),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
