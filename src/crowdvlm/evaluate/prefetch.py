"""Run a function over batches in a background thread, a few batches ahead of the consumer.

Evaluation uses it so that loading and preprocessing batch k+1 (disk, JPEG decoding, resizing — code that
mostly releases the GIL) overlaps with generating batch k: generation never waits on disk.

>>> list(prefetch([1, 2, 3], lambda x: x * 10))
[10, 20, 30]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(batches: Iterable[T], fn: Callable[[T], R], *, depth: int = 2) -> Iterator[R]:
    """Yield ``fn(batch)`` for each batch, computed by a worker thread up to ``depth`` batches ahead.

    An exception raised by ``fn`` is re-raised in the consumer, at the position of the failing batch.
    Closing the iterator early (``break``, an exception in the consumer) stops the worker.

    Args:
        batches: the inputs, consumed by the worker thread.
        fn: the work to do on each input (must be safe to run in another thread).
        depth: how many results may wait, finished, for the consumer.
    """
    results: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if stop.is_set() or not put(fn(batch)):
                    return
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(_Failure(err))
            return
        put(_DONE)

    worker = threading.Thread(target=work, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
