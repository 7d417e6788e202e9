"""Seconds per GRPO step with vLLM generating: stock trl.GRPOTrainer vs crowdvlm's GroupSharedGRPOTrainer, both
with vLLM colocated (TRL 1.16's ``vllm_mode="colocate"``), side by side; and crowdvlm with Hugging Face
``generate`` vs crowdvlm with vLLM.

The sibling of ``benchmarks/grpo_step.py`` (its images, trainer set-up and step timer, imported): one tiny
random-weight Qwen2.5-VL whose head size vLLM's CPU attention accepts (``--hidden-size 128``: head_dim 32),
one prompt of G = 8 rows per step, exactly the shape's new tokens per completion (``min_tokens`` for vLLM,
``min_new_tokens`` for ``generate``), beta = 0.04, the same seed. Variants:

- ``stock+vllm``: ``trl.GRPOTrainer``, vLLM generating, with crowdvlm's weight sync (``VLLMSyncMixin``):
  TRL 1.16.0's own sync stops at the first step on vLLM's CPU build (it repacks the vision tower's linear
  weights, see crowdvlm.train.vllm_sync), so both vLLM variants sync the same way and differ only in the
  trainer;
- ``crowdvlm+vllm``: what ``crowdvlm train grpo`` builds with ``use_vllm: true`` (GroupSharedGRPOTrainer
  behind the same sync);
- ``crowdvlm+hf``: GroupSharedGRPOTrainer with ``generate`` (one prefill per group).

Steps alternate between the trainers in one process (the order flips every step), each step timed from
``on_step_begin`` to ``on_step_end``; every step syncs the weights into vLLM as training does (the benchmark
calls ``train()`` once per step, so it re-arms TRL's per-step sync). ``gen`` is the time inside
``_generate_single_turn`` (the weight sync included), its share of the step is ``gen share``.

Run (the vLLM environment, alone on the machine):
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/grpo_step_vllm.py [--steps 3] [--shape a]
The last line printed is JSON: ``ratio`` is stock+vllm s/step / crowdvlm+vllm s/step (larger is faster),
``vllm_vs_hf`` is crowdvlm+hf s/step / crowdvlm+vllm s/step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # grpo_step, beside this file

from grpo_step import SHAPES, build_trainer, dot_dataset  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def time_generation(trainer) -> list[float]:
    """Seconds spent in each call of the trainer's ``_generate_single_turn`` (vLLM's weight sync included)."""
    seconds: list[float] = []
    original = trainer._generate_single_turn

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    trainer._generate_single_turn = timed
    return seconds


def vision_token_bias(model_dir: Path) -> dict[int, float]:
    """vLLM ``logit_bias`` that keeps the random model from sampling image/video placeholder tokens (the
    trainer's log-prob pass would count a sampled ``<|image_pad|>`` as an image token and refuse the row)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return {tokenizer.convert_tokens_to_ids(name): -100.0 for name in names}


def variants(args, model_dir: Path) -> dict:
    from crowdvlm.train.grpo import trainer_class
    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    new_tokens = SHAPES[args.shape]["new_tokens"]
    sampling = {"min_tokens": new_tokens, "logit_bias": vision_token_bias(model_dir)}
    vllm = {"use_vllm": True, "vllm_mode": "colocate", "generation_kwargs": sampling}
    return {
        "stock+vllm": (trainer_class(share_prompt=False, use_vllm=True), vllm),
        "crowdvlm+vllm": (trainer_class(share_prompt=True, use_vllm=True), vllm),
        "crowdvlm+hf": (GroupSharedGRPOTrainer, {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per trainer first")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="a", help="grpo_step.py's shapes")
    parser.add_argument("--hidden-size", type=int, default=128, help="text width (128: head_dim 32)")
    parser.add_argument("--num_generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--prompts_per_step", type=int, default=1)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    import trl
    import vllm

    from crowdvlm.modeling.tiny import build_tiny_model

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="grpo_step_vllm_"))
    image_size, new_tokens = SHAPES[args.shape]["image_size"], SHAPES[args.shape]["new_tokens"]
    model_dir = build_tiny_model(
        work / "tiny", hidden_size=args.hidden_size, max_pixels=image_size * image_size, seed=args.seed
    )
    dataset = dot_dataset((args.warmup + args.steps) * args.prompts_per_step, image_size, args.seed)

    runs = {}
    for name, (cls, overrides) in variants(args, model_dir).items():
        trainer, timer, _, _ = build_trainer(
            cls, model_dir, work / name, dataset, args, new_tokens, **overrides
        )
        runs[name] = {"trainer": trainer, "timer": timer, "generation": time_generation(trainer)}
    print(
        f"shape {args.shape}: tiny Qwen2.5-VL (hidden {args.hidden_size}), G={args.num_generations}, "
        f"{image_size}x{image_size} images, {new_tokens} new tokens, beta={args.beta}, {args.threads} threads; "
        f"{args.warmup} warm-up + {args.steps} timed steps each, alternating"
    )
    for step in range(args.warmup + args.steps):
        order = list(runs) if step % 2 == 0 else list(reversed(runs))
        for name in order:
            trainer = runs[name]["trainer"]
            if trainer.use_vllm:
                trainer._last_loaded_step = (
                    -1
                )  # each train() restarts at step 0: sync every step, as training
            trainer.train()

    results = {}
    for name, run in runs.items():
        seconds = run["timer"].seconds[args.warmup :]
        generation = run["generation"][args.warmup :]
        step, gen = statistics.median(seconds), statistics.median(generation)
        results[name] = {
            "s_per_step": round(step, 4),
            "gen_s": round(gen, 4),
            "gen_share": round(gen / step, 3),
        }
        print(
            f"  {name:<14} median {step:.3f} s/step ({min(seconds):.3f}-{max(seconds):.3f}), "
            f"generation {gen:.3f} s ({gen / step:.0%} of the step)"
        )
    summary = {
        "ratio": round(results["stock+vllm"]["s_per_step"] / results["crowdvlm+vllm"]["s_per_step"], 3),
        "vllm_vs_hf": round(results["crowdvlm+hf"]["s_per_step"] / results["crowdvlm+vllm"]["s_per_step"], 3),
        "results": results,
        "shape": args.shape,
        "hidden_size": args.hidden_size,
        "num_generations": args.num_generations,
        "timed_steps": args.steps,
        "threads": args.threads,
        "trl": trl.__version__,
        "torch": torch.__version__,
        "vllm": vllm.__version__,
    }
    print(
        f"  stock+vllm / crowdvlm+vllm: {summary['ratio']:.2f}x; "
        f"crowdvlm+hf / crowdvlm+vllm: {summary['vllm_vs_hf']:.2f}x"
    )
    print(json.dumps(summary))


if __name__ == "__main__":  # vLLM spawns processes: nothing may run on import
    main()
