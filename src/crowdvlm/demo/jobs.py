"""The demo's calls into the rest of crowdvlm: synthesise data, train an arm, evaluate a model.

Each function is a thin adapter over a public API (``crowdvlm.data.synth``, ``crowdvlm.train``,
``crowdvlm.evaluate``); nothing here re-implements them. Torch and transformers are imported inside the
functions, so importing the demo stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from crowdvlm.demo.plan import ARMS, DemoPlan

__all__ = ["data_manifests", "evaluate_model", "generate_data", "set_question", "train_arm"]

logger = logging.getLogger(__name__)

PROMPT_TEMPLATE = "train"  # the tiny model is asked exactly what it was trained on (see the README)
OUTPUT_FORMAT = "answer-only"


def data_manifests(plan: DemoPlan, data_dir: Path) -> dict[str, list[Path]]:
    """Where :func:`generate_data` puts each set: ``{"train-s0": [...], "val": [...], "test": [...], "ood": [...]}``."""
    sets: dict[str, list[Path]] = {
        f"train-s{s}": [data_dir / f"train-s{s}" / "manifest.jsonl"] for s in plan.seeds
    }
    sets["val"] = [data_dir / "val" / "manifest.jsonl"]
    sets["test"] = [data_dir / f"test-{style}" / "manifest.jsonl" for style in plan.styles]
    sets["ood"] = [data_dir / "ood" / "manifest.jsonl"]
    if plan.near_ood_style:
        sets["ood_near"] = [data_dir / "ood-near" / "manifest.jsonl"]
    return sets


def set_question(manifest: Path, question: str) -> None:
    """Ask ``question`` about every image of ``manifest`` (rewrites its ``problem`` field in place)."""
    from crowdvlm.data.manifest import read_manifest, write_manifest

    records = read_manifest(manifest, check_images=False)
    write_manifest([{**rec, "problem": question} for rec in records], manifest)


def generate_data(plan: DemoPlan, data_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Write every image set of the plan under ``data_dir``; return ``{set: number of images}``.

    * ``train-s<k>``: ``n_train`` images, styles drawn uniformly, seed ``plan.train_data_seed(k)``; every arm
      trained at seed ``k`` sees exactly these images;
    * ``val``: ``n_val`` in-domain images for the lr grid;
    * ``test-<style>``: ``n_test / len(styles)`` images per in-domain style (balanced, one dataset each);
    * ``ood``: ``n_ood`` images of the unseen style, counts in ``ood_counts``;
    * ``ood-near``: the same for the near out-of-domain style, if the plan has one.

    Every image is asked ``plan.question`` (see :class:`~crowdvlm.demo.plan.DemoPlan`).
    """
    from crowdvlm.data.synth import generate

    size = (plan.image_size, plan.image_size)
    sizes: dict[str, int] = {}

    def make(name: str, n: int, style, counts: tuple[int, int], seed: int, split: str) -> None:
        manifest = generate(
            data_dir / name, n, style, counts[0], counts[1], size, seed, split=split, progress=progress
        )
        set_question(manifest, plan.question)
        sizes[name] = n

    for s in plan.seeds:
        make(
            f"train-s{s}",
            plan.n_train,
            list(plan.styles),
            plan.train_counts,
            plan.train_data_seed(s),
            "train",
        )
    make("val", plan.n_val, list(plan.styles), plan.test_counts, plan.data_seed + 50, "val")
    per_style = max(1, plan.n_test // len(plan.styles))
    for k, style in enumerate(plan.styles):
        make(f"test-{style}", per_style, style, plan.test_counts, plan.data_seed + 60 + k, "test")
    make("ood", plan.n_ood, plan.ood_style, plan.ood_counts, plan.data_seed + 70, "test")
    if plan.near_ood_style:
        make("ood-near", plan.n_ood, plan.near_ood_style, plan.ood_counts, plan.data_seed + 80, "test")
    return {"images": sizes}


def train_arm(
    plan: DemoPlan, arm: str, *, base: Path, dataset: list[Path], out_dir: Path, lr: float, seed: int,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Train one arm from ``base`` on ``dataset`` with ``crowdvlm.train`` and save it to ``out_dir``.

    Every arm makes one pass over the same images: SFT in batches of ``sft_batch_size``, GRPO with
    ``grpo_prompts_per_step`` images x ``num_generations`` completions per step. Learning rates are constant
    (no warm-up, no decay), so an lr grid compares like with like.

    Returns:
        ``{"steps": ..., "train_s": ..., "log": path of the trainer's JSONL log}``.
    """
    from crowdvlm.train.config import parse_job

    kind, rewards = ARMS[arm]
    common = dict(
        model_name_or_path=str(base),
        dataset=[str(p) for p in dataset],
        output_dir=str(out_dir),
        prompt_template=PROMPT_TEMPLATE,
        output_format=OUTPUT_FORMAT,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=plan.steps(arm),
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, min(10, plan.steps(arm) // 20)),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
    )
    if kind == "sft":
        job = parse_job("sft", **common, per_device_train_batch_size=plan.sft_batch_size, max_length=None)
        from crowdvlm.train.sft import run_sft as run
    else:
        job = parse_job(
            "grpo",
            **common,
            rewards=list(rewards),
            per_device_train_batch_size=plan.grpo_prompts_per_step * plan.num_generations,
            num_generations=plan.num_generations,
            max_completion_length=plan.max_completion_length,
            temperature=plan.temperature,
            beta=plan.beta,
            sample_completions_steps=0,  # the report reads the metrics log; sampled completions are not needed
        )
        from crowdvlm.train.grpo import run_grpo as run
    # The trainers print every logged metrics dict to stdout; the demo keeps them in the run folder (they are
    # also in the JSONL log) so the terminal shows progress, not hundreds of dict lines.
    with (
        (Path(out_dir) / "trainer_stdout.txt").open("a", encoding="utf-8") as sink,
        contextlib.redirect_stdout(sink),
    ):
        result = run(job)
    return {
        "steps": result.global_step,
        "train_s": result.metrics.get("train_runtime"),
        "log": str(Path(out_dir) / job.script.log_file),
    }


def evaluate_model(
    plan: DemoPlan, model_dir: Path, manifests: list[Path], out_dir: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Greedy answers of ``model_dir`` on the images of ``manifests``: ``out_dir/predictions.jsonl`` + ``metrics.json``.

    Returns:
        The overall metrics (n, MAE, MAE on parsed answers, accuracy, parse-failure rate) and the model path.
    """
    from crowdvlm.evaluate.backends.hf_backend import HFBackend
    from crowdvlm.evaluate.run import evaluate, items_from_manifests

    backend = HFBackend.load(model_dir, max_new_tokens=plan.max_new_tokens, device="cpu")
    items = items_from_manifests(manifests, template=PROMPT_TEMPLATE, output=OUTPUT_FORMAT)
    metrics = evaluate(
        backend,
        items,
        out_dir,
        batch_size=plan.eval_batch_size,
        report=False,
        progress=progress,
        settings={"manifests": [str(m) for m in manifests]},
    )
    overall = metrics["overall"]
    return {
        "model": str(model_dir),
        **{k: overall.get(k) for k in ("n", "mae", "mae_parsed", "accuracy", "parse_failure_rate")},
    }
