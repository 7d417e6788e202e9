"""``predictions.jsonl``: the append-only record of an evaluation, one JSON line per answered image.

Each line is one :class:`Prediction`. Lines are appended and flushed (and fsync'ed) once per batch, so a
crash loses at most the batch in flight; a crash in the middle of a write leaves a truncated last line,
which :func:`read_predictions` drops (and, with ``repair=True``, cuts off the file) instead of failing.

When an image appears more than once (a resumed run retried an image that had failed), the **last** line
wins: :func:`latest_by_id`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crowdvlm.atomic import os_reason  # re-exported: evaluation modules import it from here
from crowdvlm.errors import RunError
from crowdvlm.jsonl import read_jsonl

__all__ = [
    "PREDICTIONS_FILE",
    "Prediction",
    "PredictionWriter",
    "latest_by_id",
    "os_reason",
    "read_predictions",
    "storable_text",
]

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Prediction:
    """One image's outcome.

    Attributes:
        id: the image id (the manifest's ``id``, else ``dataset/relative image path``).
        dataset: the manifest record's ``dataset``.
        image: the image path as evaluated.
        truth: the ground-truth count, or None for an unlabelled image.
        text: the model's raw answer ("" when the image could not be evaluated).
        pred: the count read from ``text`` by :func:`crowdvlm.parsing.parse_count`, or None.
        parse_ok: whether a count could be read.
        error: why the image could not be evaluated (missing/corrupt image, API failure), else None.
    """

    id: str
    dataset: str
    image: str
    truth: int | None
    text: str
    pred: int | None
    parse_ok: bool
    error: str | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Prediction:
        return cls(**{name: row.get(name) for name in cls.__dataclass_fields__})


def storable_text(text: object) -> str:
    """A model's answer as text that UTF-8 files and terminals accept: lone surrogates become U+FFFD.

    A JSON body can carry ``"\\ud800"``, which decodes to a str that no UTF-8 file can hold; written as is
    it would abort the run (``UnicodeEncodeError``) in the middle of a batch.

    >>> storable_text("ok \\ud800 !")
    'ok \\ufffd !'
    """
    text = text if isinstance(text, str) else str(text)
    # In a Python str every surrogate code point is unpaired (a valid pair is already one code point).
    return _SURROGATE.sub("\ufffd", text)


class PredictionWriter:
    """Appends predictions to a JSONL file, durably, one batch at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._failed = False

    def write_batch(self, predictions: list[Prediction]) -> None:
        """Append ``predictions`` and make them durable before returning.

        Raises:
            RunError: the write failed (a full disk, ...); the lines of earlier batches are intact, and a
                half-written last line is dropped when the run is resumed (see :func:`read_predictions`).
        """
        try:
            self._file.write("".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in predictions))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            self._failed = True
            raise RunError(
                f"cannot write {self.path}: {os_reason(err)} (the predictions before this batch are intact; "
                "resume the run once fixed)"
            ) from err

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:
            if not self._failed:
                raise RunError(f"cannot write {self.path}: {os_reason(err)}") from err
            # closing retries the flush that just failed; that failure is the one already raised
            logger.debug("%s: closing after a failed write: %s", self.path, os_reason(err))

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_predictions(path: str | Path, *, repair: bool = False) -> list[Prediction]:
    """Read a predictions file.

    A last line that is incomplete (no trailing newline, or not valid JSON) is the trace of an interrupted
    write: it is dropped with a warning, and with ``repair=True`` the file is truncated to its last complete
    line so that appending can continue. An invalid line anywhere else is an error.

    Args:
        path: the ``predictions.jsonl`` file.
        repair: cut a truncated last line off the file.

    Returns:
        The predictions in file order (duplicates included; see :func:`latest_by_id`).

    Raises:
        ValueError: a line other than the last is not a prediction; the message names file and line.
    """
    rows = read_jsonl(path, torn_tail="truncate" if repair else "drop", record="JSON prediction record")
    return [Prediction.from_dict(row) for row in rows]


def latest_by_id(predictions: list[Prediction]) -> dict[str, Prediction]:
    """Map each image id to its last prediction (a retried image's newest outcome), in first-seen order."""
    latest: dict[str, Prediction] = {}
    for p in predictions:
        latest[p.id] = p
    return latest
