"""The two measured parts of ``benchmarks/gpu_check.py``: kernel equivalence, and s/step per trainer and backend."""

from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}
TOLERANCE = {"float32": (1e-4, 1e-4, 1e-4), "bfloat16": (5e-2, 5e-3, 5e-2)}  # max, mean |d logp|; grad rel L2
GIB = 2**30


def make_trainer(cls, model_dir: Path, out: Path, dataset, args, backend: str, attn: str | None = None):
    """A trainer of ``cls`` at the run's setting (attention ``attn``, default ``--attn``); its
    ``_generate_single_turn`` is timed."""
    import torch
    from transformers import PrinterCallback
    from trl import GRPOConfig

    from crowdvlm.rewards import count_format_reward, fgrpr_precision_reward

    if backend == "vllm":  # colocate vLLM in a plain (not launched) process reads these
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
    bf16 = args.dtype == "bfloat16"
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.num_generations,
        num_generations=args.num_generations,
        steps_per_generation=1,
        max_completion_length=args.new_tokens,
        generation_kwargs={"min_new_tokens": args.new_tokens},  # every completion exactly new_tokens long
        beta=0.04,
        learning_rate=1e-6,
        max_steps=1,  # one step per train() call
        gradient_checkpointing=True,
        bf16=bf16,
        use_cpu=args.device == "cpu",
        use_vllm=backend == "vllm",
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.3,
        model_init_kwargs={"dtype": getattr(torch, args.dtype), "attn_implementation": attn or args.attn},
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = cls(
        model=str(model_dir),
        reward_funcs=[fgrpr_precision_reward, count_format_reward],
        args=config,
        train_dataset=dataset,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.generation_seconds = 0.0
    generate = trainer._generate_single_turn

    def timed_generate(*a, **k):
        synchronize(args.device)
        start = time.perf_counter()
        result = generate(*a, **k)
        synchronize(args.device)
        trainer.generation_seconds += time.perf_counter() - start
        return result

    trainer._generate_single_turn = timed_generate
    return trainer


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _logp_inputs(batch: dict, **extra) -> dict:
    import torch

    return dict(
        input_ids=torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
        attention_mask=torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
        logits_to_keep=batch["completion_ids"].size(1),
        pixel_values=batch["pixel_values"],
        image_grid_thw=batch["image_grid_thw"],
        num_images=batch["num_images"],
        mm_token_type_ids=batch.get("mm_token_type_ids"),
        **extra,
    )


def _loss_and_grads(trainer, batch, per_row: bool):
    """The GRPO loss's gradient through crowdvlm's log-prob path, or TRL's own per-row one."""
    import trl

    trainer.model.zero_grad()
    if per_row:
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
            trl.GRPOTrainer._get_per_token_logps_and_entropies(trainer, *a, **k)
        )
    try:
        trainer._compute_loss(trainer.model, batch).backward()
    finally:
        vars(trainer).pop("_get_per_token_logps_and_entropies", None)
    grads = {n: p.grad.float().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()
    return grads


def equivalence(model_dir, dataset, args, budget, env) -> dict:
    """crowdvlm's log-prob path against TRL's per-row one, with sdpa and, where installed, flash-attention 2."""
    from crowdvlm.modeling.real_configs import real_family

    kernels = ["sdpa"] + (["flash_attention_2"] if env["flash_attn"] and args.device == "cuda" else [])
    result: dict = {"status": "skipped", "kernels": {}, "tolerance": dict(
        zip(("max_abs_logp", "mean_abs_logp", "grad_rel_l2"), TOLERANCE[args.dtype], strict=True))}  # fmt: skip
    if real_family(args.model) == "qwen3_5":
        result["flash_linear_attention"] = env["flash_linear_attention"]
    for index, attn in enumerate(kernels):
        # the build may take a fifth of the budget; each kernel after the first leaves 60 % for the speed runs
        if budget.left() < (0.8 if index == 0 else 0.6) * budget.seconds:
            budget.note(f"equivalence with {attn} skipped: budget")
            result["kernels"][attn] = {"status": "skipped", "reason": "budget"}
            continue
        result["kernels"][attn] = equivalence_with(attn, model_dir, dataset, args)
    statuses = {r["status"] for r in result["kernels"].values()}
    result["status"] = "FAILED" if "FAILED" in statuses else "passed" if "passed" in statuses else "skipped"
    if statuses == {"skipped"} and all(r.get("reason") == "budget" for r in result["kernels"].values()):
        result["reason"] = "budget"
    return result


def equivalence_with(attn: str, model_dir, dataset, args) -> dict:
    """One kernel: log-probs (no grad) and every gradient of the GRPO loss, crowdvlm's path vs TRL's per-row."""
    import torch
    import trl

    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    result: dict = {}
    trainer = make_trainer(
        GroupSharedGRPOTrainer, model_dir, model_dir.parent / f"equivalence-{attn}", dataset, args, "hf", attn
    )
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this bypasses
    trainer.model.train()
    torch.manual_seed(args.seed)
    batch = trainer._generate_and_score_completions([dataset[0] for _ in range(args.num_generations)])
    trainer.sharing_fallbacks.clear()
    with torch.no_grad():
        ours = trainer._get_per_token_logps_and_entropies(trainer.model, **_logp_inputs(batch))[0]
        stock = trl.GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, **_logp_inputs(batch)
        )[0]
    mask = batch["completion_mask"].bool()
    diff = (ours.float() - stock.float()).abs()[mask]
    noise = torch.randn(stock.shape, generator=torch.Generator().manual_seed(0)).to(stock.device)
    # ratios != 1 (clipping applies) and advantages != 0 (a random model's rewards are all alike): a gradient
    advantages = torch.randn(stock.shape[0], generator=torch.Generator().manual_seed(1)).to(stock.device)
    batch = dict(
        batch, old_per_token_logps=stock + 0.3 * noise * batch["completion_mask"], advantages=advantages
    )
    grads_ours = _loss_and_grads(trainer, batch, per_row=False)
    grads_stock = _loss_and_grads(trainer, batch, per_row=True)
    # over all parameters at once: a tensor whose gradient is ~0 either way (a padding row) would make a
    # per-tensor ratio meaningless; the worst tensor is reported beside it
    total = sum(float(g.norm()) ** 2 for g in grads_stock.values()) ** 0.5
    rel = sum(float((grads_ours[n] - g).norm()) ** 2 for n, g in grads_stock.items()) ** 0.5 / max(
        total, 1e-12
    )
    worst = max(grads_stock, key=lambda n: float((grads_ours[n] - grads_stock[n]).norm()))
    max_tol, mean_tol, grad_tol = TOLERANCE[args.dtype]
    result.update(
        max_abs_logp=round(float(diff.max()), 6),
        mean_abs_logp=round(float(diff.mean()), 7),
        grad_rel_l2=round(rel, 6),
        parameters_compared=len(grads_stock),
        worst_parameter=worst,
        worst_parameter_abs_diff=float((grads_ours[worst] - grads_stock[worst]).norm()),
        fallbacks=dict(trainer.sharing_fallbacks),
    )
    passed = float(diff.max()) <= max_tol and float(diff.mean()) <= mean_tol and rel <= grad_tol
    if trainer.sharing_fallbacks:
        result.update(
            status="skipped", reason="the packed path did not run: " + "; ".join(trainer.sharing_fallbacks)
        )
    else:
        result["status"] = "passed" if passed else "FAILED"
    print(f"  equivalence with {attn}: {result['status']}: max |d logp| {result['max_abs_logp']}, mean "
          f"{result['mean_abs_logp']}, gradient rel L2 {result['grad_rel_l2']}"
          + (f" ({result['reason']})" if "reason" in result else ""), flush=True)  # fmt: skip
    del trainer
    free(args.device)
    return result


def _step_flops(model_dir, args) -> tuple[float, dict]:
    """Model FLOPs of one step in stock TRL's layout: generation and reference forward (2 per parameter per
    token) and the training pass (6), text and vision towers apart; plus the pass's shape."""
    from crowdvlm.plan.estimate import Images, image_patches
    from crowdvlm.plan.memory import build_meta_model, load_model_config

    config = load_model_config(str(model_dir))
    model = build_meta_model(config, None)
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    text = sum(p.numel() for p in model.parameters()) - vision
    patches = image_patches(config, Images(*args.image_size), 3136, args.image_size[0] * args.image_size[1])
    rows = args.num_generations
    tokens = rows * (64 + patches // 4 + args.new_tokens)
    flops = (2 + 2 + 6) * (text * tokens + vision * rows * patches)
    return flops, {"text_parameters": text, "vision_parameters": vision, "patches_per_image": patches}


def _planned_peak(model_dir, args, trainer_name: str) -> float | None:
    """``crowdvlm plan``'s estimate of the same run on one GPU (None if it fails: reported, not fatal)."""
    from crowdvlm.plan.estimate import Images, estimate_run
    from crowdvlm.plan.memory import Launch, RunShape, load_model_config

    shape = RunShape(
        kind="grpo", model=str(model_dir), dtype=args.dtype, freeze_vision=False, use_peft=False, lora_r=64,
        lora_target_modules=[], lora_include_vision=False, batch=args.num_generations,
        num_generations=args.num_generations, completion_tokens=args.new_tokens, gradient_checkpointing=True,
        beta=0.04, share_prompt=trainer_name == "crowdvlm", min_pixels=3136,
        max_pixels=args.image_size[0] * args.image_size[1],
    )  # fmt: skip
    try:
        estimate = estimate_run(
            shape, load_model_config(str(model_dir)), Launch(), Images(*args.image_size), gpu_memory=0,
            trainer=trainer_name, kernel="flash" if args.device == "cuda" else "cpu",
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - the estimate is a side figure; the run goes on, the error is kept
        print(f"  planner failed: {type(err).__name__}: {err}")
        return None
    return round(estimate.peak / GIB, 2)


def time_trainers(model_dir, dataset, args, budget, env) -> dict:
    """Alternates nothing: each trainer runs alone (two 3B policies + references do not fit one card)."""
    import torch
    import trl

    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

    flops, shape = _step_flops(model_dir, args)
    peak_flops = next((v for k, v in PEAK_BF16_FLOPS.items() if k in env["card"]), None)
    runs = [(b, t) for b in args.backends for t in ("stock", "crowdvlm")]
    results: dict = {"step_flops": flops, **shape}
    step_cost = None
    for index, (backend, name) in enumerate(runs):
        key = f"{name}/{backend}"
        if backend == "vllm" and not env["vllm"]:
            results[key] = {"status": "skipped", "reason": "vllm is not installed"}
            continue
        left_runs = len(runs) - index
        share = budget.left() / left_runs
        steps = args.steps
        if step_cost is not None:
            steps = max(1, min(args.steps, int(share / step_cost) - 2))  # a warm-up step and the build
            if share < 2.5 * step_cost:
                budget.note(f"{key} skipped: {budget.left():.0f} s left for {left_runs} run(s)")
                results[key] = {"status": "skipped", "reason": "budget"}
                continue
            if steps < args.steps:
                budget.note(f"{key}: {steps} timed step(s) instead of {args.steps}")
        cls = trl.GRPOTrainer if name == "stock" else GroupSharedGRPOTrainer
        trainer = make_trainer(
            cls, model_dir, model_dir.parent / key.replace("/", "-"), dataset, args, backend
        )
        seconds, generation, peaks = [], [], []
        for step in range(1 + steps):  # the first step warms up (compilation, allocator, caches)
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            trainer.generation_seconds = 0.0
            synchronize(args.device)
            start = time.perf_counter()
            trainer.train()
            synchronize(args.device)
            elapsed = time.perf_counter() - start
            if step == 0:
                continue
            seconds.append(elapsed)
            generation.append(trainer.generation_seconds)
            peaks.append(torch.cuda.max_memory_allocated() / GIB if args.device == "cuda" else None)
            if budget.left() < (left_runs - 1) * 2.5 * max(seconds) and step < steps:
                budget.note(f"{key}: stopped after {step} timed step(s)")
                break
        step_cost = max(seconds)
        median = statistics.median(seconds)
        gen = statistics.median(generation)
        results[key] = {
            "status": "measured",
            "timed_steps": len(seconds),
            "s_per_step": round(median, 3),
            "generation_share": round(gen / median, 3),
            "decode_ms_per_token": round(1000 * gen / args.new_tokens, 2),
            "peak_gib": round(max(peaks), 2) if peaks[0] is not None else None,
            "planned_peak_gib": _planned_peak(model_dir, args, name),
            "mfu": round(flops / median / peak_flops, 4) if peak_flops else None,
            "fallbacks": dict(getattr(trainer, "sharing_fallbacks", {})),
        }
        r = results[key]
        print(f"  {key:<16} {r['s_per_step']:.3f} s/step, generation {100 * r['generation_share']:.0f} % "
              f"({r['decode_ms_per_token']} ms per new token), peak {r['peak_gib']} GiB (plan: "
              f"{r['planned_peak_gib']} GiB), MFU {r['mfu']}", flush=True)  # fmt: skip
        del trainer
        free(args.device)
    for backend in args.backends:
        stock, ours = results.get(f"stock/{backend}", {}), results.get(f"crowdvlm/{backend}", {})
        if stock.get("status") == ours.get("status") == "measured":
            results[f"ratio/{backend}"] = round(stock["s_per_step"] / ours["s_per_step"], 3)
    return results
