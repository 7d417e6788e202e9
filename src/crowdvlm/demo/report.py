"""``report.md`` and the terminal table, rendered from the dict of :func:`crowdvlm.demo.summary.collect`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from crowdvlm.demo.plots import ARM_LABELS, plot_all

__all__ = ["claims_table", "render_markdown", "terminal_table", "write_report"]

_SET_TITLES = {"test": "in-domain test", "ood": "out-of-domain test"}


def _ms(stat: dict[str, float | None], digits: int = 2, pct: bool = False) -> str:
    """``mean ± sd`` (sd left out for a single seed)."""
    mean, sd = stat["mean"], stat["sd"]
    if mean is None:
        return "–"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    text = f"{mean * scale:.{0 if pct else digits}f}{unit}"
    return text if not sd else f"{text} ± {sd * scale:.{0 if pct else digits}f}{unit}"


def _ci(ci: dict[str, Any] | None) -> str:
    if not ci:
        return "–"
    return f"{ci['diff']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]"


def _direction(row: dict[str, Any]) -> str:
    """Which arm the interval favours, when it excludes 0: " (SFT lower)" etc."""
    ci = row["ci"]
    if ci["high"] < 0:
        return f" ({ARM_LABELS.get(row['arm_a'], row['arm_a'])} lower)"
    if ci["low"] > 0:
        return f" ({ARM_LABELS.get(row['arm_b'], row['arm_b'])} lower)"
    return ""


def claims_table(results: dict[str, Any]) -> str:
    """The C1-C3 verdict table (markdown), one row per tested comparison."""
    rows = results["claims"]["rows"]
    verdicts = results["claims"]["claims"]
    level = int(round(100 * results["plan"]["ci_level"]))
    lines = [
        f"| claim | comparison | set | MAE a vs b | diff a − b, {level}% CI | margin | on parsed answers | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        comparison = f"{ARM_LABELS.get(r['arm_a'], r['arm_a'])} vs {ARM_LABELS.get(r['arm_b'], r['arm_b'])}"
        where = r["set_name"] + ("" if r["subset"] == "all" else f", {r['subset']}")
        margin = f"±{r['margin']:.2f}"
        direction = _direction(r)
        lines.append(
            f"| **{r['claim']}** {r['statement']} | {comparison} | {where} ({r['ci']['n_images']} images × "
            f"{r['ci']['n_seeds']} seeds) | {r['mae_a']:.2f} vs {r['mae_b']:.2f} | {_ci(r['ci'])} | {margin} | "
            f"{_ci(r['parsed_only'])} | {r['verdict']}{direction} |"
        )
    lines.append("")
    lines.append("| claim | verdict |")
    lines.append("|---|---|")
    paper = {
        "C1": "GRPO with the 0/1 reward does worse than SFT",
        "C2": "GRPO with FGRPR does better than SFT in-domain",
        "C3": "out of domain, FGRPR ≈ SFT overall and better on larger counts",
    }
    for claim, verdict in verdicts.items():
        lines.append(f"| {claim}: {paper[claim]} | **{verdict}** |")
    return "\n".join(lines)


def _arms_table(results: dict[str, Any]) -> str:
    test, ood = results["sets"]["test"], results["sets"]["ood"]
    large = results["plan"]["large_count_min"]
    large_buckets = [b for b in ood["buckets"] if _bucket_low(b) >= large]
    lines = [
        "| arm | lr | ID MAE | ID RMSE | ID exact acc | ID parse fail | OOD MAE | OOD MAE (parsed only) | "
        f"OOD parse fail | OOD MAE, counts ≥ {large} | near-OOD MAE | train wall / seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    near = results["sets"].get("ood_near")
    for arm, res in test["arms"].items():
        o = ood["arms"][arm]
        train = results["training"].get(arm, {})
        walls = [w for w in train.get("train_wall_s", []) if w is not None]
        wall = f"{sum(walls) / len(walls):.0f} s" if walls else "–"
        lr = f"{train['lr']:g}" if train else "–"
        large_mae = ", ".join(_ms(o["per_bucket"][b]["mae"]) for b in large_buckets) or "–"
        near_mae = _ms(near["arms"][arm]["overall"]["mae"]) if near else "–"
        lines.append(
            f"| {ARM_LABELS.get(arm, arm)} | {lr} | {_ms(res['overall']['mae'])} | {_ms(res['overall']['rmse'])} | "
            f"{_ms(res['overall']['accuracy'], pct=True)} | {_ms(res['overall']['parse_failure_rate'], pct=True)} | "
            f"{_ms(o['overall']['mae'])} | {_ms(o['overall']['mae_parsed'])} | "
            f"{_ms(o['overall']['parse_failure_rate'], pct=True)} | {large_mae} | {near_mae} | {wall} |"
        )
    return "\n".join(lines)


def _bucket_low(label: str) -> int:
    return int(label.lstrip(">").split("-")[0]) + (1 if label.startswith(">") else 0)


def _breakdown(results: dict[str, Any], set_name: str, key: str) -> str:
    data = results["sets"][set_name]
    cols = data["datasets"] if key == "per_dataset" else data["buckets"]
    lines = [
        "| arm | " + " | ".join(c.removeprefix("synth-") for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for arm, res in data["arms"].items():
        lines.append(
            f"| {ARM_LABELS.get(arm, arm)} | " + " | ".join(_ms(res[key][c]["mae"]) for c in cols) + " |"
        )
    return "\n".join(lines)


def _grid_table(results: dict[str, Any]) -> str:
    lines = ["| arm | lr grid (validation MAE, first seed) | selected |", "|---|---|---|"]
    for arm, train in results["training"].items():
        grid = ", ".join(f"{g['lr']:g}: {g['val_mae']:.2f}" for g in train["grid"])
        lines.append(f"| {ARM_LABELS.get(arm, arm)} | {grid} | {train['lr']:g} |")
    return "\n".join(lines)


def _span(stat: dict[str, float | None], pct: bool = False) -> str:
    """``first → last`` of a training curve's quarter means."""

    def one(v: float | None) -> str:
        return "–" if v is None else (f"{100 * v:.0f}%" if pct else f"{v:.3f}")

    return f"{one(stat['first'])} → {one(stat['last'])}"


def _diagnostics_table(results: dict[str, Any]) -> str:
    lines = [
        "| arm | task reward (first → last quarter) | groups with zero reward variance | KL | entropy |",
        "|---|---|---|---|---|",
    ]
    for arm, train in results["training"].items():
        d = train.get("diagnostics")
        if not d:
            continue
        lines.append(
            f"| {ARM_LABELS.get(arm, arm)} | {_span(d['task_reward'])} | {_span(d['frac_reward_zero_std'], True)} | "
            f"{_span(d['kl'])} | {_span(d['entropy'])} |"
        )
    return "\n".join(lines)


def render_markdown(results: dict[str, Any], plots: dict[str, str]) -> str:
    """The full report."""
    plan = results["plan"]
    seeds = ", ".join(str(s) for s in plan["seeds"])
    wall = results.get("wall_s")
    grpo_walls = [w for a, t in results["training"].items() if a != "sft" for w in t["train_wall_s"] if w]
    sft_walls = [w for w in results["training"].get("sft", {}).get("train_wall_s", []) if w]
    compute_ratio = (
        (sum(grpo_walls) / len(grpo_walls)) / (sum(sft_walls) / len(sft_walls))
        if grpo_walls and sft_walls
        else None
    )
    one_seed = len(plan["seeds"]) == 1
    parts = [
        "# CrowdVLM-R1 in miniature: SFT vs GRPO (0/1) vs GRPO (FGRPR)",
        "",
        f"Plan **{plan['name']}**, seeds {seeds}, generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f", demo wall time **{wall / 60:.1f} min**" if wall else "")
        + ". Every number below was computed from the files in this folder.",
        "",
        *[f"> {note}" for note in plan.get("notes", [])],
        "",
        "## The paper's claims",
        "",
        claims_table(results),
        "",
        "How to read it: *diff* is MAE(a) − MAE(b) on the same images, averaged over seeds; the interval is a "
        f"paired bootstrap ({plan['n_boot']} replicates) that resamples the test images **and the training "
        "seeds**"
        + (
            " (one seed here: only images are resampled, so training noise is not in the interval)"
            if one_seed
            else ""
        )
        + ". A directional claim *reproduces* when the whole interval lies on the claimed side of 0, *does not "
        "reproduce* when it lies on the other side or entirely within the practical margin (±"
        f'{100 * plan["practical_margin"]:.0f}% of SFT\'s MAE), and is *inconclusive* otherwise. C3a ("about equal") '
        f"reproduces when the interval lies within ±{100 * plan['equivalence_margin']:.0f}% of SFT's OOD MAE. A parse "
        "failure counts as a prediction of 0; the column *on parsed answers* redoes each comparison on the images "
        "both arms answered in the expected format. Row M is not a paper claim: it checks the mechanism (fuzzy "
        "credit beats exact-match credit) directly.",
        "",
        "## Results per arm",
        "",
        _arms_table(results),
        "",
        f"mean ± sd over seeds; ID = in-domain test ({results['sets']['test']['n']} images, "
        f"{len(results['sets']['test']['datasets'])} styles), OOD = unseen style ({results['sets']['ood']['n']} images, "
        f"counts {plan['ood_counts'][0]}–{plan['ood_counts'][1]}); near-OOD = `{plan.get('near_ood_style') or '–'}`, "
        "the same counts, a milder shift (reported, not part of the C3 verdict).",
        "",
        "### MAE per dataset",
        "",
        _breakdown(results, "test", "per_dataset"),
        "",
        _breakdown(results, "ood", "per_dataset"),
        "",
        *([_breakdown(results, "ood_near", "per_dataset"), ""] if "ood_near" in results["sets"] else []),
        f"![MAE per dataset]({plots['mae_per_dataset']})",
        "",
        "### MAE by true count",
        "",
        "In-domain:",
        "",
        _breakdown(results, "test", "per_bucket"),
        "",
        "Out-of-domain:",
        "",
        _breakdown(results, "ood", "per_bucket"),
        "",
        *(
            ["Near out-of-domain:", "", _breakdown(results, "ood_near", "per_bucket"), ""]
            if "ood_near" in results["sets"]
            else []
        ),  # fmt: skip
        f"![Error by count bucket]({plots['error_by_bucket']})",
        "",
        "## Training",
        "",
        _grid_table(results),
        "",
        "GRPO diagnostics (trainer logs, mean over seeds):",
        "",
        _diagnostics_table(results),
        "",
        f"![GRPO reward curves]({plots['reward_curves']})",
        "",
        "## Set-up and caveats",
        "",
        f"- Data: synthetic images, {plan['image_size']} px; in-domain styles {', '.join(plan['styles'])} stand in "
        f"for the paper's five datasets; `{plan['ood_style']}` (never trained on) is the out-of-domain set that "
        f"decides C3, `{plan.get('near_ood_style') or '–'}` (never trained on either) a milder shift shown beside it. "
        "Every image is asked the same question (the tiny model knows only trained words). Training "
        f"counts {plan['train_counts'][0]}–{plan['train_counts'][1]}, so the OOD counts lie inside the range every arm "
        "was trained to output.",
        f"- Base: `{results['base']}` — the tiny Qwen2.5-VL after a short counting SFT, weak on purpose (exact hits "
        "rare), so the 0/1 reward is sparse as on real crowds.",
        f"- Every arm starts from the base and sees the same {plan['n_train']} training images per seed, once. SFT: "
        f"batch {plan['sft_batch_size']}; GRPO: {plan['grpo_prompts_per_step']} images × {plan['num_generations']} "
        f"completions per step, β = {plan['beta']}, temperature {plan['temperature']}. Rewards: `binary` + "
        "`answer_format` and `fgrpr` + `answer_format`.",
        "- Prompt: the paper's training wording with the answer-only instruction, for training and evaluation alike "
        "(the paper evaluates with a slightly different wording; a tiny model does not generalise across wordings). "
        "Greedy decoding.",
        f"- Learning rates: grid {', '.join(f'{x:g}' for x in plan['sft_lrs'])} for SFT and "
        f"{', '.join(f'{x:g}' for x in plan['grpo_lrs'])} for both GRPO arms, one rule for all (lowest validation "
        "MAE of the first seed, ties to the smaller lr), applied before any test result was computed.",
        "- **Equal images ≠ equal compute.** A GRPO arm samples and scores "
        f"{plan['num_generations']} completions per image"
        + (f" and took {compute_ratio:.0f}× the SFT arm's training time here" if compute_ratio else "")
        + ". A compute-matched SFT (more images or epochs) would likely do better than the SFT arm shown.",
        "- A tiny model on synthetic images is a stand-in for Qwen2.5-VL-3B/7B on crowd photographs: a verdict "
        "here says whether the *mechanism* shows at this scale, not whether the paper's numbers hold.",
        "",
    ]
    return "\n".join(parts)


def terminal_table(results: dict[str, Any]) -> str:
    """A compact plain-text summary for the terminal."""
    test, ood = results["sets"]["test"], results["sets"]["ood"]
    large = results["plan"]["large_count_min"]
    near = results["sets"].get("ood_near")
    lines = [f"{'arm':<12}{'ID MAE':>16}{'OOD MAE':>16}{'OOD parse fail':>16}{'near-OOD MAE':>16}{'lr':>10}"]
    for arm, res in test["arms"].items():
        o = ood["arms"][arm]["overall"]
        lr = results["training"].get(arm, {}).get("lr")
        lines.append(
            f"{ARM_LABELS.get(arm, arm):<12}{_ms(res['overall']['mae']):>16}{_ms(o['mae']):>16}"
            f"{_ms(o['parse_failure_rate'], pct=True):>16}"
            f"{(_ms(near['arms'][arm]['overall']['mae']) if near else '–'):>16}{(f'{lr:g}' if lr else '–'):>10}"
        )
    lines.append("")
    for r in results["claims"]["rows"]:
        ci = r["ci"]
        lines.append(
            f"{r['claim']:<9}{r['statement'][:56]:<58}diff {ci['diff']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]"
            f"  {r['verdict']}"
        )
    lines.append("")
    lines.append("  ".join(f"{c}: {v}" for c, v in results["claims"]["claims"].items())
                 + f"   (C3b uses OOD counts >= {large})")  # fmt: skip
    return "\n".join(lines)


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``results.json``, the plots and ``report.md`` into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8"
    )
    plots = plot_all(results, out_dir)
    path = out_dir / "report.md"
    path.write_text(render_markdown(results, plots), encoding="utf-8")
    return path
