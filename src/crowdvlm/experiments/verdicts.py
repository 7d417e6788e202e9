"""A verdict per comparison of an experiment, from the paired bootstrap over images and seeds.

A comparison says "arm a's MAE is lower than / higher than / about equal to arm b's" on a test set, or on
the images of a count range, with a practical margin (a fraction of b's MAE on the same images) fixed in the
experiment file before the run. The interval is :func:`crowdvlm.evaluate.bootstrap.paired_bootstrap` of
the per-image absolute errors (a parse failure scored as a prediction of 0, the metrics' convention); each
comparison is repeated on the images both arms parsed, as a sensitivity check. A claim combines comparisons
(all parts reproduce -> reproduces; any part does not -> does not reproduce; else inconclusive).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crowdvlm.evaluate.bootstrap import DiffCI, paired_bootstrap
from crowdvlm.evaluate.results import paired_rows
from crowdvlm.experiments.results import SetResults
from crowdvlm.experiments.spec import ComparisonSpec, Experiment

__all__ = ["VERDICTS", "combine_verdicts", "decide", "directional_verdict", "equivalence_verdict"]

#: The three possible outcomes of a claim.
VERDICTS = ("reproduces", "does not reproduce", "inconclusive")


def directional_verdict(ci: DiffCI, *, expect: str, margin: float = 0.0) -> str:
    """Verdict on "a is lower than b" (``expect="lower"``) or "a is higher than b" (``expect="higher"``).

    * reproduces: the whole interval lies on the expected side of 0;
    * does not reproduce: the whole interval lies on the other side of 0, or inside ``[-margin, margin]``
      (the two arms are practically equal, so the claimed gap is absent);
    * inconclusive: otherwise.

    >>> ci = DiffCI(-0.5, -0.8, -0.2, 0.95, 100, 3, ())
    >>> directional_verdict(ci, expect="lower"), directional_verdict(ci, expect="higher")
    ('reproduces', 'does not reproduce')
    >>> directional_verdict(DiffCI(0.01, -0.03, 0.04, 0.95, 100, 3, ()), expect="lower", margin=0.05)
    'does not reproduce'
    """
    if expect not in ("lower", "higher"):
        raise ValueError(f"expect must be 'lower' or 'higher', got {expect!r}")
    sign = -1.0 if expect == "lower" else 1.0
    low, high = sorted((sign * ci.low, sign * ci.high))  # now "expected" means positive
    if low > 0:
        return "reproduces"
    if high < 0 or (-margin <= ci.low and ci.high <= margin and margin > 0):
        return "does not reproduce"
    return "inconclusive"


def equivalence_verdict(ci: DiffCI, *, margin: float) -> str:
    """Verdict on "a is about equal to b": within ``±margin``.

    * reproduces: the whole interval lies inside ``[-margin, margin]``;
    * does not reproduce: the whole interval lies outside it (a real difference larger than the margin);
    * inconclusive: otherwise.

    >>> equivalence_verdict(DiffCI(0.0, -0.1, 0.1, 0.95, 100, 3, ()), margin=0.2)
    'reproduces'
    >>> equivalence_verdict(DiffCI(0.5, 0.3, 0.7, 0.95, 100, 3, ()), margin=0.2)
    'does not reproduce'
    >>> equivalence_verdict(DiffCI(0.2, 0.1, 0.3, 0.95, 100, 3, ()), margin=0.2)
    'inconclusive'
    """
    if margin <= 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin}")
    if -margin <= ci.low and ci.high <= margin:
        return "reproduces"
    if ci.low > margin or ci.high < -margin:
        return "does not reproduce"
    return "inconclusive"


def combine_verdicts(verdicts: list[str]) -> str:
    """All parts reproduce -> reproduces; any part does not -> does not reproduce; else inconclusive.

    >>> combine_verdicts(["reproduces", "inconclusive"]), combine_verdicts(["does not reproduce", "inconclusive"])
    ('inconclusive', 'does not reproduce')
    """
    if verdicts and all(v == "reproduces" for v in verdicts):
        return "reproduces"
    if any(v == "does not reproduce" for v in verdicts):
        return "does not reproduce"
    return "inconclusive"


def _subset(comparison: ComparisonSpec, truths: np.ndarray) -> tuple[str, np.ndarray]:
    if comparison.counts is None:
        return "all", np.ones(len(truths), bool)
    lo, hi = comparison.counts
    keep = (truths >= lo) & (truths <= hi if hi is not None else True)
    return (f"count >= {lo}" if hi is None else f"count {lo}-{hi}"), keep


def _row(c: ComparisonSpec, subset: str) -> dict[str, Any]:
    return {
        "id": c.id,
        "statement": c.statement,
        "set": c.set,
        "subset": subset,
        "a": c.a,
        "b": c.b,
        "expect": c.expect,
    }


def _inconclusive(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """A comparison that could not be made (no image in its count range, an arm not run yet)."""
    empty = dict.fromkeys(("ci", "mae_a", "mae_b", "margin", "parsed_only"))
    return {**row, "verdict": "inconclusive", "reason": reason, **empty}


def _compare(exp: Experiment, c: ComparisonSpec, results: SetResults, seed: int) -> dict[str, Any]:
    subset, keep = _subset(c, results.truths)
    row = _row(c, subset)
    arm_a, arm_b = results.arms[c.a], results.arms[c.b]
    # Seed s of a pairs with seed s of b (both trained on the same images); an untrained arm's single row
    # pairs with every seed of the other.
    untrained = not exp.arms[c.a].trained or not exp.arms[c.b].trained
    rows_a, rows_b = paired_rows(arm_a.seeds, arm_b.seeds, broadcast=untrained)
    if not keep.any():
        return _inconclusive(row, f"no image of {c.set} has {subset}")
    err_a = arm_a.errors(results.truths)[rows_a][:, keep]  # (S, N_selected)
    err_b = arm_b.errors(results.truths)[rows_b][:, keep]
    kw = dict(n_boot=exp.n_boot, level=exp.ci_level, seed=seed)
    ci = paired_bootstrap(err_a, err_b, **kw)
    both = arm_a.parsed[rows_a][:, keep] & arm_b.parsed[rows_b][:, keep]
    parsed = paired_bootstrap(err_a, err_b, mask=both, **kw) if both.any() else None
    margin = c.margin * float(err_b.mean())
    if c.expect == "equal":
        verdict = equivalence_verdict(ci, margin=margin) if margin > 0 else "inconclusive"
    else:
        verdict = directional_verdict(ci, expect=c.expect, margin=margin)
    return {
        **row,
        "mae_a": float(err_a.mean()),
        "mae_b": float(err_b.mean()),
        "margin": margin,
        "ci": ci.to_dict(),
        "parsed_only": parsed.to_dict() if parsed else None,
        "verdict": verdict,
    }


def decide(exp: Experiment, sets: dict[str, SetResults]) -> dict[str, Any]:
    """Every comparison of the experiment and every claim; ``{"claims": {id: verdict}, "rows": [...]}``."""
    rows = []
    for k, c in enumerate(exp.comparisons):
        missing = [arm for arm in (c.a, c.b) if arm not in sets[c.set].arms]
        if missing:  # a partial report: the arm has no finished seed yet
            rows.append(_inconclusive(_row(c, "all"), f"{missing[0]} not run yet"))
        else:
            rows.append(_compare(exp, c, sets[c.set], seed=k + 1))
    by_id = {r["id"]: r["verdict"] for r in rows}
    claims = {claim.id: combine_verdicts([by_id[p] for p in claim.parts]) for claim in exp.claims}
    return {"claims": claims, "rows": rows}
