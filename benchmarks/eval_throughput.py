"""Evaluation throughput (images/s) of the tiny Qwen2.5-VL on CPU at batch 1 and batch 16, side by side.

Run (alone on the machine: two torch processes at once slow each other): .venv/bin/python benchmarks/eval_throughput.py [--images 48] [--repeats 3]
     [--max-new-tokens 32] [--batch-sizes 1,16] [--json FILE]

Both batch sizes evaluate the same synthetic images through the whole pipeline (`crowdvlm.evaluate.run.evaluate`:
prefetch thread, chat template, HF generate, parsing, predictions.jsonl; no report), alternating
(b1, b16, b1, b16, ...) after one untimed warm-up each, so that load on the machine hits both alike. A random
model rarely stops early, so every answer uses about the same ``--max-new-tokens``. Prints the median images/s
per batch size and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="images per measurement (default: 48)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (default: 3)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer budget (default: 32)")
    parser.add_argument("--batch-sizes", default="1,16", help="comma-separated (default: 1,16)")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels (default: 112)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from crowdvlm.data.synth import generate
    from crowdvlm.evaluate.backends.hf_backend import HFBackend
    from crowdvlm.evaluate.run import evaluate, items_from_manifests
    from crowdvlm.modeling.tiny import build_tiny_model

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        root = Path(tmp)
        model_dir = build_tiny_model(root / "tiny", seed=0)
        manifest = generate(
            root / "data",
            n=args.images,
            style="people",
            min_count=1,
            max_count=60,
            size=(args.size, args.size),
            seed=0,
            progress=False,
        )
        items = items_from_manifests([manifest])
        backend = HFBackend.load(model_dir, max_new_tokens=args.max_new_tokens, device="cpu")

        def run(batch_size: int, tag: str) -> float:
            start = time.perf_counter()
            out = root / "runs" / f"{tag}-b{batch_size}"
            evaluate(backend, items, out, batch_size=batch_size, report=False, progress=False)
            return time.perf_counter() - start

        for b in batch_sizes:
            run(b, "warmup")
        seconds: dict[int, list[float]] = {b: [] for b in batch_sizes}
        for r in range(args.repeats):
            for b in batch_sizes:
                seconds[b].append(run(b, f"r{r}"))

    results = {
        "images": args.images,
        "image_size": args.size,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "batch": {
            b: {
                "median_seconds": round(statistics.median(seconds[b]), 3),
                "images_per_s": round(args.images / statistics.median(seconds[b]), 2),
                "all_seconds": [round(s, 3) for s in seconds[b]],
            }
            for b in batch_sizes
        },
    }
    first = batch_sizes[0]
    print(
        f"tiny Qwen2.5-VL, CPU ({results['torch_threads']} threads), {args.images} images of {args.size}px, "
        f"max_new_tokens={args.max_new_tokens}, median of {args.repeats}"
    )
    for b in batch_sizes:
        row = results["batch"][b]
        ratio = row["images_per_s"] / results["batch"][first]["images_per_s"]
        print(
            f"  batch {b:>3}: {row['images_per_s']:7.2f} images/s  ({row['median_seconds']:.2f} s; "
            f"{ratio:.2f}x batch {first})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
