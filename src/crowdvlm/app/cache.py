"""Keeping the app's files bounded while it serves: every upload and result ages out, and the total is capped.

Gradio keeps each upload and each result it serves in its cache folder until the server stops, and the app
writes CSVs and result images to its own work folder: a server left running fills its disk. A
:class:`CacheJanitor` sweeps those folders every ``every_s`` seconds in a daemon thread: files older than
``max_age_s`` go, then the oldest others until the total is at most ``max_bytes``; folders left empty go
after a grace period (gradio may be about to write into a new one). Links are never followed.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

__all__ = ["CacheJanitor"]

logger = logging.getLogger(__name__)

EMPTY_DIR_GRACE_S = 60.0  # an empty folder younger than this may be about to receive a file


class CacheJanitor:
    """Bound the files under ``roots`` by age and total size.

    Args:
        roots: folders to sweep (missing ones are skipped).
        max_age_s: a file older than this (by modification time) is removed.
        max_bytes: the most the files under all roots may take together; the oldest go first.
        every_s: seconds between sweeps of the background thread (:meth:`start`).
    """

    def __init__(self, roots: list[Path], *, max_age_s: float, max_bytes: int, every_s: float = 60.0):
        if max_age_s <= 0 or max_bytes < 0 or every_s <= 0:
            raise ValueError("cache limits must be positive")
        self.roots = [Path(root) for root in roots]
        self.max_age_s, self.max_bytes, self.every_s = max_age_s, max_bytes, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _files(self) -> tuple[list[tuple[float, int, str]], list[tuple[str, float]]]:
        """``([(mtime, size, path)], [(folder, mtime), deepest first])`` under the roots, links not followed."""
        files, folders = [], []
        for root in self.roots:
            for folder, subdirs, names in os.walk(root, topdown=False):  # os.walk follows no links by default
                for name in subdirs:
                    try:
                        folders.append(
                            (os.path.join(folder, name), os.lstat(os.path.join(folder, name)).st_mtime)
                        )
                    except FileNotFoundError:
                        continue
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        info = os.lstat(path)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        files.append((info.st_mtime, info.st_size, path))
        return files, folders

    def sweep(self) -> int:
        """One pass; returns the number of files removed."""
        now = time.time()
        files, folders = self._files()
        files.sort()  # oldest first
        total = sum(size for _, size, _ in files)
        removed = 0
        for mtime, size, path in files:
            if now - mtime <= self.max_age_s and total <= self.max_bytes:
                break  # sorted by age: every later file is younger, and the total fits
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.warning("cache: cannot remove %s: %s", path, err)
                continue
            total -= size
            removed += 1
        for folder, mtime in folders:  # the time seen before this sweep emptied it
            try:
                if now - mtime > EMPTY_DIR_GRACE_S:
                    os.rmdir(folder)  # only succeeds when empty
            except OSError:
                pass
        if removed:
            logger.info("cache: removed %d file(s); %.1f MB left", removed, total / 2**20)
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:  # a sweep must never stop the server; the next one tries again
                logger.exception("cache sweep failed")

    def start(self) -> None:
        """Sweep every ``every_s`` seconds in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="crowdvlm-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background sweeps (waits for a sweep in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
