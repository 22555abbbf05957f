"""After kopf re-lists an owned kind, one LIST of it per namespace, so that what was deleted while its watch
was away reads as gone.

kopf re-lists a kind when its watch's resourceVersion expired (410 Gone), after a lost connection, and when
this replica resumes (leader election). It then reports every object it finds, with no event type, but never
a DELETED event for an object that vanished in the gap, and never drops that object's index entry. Such a
ghost (a scaled-down pod, a Secret deleted by hand) would read as present for good. A LIST taken once the
re-list has settled tells them apart (k8s.cache.ghosts); it costs nothing at rest, when no watch re-lists.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
SETTLE = 30.0  # seconds after the last re-listed object of a kind in a namespace before its LIST
SWEEPS_AT_ONCE = 2


class Sweeps:
    """The armed sweeps, one per (kind, namespace), each put back by every re-listed object of it."""

    def __init__(self, sweep: Callable[[str, str], object], settle: float = SETTLE) -> None:
        self._sweep = sweep  # (kind, namespace): the LIST and what follows from it (runs in a thread of its own)
        self._settle = settle
        self._armed: dict[tuple[str, str], asyncio.TimerHandle] = {}  # touched in the event loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = threading.BoundedSemaphore(SWEEPS_AT_ONCE)

    def relisted(self, kind: str, namespace: str) -> None:
        """kopf reported an object of `kind` as listed (an event with no type): sweep once it settles. Called
        in the event loop."""
        self._loop = asyncio.get_running_loop()
        key = (kind, namespace)
        armed = self._armed.pop(key, None)
        if armed is not None:
            armed.cancel()
        self._armed[key] = self._loop.call_later(self._settle, self._fire, key)

    def _fire(self, key: tuple[str, str]) -> None:
        self._armed.pop(key, None)
        # A daemon thread, not the loop's executor (joined at exit): a LIST that hangs never holds shutdown.
        # It carries the handler's context (kopf's): the passes it asks for post Events with it.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run, *key), name=f"valkey-sweep-{key[0]}", daemon=True).start()

    def _run(self, kind: str, namespace: str) -> None:
        try:
            with self._slots:  # the sweeps of many namespaces armed at once (a start) go a few at a time
                self._sweep(kind, namespace)
        except Exception:  # the next re-list sweeps again; a ghost meanwhile is what kopf alone would leave
            log.warning("sweeping %s in %s failed", kind, namespace, exc_info=True)

    def cancel(self) -> None:
        """No sweep starts from now on (callable from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        for armed in self._armed.values():
            armed.cancel()
        self._armed.clear()

    def armed(self) -> list[tuple[str, str]]:
        return sorted(self._armed)
