"""An experiment as a list of resumable stages: data, lr grid, selection, seeds, evaluation.

Folder layout under ``--out`` (each stage owns one folder, see :mod:`crowdvlm.experiments.stages`)::

    experiment.json                   the merged experiment file this folder was produced with
    data/<set>/, data/<train>-s<k>/   image sets; the training set once per training seed
    runs/<arm>/lr<lr>/s<seed0>/       lr-grid runs (first seed), one per lr of the arm's grid
    runs/<arm>/s<seed>/               the other seeds, at the selected lr
    evals/<arm>/<set>/                an untrained arm on each set
    evals/<arm>/lr<lr>/<val>/         a grid run on the validation set
    evals/<arm>/s<seed>/<set>/        the selected model of each seed on each test set
    selection/<arm>/                  the lr picked for the arm (the marker holds the grid's scores)
    report/                           report.md, results.json, the plots, compare-<set>/

The lr of every arm is chosen by one rule written before any result is seen: the lowest validation score
(``selection.metric``, MAE by default) of the first seed's runs over the arm's grid, ties to the smaller lr.
Test sets are evaluated only after the selection. The first seed's selected grid run is also that seed's
final model (it was trained exactly as the other seeds are). An arm with one lr has no grid and no
validation stage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from crowdvlm.errors import UsageError
from crowdvlm.experiments import jobs
from crowdvlm.experiments.spec import ArmSpec, Experiment
from crowdvlm.experiments.stages import Stage, read_marker

__all__ = ["Layout", "build_stages", "check_folder_matches", "lr_tag"]

logger = logging.getLogger(__name__)


def lr_tag(lr: float) -> str:
    """Folder-safe name of a learning rate.

    >>> lr_tag(2e-05), lr_tag(0.0001)
    ('2e-05', '0.0001')
    """
    return f"{lr:g}"


class Layout:
    """Paths of every artefact of one experiment folder."""

    def __init__(self, out: Path, exp: Experiment):
        self.out, self.exp = Path(out), exp

    data = property(lambda self: self.out / "data")
    report = property(lambda self: self.out / "report")

    def grid_run(self, arm: str, lr: float) -> Path:
        return self.out / "runs" / arm / f"lr{lr_tag(lr)}" / f"s{self.exp.seeds[0]}"

    def seed_run(self, arm: str, seed: int) -> Path:
        """The model of ``arm`` at ``seed`` (the first seed's is its selected grid run)."""
        if seed == self.exp.seeds[0]:
            return self.grid_run(arm, self.selected_lr(arm))
        return self.out / "runs" / arm / f"s{seed}"

    def model(self, arm: str, seed: int) -> Path:
        """The model folder an arm is evaluated with: the base (or its ``model``) for an untrained arm."""
        spec = self.exp.arms[arm]
        if not spec.trained:
            return spec.model or self.exp.base
        return self.seed_run(arm, seed)

    def grid_eval(self, arm: str, lr: float) -> Path:
        return self.out / "evals" / arm / f"lr{lr_tag(lr)}" / str(self.exp.validation_set)

    def seed_eval(self, arm: str, seed: int, set_name: str) -> Path:
        if not self.exp.arms[arm].trained:
            return self.out / "evals" / arm / set_name
        return self.out / "evals" / arm / f"s{seed}" / set_name

    def seeds_of(self, arm: str) -> tuple[int, ...]:
        """An untrained arm has one "seed" (greedy decoding is deterministic)."""
        return self.exp.seeds if self.exp.arms[arm].trained else (self.exp.seeds[0],)

    def selection(self, arm: str) -> Path:
        return self.out / "selection" / arm

    def selected_lr(self, arm: str) -> float:
        spec = self.exp.arms[arm]
        if len(spec.lr_grid) == 1:
            return spec.lr_grid[0]
        return float(read_marker(self.selection(arm))["lr"])


def check_folder_matches(out: Path, exp: Experiment) -> None:
    """Write ``experiment.json``, or refuse to resume a folder produced with a different experiment.

    Raises:
        UsageError: naming the keys that differ and how to proceed.
    """
    path = Path(out) / "experiment.json"
    current = json.loads(json.dumps(exp.resolved, default=str))
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise UsageError(
                f"{out} holds a run of another experiment (keys {', '.join(changed)} differ from {exp.path.name}): "
                "pass another --out, or delete the folder to start over"
            )
    else:
        Path(out).mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")


def _select_lr(layout: Layout, arm: ArmSpec) -> dict[str, Any]:
    """The pre-registered rule: lowest validation score over the grid, ties to the smaller lr."""
    metric = layout.exp.selection_metric
    grid = []
    for lr in arm.lr_grid:
        metrics = json.loads((layout.grid_eval(arm.name, lr) / "metrics.json").read_text(encoding="utf-8"))
        score = metrics["overall"].get(metric)
        grid.append({"lr": lr, f"val_{metric}": score})
    best = min(grid, key=lambda row: (row[f"val_{metric}"] is None, row[f"val_{metric}"] or 0.0, row["lr"]))
    logger.info("%s: lr %g selected (validation %s %s)", arm.name, best["lr"], metric, best[f"val_{metric}"])
    return {"lr": best["lr"], "metric": metric, "grid": grid}


def _n_images(exp: Experiment, set_name: str) -> int:
    spec = exp.sets[set_name]
    if spec.synthetic:
        return spec.n if not spec.balanced else max(1, spec.n // len(spec.styles)) * len(spec.styles)
    return sum(1 for m in spec.manifests for line in m.open(encoding="utf-8") if line.strip())


def build_stages(layout: Layout, *, progress: bool = True) -> list[Stage]:
    """Every stage of the experiment, in execution order (trained arms' recipes are parsed first)."""
    exp = layout.exp
    train_jobs = jobs.preflight(exp)
    stages: list[Stage] = []
    n_train = _n_images(exp, exp.train_set)
    train_manifests = {
        s: jobs.set_manifests(
            exp.sets[exp.train_set], layout.data, s if exp.sets[exp.train_set].synthetic else None
        )
        for s in exp.seeds
    }
    for s in exp.seeds if exp.sets[exp.train_set].synthetic else ():
        stages.append(
            Stage(
                f"synthesise {exp.train_set} seed={s}",
                layout.data / f"{exp.train_set}-s{s}",
                "synthesise",
                n_train,
                lambda s=s: jobs.synthesise_set(
                    exp, exp.sets[exp.train_set], layout.data, s, progress=progress
                ),
            )
        )
    for name in exp.eval_sets():
        if exp.sets[name].synthetic:
            stages.append(
                Stage(
                    f"synthesise {name}",
                    layout.data / name,
                    "synthesise",
                    _n_images(exp, name),
                    lambda name=name: jobs.synthesise_set(
                        exp, exp.sets[name], layout.data, progress=progress
                    ),
                )
            )
    manifests = {name: jobs.set_manifests(exp.sets[name], layout.data) for name in exp.eval_sets()}

    def eval_stage(label: str, arm: str, model, folder: Path, set_name: str) -> Stage:
        resolve = model if callable(model) else (lambda: model)
        return Stage(
            label,
            folder,
            "evaluate",
            _n_images(exp, set_name),
            lambda: jobs.evaluate_model(
                exp, resolve(), manifests[set_name], folder, settings=exp.eval_of(arm), progress=progress
            ),
        )

    def train_stage(arm: ArmSpec, lr, seed: int, folder: Path) -> Stage:
        lr_of = lr if callable(lr) else (lambda: lr)
        shown = f"lr={lr:g}" if not callable(lr) else "selected lr"
        units = jobs.samples_per_run(train_jobs[arm.name], n_train)
        return Stage(
            f"train {arm.name} {shown} seed={seed}",
            folder,
            f"train-{arm.train}",
            units,
            lambda: jobs.train_arm(
                exp,
                arm,
                dataset=train_manifests[seed],
                out_dir=folder,
                lr=lr_of(),
                seed=seed,
                progress=progress,
            ),
        )

    first = exp.seeds[0]
    for arm in exp.arms.values():  # untrained arms: every set (validation too, as a reference point)
        if not arm.trained:
            for set_name in exp.eval_sets():
                stages.append(
                    eval_stage(
                        f"eval {arm.name} on {set_name}",
                        arm.name,
                        layout.model(arm.name, first),
                        layout.seed_eval(arm.name, first, set_name),
                        set_name,
                    )
                )
    for arm in exp.arms.values():  # the lr grid: first seed, every lr, validation set only
        if not arm.trained:
            continue
        if len(arm.lr_grid) == 1:
            stages.append(train_stage(arm, arm.lr_grid[0], first, layout.grid_run(arm.name, arm.lr_grid[0])))
            continue
        for lr in arm.lr_grid:
            run = layout.grid_run(arm.name, lr)
            stages.append(train_stage(arm, lr, first, run))
            stages.append(
                eval_stage(
                    f"eval {arm.name} lr={lr:g} on {exp.validation_set}",
                    arm.name,
                    run,
                    layout.grid_eval(arm.name, lr),
                    exp.validation_set,
                )
            )
        stages.append(
            Stage(
                f"select lr of {arm.name}",
                layout.selection(arm.name),
                "select",
                1,
                lambda arm=arm: _select_lr(layout, arm),
            )
        )
    for arm in exp.arms.values():  # the other seeds at the selected lr, then every test set of every seed
        if not arm.trained:
            continue
        for seed in exp.seeds:
            if seed != first:
                folder = layout.seed_run(arm.name, seed)
                stages.append(train_stage(arm, lambda arm=arm: layout.selected_lr(arm.name), seed, folder))
            model = lambda arm=arm, seed=seed: layout.seed_run(arm.name, seed)  # noqa: E731 (after selection)
            for set_name in exp.test_sets:
                stages.append(
                    eval_stage(
                        f"eval {arm.name} seed={seed} on {set_name}",
                        arm.name,
                        model,
                        layout.seed_eval(arm.name, seed, set_name),
                        set_name,
                    )
                )
    return stages
