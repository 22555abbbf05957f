"""One pass at a time per ValkeyCluster, whatever started it (kopf's handlers and timers, a watched pod or
owned object changing, a pass's own "look again soon"), and one pass for every burst of requests."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
Key = tuple[str, str]  # (namespace, name)


@dataclass
class _Slot:
    running: threading.Lock = field(default_factory=threading.Lock)
    requested: int = 0  # requests so far
    started: int = 0  # requests that a started pass covers
    timer: threading.Timer | None = None


class Passes(Generic[T]):
    """Per-cluster serialisation with coalescing. `run` returns None when a pass that started after this
    request already covered it (it read everything afresh after the request was made)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._slots: dict[Key, _Slot] = {}  # one per ValkeyCluster that exists: `forget` drops it

    def _slot(self, key: Key) -> _Slot:
        with self._guard:
            return self._slots.setdefault(key, _Slot())

    def run(self, key: Key, fn: Callable[[], T]) -> T | None:
        slot = self._slot(key)
        with self._guard:
            slot.requested += 1
            ticket = slot.requested
        with slot.running:
            result: T | None = None
            ran = False
            while True:
                with self._guard:
                    if slot.started >= (slot.requested if ran else ticket):
                        return result
                    slot.started = slot.requested
                ran = True
                # Requests that arrive meanwhile (a watch event that found this pass running) get one
                # more pass before the slot is released.
                result = fn()

    def request(self, key: Key, fn: Callable[[], object]) -> None:
        """Non-blocking: run `fn` now, or, when a pass of this cluster is running, leave the request to it
        (it runs once more after its own). A watch handler never holds one of kopf's threads waiting."""
        slot = self._slot(key)
        with self._guard:
            slot.requested += 1
        while slot.running.acquire(blocking=False):
            try:
                while True:
                    with self._guard:
                        if slot.started >= slot.requested:
                            break
                        slot.started = slot.requested
                    fn()
            finally:
                slot.running.release()
            with self._guard:
                if slot.started >= slot.requested:
                    return
            # A request arrived between the last check and the release: serve it.

    def later(self, key: Key, delay: float, fn: Callable[[], object]) -> None:
        """Run `fn` (which should call `run`) after `delay` s, in kopf's context (Events can be posted);
        a newer request replaces an older one: at most one waits per cluster."""
        slot = self._slot(key)
        ctx = contextvars.copy_context()
        timer = threading.Timer(delay, lambda: ctx.run(_logged, fn))
        timer.daemon = True
        with self._guard:
            if slot.timer is not None:
                slot.timer.cancel()
            slot.timer = timer
        timer.start()

    def forget(self, key: Key) -> None:
        with self._guard:
            slot = self._slots.pop(key, None)
        if slot is not None and slot.timer is not None:
            slot.timer.cancel()

    def __len__(self) -> int:
        return len(self._slots)


def _logged(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        log.exception("a scheduled pass failed; the next event or timer runs it again")
