"""Localisation of the point arms of an experiment: F1 per radius and the count read from the points.

An arm evaluated with ``output: points`` has a ``localisation.json`` next to each seed's predictions (written
by :func:`crowdvlm.evaluate.localisation.write_localisation`, the same file ``crowdvlm eval --output points``
writes). This module gathers them into ``results.json`` (mean and sd over seeds) and renders the report's
table; arms that answer counts only have no row.
"""

from __future__ import annotations

from typing import Any

from crowdvlm.evaluate.localisation import LOCALISATION_FILE
from crowdvlm.experiments.results import _mean_sd
from crowdvlm.experiments.stages import read_json_file

__all__ = ["collect_localisation", "localisation_table"]


def collect_localisation(layout) -> dict[str, dict[str, Any]]:
    """``{set: {arm: {"radii", "f1": {"r8": mean/sd}, "precision", "recall", "mae_points", "n"}}}``.

    Precision and recall are at the largest radius; ``mae_points`` scores the number of points listed as
    the count. Only arms whose every seed has a ``localisation.json`` on the set are included.
    """
    exp = layout.exp
    out: dict[str, dict[str, Any]] = {}
    for set_name in exp.test_sets:
        for arm in exp.arms:
            paths = [layout.seed_eval(arm, s, set_name) / LOCALISATION_FILE for s in layout.seeds_of(arm)]
            if exp.eval_of(arm)["output"] != "points" or not all(p.is_file() for p in paths):
                continue
            runs = [read_json_file(p) for p in paths]
            radii = runs[0]["radii"]
            last = f"r{radii[-1]:g}"
            out.setdefault(set_name, {})[arm] = {
                "radii": radii,
                "n": runs[0]["overall"]["n"],
                "f1": {f"r{r:g}": _mean_sd([run["overall"][f"r{r:g}"]["f1"] for run in runs]) for r in radii},
                "precision": _mean_sd([run["overall"][last]["precision"] for run in runs]),
                "recall": _mean_sd([run["overall"][last]["recall"] for run in runs]),
                "mae_points": _mean_sd([run["overall"]["count_from_points"]["mae"] for run in runs]),
            }
    return out


def _cell(stat: dict[str, float | None], digits: int = 3) -> str:
    if stat["mean"] is None:
        return "–"
    text = f"{stat['mean']:.{digits}f}"
    return text if not stat["sd"] else f"{text} ± {stat['sd']:.{digits}f}"


def localisation_table(results: dict[str, Any], set_name: str) -> str:
    """The markdown table of the point arms on one set ("" when no arm answered with points)."""
    arms = results.get("localisation", {}).get(set_name)
    if not arms:
        return ""
    radii = next(iter(arms.values()))["radii"]
    head = [
        "arm",
        "images",
        *(f"F1 @{r:g}px" for r in radii),
        f"P @{radii[-1]:g}px",
        f"R @{radii[-1]:g}px",
        "MAE (count of points)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for arm, m in arms.items():
        cells = [
            results["labels"].get(arm, arm),
            str(m["n"]),
            *(_cell(m["f1"][f"r{r:g}"]) for r in radii),
            _cell(m["precision"]),
            _cell(m["recall"]),
            _cell(m["mae_points"], 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
