"""The paper's three claims, each tested on paired per-image errors with a bootstrap CI.

=====  ==========================================================  ===============================
claim  statement (CrowdVLM-R1 abstract)                            test in the miniature
=====  ==========================================================  ===============================
C1     GRPO with the 0/1 reward does worse than SFT                in-domain MAE(binary) > MAE(SFT)
C2     GRPO with FGRPR does better than SFT in-domain              in-domain MAE(FGRPR) < MAE(SFT)
C3a    out of domain FGRPR is comparable to SFT overall            OOD |MAE(FGRPR) - MAE(SFT)| small
C3b    ... and better when the counts are larger                   OOD, count >= large_count_min:
                                                                   MAE(FGRPR) < MAE(SFT)
=====  ==========================================================  ===============================

C3 reproduces when C3a and C3b both do; it does not when either does not. The margins (what counts as "no
difference" for C1/C2/C3b, what counts as "comparable" for C3a) are plan fields, relative to SFT's MAE on
the same images, fixed before the run. A parse failure is scored as a prediction of 0 (the metrics'
convention); each comparison is also given on the images both arms parsed, as a sensitivity check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crowdvlm.demo.plan import DemoPlan
from crowdvlm.demo.results import SetResults
from crowdvlm.demo.stats import DiffCI, directional_verdict, equivalence_verdict, paired_bootstrap

__all__ = ["ClaimResult", "evaluate_claims", "combine_verdicts"]


@dataclass
class ClaimResult:
    """One tested comparison."""

    claim: str
    statement: str
    set_name: str
    subset: str
    arm_a: str
    arm_b: str
    mae_a: float
    mae_b: float
    ci: DiffCI
    margin: float
    verdict: str
    parsed_only: DiffCI | None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("ci", "parsed_only")}
        out["ci"] = self.ci.to_dict()
        out["parsed_only"] = self.parsed_only.to_dict() if self.parsed_only else None
        return out


def combine_verdicts(verdicts: list[str]) -> str:
    """All parts reproduce -> reproduces; any part does not -> does not reproduce; else inconclusive.

    >>> combine_verdicts(["reproduces", "inconclusive"]), combine_verdicts(["does not reproduce", "inconclusive"])
    ('inconclusive', 'does not reproduce')
    """
    if all(v == "reproduces" for v in verdicts):
        return "reproduces"
    if any(v == "does not reproduce" for v in verdicts):
        return "does not reproduce"
    return "inconclusive"


def _compare(
    plan: DemoPlan, results: SetResults, a: str, b: str, select: np.ndarray | None, seed: int
) -> tuple[float, float, DiffCI, DiffCI | None]:
    """MAE of a and b and the paired CIs of their difference (all images; images both parsed)."""
    keep = np.ones(len(results.truths), bool) if select is None else select
    arm_a, arm_b = results.arms[a], results.arms[b]
    common = sorted(set(arm_a.seeds) & set(arm_b.seeds))
    if not common:
        raise ValueError(f"arms {a} and {b} share no seed on {results.name}")
    rows_a = [arm_a.seeds.index(s) for s in common]
    rows_b = [arm_b.seeds.index(s) for s in common]
    err_a = arm_a.errors(results.truths)[rows_a][:, keep]  # (S, N_selected)
    err_b = arm_b.errors(results.truths)[rows_b][:, keep]
    kw = dict(n_boot=plan.n_boot, level=plan.ci_level, seed=seed)
    ci = paired_bootstrap(err_a, err_b, **kw)
    both = arm_a.parsed[rows_a][:, keep] & arm_b.parsed[rows_b][:, keep]
    parsed = paired_bootstrap(err_a, err_b, mask=both, **kw) if both.any() else None
    return float(err_a.mean()), float(err_b.mean()), ci, parsed


def evaluate_claims(
    plan: DemoPlan, test: SetResults, ood: SetResults, near: SetResults | None = None
) -> dict[str, Any]:
    """Test C1-C3 (and FGRPR vs binary, the mechanism the pilot saw) on the test and OOD sets.

    C3 is decided on ``ood`` (the far shift). With ``near`` (the near OOD set) the two halves of C3 are
    repeated there as rows ``C3a-near`` / ``C3b-near``, reported but not part of the verdict.

    Returns:
        ``{"claims": {"C1": verdict, "C2": ..., "C3": ...}, "rows": [ClaimResult.to_dict(), ...]}``.
    """
    rows: list[ClaimResult] = []

    def directional(claim, statement, res, subset, select, a, b, expect, seed):
        mae_a, mae_b, ci, parsed = _compare(plan, res, a, b, select, seed)
        margin = plan.practical_margin * mae_b
        verdict = directional_verdict(ci, expect=expect, margin=margin)
        rows.append(
            ClaimResult(claim, statement, res.name, subset, a, b, mae_a, mae_b, ci, margin, verdict, parsed)
        )

    directional(
        "C1", "GRPO 0/1 worse than SFT (in-domain)", test, "all", None, "grpo_binary", "sft", "higher", 1
    )
    directional("C2", "FGRPR better than SFT (in-domain)", test, "all", None, "grpo_fgrpr", "sft", "lower", 2)

    def c3(suffix: str, res: SetResults, seed: int) -> None:
        mae_a, mae_b, ci, parsed = _compare(plan, res, "grpo_fgrpr", "sft", None, seed)
        margin = plan.equivalence_margin * mae_b
        rows.append(ClaimResult(f"C3a{suffix}", f"FGRPR about equal to SFT ({res.name}, all counts)", res.name,
                                "all", "grpo_fgrpr", "sft", mae_a, mae_b, ci, margin,
                                equivalence_verdict(ci, margin=margin), parsed))  # fmt: skip
        large = res.truths >= plan.large_count_min
        if large.any():
            directional(f"C3b{suffix}", f"FGRPR better than SFT on larger counts ({res.name})", res,
                        f"count >= {plan.large_count_min}", large, "grpo_fgrpr", "sft", "lower", seed + 1)  # fmt: skip

    c3("", ood, 3)
    directional("M", "FGRPR better than GRPO 0/1 (in-domain; mechanism, not a paper claim)", test, "all", None,
                "grpo_fgrpr", "grpo_binary", "lower", 5)  # fmt: skip

    if near is not None:
        c3("-near", near, 6)

    by_claim = {r.claim: r.verdict for r in rows}
    c3_parts = [by_claim[c] for c in ("C3a", "C3b") if c in by_claim]
    if "C3b" not in by_claim:
        c3_parts.append("inconclusive")  # no OOD image has a large count: that half cannot be tested
    claims = {"C1": by_claim["C1"], "C2": by_claim["C2"], "C3": combine_verdicts(c3_parts)}
    return {"claims": claims, "rows": [r.to_dict() for r in rows]}
