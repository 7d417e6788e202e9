"""Cost of the image check that runs before training, against decoding the same images as training does.

Writes N JPEGs of one size, then times, side by side in one run: ``ImageCheck`` with a Qwen-VL processor's
size rule (what ``crowdvlm train`` runs on every image before loading a model), and ``open_image`` (a full
RGB decode, what each training step pays per image). Prints images/s for each and their ratio.

Run: .venv/bin/python benchmarks/image_check_speed.py [--n 200] [--size 1024x768]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from crowdvlm.data.images import ImageCheck, open_image, processor_size_rule
from crowdvlm.modeling.tiny import build_tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--size", default="1024x768", help="WxH of each JPEG")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    from transformers import AutoProcessor

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.n):
            path = tmp / f"{i:05d}.jpg"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
            paths.append(path)
        rule = processor_size_rule(AutoProcessor.from_pretrained(build_tiny_model(tmp / "model")))
        check = ImageCheck(rule)

        timings = {}
        for name, fn in (("check", lambda p: check(p)), ("full_decode", open_image)):
            start = time.perf_counter()
            for path in paths:
                fn(path)
            timings[name] = args.n / (time.perf_counter() - start)
    print(f"{args.n} JPEGs of {w}x{h}, one process")
    print(f"image check (decode + processor size rule): {timings['check']:8.1f} images/s")
    print(f"full RGB decode (what training pays):        {timings['full_decode']:8.1f} images/s")
    ratio = timings["check"] / timings["full_decode"]
    print(
        json.dumps(
            {
                "check_images_per_s": round(timings["check"], 1),
                "decode_images_per_s": round(timings["full_decode"], 1),
                "ratio": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
