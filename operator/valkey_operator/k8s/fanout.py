"""Independent API calls of one pass made at once, on a pool every pass shares.

A cluster's first pass asks for its eleven expected names and then applies eleven objects: one after
another, at 40-100 ms each on a busy API server, that is most of the pass. The calls of one batch are
independent (one object each), so they can overlap; the batch ends when every call has, and the first
error in order is raised then, as the calls one after another would have.

The pool's threads are daemons, like the pass workers: a call that hangs never holds the process past
its shutdown (the passes get their STOP_WAIT, then the process exits).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
THREADS = 16  # calls under way at once, across every pass


def in_turn(calls: Sequence[Callable[[], T]]) -> list[T]:
    """The calls one after another (what a pool of one would do)."""
    return [call() for call in calls]


class Fanout:
    """A pool for the calls of a batch, its threads started at the first batch; a batch of one runs in the
    caller's thread."""

    def __init__(self, threads: int = THREADS) -> None:
        self._threads = threads
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def __call__(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        if len(calls) < 2:
            return in_turn(calls)
        self._start()
        futures: list[Future[T]] = []
        for call in calls:
            future: Future[T] = Future()
            self._jobs.put((call, future))
            futures.append(future)
        wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        for error in errors[1:]:  # the first is raised; the others would go unseen
            log.warning("another call of the batch failed too: %s", type(error).__name__)
        return [future.result() for future in futures]  # the first error, in order, once all are done

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for i in range(self._threads):
                threading.Thread(target=self._serve, name=f"valkey-fanout-{i}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, future = self._jobs.get()
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller, which raises it
                future.set_exception(exc)


_shared: Fanout | None = None
_shared_lock = threading.Lock()


def shared() -> Fanout:
    """The process's pool (every CachedKube without one of its own uses it)."""
    global _shared  # noqa: PLW0603 - one pool per process, made at first use
    with _shared_lock:
        if _shared is None:
            _shared = Fanout()
        return _shared
