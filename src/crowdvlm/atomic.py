"""Writing a file so that a crash, a kill or a full disk never leaves it half written.

Markers, manifests, records and JSON state are written to a temporary file in the same folder, flushed to
the disk (``fsync``) and renamed over the target (``os.replace``, atomic on one file system): a reader sees
the old file or the new one, never an empty or truncated one. A failed write removes its temporary file and
raises :class:`~crowdvlm.errors.RunError` naming the path (``write()`` errors carry no file name of their own).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from crowdvlm.errors import RunError

__all__ = ["atomic_write_json", "atomic_write_text", "os_reason"]


def os_reason(err: OSError) -> str:
    """An OSError's reason without the file name (which the caller names): "No space left on device"."""
    return err.strerror or str(err) or type(err).__name__


def _read_umask() -> int:
    """The process's umask (read once, at import: setting it to read it is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, flush, fsync, rename); the parent is created.

    Raises:
        RunError: the folder cannot be created or written (a full disk, a read-only folder), naming ``path``.
    """
    path = Path(path)
    data = text.encode(encoding)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from a team
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {os_reason(err)}") from err
    return path


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, **dumps_kwargs: Any) -> Path:
    """Write ``data`` as JSON (a trailing newline) to ``path`` atomically; ``dumps_kwargs`` go to ``json.dumps``.

    The text is built before the file is touched, so a value JSON cannot hold (``ValueError``/``TypeError``)
    leaves the previous file as it was.
    """
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs) + "\n")
