"""When each ValkeyCluster's next pass runs: one queue for the whole fleet, ordered by due time, served by a
few worker threads; one pass at a time per cluster, and a burst of requests costs one pass.

kopf's handlers only put requests in (they never wait, so they hold none of kopf's threads, and kopf never
retries or writes progress for them); each pass says when it wants the next one. `stop` drops the queue
at once: a SIGTERM costs at most the passes already running.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)
# A pass: the cluster, what asked for it, how late it starts (s) -> seconds until the next one (None: none).
Run = Callable[[Key, str, float], "float | None"]
FAILED_RETRY = 5.0  # seconds: a pass that raised is tried again this soon, doubling while it keeps failing
FAILED_RETRY_CAP = 120.0
PAUSED_POLL = 0.5  # seconds: while paused, how often a worker looks whether the pause ended (or was followed)


@dataclass
class _Entry:
    due: float | None = None  # monotonic time of the next pass wanted; None: none
    reason: str = ""  # what asked for that pass (a log and metric label)
    ctx: contextvars.Context | None = None  # kopf's context (Events are posted from it)
    failures: int = 0  # passes in a row that raised
    uid: str = ""  # the object admitted (one created again with the same name is another)


class Scheduler:
    """Per-cluster due times in one heap. `request` never postpones: the earliest due time wins.

    Only admitted clusters get passes: a cluster is admitted at its first event (its creation, or the
    listing at the operator's start or after a pause) and forgotten when it is deleted; while `paused()`
    (kopf paused this replica for another peer) none is admitted and no pass starts, and a stopping
    operator starts none either."""

    def __init__(
        self,
        run: Run,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
        gone: Callable[[Key], None] | None = None,
        paused: Callable[[], bool] = lambda: False,
        name: str = "valkey-pass",
    ) -> None:
        self._name = name
        self._run = run
        self._paused = paused
        self._gone = gone  # called after a pass of a cluster withdrawn while it ran
        self._workers = workers
        self._clock = clock
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the queue changed
        self._idle = threading.Condition(lock)  # a pass ended
        self._entries: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, int, Key]] = []  # (due, tie-break, key); stale items are skipped
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        # Clusters with a pass under way (kept apart from the entries: a cluster forgotten and admitted
        # again meanwhile must still wait for it).
        self._running: set[Key] = set()
        self._stopped = False

    def start(self) -> None:
        with self._cond:
            self._stopped = False
            self._threads = [t for t in self._threads if t.is_alive()]
            for i in range(len(self._threads), self._workers):
                t = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, wait: float = 0.0) -> None:
        """No pass starts from now on and the queue is dropped; waits up to `wait` s for running passes."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            for entry in self._entries.values():
                entry.due = None
            self._cond.notify_all()
            deadline = self._clock() + wait
            while self._running and self._clock() < deadline:
                self._idle.wait(max(0.0, deadline - self._clock()))

    def admit(self, key: Key, uid: str = "") -> bool:
        """The cluster (the object `uid`) may have passes from now on, until `forget`; True when it was not
        admitted before (an object created again under the same name replaces the old one's entry; kopf
        may hand over the old one's deletion after the new one's first event). False while paused or
        stopped too: nothing is admitted then."""
        with self._cond:
            entry = self._entries.get(key)
            if (entry is not None and entry.uid == uid) or self._stopped or self._paused():
                return False
            self._entries[key] = _Entry(uid=uid)
            return True

    def request(self, key: Key, reason: str, delay: float = 0.0) -> None:
        """A pass of an admitted cluster within `delay` s (sooner when already due sooner); a cluster not
        admitted is ignored. A request that arrives while the cluster's pass runs gets one pass after it:
        that one may have read too early."""
        with self._cond:
            entry = self._entries.get(key)
            if self._stopped or entry is None:
                return
            entry.ctx = contextvars.copy_context()
            due = self._clock() + max(0.0, delay)
            if entry.due is not None and entry.due <= due:
                return
            entry.due, entry.reason = due, reason
            if key not in self._running:
                heapq.heappush(self._heap, (due, next(self._seq), key))
                self._cond.notify()

    def forget(self, key: Key, uid: str | None = None) -> None:
        """The cluster is gone (or kopf no longer serves it): its queued pass is dropped; a running one
        finishes and schedules nothing, and no pass of it starts until it is admitted again and that one
        has ended. With `uid`: only if that object is the one admitted."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is not None and (uid is None or entry.uid == uid):
                del self._entries[key]

    def forget_namespace(self, namespace: str | None) -> list[Key]:
        """kopf stopped watching a namespace (None: every namespace): its clusters are forgotten; returns
        those without a pass under way (for a running one, `gone` follows it)."""
        with self._cond:
            keys = [k for k in self._entries if namespace is None or k[0] == namespace]
            for key in keys:
                del self._entries[key]
            return [key for key in keys if key not in self._running]

    def forget_all(self) -> list[Key]:
        """kopf paused this replica: every cluster is forgotten (the listing after the pause admits those
        that still exist); returns those without a pass under way."""
        return self.forget_namespace(None)

    def pending(self) -> int:
        with self._cond:
            return sum(1 for e in self._entries.values() if e.due is not None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def _take(self) -> tuple[Key, _Entry, float, str] | None:
        """The next due pass (waits for it), marked running; None once stopped."""
        while not self._stopped:
            if not self._heap:
                self._cond.wait()
                continue
            due, _, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is None or key in self._running or entry.due != due:
                heapq.heappop(self._heap)  # forgotten, superseded, or re-queued when its pass ends
                continue
            if self._paused():  # before the pause is followed (forget_all), no pass starts either
                self._cond.wait(PAUSED_POLL)
                continue
            now = self._clock()
            if due > now:
                self._cond.wait(due - now)
                continue
            heapq.heappop(self._heap)
            self._running.add(key)
            entry.due = None
            return key, entry, now - due, entry.reason
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = self._take()
            if taken is None:
                return
            key, entry, late, reason = taken
            ctx = entry.ctx or contextvars.copy_context()
            failed = False
            try:
                delay = ctx.run(self._run, key, reason, late)
            except Exception:
                failed = True
                delay = min(FAILED_RETRY * 2**entry.failures, FAILED_RETRY_CAP)
                log.exception("%s/%s: a pass failed; trying again in %.0f s", *key, delay)
            with self._cond:
                self._running.discard(key)
                self._idle.notify_all()
                entry.failures = entry.failures + 1 if failed else 0
                withdrawn = self._entries.get(key) is not entry
            if withdrawn and self._gone is not None:
                self._gone(key)
            with self._cond:
                if self._stopped:
                    continue
                if delay is not None and self._entries.get(key) is entry:
                    due = self._clock() + delay
                    if entry.due is None or due < entry.due:
                        entry.due, entry.reason = due, "timer"
                current = self._entries.get(key)  # this entry, or one admitted again meanwhile
                if current is not None and current.due is not None:
                    heapq.heappush(self._heap, (current.due, next(self._seq), key))
                    self._cond.notify()
