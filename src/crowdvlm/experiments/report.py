"""``report.md`` and the terminal table, rendered from the dict of :func:`crowdvlm.experiments.summary.collect`.

Paths in the report are relative to the run folder (plots, comparisons) or as the experiment file wrote
them (base, recipes), never absolute paths of the machine that ran it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from crowdvlm.atomic import atomic_write_json, atomic_write_text
from crowdvlm.evaluate.bootstrap import format_interval
from crowdvlm.evaluate.results import format_mean_sd
from crowdvlm.experiments.localisation import localisation_table
from crowdvlm.experiments.plots import plot_all
from crowdvlm.experiments.spec import Experiment
from crowdvlm.runlock import describe_holder

__all__ = ["comparisons_table", "render_markdown", "terminal_table", "write_report"]


def _ci(ci: dict[str, Any] | None) -> str:
    return "–" if not ci else format_interval(ci["diff"], ci["low"], ci["high"])


def _label(results: dict[str, Any], arm: str) -> str:
    return results["labels"].get(arm, arm)


def _direction(results: dict[str, Any], row: dict[str, Any]) -> str:
    """Which arm the interval favours, when it excludes 0: " (SFT lower)"."""
    ci = row["ci"]
    if ci and ci["high"] < 0:
        return f" ({_label(results, row['a'])} lower)"
    if ci and ci["low"] > 0:
        return f" ({_label(results, row['b'])} lower)"
    return ""


_CLAIMED = {"lower": "a < b", "higher": "a > b", "equal": "a ≈ b"}


def comparisons_table(results: dict[str, Any]) -> str:
    """One row per comparison of the experiment, then one per claim (markdown)."""
    level = int(round(100 * results["experiment"]["ci_level"]))
    lines = [
        f"| id | claim | a vs b | set | MAE a vs b | diff a − b, {level}% CI | margin | on parsed answers | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["comparisons"]["rows"]:
        where = r["set"] + ("" if r["subset"] == "all" else f", {r['subset']}")
        if r["ci"] is None:
            lines.append(
                f"| **{r['id']}** | {r['statement']} | {_label(results, r['a'])} vs {_label(results, r['b'])} "
                f"| {where} | – | – | – | – | {r['verdict']} ({r.get('reason', '')}) |"
            )
            continue
        size = f"{r['ci']['n_images']} images × {r['ci']['n_seeds']} seeds"
        lines.append(
            f"| **{r['id']}** | {r['statement']} ({_CLAIMED[r['expect']]}) | {_label(results, r['a'])} vs "
            f"{_label(results, r['b'])} | {where} ({size}) | {r['mae_a']:.2f} vs {r['mae_b']:.2f} | {_ci(r['ci'])} | "
            f"±{r['margin']:.2f} | {_ci(r['parsed_only'])} | {r['verdict']}{_direction(results, r)} |"
        )
    claims = results["comparisons"]["claims"]
    if claims:
        lines += ["", "| claim | parts | verdict |", "|---|---|---|"]
        for claim in results["claims_spec"]:
            lines.append(
                f"| {claim['id']}: {claim['statement']} | {', '.join(claim['parts'])} | **{claims[claim['id']]}** |"
            )
    return "\n".join(lines)


def _wall(train: dict[str, Any]) -> str:
    walls = [w for w in train.get("train_wall_s", []) if w is not None]
    return f"{sum(walls) / len(walls):.0f} s" if walls else "–"


def _arms_table(results: dict[str, Any], set_name: str) -> str:
    data = results["sets"][set_name]
    lines = [
        "| arm | lr | MAE | RMSE | exact acc | acc ±1 | parse fail | MAE (parsed only) | train wall / seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, res in data["arms"].items():
        o, train = res["overall"], results["training"].get(arm, {})
        lr = f"{train['lr']:g}" if train else "–"
        lines.append(
            f"| {_label(results, arm)} | {lr} | {format_mean_sd(o['mae'])} | {format_mean_sd(o['rmse'])} | {format_mean_sd(o['accuracy'], pct=True)} | "
            f"{format_mean_sd(o['acc_within_1'], pct=True)} | {format_mean_sd(o['parse_failure_rate'], pct=True)} | {format_mean_sd(o['mae_parsed'])} | "
            f"{_wall(train) if train else '–'} |"
        )
    return "\n".join(lines)


def _breakdown(results: dict[str, Any], set_name: str, key: str) -> str:
    data = results["sets"][set_name]
    cols = data["datasets"] if key == "per_dataset" else data["buckets"]
    lines = [
        "| arm | " + " | ".join(c.removeprefix("synth-") for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for arm, res in data["arms"].items():
        lines.append(
            f"| {_label(results, arm)} | "
            + " | ".join(format_mean_sd(res[key][c]["mae"]) for c in cols)
            + " |"
        )
    return "\n".join(lines)


def _grid_table(results: dict[str, Any]) -> str:
    metric = results["experiment"]["selection_metric"]
    lines = [
        f"| arm | train | recipe (+ overrides) | lr grid (validation {metric}, first seed) | selected | steps / seed |",
        "|---|---|---|---|---|---|",
    ]
    for arm, t in results["training"].items():
        grid = ", ".join(
            f"{g['lr']:g}: {g[f'val_{metric}']:.2f}" for g in t["grid"] if g[f"val_{metric}"] is not None
        )
        over = f" + `{json.dumps(t['overrides'])}`" if t["overrides"] else ""
        steps = ", ".join(str(s) for s in t["steps"])
        lines.append(
            f"| {_label(results, arm)} | {t['train']} | `{t['recipe']}`{over} | {grid or 'one lr, no grid'} | "
            f"{t['lr']:g} | {steps} |"
        )
    return "\n".join(lines)


def _span(stat: dict[str, float | None], pct: bool = False) -> str:
    one = lambda v: "–" if v is None else (f"{100 * v:.0f}%" if pct else f"{v:.3f}")  # noqa: E731
    return f"{one(stat['first'])} → {one(stat['last'])}"


def _diagnostics_table(results: dict[str, Any]) -> str:
    lines = [
        "| arm | task reward | reward (first → last quarter) | groups with zero reward variance | KL | entropy |",
        "|---|---|---|---|---|---|",
    ]
    for arm, t in results["training"].items():
        d = t.get("diagnostics")
        if d:
            lines.append(
                f"| {_label(results, arm)} | `{t['task_reward']}` | {_span(d['task_reward'])} | "
                f"{_span(d['frac_reward_zero_std'], True)} | {_span(d['kl'])} | {_span(d['entropy'])} |"
            )
    return "\n".join(lines)


def _setup(exp: Experiment) -> list[str]:
    lines = ["| set | source | images | counts | seed |", "|---|---|---|---|---|"]
    for name, s in exp.sets.items():
        role = " (training, per seed: seed + k)" if name == exp.train_set else ""
        if s.synthetic:
            styles = ", ".join(s.styles) + (" (balanced)" if s.balanced else "")
            lines.append(
                f"| {name}{role} | synthetic: {styles} | {s.n} | {s.counts[0]}–{s.counts[1]} | {s.seed} |"
            )
        else:
            lines.append(
                f"| {name}{role} | manifests: {', '.join(m.name for m in s.manifests)} | – | – | – |"
            )
    ev = exp.eval
    return [
        *lines,
        "",
        f"- Base: `{exp.base_as_written}`; every trained arm starts from it and sees the same training images per "
        f"seed. Image size {exp.image_size} px"
        + (f"; every image is asked “{exp.question}”." if exp.question else "."),
        f"- Evaluation: prompt `{ev['prompt_template']}` / `{ev['output_format']}`, greedy, at most {ev['max_new_tokens']} new tokens.",
        *[
            f"- Evaluation of {arm.label}: "
            + ", ".join(f"{k} `{v}`" for k, v in exp.eval_of(arm.name).items() if k in arm.eval)
            + "."
            for arm in exp.arms.values()
            if arm.eval
        ],
        f"- Learning rate: per arm, the lowest validation {exp.selection_metric} of the first seed over its grid "
        "(ties to the smaller lr), decided before any test set is evaluated.",
        *[f"- {c}" for c in exp.caveats],
    ]


def _localisation_part(results: dict[str, Any], set_name: str) -> list[str]:
    table = localisation_table(results, set_name)
    if not table:
        return []
    return [
        "Localisation of the point arms (points matched one to one within each radius, original image pixels; "
        "precision and recall summed over images, mean ± sd over seeds; the MAE scores the number of points "
        "listed, the table above the stated count):",
        "",
        table,
        "",
    ]


def render_markdown(results: dict[str, Any], exp: Experiment, plots: dict[str, str]) -> str:
    """The full report."""
    e = results["experiment"]
    wall = results.get("wall_s")
    one_seed = len(e["seeds"]) == 1
    parts = [
        f"# {e['title']}",
        "",
        f"Experiment `{e['file']}`, seeds {', '.join(map(str, e['seeds']))}, generated "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f", wall time **{wall / 60:.1f} min**" if wall else "")
        + ". Every number below was computed from the files in this folder.",
        "",
        *[f"> {note}" for note in exp.notes],
        *(
            []
            if results["complete"]
            else [
                "> **Partial report**: the run has not finished; it holds the seeds evaluated so far: "
                + "; ".join(f"{_label(results, a)} {s}" for a, s in results["seeds_done"].items())
                + "."
            ]
        ),
        *(
            [f"> Written while a run was still writing this folder ({describe_holder(results['running'])})."]
            if results.get("running") is not None
            else []
        ),
        "",
        *([exp.description.strip(), ""] if exp.description else []),
        "## Verdicts",
        "",
        comparisons_table(results),
        "",
        "How to read it: *diff* is MAE(a) − MAE(b) on the same images, averaged over seeds; the interval is a paired "
        f"bootstrap ({e['n_boot']} replicates) that resamples the test images **and the training seeds**"
        + (
            " (one seed here: only images are resampled, so training noise is not in the interval)"
            if one_seed
            else ""
        )
        + ". A directional claim *reproduces* when the whole interval lies on the claimed side of 0, *does not reproduce* "
        "when it lies on the other side or entirely within the practical margin (a fraction of b's MAE, fixed in the "
        "experiment file), and is *inconclusive* otherwise; an “about equal” claim reproduces when the interval lies "
        "within the margin. A parse failure counts as a prediction of 0; *on parsed answers* redoes each comparison on "
        "the images both arms answered in the expected format.",
        "",
        "## Results per arm",
        "",
    ]
    for name in results["sets"]:
        data = results["sets"][name]
        parts += [
            f"### {name} ({data['n']} images)",
            "",
            _arms_table(results, name),
            "",
            "MAE per dataset:",
            "",
            _breakdown(results, name, "per_dataset"),
            "",
            "MAE by true count:",
            "",
            _breakdown(results, name, "per_bucket"),
            "",
            *_localisation_part(results, name),
            f"Every arm side by side with `crowdvlm compare`: [compare-{name}/compare.md](compare-{name}/compare.md).",
            "",
        ]
    parts += [
        "mean ± sd over seeds.",
        "",
        f"![MAE per dataset]({plots['mae_per_dataset']})",
        "",
        f"![MAE by count bucket]({plots['error_by_bucket']})",
        "",
        "## Training",
        "",
        _grid_table(results),
        "",
    ]
    if any(t.get("diagnostics") for t in results["training"].values()):
        parts += [
            "GRPO diagnostics (trainer logs, mean over seeds):",
            "",
            _diagnostics_table(results),
            "",
            f"![GRPO reward curves]({plots['reward_curves']})",
            "",
        ]
    parts += ["## Set-up", "", *_setup(exp), ""]
    return "\n".join(parts)


def terminal_table(results: dict[str, Any]) -> str:
    """A compact plain-text summary for the terminal."""
    sets = list(results["sets"])
    lines = [f"{'arm':<22}" + "".join(f"{s + ' MAE':>18}" for s in sets) + f"{'lr':>10}"]
    for arm in results["sets"][sets[0]]["arms"]:
        lr = results["training"].get(arm, {}).get("lr")
        cells = "".join(
            f"{format_mean_sd(results['sets'][s]['arms'][arm]['overall']['mae']):>18}" for s in sets
        )
        lines.append(f"{_label(results, arm)[:21]:<22}{cells}{(f'{lr:g}' if lr else '–'):>10}")
    lines.append("")
    for r in results["comparisons"]["rows"]:
        lines.append(
            f"{r['id']:<10}{r['statement'][:56]:<58}{('diff ' + _ci(r['ci'])) if r['ci'] else '':<28}  {r['verdict']}"
        )
    if results["comparisons"]["claims"]:
        lines += ["", "  ".join(f"{c}: {v}" for c, v in results["comparisons"]["claims"].items())]
    return "\n".join(lines)


def write_report(results: dict[str, Any], exp: Experiment, layout) -> Path:
    """Write ``results.json``, the plots, one ``crowdvlm compare`` folder per test set and ``report.md``."""
    from crowdvlm.evaluate.compare import write_comparison

    out_dir = layout.report
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "results.json", results, default=float)
    for name in exp.test_sets:  # every arm as a group of runs (one per seed), baseline the first arm
        done = results["seeds_done"]  # every arm as a group of runs, one per evaluated seed
        trained = [set(done[a]) for a, spec in exp.arms.items() if a in done and spec.trained]
        common = (
            sorted(set.intersection(*trained)) if trained else []
        )  # a partial report: the seeds all arms have
        seeds = {a: common if exp.arms[a].trained else done[a] for a in done}
        groups = [[layout.seed_eval(arm, s, name) for s in seeds[arm]] for arm in exp.arms if arm in done]
        write_comparison(
            groups,
            out_dir / f"compare-{name}",
            names=[a.label for a in exp.arms.values() if a.name in done],
            n_bootstrap=exp.n_boot,
        )
    plots = plot_all(results, out_dir)
    path = out_dir / "report.md"
    atomic_write_text(path, render_markdown(results, exp, plots))
    return path
