"""Which run a run directory holds: the settings that must not change when ``--resume`` continues it.

``run.json`` records, besides the backend's own description, a *fingerprint* of the evaluation: the model,
the backend, the prompt settings, the parse mode, the manifests and ``--limit`` as given, and a digest of
the items themselves (id, dataset, image, prompt and true count of every image), which catches a manifest
edited in place. :func:`check_resumable` refuses to merge predictions of a different evaluation into the
same ``predictions.jsonl`` and names, in one line, what differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crowdvlm.errors import UsageError
from crowdvlm.evaluate.backends.base import EvalItem

__all__ = ["ITEMS_DIGEST", "RESUME_KEYS", "check_resumable", "items_digest"]

logger = logging.getLogger(__name__)

ITEMS_DIGEST = "items_sha256"
# run.json key -> how the user sets it (for the message that names what differs)
RESUME_KEYS: dict[str, str] = {
    "backend": "--backend",
    "model": "--model",
    "prompt_template": "--prompt-template",
    "output_format": "--output-format",
    "max_new_tokens": "--max-new-tokens",
    "parse": "--strict-parse",
    "data": "--data",
    "limit": "--limit",
    ITEMS_DIGEST: "the manifests' images, counts or questions",
}
# Keys that run.json files written before the fingerprint lack: such a run resumes, with a warning.
_ADDED_LATER = ("data", "limit", ITEMS_DIGEST)


def items_digest(items: Sequence[EvalItem]) -> str:
    """SHA-256 over what defines each item (id, dataset, image path, prompt, truth), in order."""
    digest = hashlib.sha256()
    for item in items:
        row = [item.id, item.dataset, str(item.image), item.prompt, item.truth]
        digest.update(json.dumps(row, ensure_ascii=True).encode("ascii") + b"\n")
    return digest.hexdigest()


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "…"


def check_resumable(run_file: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The previous ``run.json``, if its fingerprint matches ``settings``.

    Raises:
        UsageError: ``run.json`` is missing or unreadable, or a setting differs (the message names each).
    """
    if not run_file.exists():
        raise UsageError(f"{run_file} is missing: cannot tell which run the predictions belong to")
    try:
        previous = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{run_file}: cannot read the run's settings ({err})") from err
    if not isinstance(previous, dict):
        raise UsageError(f"{run_file}: expected a JSON object of the run's settings")
    changed, unknown = [], []
    for key, option in RESUME_KEYS.items():
        if key not in previous and key in _ADDED_LATER:
            unknown.append(option)
            continue
        if previous.get(key) != settings.get(key):
            if key == ITEMS_DIGEST:
                changed.append(f"{option} changed since the run started")
            else:
                changed.append(f"{option} {_shown(previous.get(key))} -> {_shown(settings.get(key))}")
    if changed:
        raise UsageError(
            f"cannot resume {run_file.parent}: it was started with other settings ({'; '.join(changed)}); "
            "resume with the same ones or choose another --out"
        )
    if unknown:
        logger.warning("%s predates the run fingerprint: cannot check %s", run_file, ", ".join(unknown))
    return previous
