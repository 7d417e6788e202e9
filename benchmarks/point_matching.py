"""Cost of the point rewards: radius-pruned Hungarian matching vs one dense assignment, and a whole reward call.

Run (alone on the machine: two torch processes at once slow each other): .venv/bin/python benchmarks/point_matching.py [--points 500] [--repeats 5]
     [--radius 8] [--json FILE]

Measured side by side in one run, alternating the two methods after an untimed warm-up (so load on the machine
hits both alike), on a crowd of ``--points`` true points and as many predictions (each a true point moved by a
few pixels, plus as many random ones) in a 1024x768 image:

* ``pruned``: :func:`crowdvlm.pointing.matching.match_points` (KD-tree pairs within the radius, one small
  assignment per connected component);
* ``dense``: ``linear_sum_assignment`` on the full distance matrix (what a direct implementation does);
* ``reward``: a whole ``point_f1`` call on one completion listing the predictions as text (parse + map + match);
* ``capped``: the same call on a 10^4-point answer, capped at ``max_points`` (default 5000) of the reward.

Prints the median milliseconds of each, the dense / pruned ratio, and one tiny-model generation of a point
answer (the cheapest generation step there is; a 3B model's is far slower) for scale.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--points", type=int, default=500, help="true points, and as many predictions (default: 500)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (default: 5)")
    parser.add_argument("--radius", type=float, default=8.0, help="matching radius in pixels (default: 8)")
    parser.add_argument(
        "--no-generation", action="store_true", help="skip the tiny-model generation reference"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import numpy as np
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    from crowdvlm.pointing.matching import match_points
    from crowdvlm.rewards import build_reward

    rng = np.random.default_rng(0)
    n = args.points
    true = rng.uniform(0, (1024, 768), (n, 2))
    near = true[: n // 2] + rng.normal(0, args.radius / 3, (n // 2, 2))
    pred = np.clip(np.concatenate([near, rng.uniform(0, (1024, 768), (n - n // 2, 2))]), 0, (1024, 768))

    def dense():
        cost = cdist(pred, true)
        rows, cols = linear_sum_assignment(np.where(cost <= args.radius, cost, 1e9))
        return int((cost[rows, cols] <= args.radius).sum())

    assert dense() == match_points(pred, true, args.radius).matched  # the same answer, or no benchmark

    def listing(points) -> str:
        return (
            json.dumps([{"point_2d": [round(x), round(y)], "label": "person"} for x, y in points])
            + "<answer>1</answer>"
        )

    reward = build_reward("point_f1", radius=args.radius)
    columns = {
        "solution": [n],
        "points": [true.tolist()],
        "image_size": [[1024, 768]],
        "frame_size": [[1024, 768]],
    }
    text = listing(pred)
    huge = listing(rng.uniform(0, (1024, 768), (10_000, 2)))

    methods = {
        "pruned": lambda: match_points(pred, true, args.radius),
        "dense": dense,
        "reward": lambda: reward([text], **columns),
        "capped": lambda: reward([huge], **columns),
    }
    for fn in methods.values():  # warm-up: imports, caches
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(_median_ms(fn, 1))
    result = {name: statistics.median(v) for name, v in times.items()}
    result["dense_over_pruned"] = result["dense"] / result["pruned"]
    if not args.no_generation:
        result["tiny_generation"] = _tiny_generation_ms(text[:2000])
    result.update(
        points=n, radius=args.radius, repeats=args.repeats, machine=platform.processor() or platform.machine()
    )
    for name in ("pruned", "dense", "reward", "capped", "tiny_generation"):
        if name in result:
            print(f"{name:>16}: {result[name]:9.2f} ms")
    print(f"dense / pruned: {result['dense_over_pruned']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _tiny_generation_ms(target: str) -> float:
    """One generation of 256 new tokens by the tiny model, for scale (the real model's step is far slower)."""
    import tempfile

    from PIL import Image

    from crowdvlm.evaluate.backends.base import EvalItem
    from crowdvlm.evaluate.backends.hf_backend import HFBackend
    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.prompts import build_prompt

    with tempfile.TemporaryDirectory(prefix="point-bench-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny", seed=0)
        Image.new("RGB", (224, 168)).save(Path(tmp) / "i.png")
        backend = HFBackend.load(model_dir, max_new_tokens=256, device="cpu")
        item = EvalItem(
            "i",
            "bench",
            Path(tmp) / "i.png",
            build_prompt("How many people are in the image?", "eval", "points"),
        )
        prepared = backend.prepare([item])
        backend.generate(prepared)  # warm-up
        start = time.perf_counter()
        backend.generate(prepared)
        return 1000 * (time.perf_counter() - start)


if __name__ == "__main__":
    raise SystemExit(main())
