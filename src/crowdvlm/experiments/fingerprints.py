"""What each stage of an experiment depends on, so that a resume notices when it changed.

A stage's *inputs* are a JSON-able dict; their digest is its fingerprint, kept in its ``.done.json``. The
inputs hold what changes the stage's result and nothing else:

- a synthetic set: its styles, counts, size, seed, balance, the image size and the question;
  a set of manifests: the content hash of each manifest file (the images themselves are not hashed);
- a training run: the arm's recipe after overrides as ``crowdvlm train`` parses it (less the keys the runner
  sets per run), its learning rate (or the fingerprint of the selection that picks it), its seed, its
  training data and the base model (its ``config.json`` content and the names and sizes of its weight files);
- an evaluation: the arm's eval settings, the set and the model evaluated (a trained run's fingerprint);
- a selection: the metric and the evaluations of the grid.

The experiment file's presentation (title, notes, comparisons, claims, report settings) is in none of them,
so changing it never redoes or refuses a stage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["changed_keys", "digest", "file_digest", "model_identity", "recipe_inputs"]

#: Keys of a parsed training job that the runner sets per run, or that change no result (progress bars).
_RUN_KEYS = {
    "output_dir",
    "logging_dir",
    "run_name",
    "dataset",
    "learning_rate",
    "seed",
    "data_seed",
    "disable_tqdm",
    "resume",
    "resume_from_checkpoint",
}


def digest(inputs: Any) -> str:
    """A short stable hash of a JSON-able value (key order does not matter).

    >>> digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1}) != digest({"a": 2, "b": [2]})
    True
    """
    text = json.dumps(inputs, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (manifests: small text files)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def model_identity(folder: Path) -> dict[str, Any]:
    """A model folder as a stage depends on it: its path, its config's content, its weight files' sizes.

    Weights are identified by name and size, not hashed: reading gigabytes at every resume would cost minutes.
    """
    folder = Path(folder)
    config = folder / "config.json"
    weights = (
        sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt"))
        if folder.is_dir()
        else []
    )
    return {
        "path": str(folder),
        "config": file_digest(config) if config.is_file() else None,
        "weights": {p.name: p.stat().st_size for p in weights},
    }


def recipe_inputs(summary: dict[str, Any]) -> dict[str, Any]:
    """A parsed job's summary (``crowdvlm.train.config.job_summary``) less the keys the runner sets per run."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _RUN_KEYS}
        return value

    return strip(summary)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two inputs dicts.

    >>> changed_keys({"recipe": {"lr": 1, "bs": 2}, "seed": 0}, {"recipe": {"lr": 1, "bs": 4}, "seed": 0})
    ['recipe.bs']
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [prefix or "inputs"] if old != new else []
    out = []
    for key in sorted(set(old) | set(new), key=str):
        out += changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    return out
