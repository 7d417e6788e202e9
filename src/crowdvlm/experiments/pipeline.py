"""An experiment as a list of resumable stages: data, lr grid, selection, seeds, evaluation.

Folder layout under ``--out`` (each stage owns one folder, see :mod:`crowdvlm.experiments.stages`)::

    .owner.json                       this experiment's id: only folders holding it are ever cleared
    experiment.json                   the merged experiment file of the last run
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
import time
import uuid
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json
from crowdvlm.errors import UsageError
from crowdvlm.experiments import jobs
from crowdvlm.experiments.fingerprints import digest, file_digest, model_identity, recipe_inputs
from crowdvlm.experiments.spec import ArmSpec, Experiment
from crowdvlm.experiments.stages import OWNER_FILE, Stage, read_json_file, read_marker, read_owner
from crowdvlm.runlock import LOCK_FILE

__all__ = ["Layout", "build_stages", "claim_folder", "lr_tag", "owner_of", "unrecognised"]

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


# What an experiment writes at the top of --out (older runs wrote these too, without .owner.json)
_LAYOUT_NAMES = frozenset(
    {OWNER_FILE, LOCK_FILE, "experiment.json", "wall.json", "data", "runs", "evals", "selection", "report"}
)


def _check_name(out: Path, name: Any, exp: Experiment) -> None:
    if name not in (None, exp.name):
        raise UsageError(
            f"{out} holds the run of experiment {name!r}, not {exp.name!r} ({exp.path.name}): choose "
            f"another --out, or set name: {name} in the file if it is meant to continue that run"
        )


def owner_of(out: Path, exp: Experiment) -> str | None:
    """The id in ``out``'s owner marker, or None when it has none (nothing is written).

    Raises:
        UsageError: ``out`` was made by an experiment of another ``name``.
    """
    marker = read_owner(out)
    if marker is None or not isinstance(marker.get("experiment"), str):
        return None
    _check_name(out, marker.get("name"), exp)
    return marker["experiment"]


def unrecognised(out: Path, exp: Experiment) -> str | None:
    """Why ``out``, a folder with no owner marker, is not recognisably this experiment's; None when it is.

    A folder made before owner markers existed is this experiment's when its ``experiment.json`` names the
    experiment and it holds nothing at its top that an experiment does not write (stage folders, the report).

    Raises:
        UsageError: its ``experiment.json`` names an experiment of another ``name``.
    """
    spec = out / "experiment.json"
    if not spec.is_file():
        return f"no {OWNER_FILE}"
    try:
        name = json.loads(spec.read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"no {OWNER_FILE}, and {spec.name} names no experiment ({type(err).__name__}: {err})"
    _check_name(out, name, exp)
    extra = sorted(p.name for p in out.iterdir() if p.name not in _LAYOUT_NAMES)
    if extra:
        return f"no {OWNER_FILE}, and it holds {', '.join(extra[:3])}, which no experiment writes"
    return None


def claim_folder(out: Path, exp: Experiment) -> str:
    """Make ``out`` this experiment's folder (or find it is already), write ``experiment.json``; its id.

    A folder of this experiment made before owner markers existed (see :func:`unrecognised`) is adopted: its
    marker is written, with a warning naming the folder.

    Raises:
        UsageError: ``out`` is a file, a non-empty folder no experiment made (or not recognisably this one),
            or the folder of an experiment of another name (nothing in it is touched).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; expected a folder for the experiment")
    owner = owner_of(out, exp) if out.is_dir() else None
    if owner is None:
        adopting = out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir())  # made before markers
        reason = unrecognised(out, exp) if adopting else None
        if reason is not None:
            raise UsageError(
                f"--out {out} is not empty and was not made by crowdvlm experiment ({reason}): the experiment "
                "would write and clear folders in it; choose a new or empty --out (nothing was touched)"
            )
        owner = uuid.uuid4().hex
        marker = {"experiment": owner, "created": time.time(), "name": exp.name, "adopted": adopting}
        atomic_write_json(out / OWNER_FILE, marker)
        if adopting:
            logger.warning(
                "%s: a folder of experiment %r made before ownership markers existed (its experiment.json and "
                "stage folders only): adopted, %s written",
                out,
                exp.name,
                out / OWNER_FILE,
            )
    # the file as run last (the report reads the experiment file itself; this is the folder's record)
    atomic_write_json(out / "experiment.json", json.loads(json.dumps(exp.resolved, default=str)))
    return owner


def _select_lr(layout: Layout, arm: ArmSpec) -> dict[str, Any]:
    """The pre-registered rule: lowest validation score over the grid, ties to the smaller lr."""
    metric = layout.exp.selection_metric
    grid = []
    for lr in arm.lr_grid:
        metrics = read_json_file(layout.grid_eval(arm.name, lr) / "metrics.json")
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


class _Inputs:
    """What each stage depends on (see :mod:`crowdvlm.experiments.fingerprints`), computed once per set."""

    def __init__(self, exp: Experiment, train_jobs: dict[str, Any]):
        from crowdvlm.train.config import job_summary

        self.exp = exp
        self.base = model_identity(exp.base)
        self.recipes = {arm: recipe_inputs(job_summary(job)) for arm, job in train_jobs.items()}
        self._sets: dict[tuple[str, int | None], dict[str, Any]] = {}

    def data(self, name: str, seed: int | None = None) -> dict[str, Any]:
        key = (name, seed)
        if key not in self._sets:
            spec = self.exp.sets[name]
            if spec.synthetic:
                self._sets[key] = {
                    "styles": list(spec.styles),
                    "counts": list(spec.counts),
                    "n": spec.n,
                    "seed": spec.seed + (seed or 0),
                    "balanced": spec.balanced,
                    "image_size": self.exp.image_size,
                    "question": self.exp.question,
                }
            else:
                self._sets[key] = {"manifests": {str(p): file_digest(p) for p in spec.manifests}}
        return self._sets[key]

    def train(self, arm: ArmSpec, lr: float | str, seed: int) -> dict[str, Any]:
        """``lr`` is a learning rate, or the fingerprint of the selection that picks it."""
        train_set = self.exp.train_set
        data = self.data(train_set, seed if self.exp.sets[train_set].synthetic else None)
        return {"recipe": self.recipes[arm.name], "base": self.base, "data": data, "lr": lr, "seed": seed}

    def evaluate(self, arm: str, model: dict[str, Any] | str, set_name: str) -> dict[str, Any]:
        """``model``: the fingerprint of the training run, or the identity of a model folder."""
        return {"settings": self.exp.eval_of(arm), "data": self.data(set_name), "model": model}


def build_stages(layout: Layout, *, progress: bool = True) -> list[Stage]:
    """Every stage of the experiment, in execution order (trained arms' recipes are parsed first)."""
    exp = layout.exp
    train_jobs = jobs.preflight(exp)
    inputs = _Inputs(exp, train_jobs)
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
                inputs.data(exp.train_set, s),
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
                    inputs.data(name),
                )
            )
    manifests = {name: jobs.set_manifests(exp.sets[name], layout.data) for name in exp.eval_sets()}

    def eval_stage(label: str, arm: str, model, folder: Path, set_name: str, made_by: dict | str) -> Stage:
        resolve = model if callable(model) else (lambda: model)
        return Stage(
            label,
            folder,
            "evaluate",
            _n_images(exp, set_name),
            lambda: jobs.evaluate_model(
                exp, resolve(), manifests[set_name], folder, settings=exp.eval_of(arm), progress=progress
            ),
            inputs.evaluate(arm, made_by, set_name),
        )

    def train_stage(arm: ArmSpec, lr, seed: int, folder: Path, lr_input: float | str) -> Stage:
        lr_of = lr if callable(lr) else (lambda: lr)
        shown = f"lr={lr:g}" if not callable(lr) else "selected lr"
        units = jobs.samples_per_run(train_jobs[arm.name], n_train)
        return Stage(
            f"train {arm.name} {shown} seed={seed}",
            folder,
            f"train-{arm.train}",
            units,
            lambda resume=False: jobs.train_arm(
                exp,
                arm,
                dataset=train_manifests[seed],
                out_dir=folder,
                lr=lr_of(),
                seed=seed,
                progress=progress,
                resume=resume,
            ),
            inputs.train(arm, lr_input, seed),
            resumable=True,
        )

    first = exp.seeds[0]
    for arm in exp.arms.values():  # untrained arms: every set (validation too, as a reference point)
        if not arm.trained:
            model = layout.model(arm.name, first)
            for set_name in exp.eval_sets():
                stages.append(
                    eval_stage(
                        f"eval {arm.name} on {set_name}",
                        arm.name,
                        model,
                        layout.seed_eval(arm.name, first, set_name),
                        set_name,
                        inputs.base if model == exp.base else model_identity(model),
                    )
                )
    selected: dict[str, str] = {}  # arm -> fingerprint of its lr selection (or its one lr)
    for arm in exp.arms.values():  # the lr grid: first seed, every lr, validation set only
        if not arm.trained:
            continue
        if len(arm.lr_grid) == 1:
            lr = arm.lr_grid[0]
            stages.append(train_stage(arm, lr, first, layout.grid_run(arm.name, lr), lr))
            selected[arm.name] = lr
            continue
        grid = []
        for lr in arm.lr_grid:
            run = layout.grid_run(arm.name, lr)
            stages.append(train_stage(arm, lr, first, run, lr))
            stages.append(
                eval_stage(
                    f"eval {arm.name} lr={lr:g} on {exp.validation_set}",
                    arm.name,
                    run,
                    layout.grid_eval(arm.name, lr),
                    exp.validation_set,
                    stages[-1].fingerprint,
                )
            )
            grid.append(stages[-1].fingerprint)
        stages.append(
            Stage(
                f"select lr of {arm.name}",
                layout.selection(arm.name),
                "select",
                1,
                lambda arm=arm: _select_lr(layout, arm),
                {"metric": exp.selection_metric, "grid": grid},
            )
        )
        selected[arm.name] = stages[-1].fingerprint
    for arm in exp.arms.values():  # the other seeds at the selected lr, then every test set of every seed
        if not arm.trained:
            continue
        for seed in exp.seeds:
            if seed != first:
                folder = layout.seed_run(arm.name, seed)
                lr = lambda arm=arm: layout.selected_lr(arm.name)  # noqa: E731 (after selection)
                stages.append(train_stage(arm, lr, seed, folder, selected[arm.name]))
                made_by = stages[-1].fingerprint
            elif len(arm.lr_grid) == 1:
                run = layout.grid_run(arm.name, arm.lr_grid[0])
                made_by = next(s.fingerprint for s in stages if s.folder == run)
            else:  # the grid run the selection picks
                made_by = digest({"selected": selected[arm.name], "seed": seed})
            model = lambda arm=arm, seed=seed: layout.seed_run(arm.name, seed)  # noqa: E731 (after selection)
            for set_name in exp.test_sets:
                stages.append(
                    eval_stage(
                        f"eval {arm.name} seed={seed} on {set_name}",
                        arm.name,
                        model,
                        layout.seed_eval(arm.name, seed, set_name),
                        set_name,
                        made_by,
                    )
                )
    return stages
