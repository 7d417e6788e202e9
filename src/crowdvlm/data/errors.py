"""Bad input: one exception type, and a log of the records left out with ``--skip-bad``.

Every reader raises :class:`DataError` for a bad record (its message names the file, the record and what was
expected). A :class:`SkipLog` decides what happens next: by default it re-raises, with ``skip_bad=True`` it
records the reason; :meth:`SkipLog.write_report` then writes the list next to the manifest, so nothing is
dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from crowdvlm.errors import UsageError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DataError(UsageError):
    """A bad input record (a ``UsageError``: ``crowdvlm`` exits with status 2).

    Args:
        file: the file that holds the problem (annotation, image or list file).
        problem: what is wrong, and what was expected.
        record: which record inside the file (an image id, ``line 12``...), if the file holds several.
        kind: a short machine-readable category (``missing-image``, ``bad-coordinates``...), used to group
            the summary of skipped records.
    """

    def __init__(
        self, file: str | Path, problem: str, *, record: str | None = None, kind: str = "bad-record"
    ):
        self.file = str(file)
        self.problem = problem
        self.record = record
        self.kind = kind
        where = f"{self.file} ({record})" if record else self.file
        super().__init__(f"{where}: {problem}")


@dataclass
class SkipLog:
    """What to do with bad records: raise (default) or leave them out and remember why."""

    skip_bad: bool = False
    skipped: list[DataError] = field(default_factory=list)

    def add(self, error: DataError) -> None:
        """Re-raise ``error``, or (with ``skip_bad``) log it and keep it for the report."""
        if not self.skip_bad:
            raise error
        logger.debug("skipping bad record: %s", error)
        self.skipped.append(error)

    def summary(self) -> str:
        """One line per kind of problem, e.g. ``3 skipped: 2 missing-image, 1 bad-coordinates``."""
        if not self.skipped:
            return "0 bad records"
        kinds = Counter(err.kind for err in self.skipped)
        parts = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        return f"{len(self.skipped)} bad records skipped: {parts}"

    def write_report(self, manifest_path: str | Path) -> Path | None:
        """Write ``<manifest stem>.skipped.tsv`` next to the manifest (only when something was skipped)."""
        if not self.skipped:
            return None
        manifest_path = Path(manifest_path)
        return self.write_tsv(manifest_path.with_name(manifest_path.stem + ".skipped.tsv"))

    def write_tsv(self, report: str | Path) -> Path:
        """Write the skipped records to ``report`` (kind, file, record, problem; one line each)."""
        from crowdvlm.atomic import atomic_write_text

        lines = ["kind\tfile\trecord\tproblem\n"]
        for err in self.skipped:
            cells = [err.kind, err.file, err.record or "", err.problem]
            lines.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells) + "\n")
        return atomic_write_text(report, "".join(lines))


def collect(
    items: Iterable[T],
    build: Callable[[T], dict | None],
    skips: SkipLog,
    *,
    desc: str,
    total: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Build one record per item, with a progress bar; bad items go through ``skips``.

    ``build`` returns a record, or None for an item that is legitimately not a sample (never for a bad one:
    those raise :class:`DataError`).
    """
    records = []
    for item in tqdm(items, desc=desc, total=total, unit="img", disable=not progress, leave=False):
        try:
            record = build(item)
        except DataError as err:
            skips.add(err)
            continue
        if record is not None:
            records.append(record)
    return records
