"""The demo as a list of resumable stages: data, base, lr grid, selection, seeds, evaluation.

Folder layout under ``--out`` (each stage owns one folder, see :mod:`crowdvlm.demo.stages`)::

    plan.json                         the plan this folder was produced with
    data/                             all image sets (one stage)
    runs/<arm>/lr<lr>/s<seed0>/       lr-grid runs (first seed), one per lr of the arm's grid
    runs/<arm>/s<seed>/               the other seeds, at the selected lr
    evals/base/<set>/                 the base model on val, test, ood (and ood_near)
    evals/<arm>/lr<lr>/val/           a grid run on the validation set
    evals/<arm>/s<seed>/<set>/        the selected model of each seed on test, ood (and ood_near)
    selection/<arm>/                  the lr picked for the arm (marker holds the grid's val MAE)
    report/                           report.md, results.json and the plots

The lr of every arm is chosen by one rule, written before any result is seen: lowest validation MAE of the
first seed's run over the arm's grid, ties to the smaller lr. The test and OOD sets are never looked at
before the selection is made. The first seed's selected grid run is also that seed's final model (it was
trained exactly as the other seeds are).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from crowdvlm.demo.plan import ARMS, DemoPlan
from crowdvlm.demo.stages import Stage, read_marker

__all__ = ["DemoLayout", "build_stages", "check_plan_matches"]

logger = logging.getLogger(__name__)

# Rough seconds on the reference machine (2 cores), for the ETA only.
_S_PER_IMAGE_SYNTH = 0.004
_S_PER_SFT_STEP = 0.12
_S_PER_GRPO_STEP = 0.25
_S_PER_EVAL_IMAGE = 0.005
_S_PER_RUN_OVERHEAD = 6.0


def lr_tag(lr: float) -> str:
    """Folder-safe name of a learning rate.

    >>> lr_tag(2e-05), lr_tag(0.0001)
    ('2e-05', '0.0001')
    """
    return f"{lr:g}"


class DemoLayout:
    """Paths of every artefact of one demo folder."""

    def __init__(self, out: Path, plan: DemoPlan, base: Path):
        self.out, self.plan, self.base = Path(out), plan, Path(base)

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def report(self) -> Path:
        return self.out / "report"

    def grid_run(self, arm: str, lr: float) -> Path:
        return self.out / "runs" / arm / f"lr{lr_tag(lr)}" / f"s{self.plan.seeds[0]}"

    def seed_run(self, arm: str, seed: int) -> Path:
        """The model of ``arm`` at ``seed`` (the first seed's is its selected grid run)."""
        if seed == self.plan.seeds[0]:
            return self.grid_run(arm, self.selected_lr(arm))
        return self.out / "runs" / arm / f"s{seed}"

    def grid_eval(self, arm: str, lr: float) -> Path:
        return self.out / "evals" / arm / f"lr{lr_tag(lr)}" / "val"

    def seed_eval(self, arm: str, seed: int, set_name: str) -> Path:
        return self.out / "evals" / arm / f"s{seed}" / set_name

    def base_eval(self, set_name: str) -> Path:
        return self.out / "evals" / "base" / set_name

    def selection(self, arm: str) -> Path:
        return self.out / "selection" / arm

    def selected_lr(self, arm: str) -> float:
        return float(read_marker(self.selection(arm))["lr"])


def check_plan_matches(out: Path, plan: DemoPlan) -> None:
    """Write ``plan.json``, or refuse to resume a folder produced with a different plan.

    Raises:
        ValueError: naming the fields that differ and how to proceed.
    """
    path = Path(out) / "plan.json"
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        current = json.loads(json.dumps(plan.to_dict()))
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise ValueError(
                f"{out} holds a demo run with a different plan (fields {', '.join(changed)} differ): "
                "pass another --out, or delete the folder to start over"
            )
    else:
        Path(out).mkdir(parents=True, exist_ok=True)
        plan.save(path)


def _select_lr(layout: DemoLayout, arm: str) -> dict[str, Any]:
    """The pre-registered rule: lowest validation MAE of the grid, ties to the smaller lr."""
    grid = []
    for lr in layout.plan.lrs(arm):
        metrics = json.loads((layout.grid_eval(arm, lr) / "metrics.json").read_text(encoding="utf-8"))
        grid.append({"lr": lr, "val_mae": metrics["overall"]["mae"]})
    best = min(grid, key=lambda row: (row["val_mae"], row["lr"]))
    logger.info("%s: lr %g selected (val MAE %.3f)", arm, best["lr"], best["val_mae"])
    return {"lr": best["lr"], "grid": grid}


def build_stages(layout: DemoLayout, *, progress: bool = True) -> list[Stage]:
    """Every stage of the demo, in execution order."""
    from crowdvlm.demo import jobs

    plan = layout.plan
    sets = jobs.data_manifests(plan, layout.data)
    n_images = plan.n_train * len(plan.seeds) + sum(plan.set_size(s) for s in plan.eval_sets())
    stages = [
        Stage("synthesise data", layout.data, n_images * _S_PER_IMAGE_SYNTH,
              lambda: jobs.generate_data(plan, layout.data, progress=progress)),
    ]  # fmt: skip

    def eval_stage(name: str, model: Any, folder: Path, set_name: str) -> Stage:
        n = plan.set_size(set_name)
        model_dir = model if callable(model) else (lambda: model)
        return Stage(
            name,
            folder,
            _S_PER_RUN_OVERHEAD / 3 + n * _S_PER_EVAL_IMAGE,
            lambda: jobs.evaluate_model(plan, model_dir(), sets[set_name], folder, progress=progress),
        )

    for set_name in plan.eval_sets():
        stages.append(
            eval_stage(f"eval base on {set_name}", layout.base, layout.base_eval(set_name), set_name)
        )

    def train_stage(arm: str, lr: Any, seed: int, folder: Path) -> Stage:
        per_step = _S_PER_SFT_STEP if ARMS[arm][0] == "sft" else _S_PER_GRPO_STEP
        lr_of = lr if callable(lr) else (lambda: lr)
        shown = f"lr={lr:g}" if not callable(lr) else "selected lr"
        return Stage(
            f"train {arm} {shown} seed={seed}",
            folder,
            _S_PER_RUN_OVERHEAD + plan.steps(arm) * per_step,
            lambda: jobs.train_arm(
                plan, arm, base=layout.base, dataset=sets[f"train-s{seed}"], out_dir=folder, lr=lr_of(),
                seed=seed, progress=progress,
            ),
        )  # fmt: skip

    first = plan.seeds[0]
    for arm in ARMS:  # the lr grid: first seed, every lr, validation set only
        for lr in plan.lrs(arm):
            run = layout.grid_run(arm, lr)
            stages.append(train_stage(arm, lr, first, run))
            stages.append(eval_stage(f"eval {arm} lr={lr:g} on val", run, layout.grid_eval(arm, lr), "val"))
        stages.append(Stage(f"select lr of {arm}", layout.selection(arm), 0.1,
                            lambda arm=arm: _select_lr(layout, arm)))  # fmt: skip

    for arm in ARMS:  # the seeds at the selected lr, then test and OOD evaluation of every seed
        for seed in plan.seeds:
            model = lambda arm=arm, seed=seed: layout.seed_run(arm, seed)  # noqa: E731 (resolved after selection)
            if seed != first:
                stages.append(
                    train_stage(
                        arm, lambda arm=arm: layout.selected_lr(arm), seed, layout.seed_run(arm, seed)
                    )
                )
            for set_name in plan.eval_sets()[1:]:  # every set but val
                stages.append(
                    eval_stage(
                        f"eval {arm} seed={seed} on {set_name}",
                        model,
                        layout.seed_eval(arm, seed, set_name),
                        set_name,
                    )
                )
    return stages
