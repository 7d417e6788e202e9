"""Seconds per GRPO step and training-pass activation memory: stock trl.GRPOTrainer vs crowdvlm's
GroupSharedGRPOTrainer, side by side.

Two shapes, each on its own tiny random-weight Qwen2.5-VL (built with max_pixels = the image's pixels, so an
image keeps full resolution: (size/14)^2 patch rows, a quarter as many image tokens):

- ``a``: 448x448 images (1,024 patch rows, 256 image tokens), 32 new tokens;
- ``b``: counting-like, 896x896 images (4,096 patch rows, 1,024 image tokens), 64 new tokens;
- ``r`` (proportional): shape b's images and tokens on a model scaled down from the family's real checkpoint
  (Qwen2.5-VL-3B, Qwen3-VL-4B, Qwen3.5-0.8B: :mod:`crowdvlm.modeling.proportional`), widths / 8 and depths and
  vocabulary chosen so that the shares of one sample's forward compute in the vision tower, the decoder layers
  and the LM head are the real model's (printed, real and scaled). The tiny models of a/b spend most of a step
  outside the language model; shape r is the CPU proxy of a real model's compute. It times stock and crowdvlm
  only (``--ablations`` adds the switches).

Every trainer gets the same data (one prompt of G = 8 rows per step, one image each), exactly the shape's new
tokens per completion, beta = 0.04 (a reference model) and the same seed. Steps alternate between the trainers
in one process (the order flips every step), so contention from other work hits all of them; each step is
timed from the trainer's ``on_step_begin`` to its ``on_step_end`` (generation, scoring, reference pass,
forward, backward, optimizer), and the first ``--warmup`` steps of each are dropped. A forward hook on each
vision tower counts the patch rows it encodes. The training pass's activation memory is measured exactly: the
bytes of the tensors autograd saves for backward during ``compute_loss`` (``saved_tensors_hooks``; each storage
counted once, parameters left out), which depends only on the shapes, not on the machine's load; it is taken
on the first (untimed) step with gradient checkpointing off, so that everything the pass keeps is counted (TRL
turns checkpointing on by default, and a checkpointed layer saves nothing through autograd's hooks); the
``checkpointed`` figure is the same count on a later step, as configured.

``crowdvlm-share_prefix=off`` (always timed) is crowdvlm with the packed prompts off, so the effect of
that switch is its ratio to ``crowdvlm``; ``--ablations`` also times each other switch off.

Run (alone on the machine): OMP_NUM_THREADS=2 .venv/bin/python benchmarks/grpo_step.py [--steps 8]
     [--shapes a b r] [--ablations] [--family qwen2_5_vl|qwen3_vl|qwen3_5]  (Qwen3 families have 16-px patches)
The last line printed is JSON; ``ratio`` is stock s/step / crowdvlm s/step (larger is faster) and
``memory_ratio`` stock / crowdvlm activation bytes, both for the last shape run (``b`` by default);
``cpu_ratio`` is the same ratio on this process's CPU time per step, which other work on the machine disturbs less.
"""

from __future__ import annotations

import argparse
import contextlib
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


def dot_dataset(n: int, size: int, seed: int):
    """A ``datasets.Dataset`` of :func:`dot_images`: one counting question per image (prompt, image, solution)."""
    from datasets import Dataset

    images, counts = dot_images(n, size, seed)
    question = "How many dots are in the image? Output the final answer in <answer> </answer> tags."
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return Dataset.from_dict({"prompt": [prompt] * n, "image": images, "solution": counts})


SHAPES = {
    "a": {"image_size": 448, "new_tokens": 32},
    "b": {"image_size": 896, "new_tokens": 64},
    "r": {"image_size": 896, "new_tokens": 64, "proportional": True},
}


class SavedActivationBytes:
    """Bytes of the tensors autograd holds for backward in ``compute_loss`` (each storage once, parameters aside):
    ``crowdvlm.plan.activations.SavedBytes``, the planner's own count, read while the loss is alive.

    The first call runs with gradient checkpointing off (TRL's ``disable_gradient_checkpointing``), so that
    everything the training pass would keep is counted (``full``); later calls run as configured (``as_run``:
    with checkpointing on, only what the checkpointed layers keep outside themselves).
    """

    def __init__(self, trainer) -> None:
        from trl.models.utils import disable_gradient_checkpointing

        from crowdvlm.plan.activations import SavedBytes

        self.full: int | None = None
        self.as_run: int | None = None
        original = trainer.compute_loss

        def compute_loss(*args, **kwargs):
            counter = SavedBytes(exclude=trainer.model)
            first = self.full is None
            checkpointing = (
                disable_gradient_checkpointing(trainer.model, trainer.args.gradient_checkpointing_kwargs)
                if first
                else contextlib.nullcontext()
            )
            with checkpointing, counter.counting():
                loss = original(*args, **kwargs)
            if first:
                self.full = counter.total()
            else:
                self.as_run = counter.total()
            return loss

        trainer.compute_loss = compute_loss


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


def timed_trainer(
    cls,
    model_dir: Path,
    out_dir: Path,
    dataset,
    args,
    new_tokens: int,
    count_from: int | None = None,
    **config_overrides,
):
    """A trainer of class ``cls`` on a fresh copy of the tiny model, with step timing and vision-row counting.

    Returns ``(trainer, timer, counters)``: ``timer.seconds`` and ``timer.cpu_seconds`` per step, one
    :class:`VisionRowCounter` on the policy's vision tower and one on the reference model's (when there is one).
    The counters count while ``active``: their caller switches them, or, with ``count_from`` (one ``train()`` of
    many steps), the timer does, from that step on. ``config_overrides`` replace or add ``GRPOConfig`` fields
    (benchmarks/grpo_step_vllm.py: ``use_vllm``; benchmarks/grpo_cluster.py: its step count and device)."""
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
            self.cpu_seconds: list[
                float
            ] = []  # this process's CPU time: less hit by other work than wall time
            self.counters: list[VisionRowCounter] = []
            self._start = self._cpu_start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if count_from is not None:  # count the timed steps only
                for counter in self.counters:
                    counter.active = state.global_step >= count_from
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu_start)

    settings = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.num_generations * args.prompts_per_step,
        num_generations=args.num_generations,
        max_completion_length=new_tokens,
        generation_kwargs={"min_new_tokens": new_tokens},  # every completion is exactly new_tokens long
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
    # The config first: under ZeRO-3 (grpo_cluster.py) it switches on deepspeed.zero.Init, so the model loads
    # partitioned.
    config = GRPOConfig(**{**settings, **config_overrides})
    set_seed(args.seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="float32")
    processor = AutoProcessor.from_pretrained(model_dir)
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
    # Under DeepSpeed the reference model is an engine of its own: count the model inside it.
    reference = getattr(trainer.ref_model, "module", trainer.ref_model)
    timer.counters = [VisionRowCounter(trainer.model)]
    if reference is not None:
        timer.counters.append(VisionRowCounter(reference))
    return trainer, timer, timer.counters


def build_trainer(cls, model_dir: Path, out_dir: Path, dataset, args, new_tokens: int, **config_overrides):
    """:func:`timed_trainer` that also counts the training pass's activation bytes (:class:`SavedActivationBytes`):
    ``(trainer, timer, counters, memory)``."""
    trainer, timer, counters = timed_trainer(
        cls, model_dir, out_dir, dataset, args, new_tokens, **config_overrides
    )
    return trainer, timer, counters, SavedActivationBytes(trainer)


def vision_rows_per_step(counters, steps: int) -> dict[str, int]:
    """``{"policy/grad": rows, ...}``: the patch rows each counter saw per timed step, by grad mode (zeros left out)."""
    rows = {}
    for label, counter in zip(("policy", "ref"), counters, strict=False):
        for mode, n in counter.rows.items():
            if n:
                rows[f"{label}/{mode}"] = n // steps
    return rows


def steps_and_versions(args) -> dict:
    """The end of a benchmark's JSON line: timed and warm-up steps per trainer, and the versions that ran them."""
    import torch
    import trl

    return {
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "trl": trl.__version__,
        "torch": torch.__version__,
    }


def print_shares(family: str, scaled, processor, prompt, patch_rows: int, new_tokens: int) -> dict:
    """Print (and return) the compute shares of the real model and of ``scaled`` at the measured prompt length."""
    from crowdvlm.modeling.proportional import PARTS, shares_table

    text = processor.apply_chat_template(prompt, add_generation_prompt=True)
    image_tokens = patch_rows // 4
    prompt_tokens = (
        len(processor.tokenizer(text)["input_ids"]) - 1 + image_tokens
    )  # one <|image_pad|> per token
    table = shares_table(family, scaled, image_tokens, prompt_tokens, new_tokens)
    t, v = scaled.text, scaled.vision
    print(
        f"shape r model: {t.num_layers} decoder layers ({'/'.join(sorted(set(t.layer_types)))}), hidden "
        f"{t.hidden_size}, MLP {t.intermediate_size}, {t.num_heads}/{t.num_kv_heads} heads of {t.head_dim}, "
        f"vocabulary {t.vocab_size}; vision {v.depth} blocks, hidden {v.hidden_size}, MLP {v.intermediate_size}"
    )
    for label, shares in table.items():
        parts = ", ".join(f"{part} {100 * shares[part]:.1f} %" for part in PARTS)
        print(f"  compute shares, {label:<6} ({shares['gmacs']:.1f} GMACs per sample forward): {parts}")
    return {label: {k: round(x, 4) for k, x in shares.items()} for label, shares in table.items()}


def run_shape(name: str, args, work: Path) -> dict:
    """Build the shape's model and data, alternate the trainers' steps, and summarise each trainer."""
    import trl
    from transformers import AutoProcessor

    from crowdvlm.modeling.proportional import build_scaled_model
    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.modeling.tiny_families import FAMILY_NAMES, TOKEN_PIXELS, check_family
    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    image_size, new_tokens = SHAPES[name]["image_size"], SHAPES[name]["new_tokens"]
    proportional = SHAPES[name].get("proportional", False)
    if proportional:
        model_dir, scaled = build_scaled_model(
            check_family(args.family), work / f"scaled-{name}", image_size, new_tokens, args.seed
        )
    else:
        model_dir = build_tiny_model(
            work / f"tiny-{name}",
            family=check_family(args.family),
            max_pixels=image_size * image_size,
            seed=args.seed,
        )
    dataset = dot_dataset((args.warmup + args.steps) * args.prompts_per_step, image_size, args.seed)

    # The processor must keep the image at full resolution: (size/patch)^2 patch rows.
    processor = AutoProcessor.from_pretrained(model_dir)
    rows_per_image = int(
        processor.image_processor(images=[dataset[0]["image"]], return_tensors="pt")["pixel_values"].shape[0]
    )
    expected_rows = (image_size // (TOKEN_PIXELS[args.family] // 2)) ** 2
    if rows_per_image != expected_rows:
        raise SystemExit(f"{image_size}px image gave {rows_per_image} patch rows, expected {expected_rows}")

    variants = {"stock": (trl.GRPOTrainer, {}), "crowdvlm": (GroupSharedGRPOTrainer, {})}
    if not proportional or args.ablations:
        variants["crowdvlm-share_prefix=off"] = (GroupSharedGRPOTrainer, {"share_prefix": False})
    if args.ablations:
        for switch in ("share_processing", "share_prefill", "share_vision"):
            variants[f"crowdvlm-{switch}=off"] = (GroupSharedGRPOTrainer, {switch: False})
    runs = {}
    for variant, (cls, switches) in variants.items():
        trainer, timer, counters, memory = build_trainer(
            cls, model_dir, work / name / variant, dataset, args, new_tokens
        )
        for switch, value in switches.items():
            setattr(trainer, switch, value)
        runs[variant] = {"trainer": trainer, "timer": timer, "counters": counters, "memory": memory}

    model_name = f"tiny {FAMILY_NAMES[args.family]}"
    shares = None
    if proportional:
        model_name = scaled.name
        shares = print_shares(
            args.family, scaled, processor, dataset[0]["prompt"], rows_per_image, new_tokens
        )
    print(
        f"shape {name}: {model_name}, G={args.num_generations}, {args.prompts_per_step} prompt(s)/step, "
        f"{image_size}x{image_size} images ({rows_per_image} patch rows, {rows_per_image // 4} image tokens), "
        f"{new_tokens} new tokens, beta={args.beta}, {args.threads} threads; "
        f"{args.warmup} warm-up + {args.steps} timed steps each, alternating"
    )
    for step in range(args.warmup + args.steps):
        order = list(runs) if step % 2 == 0 else list(reversed(runs))  # alternate who goes first
        for variant in order:
            run = runs[variant]
            for counter in run["counters"]:
                counter.active = step >= args.warmup
            run["trainer"].train()

    results = {}
    for variant, run in runs.items():
        seconds = run["timer"].seconds[args.warmup :]
        cpu_seconds = run["timer"].cpu_seconds[args.warmup :]
        rows = vision_rows_per_step(run["counters"], args.steps)
        results[variant] = {
            "s_per_step": statistics.median(seconds),
            "min": min(seconds),
            "max": max(seconds),
            "cpu_s_per_step": statistics.median(cpu_seconds),
            "activation_bytes": run["memory"].full,
            "checkpointed_activation_bytes": run["memory"].as_run,
            "vision_rows_per_step": sum(rows.values()),
            "vision_rows": rows,
            "fallbacks": getattr(run["trainer"], "sharing_fallbacks", {}),
        }
        r = results[variant]
        print(
            f"  {variant:<26} median {r['s_per_step']:.3f} s/step ({r['min']:.3f}-{r['max']:.3f}), "
            f"CPU {r['cpu_s_per_step']:.3f} s/step; activations {r['activation_bytes'] / 2**20:.1f} MiB "
            f"({r['checkpointed_activation_bytes'] / 2**20:.1f} MiB checkpointed); "
            f"vision rows/step {r['vision_rows_per_step']} "
            f"{rows}" + (f"; fallbacks {r['fallbacks']}" if r["fallbacks"] else "")
        )
    stock, ours = results["stock"], results["crowdvlm"]
    summary = {
        "ratio": round(stock["s_per_step"] / ours["s_per_step"], 3),
        "memory_ratio": round(stock["activation_bytes"] / ours["activation_bytes"], 3),
        "cpu_ratio": round(stock["cpu_s_per_step"] / ours["cpu_s_per_step"], 3),
        "checkpointed_memory_ratio": round(
            stock["checkpointed_activation_bytes"] / ours["checkpointed_activation_bytes"], 3
        ),
        "stock_s_per_step": round(stock["s_per_step"], 4),
        "crowdvlm_s_per_step": round(ours["s_per_step"], 4),
        "stock_cpu_s_per_step": round(stock["cpu_s_per_step"], 4),
        "crowdvlm_cpu_s_per_step": round(ours["cpu_s_per_step"], 4),
        "stock_activation_bytes": stock["activation_bytes"],
        "crowdvlm_activation_bytes": ours["activation_bytes"],
        "stock_vision_rows_per_step": stock["vision_rows_per_step"],
        "crowdvlm_vision_rows_per_step": ours["vision_rows_per_step"],
        "image_size": image_size,
        "patch_rows_per_image": rows_per_image,
        "new_tokens": new_tokens,
        "family": args.family,
    }
    if shares is not None:
        summary["shares"] = shares
    for variant in results:
        if variant.startswith("crowdvlm-"):
            summary[f"{variant}_s_per_step"] = round(results[variant]["s_per_step"], 4)
            summary[f"{variant}_cpu_s_per_step"] = round(results[variant]["cpu_s_per_step"], 4)
            summary[f"{variant}_activation_bytes"] = results[variant]["activation_bytes"]
    print(
        f"  ratio (stock s/step / crowdvlm s/step): {summary['ratio']:.2f}x (CPU time {summary['cpu_ratio']:.2f}x); "
        f"activation memory ratio (stock / crowdvlm): {summary['memory_ratio']:.2f}x "
        f"({summary['checkpointed_memory_ratio']:.2f}x checkpointed)"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per trainer first")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["a", "b"])
    parser.add_argument("--num_generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--prompts_per_step", type=int, default=1)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablations", action="store_true", help="also time each other sharing switch off")
    parser.add_argument(
        "--family", default="qwen2_5_vl", help="tiny model family: qwen2_5_vl, qwen3_vl, qwen3_5"
    )
    args = parser.parse_args()

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="grpo_step_"))
    shapes = {name: run_shape(name, args, work) for name in args.shapes}

    print(
        f"{'shape':<6} {'stock s/step':>13} {'crowdvlm s/step':>16} {'ratio':>7} {'CPU ratio':>10} "
        f"{'prefix off s/step':>18} {'memory ratio':>13}"
    )
    for name, r in shapes.items():
        print(
            f"{name:<6} {r['stock_s_per_step']:>13.3f} {r['crowdvlm_s_per_step']:>16.3f} {r['ratio']:>6.2f}x "
            f"{r['cpu_ratio']:>9.2f}x {r.get('crowdvlm-share_prefix=off_s_per_step', float('nan')):>18.3f} "
            f"{r['memory_ratio']:>12.2f}x"
        )
    last = shapes[args.shapes[-1]]
    summary = {
        "ratio": last["ratio"],
        "memory_ratio": last["memory_ratio"],
        "cpu_ratio": last["cpu_ratio"],
        "shape": args.shapes[-1],
        "shapes": shapes,
        "num_generations": args.num_generations,
        "prompts_per_step": args.prompts_per_step,
        "beta": args.beta,
        "threads": args.threads,
        **steps_and_versions(args),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
