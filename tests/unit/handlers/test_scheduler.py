"""The fleet's pass queue: one pass at a time per cluster, one pass per burst, each pass names the next."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from valkey_operator.handlers import scheduler as scheduler_module
from valkey_operator.handlers.scheduler import PROMPT_RUN, Key, Next, Scheduler

A, B = ("ns", "a"), ("ns", "b")


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Recorder:
    """A pass that records what ran, can be held inside, and returns a chosen next delay."""

    def __init__(self) -> None:
        self.ran: list[tuple[Key, str]] = []
        self.late: list[float] = []
        self.hold: dict[Key, threading.Event] = {}
        self.inside: dict[Key, threading.Event] = {}
        self.next: dict[Key, float | Next | None] = {}
        self.active: dict[Key, int] = {}
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, key: Key, reason: str, late: float) -> float | Next | None:
        with self.lock:
            self.ran.append((key, reason))
            self.late.append(late)
            self.active[key] = self.active.get(key, 0) + 1
            self.most = max(self.most, self.active[key])
        if key in self.inside:
            self.inside[key].set()
        if key in self.hold:
            self.hold[key].wait(5)
        with self.lock:
            self.active[key] -= 1
        return self.next.get(key)

    def count(self, key: Key) -> int:
        with self.lock:
            return sum(1 for k, _ in self.ran if k == key)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sched(rec: Recorder) -> Iterator[Scheduler]:
    s = Scheduler(rec, workers=3)
    s.admit(A)
    s.admit(B)
    s.start()
    yield s
    s.stop(wait=5)


def test_passes_of_one_cluster_never_overlap_and_a_burst_costs_one_more_pass(rec: Recorder, sched: Scheduler) -> None:
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    sched.request(A, "reconcile")
    assert rec.inside[A].wait(5)
    for _ in range(5):  # the echoes of the pass's own writes, a pod turning ready...
        sched.request(A, "watch")
    time.sleep(0.2)
    assert rec.count(A) == 1  # the workers left free do not start a second pass of the same cluster
    rec.hold[A].set()
    until(lambda: rec.count(A) == 2)
    time.sleep(0.2)
    assert rec.count(A) == 2
    assert rec.most == 1
    assert rec.ran[1] == (A, "watch")


def test_other_clusters_do_not_wait(rec: Recorder, sched: Scheduler) -> None:
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    sched.request(A, "reconcile")
    assert rec.inside[A].wait(5)
    sched.request(B, "reconcile")
    until(lambda: rec.count(B) == 1)
    rec.hold[A].set()


def test_a_request_never_postpones_and_the_earliest_wins(rec: Recorder, sched: Scheduler) -> None:
    sched.request(A, "timer", 0.4)
    sched.request(A, "watch", 30.0)  # later: ignored
    until(lambda: rec.count(A) == 1, timeout=2)
    sched.request(B, "timer", 30.0)
    sched.request(B, "watch", 0.05)  # sooner: wins
    until(lambda: rec.count(B) == 1, timeout=2)
    assert (B, "watch") in rec.ran
    assert sched.pending() == 0


def test_each_pass_names_the_next_and_none_ends_the_chain(rec: Recorder, sched: Scheduler) -> None:
    rec.next[A] = 0.05
    sched.request(A, "reconcile")
    until(lambda: rec.count(A) >= 3)
    rec.next[A] = None
    time.sleep(0.2)
    settled = rec.count(A)
    time.sleep(0.3)
    assert rec.count(A) == settled
    assert sched.pending() == 0
    assert {r for k, r in rec.ran if k == A} == {"reconcile", "timer"}


def test_forget_drops_the_queued_pass_and_a_running_one_schedules_nothing(rec: Recorder, sched: Scheduler) -> None:
    sched.request(A, "timer", 0.3)
    sched.forget(A)
    rec.hold[B], rec.inside[B] = threading.Event(), threading.Event()
    rec.next[B] = 0.01
    sched.request(B, "reconcile")
    assert rec.inside[B].wait(5)
    sched.forget(B)
    rec.hold[B].set()
    time.sleep(0.5)
    assert rec.count(A) == 0
    assert rec.count(B) == 1
    assert len(sched) == 0


def test_stop_drops_the_queue_and_waits_for_the_running_pass(rec: Recorder, sched: Scheduler) -> None:
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    sched.request(A, "reconcile")
    assert rec.inside[A].wait(5)
    sched.request(B, "timer", 0.2)
    threading.Timer(0.2, rec.hold[A].set).start()
    started = time.monotonic()
    sched.stop(wait=5)
    assert 0.1 < time.monotonic() - started < 2
    sched.request(B, "watch")  # after stop: nothing starts
    time.sleep(0.4)
    assert rec.count(A) == 1
    assert rec.count(B) == 0


def test_a_pass_that_raises_is_tried_again_later_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "FAILED_RETRY", 0.1)
    calls: list[float] = []

    def flaky(key: Key, reason: str, late: float) -> float | None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("the API server said 500")
        return None

    s = Scheduler(flaky, workers=1)
    s.admit(A)
    s.start()
    try:
        s.request(A, "reconcile")
        until(lambda: len(calls) == 3)
    finally:
        s.stop()
    first, second = calls[1] - calls[0], calls[2] - calls[1]
    assert 0.09 < first < second  # 0.1 s, then 0.2 s
    assert second > 0.19


def test_lateness_is_the_queue_wait_and_the_requesters_context_is_kept(rec: Recorder) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="none")
    seen: list[str] = []

    def run(key: Key, reason: str, late: float) -> float | Next | None:
        seen.append(var.get())
        return rec(key, reason, late)

    s = Scheduler(run, workers=1)
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    s.admit(A)
    s.admit(B)
    s.start()
    try:
        var.set("kopf")
        s.request(A, "reconcile")
        assert rec.inside[A].wait(5)
        s.request(B, "reconcile")  # the only worker is busy for 0.3 s
        time.sleep(0.3)
        rec.hold[A].set()
        until(lambda: rec.count(B) == 1)
    finally:
        s.stop(wait=5)
    assert rec.late[1] >= 0.25
    assert seen == ["kopf", "kopf"]


def test_only_admitted_clusters_get_passes(rec: Recorder, sched: Scheduler) -> None:
    # A cluster deleted (or forgotten at a pause): a pass's follow-up, an event or a role check that still
    # comes in starts nothing.
    sched.forget(A)
    sched.request(A, "watch")
    sched.request(("ns", "never"), "watch")
    time.sleep(0.3)
    assert rec.count(A) == 0
    assert rec.count(("ns", "never")) == 0
    assert sched.admit(A) is True  # its first event after: admitted once
    assert sched.admit(A) is False  # every later event: already admitted
    sched.request(A, "reconcile")
    until(lambda: rec.count(A) == 1)


def test_while_paused_no_cluster_is_admitted_and_no_pass_starts_even_before_the_pause_is_followed(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf pauses this replica for another peer: from that moment no queued pass starts (the pause's
    follower has not yet forgotten the clusters), and an event kopf still hands over admits nothing. A
    pause too brief to be followed leaves the clusters admitted; one followed (forget_all) forgets them,
    and the listing after it admits them again."""
    monkeypatch.setattr(scheduler_module, "PAUSED_POLL", 0.05)
    paused = threading.Event()
    s = Scheduler(rec, workers=2, paused=paused.is_set)
    assert s.admit(A)
    s.start()
    try:
        rec.next[A] = 0.05
        s.request(A, "reconcile")
        until(lambda: rec.count(A) >= 2)  # a cluster with a fast follow-up
        paused.set()
        time.sleep(0.2)
        settled = rec.count(A)
        time.sleep(0.3)
        assert rec.count(A) == settled
        assert s.admit(B) is False
        s.request(B, "watch")
        paused.clear()  # not followed: A keeps its passes
        until(lambda: rec.count(A) > settled)
        paused.set()
        time.sleep(0.2)
        assert s.forget_all() == [A]  # the clusters without a pass under way
        assert len(s) == 0
        paused.clear()
        settled = rec.count(A)
        time.sleep(0.2)
        assert rec.count(A) == settled
        assert rec.count(B) == 0  # forgotten: nothing runs until admitted again
        assert s.admit(A)
        assert s.admit(B)
        s.request(B, "reconcile")
        until(lambda: rec.count(B) == 1)
    finally:
        s.stop(wait=5)


def test_an_object_created_again_under_the_same_name_is_admitted_and_only_the_deleted_one_forgotten(
    rec: Recorder,
) -> None:
    s = Scheduler(rec)
    assert s.admit(A, "u1")
    assert not s.admit(A, "u1")
    assert s.admit(A, "u2")  # created again: kopf handed over its first event before the old one's DELETED
    s.forget(A, "u1")
    assert len(s) == 1
    s.forget(A, "u2")
    assert len(s) == 0
    assert s.admit(A, "u3")
    assert s.admit(B, "u4")
    assert s.admit(("other", "c"), "u5")
    s.forget_namespace("ns")  # kopf's watch of the namespace ended
    assert len(s) == 1
    s.forget_namespace(None)  # a cluster-wide watch ended: the operator stops
    assert len(s) == 0


def test_a_cluster_forgotten_and_admitted_again_waits_for_its_running_pass(rec: Recorder, sched: Scheduler) -> None:
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    sched.request(A, "reconcile")
    assert rec.inside[A].wait(5)
    sched.forget(A)  # deleted, and created again under the same name while its last pass still runs
    sched.admit(A)
    sched.request(A, "reconcile")
    time.sleep(0.3)
    assert rec.count(A) == 1
    rec.hold[A].set()
    until(lambda: rec.count(A) == 2)
    assert rec.most == 1


def test_a_cluster_withdrawn_while_its_pass_ran_has_what_the_pass_left_cleared(rec: Recorder) -> None:
    cleared: list[Key] = []
    s = Scheduler(rec, workers=1, gone=cleared.append)
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    s.admit(A)
    s.start()
    try:
        s.request(A, "reconcile")
        assert rec.inside[A].wait(5)
        s.forget(A)  # deleted: the on.delete handler forgot its metrics before this pass recorded them
        rec.hold[A].set()
        until(lambda: cleared == [A])
    finally:
        s.stop(wait=5)


def test_a_cluster_admitted_again_while_the_old_ones_leftovers_are_cleared_waits_for_that(rec: Recorder) -> None:
    """Deleted while its pass ran, and created again under the same name before `gone` ran: the new
    object's pass starts only after `gone` cleared what the old one's pass left (else it would wipe the
    new one's credentials and roles in the middle of its pass)."""
    started_during_gone: list[bool] = []

    def gone(key: Key) -> None:
        s.admit(key, uid="new")
        s.request(key, "reconcile")
        time.sleep(0.2)  # a free worker would start the new pass meanwhile, were the key not still running
        started_during_gone.append(rec.count(key) > 1)

    s = Scheduler(rec, workers=2, gone=gone)
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    s.admit(A, uid="old")
    s.start()
    try:
        s.request(A, "reconcile")
        assert rec.inside[A].wait(5)
        s.forget(A, uid="old")
        rec.hold[A].set()
        until(lambda: rec.count(A) == 2)
    finally:
        s.stop(wait=5)
    assert started_during_gone == [False]


BLOCK = ("ns", "block")
BACKLOG = [("ns", f"new-{i}") for i in range(20)]


@pytest.fixture
def one_worker(rec: Recorder) -> Iterator[Scheduler]:
    """One worker, held inside BLOCK's pass until the test releases it: what is queued meanwhile then
    starts in the queue's order, one pass at a time."""
    s = Scheduler(rec, workers=1)
    for key in (BLOCK, A, B, *BACKLOG):
        s.admit(key)
    rec.hold[BLOCK], rec.inside[BLOCK] = threading.Event(), threading.Event()
    s.start()
    s.request(BLOCK, "reconcile")
    assert rec.inside[BLOCK].wait(5)
    yield s
    s.stop(wait=5)


def _order(rec: Recorder, count: int) -> list[tuple[Key, str]]:
    """The passes after BLOCK's, once `count` of them ran."""
    rec.hold[BLOCK].set()
    until(lambda: len(rec.ran) >= count + 1)
    return rec.ran[1:]


def test_a_prompt_pass_starts_ahead_of_a_backlog_due_before_it(rec: Recorder, one_worker: Scheduler) -> None:
    """A thousand clusters created at once queue their first passes; a role check that found the roles
    moved asks for a prompt one, which starts next, not after the backlog."""
    for key in BACKLOG:
        one_worker.request(key, "admitted")
    one_worker.request(A, "role-check", prompt=True)
    assert _order(rec, len(BACKLOG) + 1) == [(A, "role-check"), *((k, "admitted") for k in BACKLOG)]


def test_a_pass_that_promises_its_next_keeps_its_place_ahead_of_the_backlog(
    rec: Recorder, one_worker: Scheduler
) -> None:
    """A's pass asks for its next at once, promised (a failover's re-check); B's asks for one unpromised
    (the slow timer's place): A's next starts before the backlog, B's after it."""
    rec.next[A] = Next(0.0, prompt=True)
    rec.next[B] = Next(0.0)
    one_worker.request(A, "role-check", prompt=True)
    one_worker.request(B, "role-check", prompt=True)
    for key in BACKLOG:
        one_worker.request(key, "admitted")
    ran = _order(rec, len(BACKLOG) + 5)
    rec.next[A] = rec.next[B] = None
    assert ran[:3] == [(A, "role-check"), (B, "role-check"), (A, "timer")]
    assert ran.index((B, "timer")) > ran.index((BACKLOG[-1], "admitted"))


def test_a_prompt_request_joins_the_queued_pass_and_lifts_it_into_the_prompt_lane(
    rec: Recorder, one_worker: Scheduler
) -> None:
    """One pass serves both requests: at the earlier time, in the prompt lane."""
    one_worker.request(A, "watch")
    for key in BACKLOG:
        one_worker.request(key, "admitted")
    one_worker.request(A, "role-check", delay=60.0, prompt=True)  # later than the queued one
    ran = _order(rec, len(BACKLOG) + 1)
    assert ran[0] == (A, "watch")
    assert ran.count((A, "watch")) == 1
    assert one_worker.pending() == 0  # the later request was joined, not queued


def test_a_prompt_request_while_the_pass_runs_gets_a_prompt_pass_after_it(rec: Recorder) -> None:
    s = Scheduler(rec, workers=1)
    for key in (A, B, *BACKLOG):
        s.admit(key)
    rec.hold[A], rec.inside[A] = threading.Event(), threading.Event()
    s.start()
    try:
        s.request(A, "watch")
        assert rec.inside[A].wait(5)
        for key in BACKLOG:
            s.request(key, "admitted")
        s.request(A, "role-check", prompt=True)
        rec.hold[A].set()
        until(lambda: len(rec.ran) >= len(BACKLOG) + 2)
    finally:
        s.stop(wait=5)
    assert rec.ran[:2] == [(A, "watch"), (A, "role-check")]


def test_after_a_run_of_prompt_passes_one_of_the_other_lane_starts(rec: Recorder, one_worker: Scheduler) -> None:
    """Prompt passes do not hold the other lane back for good: with both lanes due, every PROMPT_RUN
    prompt passes in a row are followed by one of the other lane."""
    for key in BACKLOG:
        one_worker.request(key, "timer", prompt=True)
    one_worker.request(A, "admitted")
    one_worker.request(B, "admitted")
    ran = _order(rec, len(BACKLOG) + 2)
    assert ran.index((A, "admitted")) == PROMPT_RUN
    assert ran.index((B, "admitted")) == 2 * PROMPT_RUN + 1
    assert [key for key, reason in ran if reason == "timer"] == BACKLOG


def test_a_prompt_pass_that_raises_is_tried_again_in_the_prompt_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failover's pass whose request timed out keeps its place ahead of the backlog."""
    monkeypatch.setattr(scheduler_module, "FAILED_RETRY", 0.0)
    ran: list[tuple[Key, str]] = []
    held, inside = threading.Event(), threading.Event()
    failures = {A: 1}

    def run(key: Key, reason: str, late: float) -> float | None:
        ran.append((key, reason))
        if key == BLOCK:
            inside.set()
            held.wait(5)
        if failures.get(key):
            failures[key] -= 1
            raise TimeoutError("the API server did not answer")
        return None

    s = Scheduler(run, workers=1)
    for key in (BLOCK, A, *BACKLOG):
        s.admit(key)
    s.start()
    try:
        s.request(BLOCK, "reconcile")
        assert inside.wait(5)
        for key in BACKLOG:
            s.request(key, "admitted")
        s.request(A, "role-check", prompt=True)
        held.set()
        until(lambda: len(ran) >= len(BACKLOG) + 3)
    finally:
        s.stop(wait=5)
    assert ran[1:3] == [(A, "role-check"), (A, "timer")]
