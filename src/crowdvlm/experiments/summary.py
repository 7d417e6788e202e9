"""Collect a finished experiment folder into one JSON-able dict: ``report/results.json``.

Everything the report and the terminal table show comes from this dict, which is computed only from files
on disk (predictions, stage markers, trainer logs), so a report can be rebuilt at any time with
``crowdvlm experiment report``. On a folder still running, it holds the seeds whose every test set is
evaluated (``complete`` is then False and ``seeds_done`` says which); an arm with none is left out and a
comparison that needs it is inconclusive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crowdvlm.errors import UsageError
from crowdvlm.experiments.localisation import collect_localisation
from crowdvlm.experiments.pipeline import Layout
from crowdvlm.experiments.results import load_set, summarise
from crowdvlm.experiments.stages import is_done, read_marker
from crowdvlm.experiments.verdicts import decide
from crowdvlm.train.callbacks import read_jsonl

__all__ = ["collect", "grpo_curves", "task_reward_of"]

_CURVE_KEYS = ("task_reward", "frac_reward_zero_std", "kl", "entropy")


def task_reward_of(run_dir: Path) -> str | None:
    """The first reward a GRPO run was trained with (the task reward; the others are format terms), read from
    the configuration the run saved, so it is the reward the run really used, however the recipe wrote it."""
    from crowdvlm.train.config import read_job_summary

    try:
        rewards = read_job_summary(run_dir)["script"].get("rewards")
    except ValueError as err:
        raise UsageError(str(err)) from None
    return rewards[0] if rewards else None


def grpo_curves(log: list[dict[str, Any]], task_reward: str) -> dict[str, list[float]]:
    """Step-wise task reward, zero-std group fraction, KL and entropy from a GRPO log's ``log`` events."""
    key = f"rewards/{task_reward}/mean"
    rows = [r for r in log if r.get("event", "log") == "log" and key in r]
    pick = lambda name: [float(r[name]) if r.get(name) is not None else float("nan") for r in rows]  # noqa: E731
    return {
        "step": [int(r["step"]) for r in rows],
        "task_reward": pick(key),
        "frac_reward_zero_std": pick("frac_reward_zero_std"),
        "kl": pick("kl"),
        "entropy": pick("entropy"),
    }


def _quarters(values: list[float]) -> dict[str, float | None]:
    """Mean of the first and the last quarter of a curve."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"first": None, "last": None}
    q = max(1, arr.size // 4)
    return {"first": float(arr[:q].mean()), "last": float(arr[-q:].mean())}


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _training(layout: Layout) -> tuple[dict[str, Any], dict[str, Any]]:
    exp = layout.exp
    training, curves = {}, {}
    for arm in exp.arms.values():
        if not arm.trained:
            continue
        if len(arm.lr_grid) > 1 and not is_done(layout.selection(arm.name)):
            continue  # its lr is not selected yet
        if len(arm.lr_grid) > 1:
            selection = read_marker(layout.selection(arm.name))
        else:
            selection = {"lr": arm.lr_grid[0], "grid": []}
        seeds = [s for s in exp.seeds if is_done(layout.seed_run(arm.name, s))]
        if not seeds:
            continue
        markers = [read_marker(layout.seed_run(arm.name, s)) for s in seeds]
        reward = task_reward_of(layout.seed_run(arm.name, seeds[0])) if arm.train == "grpo" else None
        curves[arm.name] = {}
        for seed, marker in zip(seeds, markers, strict=True):
            log = layout.seed_run(arm.name, seed) / marker.get("log", "log.jsonl")
            if reward and log.is_file():
                curves[arm.name][str(seed)] = grpo_curves(read_jsonl(log), reward)
        training[arm.name] = {
            "train": arm.train,
            "recipe": arm.recipe_as_written,
            "overrides": arm.overrides,
            "task_reward": reward,
            "lr": selection["lr"],
            "grid": selection["grid"],
            "seeds": seeds,
            "steps": [m.get("steps") for m in markers],
            "train_wall_s": [m.get("wall_s") for m in markers],
            "samples_per_run": markers[0].get("units"),
        }
        if curves[arm.name]:
            per_seed = list(curves[arm.name].values())
            training[arm.name]["diagnostics"] = {
                name: {
                    part: _mean_or_none([_quarters(c[name])[part] for c in per_seed])
                    for part in ("first", "last")
                }
                for name in _CURVE_KEYS
            }
    return training, curves


def _seeds_done(layout: Layout, arm: str) -> list[int]:
    """The seeds of ``arm`` evaluated on every test set (``is_done`` without a selection for grid arms)."""
    spec = layout.exp.arms[arm]
    if spec.trained and len(spec.lr_grid) > 1 and not is_done(layout.selection(arm)):
        return []
    sets = layout.exp.test_sets
    return [s for s in layout.seeds_of(arm) if all(is_done(layout.seed_eval(arm, s, t)) for t in sets)]


def collect(
    layout: Layout, *, wall_s: float | None = None, running: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the report shows, from the finished stages of an experiment folder.

    Args:
        running: the holder (pid, host, started, command) of a run still writing the folder, or None.
    """
    exp = layout.exp
    done = {arm: _seeds_done(layout, arm) for arm in exp.arms}
    done = {arm: seeds for arm, seeds in done.items() if seeds}
    if not done:
        raise UsageError(
            f"{layout.out}: no arm has a seed evaluated on every test set yet; nothing to report"
        )
    sets = {}
    for set_name in exp.test_sets:
        files = {
            arm: {s: layout.seed_eval(arm, s, set_name) / "predictions.jsonl" for s in seeds}
            for arm, seeds in done.items()
        }
        sets[set_name] = load_set(set_name, files)
    training, curves = _training(layout)
    markers = [p.parent for p in layout.out.rglob(".done.json")]
    stage_walls = [read_marker(folder).get("wall_s", 0.0) for folder in markers if is_done(folder)]
    return {
        "experiment": {
            "name": exp.name,
            "title": exp.title,
            "file": exp.path.name,
            "seeds": list(exp.seeds),
            "base": exp.base_as_written,
            "test_sets": list(exp.test_sets),
            "n_boot": exp.n_boot,
            "ci_level": exp.ci_level,
            "selection_metric": exp.selection_metric,
            "validation_set": exp.validation_set,
        },
        "labels": {name: arm.label for name, arm in exp.arms.items()},
        "wall_s": wall_s,
        "stage_wall_s_total": round(float(sum(stage_walls)), 1),
        "sets": {name: summarise(res, exp.bucket_edges) for name, res in sets.items()},
        "localisation": collect_localisation(layout),
        "comparisons": decide(exp, sets),
        "claims_spec": [{"id": c.id, "statement": c.statement, "parts": list(c.parts)} for c in exp.claims],
        "training": training,
        "curves": curves,
        "seeds_done": done,
        "running": running,
        "complete": all(
            is_done(layout.seed_eval(a, s, t))
            for a in exp.arms
            for s in layout.seeds_of(a)
            for t in exp.test_sets
        ),
    }
