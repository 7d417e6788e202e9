"""The one set of rules for reward parameters.

Every reward constructor checks its parameters here, and the recipe check (:mod:`crowdvlm.train.checks`) builds
the reward to check ``reward_kwargs``, so a value is refused by the same rule, with the same words, wherever it
comes from.

>>> check_params("fgrpr", band=0.5, ceiling=1.5, strict=True, name="fgrpr")
>>> check_params("fgrpr", band=0)
Traceback (most recent call last):
...
ValueError: fgrpr band must be a number > 0, got 0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_params"]


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any, params: dict[str, Any]) -> bool:
    return _real(value) and value > 0


def _flag(value: Any, params: dict[str, Any]) -> bool:
    return isinstance(value, bool)


def _ceiling(value: Any, params: dict[str, Any]) -> bool:
    # A reward with a band scores ``ceiling - error`` inside it: a ceiling below the band would go negative.
    return _real(value) and value > 0 and value >= params.get("band", 0)


#: parameter -> (what it must be, test of the value given all the reward's parameters)
_RULES: dict[str, tuple[str, Callable[[Any, dict[str, Any]], bool]]] = {
    "band": ("a number > 0", _positive),
    "ceiling": ("a number >= band (so that a count inside the band never scores below 0) and > 0", _ceiling),
    "value": ("a number >= 0", lambda v, kw: _real(v) and v >= 0),
    "strict": ("true or false", _flag),
    "require_think": ("true or false", _flag),
    "name": ("a non-empty string", lambda v, kw: isinstance(v, str) and bool(v.strip())),
    "tau": ("a number > 0", _positive),
    "tolerance": ("a number > 0", _positive),
    "rel_sigma": ("a number > 0", _positive),
    "min_sigma": ("a number > 0", _positive),
    "radius": ("a number > 0", _positive),
    "max_points": (
        "an integer >= 1",
        lambda v, kw: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    ),
}


def check_params(reward: str, **params: Any) -> None:
    """Raise ``ValueError`` naming the reward, the parameter and the rule for the first value that breaks one.

    Parameters without a rule here (``base`` of ``point_count``) are checked by their reward.
    """
    for key, value in params.items():
        expected, ok = _RULES.get(key, (None, None))
        if ok is not None and not ok(value, params):
            raise ValueError(f"{reward} {key} must be {expected}, got {value!r}")
