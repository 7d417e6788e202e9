"""`crowdvlm plan RECIPE`: will this training run fit on the GPUs, before any weight loads.

    crowdvlm plan recipes/qwen2_5_vl_3b/grpo_fgrpr.yaml --gpus 8 --gpu-memory 80GiB

prints the per-GPU estimate part by part (parameters, gradients, optimizer states, reference model,
activations of the training pass, vLLM), says whether it fits, and if not the cheapest change that makes it
fit. The model's config comes from the recipe's ``model_name_or_path``: a published config crowdvlm knows
offline, a local folder, or the Hub (config only). The launch comes from ``--accelerate-config``, else the
accelerate config the recipe's header names. Exit code 0 whether it fits or not; 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from crowdvlm.errors import UsageError

_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_memory(text: str) -> float:
    """``"80GiB"`` -> bytes; ``GB`` is decimal, ``GiB`` binary, a bare number is GiB.

    >>> parse_memory("80GiB") == 80 * 2**30
    True
    >>> parse_memory("141")  == 141 * 2**30
    True
    """
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    unit = (match.group(2).lower() if match else "x") or "gib"
    if not match or unit not in _UNITS:
        raise UsageError(f"--gpu-memory {text!r}: expected a size such as 80GiB, 141GB or 24")
    return float(match.group(1)) * _UNITS[unit]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdvlm plan",
        description="Estimate the peak GPU memory of a training recipe per GPU, before loading any weights.",
    )
    parser.add_argument("recipe", help="a training recipe (YAML), e.g. recipes/qwen2_5_vl_3b/grpo_fgrpr.yaml")
    parser.add_argument(
        "--gpus", type=int, default=None, help="GPUs in all (default: the accelerate config's)"
    )
    parser.add_argument("--gpu-memory", default="80GiB", help="memory per GPU (default 80GiB: an H100)")
    parser.add_argument(
        "--accelerate-config",
        default=None,
        help="accelerate config (default: the one the recipe's header names)",
    )
    parser.add_argument(
        "--image-size", default="1024x768", help="training images, WIDTHxHEIGHT (default 1024x768)"
    )
    parser.add_argument(
        "--trainer", choices=["stock", "crowdvlm"], default=None,
        help="stock trl.GRPOTrainer or crowdvlm's (default: crowdvlm when the recipe sets share_prompt)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def plan(args: argparse.Namespace) -> dict:
    """The estimate as a JSON-able dict (``fits``, ``parts_gib``, ``peak_gib``, ``fix``, ``assumptions``)."""
    from crowdvlm.plan.estimate import Images, cheapest_fix, estimate_run
    from crowdvlm.plan.memory import (
        GIB,
        build_meta_model,
        load_model_config,
        read_launch,
        read_recipe_shape,
        weights_dtype,
    )

    started, cpu_started = time.perf_counter(), time.process_time()
    gpu_memory = parse_memory(args.gpu_memory)
    shape, _ = read_recipe_shape(args.recipe)
    launch = read_launch(args.accelerate_config, args.recipe, args.gpus)
    images = Images.parse(args.image_size)
    config = load_model_config(shape.model)
    model = build_meta_model(config, weights_dtype(shape, config))
    estimate = estimate_run(
        shape, config, launch, images, gpu_memory=gpu_memory, trainer=args.trainer, model=model
    )
    fits = estimate.peak <= gpu_memory
    fix = None
    if not fits:
        found = cheapest_fix(shape, config, launch, images, gpu_memory=gpu_memory, model=model)
        fix = {"change": found[0], "peak_gib": round(found[1].peak / GIB, 2)} if found else None
    return {
        "recipe": args.recipe,
        "model": shape.model,
        "launch": launch.source,
        "gpus": launch.gpus,
        "gpu_memory_gib": round(gpu_memory / GIB, 2),
        "image_size": args.image_size,
        "parts_gib": {k: v for k, v in estimate.gib().items() if k != "peak"},
        "peak_gib": round(estimate.peak / GIB, 2),
        "generation_kv_cache_gib": round(estimate.generation_kv_cache / GIB, 2),
        "fits": fits,
        "fix": fix,
        "assumptions": estimate.assumptions,
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
    }


def print_plan(result: dict) -> None:
    a = result["assumptions"]
    print(f"recipe       {result['recipe']}")
    print(
        f"model        {result['model']}: {a['parameters'] / 1e9:.2f} B parameters, "
        f"{a['trained_parameters'] / 1e9:.3f} B trained, {a['dtype']}"
    )
    print(f"launch       {result['launch']}; {result['gpus']} GPU(s) of {result['gpu_memory_gib']} GiB")
    print(
        f"pass         {a['trainer']} trainer: {a['text_rows']} row(s) x {a['tokens_per_row']} tokens"
        f"{' (packed: prompt once per group)' if a['packed'] else ''}; {result['image_size']} images -> "
        f"{a['image_tokens']} image tokens, {a['vision_images_with_grad']} through the vision tower with "
        f"gradients; gradient checkpointing {'on' if a['gradient_checkpointing'] else 'off'}"
    )
    print("per GPU (GiB)")
    for name, gib in result["parts_gib"].items():
        print(f"  {name:<17} {gib:>8.2f}")
    print(f"  {'peak (estimate)':<17} {result['peak_gib']:>8.2f}   (generation's KV cache: "
          f"{result['generation_kv_cache_gib']:.2f}, not at the same time)")  # fmt: skip
    verdict = "fits" if result["fits"] else "does NOT fit"
    print(f"verdict      {verdict} in {result['gpu_memory_gib']} GiB")
    if not result["fits"]:
        fix = result["fix"]
        print(
            f"cheapest fix {fix['change']} -> {fix['peak_gib']} GiB"
            if fix
            else "cheapest fix none of gradient checkpointing, ZeRO-3, smaller micro-batches, max_pixels, "
            "frozen vision or LoRA is enough: use more or larger GPUs"
        )
    print(
        f"({result['seconds']} s, no weights loaded; the CUDA context and allocator slack, ~0.5-1 GiB, not counted)"
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = plan(args)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    if args.json:
        print(json.dumps(result))
    else:
        print_plan(result)
    return 0
