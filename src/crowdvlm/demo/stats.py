"""Verdicts on the paper's claims from paired bootstrap intervals (:mod:`crowdvlm.evaluate.bootstrap`)."""

from __future__ import annotations

from crowdvlm.evaluate.bootstrap import DiffCI, paired_bootstrap

__all__ = ["DiffCI", "paired_bootstrap", "directional_verdict", "equivalence_verdict", "VERDICTS"]

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
