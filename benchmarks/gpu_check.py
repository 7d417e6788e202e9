"""One command that proves a GPU run: real architectures with random weights, nothing downloaded, under a budget.

    make gpu-check                                   # Qwen2.5-VL-3B, 8 minutes at most
    .venv/bin/python benchmarks/gpu_check.py --model qwen2_5_vl_7b | qwen3_vl_4b | qwen3_vl_8b | qwen3_5_9b
    .venv/bin/python benchmarks/gpu_check.py --size tiny --device cpu   # the same run in miniature (the test)

The model is the published architecture (``crowdvlm.modeling.real_configs``) with random weights and the
project's own tiny tokenizer, the real vocabulary size kept, so the embedding, the LM head and sampling cost
what they really cost. In one run it does:

(a) **equivalence on the GPU's kernels**: crowdvlm's log-prob path (``GroupSharedGRPOTrainer``: the prompt
    packed once per group where the family and kernel allow it) against TRL's per-row one on the same generated
    batch: log-probs (no grad) and every parameter's gradient of the GRPO loss. Tolerances: float32 max
    |d log-prob| <= 1e-4 and gradient relative L2 <= 1e-4; bfloat16 max |d log-prob| <= 5e-2, mean <= 5e-3,
    gradient relative L2 <= 5e-2. Where the packed path did not run (its reasons are logged) the part is
    flagged ``skipped`` with the reason, not passed.
(b) **s/step, stock ``trl.GRPOTrainer`` vs ``GroupSharedGRPOTrainer``** at the paper's setting (bf16, G 8,
    1024x768 images, exactly 256 new tokens, beta 0.04, gradient checkpointing), each with HF generate and, when
    vLLM is installed, vLLM colocate: median s/step, generation's share, decode ms per new token, peak memory
    (``max_memory_allocated``) beside ``crowdvlm plan``'s estimate of it, and model FLOPs utilisation (the stock
    layout's FLOPs, 2 per parameter per token forward and 4 backward, over the card's dense bf16 peak).
(c) the results, also written to ``--out`` (default ``runs/gpu_check/<model>-<time>.json``); the last line printed
    is that JSON. When the budget runs short it degrades by itself: fewer timed steps, then whole parts
    skipped, each listed in ``degraded``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIZES = {  # what --size sets: the paper's setting, and a miniature of it for CPUs
    "real": {"image": "1024x768", "new_tokens": 256, "steps": 3},
    "tiny": {"image": "112x84", "new_tokens": 8, "steps": 1},
}


class Budget:
    """Wall-clock budget of the whole run; parts ask it before they start and record what they gave up."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()
        self.degraded: list[str] = []

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def note(self, what: str) -> None:
        self.degraded.append(what)
        print(f"  degraded: {what}", flush=True)


def environment(device: str) -> dict:
    import torch
    import transformers
    import trl

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "device": device,
        "card": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "card_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        if device == "cuda"
        else None,
    }
    for module, name in (("flash_attn", "flash_attn"), ("fla", "flash_linear_attention"), ("vllm", "vllm")):
        env[name] = importlib.util.find_spec(module) is not None
    return env


def build_model(out: Path, args) -> Path:
    """The model folder: the published architecture with random weights (``--size real``) or the tiny one."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from crowdvlm.modeling.real_configs import real_config, real_family
    from crowdvlm.modeling.tiny import (
        CHAT_TEMPLATES,
        QWEN_SPECIAL_TOKENS,
        build_tiny_model,
        train_tiny_tokenizer,
    )
    from crowdvlm.modeling.tiny_families import tiny_processor

    family = real_family(args.model)
    width, height = args.image_size
    if args.size == "tiny":
        return build_tiny_model(out, family=family, max_pixels=width * height, seed=args.seed)
    tokenizer = train_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    torch.manual_seed(args.seed)
    with torch.device(args.device):  # random init on the GPU: seconds, not minutes
        model = AutoModelForImageTextToText.from_config(real_config(args.model, ids), dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)  # TRL loads the policy and the reference model from the folder
    del model
    processor = tiny_processor(family, tokenizer, CHAT_TEMPLATES[family], 3136, width * height)
    processor.save_pretrained(out)
    return out


def dot_dataset(n: int, width: int, height: int, seed: int):
    """``n`` prompts, each a ``width`` x ``height`` image of random dots and its count."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, counts = [], []
    for _ in range(n):
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        count = int(rng.integers(5, 41))
        for x, y in zip(rng.integers(4, width - 4, count), rng.integers(4, height - 4, count), strict=True):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill="black")
        images.append(image)
        counts.append(count)
    question = "How many dots are in the image? Output the final answer in <answer> </answer> tags."
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return Dataset.from_dict({"prompt": [prompt] * n, "image": images, "solution": counts})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2_5_vl_3b", help="qwen2_5_vl_3b (default), qwen2_5_vl_7b, "
                        "qwen3_vl_4b, qwen3_vl_8b, qwen3_5_9b (or their Hub ids)")  # fmt: skip
    parser.add_argument("--size", choices=sorted(SIZES), default="real", help="real (default) or tiny (CPU)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget (default 8 minutes)")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per trainer (default: by --size)"
    )
    parser.add_argument("--image-size", default=None, help="WIDTHxHEIGHT (default: 1024x768; tiny 112x84)")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="new tokens per completion (default 256)"
    )
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument(
        "--out", default=None, help="the JSON file (default runs/gpu_check/<model>-<time>.json)"
    )
    parser.add_argument("--attn", default="sdpa", help="attention of the timed runs: sdpa (default; the kernel "
                        "crowdvlm packs) or flash_attention_2; the equivalence part tries both")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from crowdvlm.modeling.real_configs import known_model

    if known_model(args.model) is None:
        parser.error(f"unknown --model {args.model!r}")
    size = SIZES[args.size]
    args.steps = args.steps or size["steps"]
    args.new_tokens = args.new_tokens or size["new_tokens"]
    from crowdvlm.plan.estimate import Images

    image = Images.parse(args.image_size or size["image"])
    args.image_size = (image.width, image.height)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU (use --size tiny --device cpu to try the script)")
    args.dtype = "bfloat16" if args.device == "cuda" else "float32"
    env = environment(args.device)
    budget = Budget(args.budget_s)
    out = Path(
        args.out or f"runs/gpu_check/{args.model.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    print(f"gpu_check: {args.model} ({args.size}) on {env['card']}, {args.dtype}, attention {args.attn}, "
          f"G={args.num_generations}, {image.width}x{image.height}, {args.new_tokens} new tokens, "
          f"budget {args.budget_s:.0f} s", flush=True)  # fmt: skip

    from gpu_check_parts import equivalence, time_trainers

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model_dir = build_model(work / "model", args)
    build_seconds = round(time.perf_counter() - started, 1)
    dataset = dot_dataset(2 + args.steps, image.width, image.height, args.seed)
    result = {
        "model": known_model(args.model),
        "size": args.size,
        "environment": env,
        "setting": {
            "dtype": args.dtype,
            "attn_implementation": args.attn,
            "num_generations": args.num_generations,
            "image_size": f"{image.width}x{image.height}",
            "new_tokens": args.new_tokens,
            "beta": 0.04,
            "gradient_checkpointing": True,
        },
        "build_seconds": build_seconds,
        "equivalence": equivalence(model_dir, dataset, args, budget, env),
        "speed": time_trainers(model_dir, dataset, args, budget, env),
    }
    result["degraded"] = budget.degraded
    result["seconds"] = round(args.budget_s - budget.left(), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out}")
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
