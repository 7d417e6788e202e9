"""An experiment's calls into the rest of crowdvlm: synthesise a set, train an arm, evaluate a model.

Each function is a thin adapter over the public API behind ``crowdvlm data synth``, ``crowdvlm train`` and
``crowdvlm eval`` (nothing is re-implemented): a training run is ``parse_job(kind, recipe=..., **overrides)``
exactly as ``crowdvlm train grpo --config RECIPE --key value`` parses it. Torch and transformers are imported
inside the functions, so reading an experiment file stays cheap.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from crowdvlm.experiments.spec import ArmSpec, Experiment, SetSpec

__all__ = ["evaluate_model", "parse_arm_job", "preflight", "set_manifests", "synthesise_set", "train_arm"]


def set_manifests(spec: SetSpec, data_dir: Path, seed: int | None = None) -> list[Path]:
    """The manifests of a set: given ones, or where :func:`synthesise_set` writes it (per training seed)."""
    if not spec.synthetic:
        return list(spec.manifests)
    folder = f"{spec.name}-s{seed}" if seed is not None else spec.name
    if spec.balanced:
        return [data_dir / f"{folder}-{style}" / "manifest.jsonl" for style in spec.styles]
    return [data_dir / folder / "manifest.jsonl"]


def synthesise_set(
    exp: Experiment, spec: SetSpec, data_dir: Path, seed: int | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Write a synthetic set (for training seed ``seed``: data seed ``spec.seed + seed``); ``{"images": n}``.

    Styles are drawn per image, or with ``balanced`` split evenly, one manifest (one dataset) per style.
    Every image is asked ``exp.question`` when the experiment sets one (a tiny model knows only the words
    it was trained on, so the demo asks one question of every style).
    """
    from crowdvlm.data.manifest import read_manifest, write_manifest
    from crowdvlm.data.synth import generate

    size = (exp.image_size, exp.image_size)
    data_seed = spec.seed + (seed or 0)
    manifests = set_manifests(spec, data_dir, seed)
    if spec.balanced:
        per_style = max(1, spec.n // len(spec.styles))
        plan = [
            (m, per_style, style, data_seed + k)
            for k, (m, style) in enumerate(zip(manifests, spec.styles, strict=True))
        ]
    else:
        plan = [(manifests[0], spec.n, list(spec.styles), data_seed)]
    split = "train" if seed is not None else spec.name
    images = 0
    for manifest, n, style, s in plan:
        written = generate(
            manifest.parent, n, style, spec.counts[0], spec.counts[1], size, s, split=split, progress=progress
        )
        if exp.question:
            records = read_manifest(written, check_images=False)
            write_manifest([{**rec, "problem": exp.question} for rec in records], written)
        images += n
    return {"images": images}


def parse_arm_job(
    exp: Experiment,
    arm: ArmSpec,
    *,
    dataset: list[Path],
    out_dir: Path,
    lr: float,
    seed: int,
    progress: bool = True,
    resume: bool = False,
):
    """The arm's recipe plus its overrides plus the run's own keys, parsed as ``crowdvlm train`` parses them.

    ``resume``: continue from the last complete checkpoint in ``out_dir`` (``crowdvlm train --resume``).
    """
    from crowdvlm.errors import UsageError
    from crowdvlm.train.config import ConfigError, make_parser, parse_job

    # argparse would take an unknown key that prefixes a real one (lr_sched -> lr_scheduler_type) as that key
    known = {action.dest for action in make_parser(arm.train)._actions}
    unknown = sorted(set(arm.overrides) - known)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UsageError(
            f"{exp.path}: arms.{arm.name}.overrides.{unknown[0]}: not a key of crowdvlm train {arm.train}{hint}"
        )
    try:
        return parse_job(
            arm.train,
            recipe=arm.recipe,
            **arm.overrides,
            model_name_or_path=str(exp.base),
            dataset=[str(p) for p in dataset],
            output_dir=str(out_dir),
            learning_rate=lr,
            seed=seed,
            data_seed=seed,
            disable_tqdm=not progress,
            resume=resume,
        )
    except ConfigError as err:
        raise UsageError(f"{exp.path}: arms.{arm.name}: {err}") from None


def preflight(exp: Experiment) -> dict[str, Any]:
    """Parse every trained arm's job before anything runs (recipes, overrides, rewards); ``{arm: TrainJob}``.

    The training sets do not exist yet, so an empty placeholder manifest stands in for them.
    """
    with tempfile.TemporaryDirectory(prefix="crowdvlm-preflight-") as tmp:
        placeholder = Path(tmp) / "manifest.jsonl"
        placeholder.touch()
        return {
            arm.name: parse_arm_job(
                exp,
                arm,
                dataset=[placeholder],
                out_dir=Path(tmp) / arm.name,
                lr=arm.lr_grid[0],
                seed=exp.seeds[0],
                progress=False,
            )
            for arm in exp.arms.values()
            if arm.trained
        }


def samples_per_run(job, n_images: int) -> int:
    """What one run processes: completions for GRPO, images for SFT (the unit of the training ETA)."""
    t = job.training
    per_image = getattr(t, "num_generations", 1) or 1
    if t.max_steps and t.max_steps > 0:
        return int(t.max_steps * t.per_device_train_batch_size * t.gradient_accumulation_steps)
    return int(n_images * per_image * t.num_train_epochs)


def train_arm(
    exp: Experiment,
    arm: ArmSpec,
    *,
    dataset: list[Path],
    out_dir: Path,
    lr: float,
    seed: int,
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``arm`` from the base on ``dataset`` and save it to ``out_dir``.

    Args:
        resume: continue a killed run of this stage from its last complete checkpoint in ``out_dir``
            (:func:`crowdvlm.train.resume.last_checkpoint`); from step 0 when it saved none.

    Returns:
        ``{"steps", "train_s", "log", "resumed_from"}`` (paths relative to ``out_dir``).
    """
    job = parse_arm_job(
        exp, arm, dataset=dataset, out_dir=out_dir, lr=lr, seed=seed, progress=progress, resume=resume
    )
    if arm.train == "sft":
        from crowdvlm.train.sft import run_sft as run
    else:
        from crowdvlm.train.grpo import run_grpo as run
    # The trainers print every logged metrics dict to stdout; keep them in the run folder (they are also in
    # the JSONL log) so the terminal shows the experiment's progress, not hundreds of dict lines.
    with (
        (Path(out_dir) / "trainer_stdout.txt").open("a", encoding="utf-8") as sink,
        contextlib.redirect_stdout(sink),
    ):
        result = run(job)
    return {
        "steps": result.global_step,
        "train_s": result.metrics.get("train_runtime"),
        "log": job.script.log_file,
        "resumed_from": result.resumed_from.name if result.resumed_from else None,
    }


def evaluate_model(
    exp: Experiment,
    model_dir: Path,
    manifests: list[Path],
    out_dir: Path,
    *,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Greedy answers of ``model_dir`` on ``manifests`` (what ``crowdvlm eval`` writes, without its report).

    Args:
        settings: the arm's eval settings (:meth:`Experiment.eval_of`); the experiment's ``eval`` if None.
            With ``output: points`` the run also gets ``crowdvlm eval --output points``' localisation metrics
            (``localisation.json``; points in the frame of the model's own processor).

    Returns:
        The overall metrics (n, MAE, MAE on parsed answers, accuracy, parse-failure rate; for point answers
        also F1 at the largest radius and the MAE of the count read from the points).
    """
    from crowdvlm.evaluate.backends.hf_backend import HFBackend
    from crowdvlm.evaluate.run import evaluate, items_from_manifests

    ev = settings or exp.eval
    backend = HFBackend.load(model_dir, max_new_tokens=ev["max_new_tokens"], device="cpu")
    items = items_from_manifests(manifests, template=ev["template"], output=ev["output"])
    metrics = evaluate(
        backend,
        items,
        out_dir,
        batch_size=ev["batch_size"],
        report=False,
        progress=progress,
        settings={"template": ev["template"], "output": ev["output"]},
    )
    overall = metrics["overall"]
    summary = {k: overall.get(k) for k in ("n", "mae", "mae_parsed", "accuracy", "parse_failure_rate")}
    if ev["output"] == "points":
        from crowdvlm.evaluate.localisation import write_localisation
        from crowdvlm.pointing.frame import ResizeRule

        rule = ResizeRule.from_processor(backend.processor)
        located = write_localisation(out_dir, manifests, "resized", rule, overlays=0)
        overall = located["overall"]
        summary |= {
            "f1": overall[f"r{located['radii'][-1]:g}"]["f1"],
            "mae_points": overall["count_from_points"]["mae"],
        }
    return summary
