"""The one command-line parser of every ``crowdvlm`` command: argparse's errors become one-line
:class:`crowdvlm.errors.UsageError` (exit 2, printed by ``crowdvlm.cli.main``) instead of usage text and
``SystemExit``, and options are never abbreviated (``--max-new`` is refused, not taken as ``--max-new-tokens``).
Training recipes are parsed by TRL's parser with the same contract (:func:`crowdvlm.train.config.make_parser`).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from crowdvlm.errors import UsageError

__all__ = ["CommandParser"]


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` and takes no abbreviations (sub-parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")
