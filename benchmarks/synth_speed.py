"""Images per second of the synthetic generator, per style, on one core (render + PNG write + manifest).

Run: .venv/bin/python benchmarks/synth_speed.py [--n 300] [--size 224] [--max-count 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from crowdvlm.data.synth import generate
from crowdvlm.data.synth_styles import STYLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images per style")
    parser.add_argument("--size", type=int, default=224, help="square image side in pixels")
    parser.add_argument("--min-count", type=int, default=0)
    parser.add_argument("--max-count", type=int, default=40)
    args = parser.parse_args()

    print(
        f"{args.n} images per style, {args.size}x{args.size}, counts {args.min_count}-{args.max_count}, one process"
    )
    print(f"{'style':<10} {'images/s':>9}")
    total_n, total_s = 0, 0.0
    for style in STYLES:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            generate(
                out,
                args.n,
                style,
                args.min_count,
                args.max_count,
                (args.size, args.size),
                seed=0,
                progress=False,
            )
            seconds = time.perf_counter() - start
        total_n, total_s = total_n + args.n, total_s + seconds
        print(f"{style:<10} {args.n / seconds:>9.0f}")
    print(f"{'all':<10} {total_n / total_s:>9.0f}")


if __name__ == "__main__":
    main()
