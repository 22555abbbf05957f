"""The per-cluster pass runner: one pass at a time per cluster, one pass per burst, one timer per cluster."""

from __future__ import annotations

import threading
import time

from valkey_operator.handlers.passes import Passes


def test_passes_of_one_cluster_never_overlap_and_a_burst_costs_one_more_pass() -> None:
    passes: Passes[int] = Passes()
    inside = threading.Event()
    release = threading.Event()
    ran: list[str] = []
    active = 0
    most = 0

    def work(tag: str) -> int:
        nonlocal active, most
        active += 1
        most = max(most, active)
        ran.append(tag)
        if tag == "first" and not inside.is_set():
            inside.set()
            release.wait(5)
        active -= 1
        return len(ran)

    first = threading.Thread(target=passes.run, args=(("ns", "a"), lambda: work("first")))
    first.start()
    assert inside.wait(5)
    # Five requests arrive while the first pass runs: one more pass covers them all, run by the holder
    # before it lets go (the five waiters then find themselves covered).
    burst = [threading.Thread(target=passes.run, args=(("ns", "a"), lambda: work("burst"))) for _ in range(5)]
    for t in burst:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in [first, *burst]:
        t.join(5)
    assert ran == ["first", "first"]
    assert most == 1


def test_other_clusters_do_not_wait() -> None:
    passes: Passes[str] = Passes()
    hold = threading.Event()
    t = threading.Thread(target=passes.run, args=(("ns", "a"), lambda: str(hold.wait(5))))
    t.start()
    assert passes.run(("ns", "b"), lambda: "b") == "b"
    hold.set()
    t.join(5)


def test_later_keeps_one_timer_per_cluster_and_forget_cancels_it() -> None:
    passes: Passes[None] = Passes()
    fired: list[str] = []
    passes.later(("ns", "a"), 0.3, lambda: fired.append("old"))
    passes.later(("ns", "a"), 0.1, lambda: fired.append("new"))
    passes.later(("ns", "b"), 0.2, lambda: fired.append("b"))
    passes.forget(("ns", "b"))
    time.sleep(0.6)
    assert fired == ["new"]
    assert len(passes) == 1


def test_a_watch_request_never_waits_and_the_running_pass_serves_it() -> None:
    passes: Passes[None] = Passes()
    inside = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def long_pass() -> None:
        ran.append("long")
        inside.set()
        release.wait(5)

    holder = threading.Thread(target=passes.request, args=(("ns", "a"), long_pass))
    holder.start()
    assert inside.wait(5)
    started = time.monotonic()
    for _ in range(3):  # a burst of watch events while the pass runs
        passes.request(("ns", "a"), lambda: ran.append("burst"))
    assert time.monotonic() - started < 0.5, "a request must not wait for the running pass"
    release.set()
    holder.join(5)
    # The holder ran its own function once more for the three requests (the burst's functions are the
    # same pass: a request asks for "a pass", not for its own callable).
    assert ran == ["long", "long"]


def test_a_watch_request_during_a_handlers_pass_gets_a_pass_of_its_own() -> None:
    passes: Passes[int] = Passes()
    inside, release = threading.Event(), threading.Event()
    count = 0

    def handler_pass() -> int:
        nonlocal count
        count += 1
        if count == 1:
            inside.set()
            release.wait(5)
        return count

    holder = threading.Thread(target=passes.run, args=(("ns", "a"), handler_pass))
    holder.start()
    assert inside.wait(5)
    passes.request(("ns", "a"), lambda: None)  # returns at once: the holder is asked to look again
    release.set()
    holder.join(5)
    assert count == 2
