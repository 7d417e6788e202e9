"""One run per folder: an exclusive lock on an experiment's ``--out``, a training ``output_dir``, an eval ``--out``.

Two runs writing one folder clear each other's stages, train one model twice at once and evaluate a model
while it is rewritten, and both may exit 0. :class:`RunLock` makes the second one refuse before it writes
anything, in one line naming the folder and the holder.

The lock is ``FOLDER/.run.lock``, a small JSON file naming its holder (process id, host, start time,
command), held with ``fcntl.flock`` for as long as the run lasts. The operating system drops the ``flock``
when the holder dies however it dies (a kill, an out-of-memory, a power cut of a node whose folder is on
shared storage), so a lock file left behind by a dead run is *stale*: the next run takes it over and logs a
warning naming the dead holder. A holder whose process still runs on this host is alive whatever the file
says (its ``flock`` is held).

Short work that must not fail because another holds the folder for a moment (writing a report) waits for it
(``wait=`` seconds, one warning naming the holder) instead of being refused. :func:`holder_of` tells a reader
whether a live run holds a folder, without taking the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from crowdvlm.atomic import os_reason
from crowdvlm.errors import RunError, UsageError

__all__ = ["LOCK_FILE", "RunLock", "RunLocked", "describe_holder", "holder_of"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"


class RunLocked(UsageError):
    """Another live run holds the folder (exit 2: nothing was started)."""


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``"pid 4242 on node-3 since 2026-12-07 17:40:01 (crowdvlm train grpo ...)"``."""
    if not holder or "pid" not in holder:
        return "an unknown process (the lock file names no holder)"
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{when}{command}"


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def holder_of(folder: str | Path) -> dict[str, Any] | None:
    """The holder (pid, host, started, command) of a live run holding ``folder``, or None, for a reader.

    A lock file nobody holds (its run died) is no holder. The probe is a shared ``flock`` dropped at once,
    tried only while a lock file exists and names no dead process of this host.

    Raises:
        RunError: the lock file exists and cannot be opened or probed, naming it.
    """
    path = Path(folder) / LOCK_FILE
    holder = _read_holder(path)
    if holder is None and not path.exists():
        return None
    if holder is not None and _dead_here(holder):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # released between the read and the open
        return None
    except OSError as err:
        raise RunError(f"cannot read the lock file {path}: {os_reason(err)}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder or {}  # held, its file not written yet
    except OSError as err:
        raise RunError(f"cannot probe the lock file {path}: {os_reason(err)}") from err
    finally:
        os.close(fd)  # closing drops the shared lock, if we got it
    return None


def _dead_here(holder: dict[str, Any]) -> bool:
    """Whether the holder ran on this host and its process is gone (one of another user counts as alive)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunLock:
    """An exclusive lock on ``folder`` (created if missing) for the life of one run.

    Use as a context manager, or :meth:`acquire` / :meth:`release`::

        with RunLock(out, what="crowdvlm experiment run"):
            ...  # the only run writing `out`

    Args:
        folder: the run folder to lock.
        what: the command holding it, written into the lock file for the message another run shows.
        wait: seconds to wait for a live holder to release the folder (with one warning naming it) before
            refusing; 0 refuses at once.

    Raises:
        RunLocked: on :meth:`acquire`, when a live run holds the folder (after ``wait`` seconds): one line
            naming the folder and the holder (pid, host, start time, command).
        RunError: the lock file cannot be created (a read-only folder, a full disk), naming it.
    """

    def __init__(self, folder: str | Path, *, what: str | None = None, wait: float = 0.0):
        self.folder = Path(folder)
        self.wait = wait
        self.path = self.folder / LOCK_FILE
        self.what = what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
        self._fd: int | None = None
        self._created = False  # the lock made the folder: removed again on release if nothing was written

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self._created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create {self.folder}: {os_reason(err)}") from err
        deadline, told = time.monotonic() + self.wait, False
        for _ in range(10):  # retried only while another run releases the lock under our feet
            fd = self._open()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        raise RunLocked(
                            f"{self.folder} is in use by another run: {describe_holder(_read_holder(self.path))}; "
                            f"wait for it to finish, or choose another folder (its lock: {self.path})"
                        ) from None
                    if not told:
                        logger.warning(
                            "%s is in use by %s: waiting up to %.0f s for it to finish",
                            self.folder,
                            describe_holder(_read_holder(self.path)),
                            self.wait,
                        )
                        told = True
                    time.sleep(0.1)
                except OSError as err:
                    os.close(fd)
                    raise RunError(f"cannot lock {self.path}: {os_reason(err)}") from err
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our flock: open the new one
                break
            os.close(fd)
        else:
            raise RunError(f"cannot lock {self.path}: it keeps being replaced by other runs")
        self._fd = fd
        stale = _read_holder(self.path)
        if stale:  # a lock file whose flock nobody holds: its run died without releasing it
            logger.warning(
                "%s: taking over the lock of a run that ended without releasing it: %s%s",
                self.folder,
                describe_holder(stale),
                " (no longer running)" if _dead_here(stale) else "",
            )
        self._write_holder()
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunError(f"cannot create the lock file {self.path}: {os_reason(err)}") from err

    def _write_holder(self) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": self.what,
        }
        data = (json.dumps(holder) + "\n").encode("utf-8")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
        except OSError as err:
            self.release()
            raise RunError(f"cannot write the lock file {self.path}: {os_reason(err)}") from err

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held); a folder the lock created and
        nothing else wrote to is removed too, so a run refused early leaves no trace."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still held: no other run can have taken it yet
        except OSError as err:
            logger.warning("could not remove the lock file %s: %s", self.path, os_reason(err))
        finally:
            os.close(fd)
        if self._created:
            with contextlib.suppress(OSError):  # not empty: the run wrote there
                self.folder.rmdir()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
