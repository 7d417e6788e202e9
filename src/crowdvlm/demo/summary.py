"""Collect a finished demo folder into one JSON-able dict: ``report/results.json``.

Everything the report, the terminal table and ``benchmarks/demo.py`` show comes from this dict, which is
computed only from files on disk (predictions, stage markers, trainer logs), so a report can be rebuilt at
any time with ``crowdvlm demo --report-only``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crowdvlm.demo.claims import evaluate_claims
from crowdvlm.demo.pipeline import DemoLayout
from crowdvlm.demo.plan import ARMS
from crowdvlm.demo.results import BASE, load_set, summarise
from crowdvlm.demo.stages import is_done, read_marker

__all__ = ["collect", "grpo_curves", "read_log"]

ARM_ORDER = (BASE, *ARMS)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The ``event == "log"`` records of a trainer's JSONL log (an unreadable line raises, naming file and line)."""
    records = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not a JSON line ({err.msg})") from None
            if row.get("event", "log") == "log" and "step" in row:
                records.append(row)
    return records


def grpo_curves(log: list[dict[str, Any]], task_reward: str) -> dict[str, list[float]]:
    """Step-wise task reward, reward std, zero-std group fraction and KL from a GRPO log."""
    key = f"rewards/{task_reward}/mean"
    rows = [r for r in log if key in r]
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


def collect(layout: DemoLayout, *, wall_s: float | None = None) -> dict[str, Any]:
    """Everything the report shows, from the files of a finished demo folder."""
    plan = layout.plan
    first = plan.seeds[0]
    selection = {arm: read_marker(layout.selection(arm)) for arm in ARMS}

    sets = {}
    for set_name in plan.eval_sets()[1:]:
        files = {BASE: {0: layout.base_eval(set_name) / "predictions.jsonl"}}
        for arm in ARMS:
            files[arm] = {s: layout.seed_eval(arm, s, set_name) / "predictions.jsonl" for s in plan.seeds}
        sets[set_name] = load_set(set_name, files)

    training: dict[str, Any] = {}
    curves: dict[str, dict[int, Any]] = {}
    for arm, (kind, rewards) in ARMS.items():
        walls, steps = [], []
        curves[arm] = {}
        for seed in plan.seeds:
            run = layout.seed_run(arm, seed)
            marker = read_marker(run)
            walls.append(marker.get("wall_s"))
            steps.append(marker.get("steps"))
            log_path = Path(marker.get("log") or run / "log.jsonl")
            if kind == "grpo" and log_path.is_file():
                curves[arm][seed] = grpo_curves(read_log(log_path), rewards[0])
        training[arm] = {
            "lr": selection[arm]["lr"],
            "grid": selection[arm]["grid"],
            "steps": steps,
            "train_wall_s": walls,
            "images_per_seed": plan.n_train,
            "completions_per_image": plan.num_generations if kind == "grpo" else 1,
        }
        if kind == "grpo":
            per_seed = list(curves[arm].values())
            training[arm]["diagnostics"] = {
                name: {
                    part: _mean_or_none([_quarters(c[name])[part] for c in per_seed])
                    for part in ("first", "last")
                }
                for name in ("task_reward", "frac_reward_zero_std", "kl", "entropy")
            }

    stage_walls = (
        [read_marker(p.parent)["wall_s"] for p in layout.out.rglob(".done.json")]
        if layout.out.exists()
        else []
    )
    return {
        "plan": plan.to_dict(),
        "base": str(layout.base),
        "first_seed": first,
        "wall_s": wall_s,
        "stage_wall_s_total": round(float(sum(stage_walls)), 1),
        "sets": {name: summarise(res, plan.bucket_edges) for name, res in sets.items()},
        "claims": evaluate_claims(plan, sets["test"], sets["ood"], near=sets.get("ood_near")),
        "training": training,
        "curves": {arm: {str(s): c for s, c in by_seed.items()} for arm, by_seed in curves.items()},
        "complete": all(is_done(layout.seed_eval(arm, s, "ood")) for arm in ARMS for s in plan.seeds),
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
