"""When each ValkeyCluster's next pass runs: one queue for the whole fleet, ordered by due time, served by a
few worker threads; one pass at a time per cluster, and a burst of requests costs one pass.

kopf's handlers only put requests in (they never wait, so they hold none of kopf's threads, and kopf never
retries or writes progress for them); each pass says when it wants the next one. `stop` drops the queue
at once: a SIGTERM costs at most the passes already running.

Two lanes. A prompt request is one whose time was promised: a revisit a pass asked for (a failover's
re-check, a pod that did not answer, a failed pass's retry, a certificate falling due) or a role check
that found the roles moved. Due prompt passes start before due passes of the other lane (admissions,
owned-object news, fast looks, the slow timer), so a fleet's backlog (a thousand clusters created at once)
does not delay a failover; after PROMPT_RUN prompt passes in a row while the other lane has one due, one
of that lane starts, so neither lane waits for good.
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
# A pass: the cluster, what asked for it, how late it starts (s) -> the next one (seconds, or Next; None: none).
Run = Callable[[Key, str, float], "float | Next | None"]
FAILED_RETRY = 5.0  # seconds: a pass that raised is tried again this soon, doubling while it keeps failing
FAILED_RETRY_CAP = 120.0
PAUSED_POLL = 0.5  # seconds: while paused, how often a worker looks whether the pause ended (or was followed)
PROMPT_RUN = 8  # prompt passes started in a row, while another pass is due, before that one starts


@dataclass(frozen=True)
class Next:
    """What a pass returns for its next one: in `delay` s; `prompt`: its time is promised (the prompt lane)."""

    delay: float
    prompt: bool = False


@dataclass
class _Entry:
    due: float | None = None  # monotonic time of the next pass wanted; None: none
    reason: str = ""  # what asked for that pass (a log and metric label)
    prompt: bool = False  # that pass is in the prompt lane
    ctx: contextvars.Context | None = None  # kopf's context (Events are posted from it)
    failures: int = 0  # passes in a row that raised
    uid: str = ""  # the object admitted (one created again with the same name is another)


def _merge(entry: _Entry, due: float, reason: str, prompt: bool) -> bool:
    """A pass wanted at `due` at the latest, joined with the one the entry holds: the earlier time wins,
    and the one pass is prompt if either was; True when the entry changed (it must be queued again)."""
    if entry.due is None or due < entry.due:
        entry.due, entry.reason, entry.prompt = due, reason, prompt or entry.prompt
        return True
    if prompt and not entry.prompt:
        entry.prompt = True
        return True
    return False


class Scheduler:
    """Per-cluster due times in two heaps, one per lane. `request` never postpones: the earliest due time
    wins, and one pass serves every request queued for the cluster.

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
        # One heap per lane, prompt first: (due, tie-break, key); stale items are skipped.
        self._heaps: tuple[list[tuple[float, int, Key]], list[tuple[float, int, Key]]] = ([], [])
        self._prompt_run = 0  # prompt passes started in a row while the other lane had one due
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
            for heap in self._heaps:
                heap.clear()
            for entry in self._entries.values():
                entry.due, entry.prompt = None, False
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

    def request(self, key: Key, reason: str, delay: float = 0.0, prompt: bool = False) -> None:
        """A pass of an admitted cluster within `delay` s (sooner when already due sooner), in the prompt
        lane if `prompt` or if the pass already queued is; a cluster not admitted is ignored. A request
        that arrives while the cluster's pass runs gets one pass after it: that one may have read too
        early."""
        with self._cond:
            entry = self._entries.get(key)
            if self._stopped or entry is None:
                return
            entry.ctx = contextvars.copy_context()
            if _merge(entry, self._clock() + max(0.0, delay), reason, prompt) and key not in self._running:
                self._push(key, entry)

    def _push(self, key: Key, entry: _Entry) -> None:
        assert entry.due is not None
        heapq.heappush(self._heaps[0 if entry.prompt else 1], (entry.due, next(self._seq), key))
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

    def _top(self, lane: int) -> float | None:
        """The due time of the lane's first live item (stale ones dropped); None: the lane is empty."""
        heap = self._heaps[lane]
        while heap:
            due, _, key = heap[0]
            entry = self._entries.get(key)
            if entry is None or key in self._running or entry.due != due or entry.prompt != (lane == 0):
                heapq.heappop(heap)  # forgotten, superseded, moved lanes, or re-queued when its pass ends
                continue
            return due
        return None

    def _take(self) -> tuple[Key, _Entry, float, str, bool] | None:
        """The next due pass (waits for it), marked running, and whether it was prompt; None once stopped."""
        while not self._stopped:
            tops = [self._top(0), self._top(1)]
            if tops == [None, None]:
                self._cond.wait()
                continue
            if self._paused():  # before the pause is followed (forget_all), no pass starts either
                self._cond.wait(PAUSED_POLL)
                continue
            now = self._clock()
            due_now = [t is not None and t <= now for t in tops]
            if not any(due_now):
                self._cond.wait(min(t for t in tops if t is not None) - now)
                continue
            lane = 0 if due_now[0] else 1
            if all(due_now):
                self._prompt_run += 1
                if self._prompt_run > PROMPT_RUN:
                    lane, self._prompt_run = 1, 0
            else:
                self._prompt_run = 0
            due, _, key = heapq.heappop(self._heaps[lane])
            entry = self._entries[key]
            self._running.add(key)
            entry.due, entry.prompt = None, False
            return key, entry, now - due, entry.reason, lane == 0
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = self._take()
            if taken is None:
                return
            key, entry, late, reason, prompt = taken
            ctx = entry.ctx or contextvars.copy_context()
            failed = False
            try:
                wanted = ctx.run(self._run, key, reason, late)
            except Exception:
                failed = True
                # Tried again in its own lane: a failover's pass that raised keeps its place.
                wanted = Next(min(FAILED_RETRY * 2**entry.failures, FAILED_RETRY_CAP), prompt)
                log.exception("%s/%s: a pass failed; trying again in %.0f s", *key, wanted.delay)
            after = wanted if isinstance(wanted, Next) or wanted is None else Next(wanted)
            with self._cond:
                entry.failures = entry.failures + 1 if failed else 0
                withdrawn = self._entries.get(key) is not entry
            if withdrawn and self._gone is not None:
                # Still marked running: a cluster admitted again under the name meanwhile gets no pass
                # until what this one left is cleared (its credentials, roles and metric series).
                self._gone(key)
            with self._cond:
                self._running.discard(key)
                self._idle.notify_all()
                if self._stopped:
                    continue
                current = self._entries.get(key)  # this entry, or one admitted again meanwhile
                if current is None:
                    continue
                if after is not None and current is entry:
                    _merge(entry, self._clock() + after.delay, "timer", after.prompt)
                if current.due is not None:  # the pass's own next, or one asked for while it ran
                    self._push(key, current)
