"""``crowdvlm eval --config RECIPE.yaml``: an evaluation recipe, the settings one benchmark is evaluated with.

A recipe is a YAML mapping of ``crowdvlm eval`` options, written with underscores (``max_new_tokens: 32``,
``output: answer-only``); options on the command line win over it. The model, the data and the output folder
are the run's, never the recipe's. ``recipes/eval/`` holds one per counting benchmark (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crowdvlm.errors import UsageError

__all__ = ["apply_recipe"]

PER_RUN = ("model", "data", "out", "resume", "config")


def apply_recipe(parser: argparse.ArgumentParser, argv: list[str]) -> Path | None:
    """Read ``--config FILE`` from ``argv`` (if given) and make its values the parser's defaults.

    Raises:
        UsageError: the file is missing or not a YAML mapping, or a key is not an option of the command (or
            is one of the run's own: model, data, out, resume); the message names the file and the key.
    """
    from crowdvlm.experiments.yamlfile import load_mapping

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    path = known.config
    if path is None:
        return None
    if not path.is_file():
        raise UsageError(f"--config: {path} not found")
    raw = load_mapping(path, "an evaluation recipe")
    options = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    for key, value in raw.items():
        if key in PER_RUN:
            raise UsageError(f"{path}: {key}: given on the command line, not in a recipe")
        if key not in options:
            raise UsageError(
                f"{path}: {key}: not an option of {parser.prog}; valid: {', '.join(sorted(options))}"
            )
        action = options[key]
        if action.choices is not None and value not in action.choices:
            raise UsageError(f"{path}: {key}: expected one of {list(action.choices)}, got {value!r}")
    parser.set_defaults(**raw)
    return path
