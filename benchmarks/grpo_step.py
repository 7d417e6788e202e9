"""Seconds per GRPO step: stock trl.GRPOTrainer vs crowdvlm's GroupSharedGRPOTrainer, side by side (issue 7).

Both trainers get the same tiny random-weight Qwen2.5-VL (built here with max_pixels = 448*448, so a 448x448
image really is 1,024 patch rows / 256 image tokens), the same data (one prompt of G = 8 rows per step, one
448x448 image each), exactly 32 new tokens per completion, beta = 0.04 (a reference model) and the same seed.
Steps alternate between the trainers in one process; each step is timed from the trainer's ``on_step_begin``
to its ``on_step_end`` (generation, scoring, reference pass, forward, backward, optimizer), and the first
``--warmup`` steps of each are dropped. A forward hook on each vision tower counts the patch rows it encodes.

Run: OMP_NUM_THREADS=2 flock /tmp/crowdvlm-cpu.lock .venv/bin/python benchmarks/grpo_step.py [--steps 8]
     [--ablations]  (also time the shared trainer with one sharing switch off at a time)
     [--family qwen2_5_vl|qwen3_vl|qwen3_5]  (the tiny model's architecture; Qwen3 families have 16-px patches)
The last line printed is JSON; ``ratio`` is stock s/step / crowdvlm s/step (larger is faster).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def dot_images(n: int, size: int, seed: int):
    """``n`` white ``size`` x ``size`` images with 5-40 random coloured dots, and their counts."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, counts = [], []
    for _ in range(n):
        image = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(image)
        count = int(rng.integers(5, 41))
        for x, y in rng.integers(8, size - 8, size=(count, 2)):
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=tuple(int(c) for c in rng.integers(0, 200, 3)))
        images.append(image)
        counts.append(count)
    return images, counts


class VisionRowCounter:
    """Patch rows encoded by a vision tower, by grad mode, while ``active``."""

    def __init__(self, model) -> None:
        import torch

        self.rows = {"no_grad": 0, "grad": 0}
        self.active = False
        visual = next(m for name, m in model.named_modules() if name.endswith("visual"))

        def hook(module, args, output):
            if self.active:
                self.rows["grad" if torch.is_grad_enabled() else "no_grad"] += args[0].shape[0]

        visual.register_forward_hook(hook)


def build_trainer(cls, model_dir: Path, out_dir: Path, dataset, args):
    """A trainer of class ``cls`` on a fresh copy of the tiny model, with step timing and vision-row counting."""
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        PrinterCallback,
        TrainerCallback,
        set_seed,
    )
    from trl import GRPOConfig

    from crowdvlm.rewards import count_format_reward, fgrpr_precision_reward

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *_, **__):
            self._start = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self._start)

    set_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="float32")
    processor = AutoProcessor.from_pretrained(model_dir)
    config = GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.num_generations * args.prompts_per_step,
        num_generations=args.num_generations,
        max_completion_length=args.new_tokens,
        generation_kwargs={"min_new_tokens": args.new_tokens},  # every completion is exactly new_tokens long
        beta=args.beta,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        max_steps=1,  # one step per train() call; calls alternate between the trainers
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=args.seed,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = cls(
        model=model,
        reward_funcs=[fgrpr_precision_reward, count_format_reward],
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # per-step log dicts would drown the results
    counters = [VisionRowCounter(trainer.model)]
    if trainer.ref_model is not None:
        counters.append(VisionRowCounter(trainer.ref_model))
    return trainer, timer, counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per trainer first")
    parser.add_argument("--num_generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--prompts_per_step", type=int, default=1)
    parser.add_argument("--image_size", type=int, default=448)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablations", action="store_true", help="also time each sharing switch turned off")
    parser.add_argument(
        "--family", default="qwen2_5_vl", help="tiny model family: qwen2_5_vl, qwen3_vl, qwen3_5"
    )
    args = parser.parse_args()

    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoProcessor

    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.modeling.tiny_families import FAMILY_NAMES, TOKEN_PIXELS, check_family
    from crowdvlm.train.group_sharing import GroupSharedGRPOTrainer

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="grpo_step_"))
    pixels = args.image_size * args.image_size
    model_dir = build_tiny_model(
        work / "tiny", family=check_family(args.family), max_pixels=pixels, seed=args.seed
    )

    n_prompts = (args.warmup + args.steps) * args.prompts_per_step
    images, counts = dot_images(n_prompts, args.image_size, args.seed)
    question = "How many dots are in the image? Output the final answer in <answer> </answer> tags."
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    dataset = Dataset.from_dict({"prompt": [prompt] * n_prompts, "image": images, "solution": counts})

    # The processor must keep 448x448 at full resolution: (448/14)^2 = 1024 patch rows (16-px patches: 784).
    processor = AutoProcessor.from_pretrained(model_dir)
    rows_per_image = int(
        processor.image_processor(images=[images[0]], return_tensors="pt")["pixel_values"].shape[0]
    )
    expected_rows = (args.image_size // (TOKEN_PIXELS[args.family] // 2)) ** 2
    if rows_per_image != expected_rows:
        raise SystemExit(
            f"{args.image_size}px image gave {rows_per_image} patch rows, expected {expected_rows}"
        )

    variants = {"stock": (trl.GRPOTrainer, {}), "crowdvlm": (GroupSharedGRPOTrainer, {})}
    if args.ablations:
        for switch in ("share_processing", "share_prefill", "share_vision"):
            variants[f"crowdvlm-{switch}=off"] = (GroupSharedGRPOTrainer, {switch: False})
    runs = {}
    for name, (cls, switches) in variants.items():
        trainer, timer, counters = build_trainer(cls, model_dir, work / name, dataset, args)
        for switch, value in switches.items():
            setattr(trainer, switch, value)
        runs[name] = {"trainer": trainer, "timer": timer, "counters": counters}

    print(
        f"tiny {FAMILY_NAMES[args.family]}, G={args.num_generations}, {args.prompts_per_step} prompt(s)/step, "
        f"{args.image_size}x{args.image_size} images ({rows_per_image} patch rows), {args.new_tokens} new tokens, "
        f"beta={args.beta}, {args.threads} threads; {args.warmup} warm-up + {args.steps} timed steps each, alternating"
    )
    for step in range(args.warmup + args.steps):
        order = list(runs) if step % 2 == 0 else list(reversed(runs))  # alternate who goes first
        for name in order:
            run = runs[name]
            for counter in run["counters"]:
                counter.active = step >= args.warmup
            run["trainer"].train()

    results = {}
    for name, run in runs.items():
        seconds = run["timer"].seconds[args.warmup :]
        rows = {}
        for label, counter in zip(("policy", "ref"), run["counters"], strict=False):
            for mode, n in counter.rows.items():
                if n:
                    rows[f"{label}/{mode}"] = n // args.steps
        results[name] = {
            "s_per_step": statistics.median(seconds),
            "min": min(seconds),
            "max": max(seconds),
            "vision_rows_per_step": sum(rows.values()),
            "vision_rows": rows,
            "fallbacks": getattr(run["trainer"], "sharing_fallbacks", {}),
        }
        r = results[name]
        print(
            f"{name:<32} median {r['s_per_step']:.3f} s/step ({r['min']:.3f}-{r['max']:.3f}); "
            f"vision rows/step {r['vision_rows_per_step']} {rows}"
        )

    ratio = results["stock"]["s_per_step"] / results["crowdvlm"]["s_per_step"]
    print(f"ratio (stock s/step / crowdvlm s/step): {ratio:.2f}x")
    summary = {
        "ratio": round(ratio, 3),
        "family": args.family,
        "stock_s_per_step": round(results["stock"]["s_per_step"], 4),
        "crowdvlm_s_per_step": round(results["crowdvlm"]["s_per_step"], 4),
        "stock_vision_rows_per_step": results["stock"]["vision_rows_per_step"],
        "crowdvlm_vision_rows_per_step": results["crowdvlm"]["vision_rows_per_step"],
        "num_generations": args.num_generations,
        "prompts_per_step": args.prompts_per_step,
        "image_size": args.image_size,
        "patch_rows_per_image": rows_per_image,
        "new_tokens": args.new_tokens,
        "beta": args.beta,
        "threads": args.threads,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "trl": trl.__version__,
        "torch": torch.__version__,
    }
    for name in results:
        if name.startswith("crowdvlm-"):
            summary[f"{name}_s_per_step"] = round(results[name]["s_per_step"], 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
