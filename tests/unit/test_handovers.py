"""Pacing role handovers: one that does not complete is asked again only after 5, 10, 20, 40, then 60 s."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.unit.conftest import NOW
from tests.unit.test_decide import cluster
from tests.unit.test_failover import events, primary_on_last_pod
from valkey_operator.actions import ClusterFailover, DeletePod, Event, Switchover
from valkey_operator.clock import iso
from valkey_operator.decide import decide
from valkey_operator.handovers import pace, wait_after

MOVE = Switchover("cache-0", "cache-1")
TOLD = Event("Normal", "Switchover", "Handing the primary role from cache-0 to cache-1.")


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(("attempts", "wait"), [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60)])
def test_the_wait_doubles_up_to_a_minute(attempts: int, wait: float) -> None:
    assert wait_after(attempts) == wait


def test_a_first_handover_is_asked_recorded_and_counted() -> None:
    paced = pace([], [MOVE], [TOLD], NOW)
    assert paced.actions == (MOVE,)
    assert paced.events == (TOLD,)
    assert paced.records == ({"action": str(MOVE), "attempts": 1, "at": iso(NOW)},)
    assert (paced.first_attempts, paced.retry_after) == (1, None)


def test_the_same_handover_too_soon_is_held_back_without_an_event() -> None:
    first = pace([], [MOVE], [TOLD], NOW)
    again = pace(first.records, [MOVE, DeletePod("cache-2", "u")], [TOLD], later(2))
    assert again.actions == (DeletePod("cache-2", "u"),)
    assert again.events == ()
    assert again.records == first.records
    assert again.retry_after == pytest.approx(3.0)
    assert again.first_attempts == 0


def test_after_the_wait_it_is_asked_again_with_a_warning_and_the_next_wait_is_longer() -> None:
    first = pace([], [MOVE], [TOLD], NOW)
    second = pace(first.records, [MOVE], [TOLD], later(5))
    assert second.actions == (MOVE,)
    assert [(e.type, e.reason) for e in second.events] == [("Warning", "SwitchoverRetried")]
    assert "did not complete (1 attempt)" in second.events[0].message
    assert second.records[0]["attempts"] == 2
    assert second.first_attempts == 0  # the metric counts a handover once
    assert pace(second.records, [MOVE], [TOLD], later(14)).actions == ()
    assert pace(second.records, [MOVE], [TOLD], later(15)).actions == (MOVE,)


def test_a_record_two_minutes_old_belongs_to_a_handover_that_is_over() -> None:
    first = pace([], [MOVE], [TOLD], NOW)
    assert pace(first.records, [], [], later(60), under_way=True).records == first.records  # it may still abort
    fresh = pace(first.records, [MOVE], [TOLD], later(121))
    assert (fresh.actions, fresh.events, fresh.first_attempts) == ((MOVE,), (TOLD,), 1)
    assert pace(first.records, [], [], later(121)).records == ()


def test_a_handover_no_longer_asked_for_while_nothing_is_under_way_completed_and_is_forgotten() -> None:
    """cache-0 -> cache-1 completed; 30 s later a rotation needs the same move again: a first attempt, no
    false warning that the last one did not complete, not held back."""
    first = pace([], [MOVE], [TOLD], NOW)
    quiet = pace(first.records, [DeletePod("cache-2", "u")], [], later(20))
    assert quiet.records == ()
    again = pace(quiet.records, [MOVE], [TOLD], later(30))
    assert (again.actions, again.events, again.first_attempts) == ((MOVE,), (TOLD,), 1)


def test_a_pass_that_skips_the_ask_within_the_wait_does_not_reset_the_pacing() -> None:
    """A pass skips the switchover for another reason (a silent pod, the StatefulSet not settled) a second
    after it was asked: the record stays, and the same ask 3 s later is still held back."""
    first = pace([], [MOVE], [TOLD], NOW)
    gap = pace(first.records, [], [], later(1))
    assert gap.records == first.records
    held = pace(gap.records, [MOVE], [TOLD], later(3))
    assert (held.actions, held.events, held.first_attempts) == ((), (), 0)


def test_each_shard_handover_is_paced_on_its_own() -> None:
    a, b = ClusterFailover("cache-3"), ClusterFailover("cache-4")
    first = pace([], [a], [], NOW)
    both = pace(first.records, [a, b], [], later(2))
    assert both.actions == (b,)
    assert {r["action"] for r in both.records} == {str(a), str(b)}


def test_a_scale_down_whose_switchover_aborts_asks_again_after_the_wait_not_every_pass() -> None:
    world = primary_on_last_pod(cluster())
    one = cluster(replicas=1)
    moves = []
    for second in range(0, 16):
        # FAILOVER TO aborted (the target did not catch up in time): cache-2 still says master, no failover
        # in progress. The fake World would carry the switchover out, so decide is called without it.
        d = decide(one, world.snapshot(), later(second))
        world.status.update({k: v for k, v in d.status.items() if k == "handovers"})
        if [a for a in d.actions if isinstance(a, Switchover)]:
            moves.append((second, events(d)))
    assert [s for s, _ in moves] == [0, 5, 15]
    assert ("Normal", "Switchover") in moves[0][1]
    assert ("Warning", "SwitchoverRetried") in moves[1][1]
    assert ("Normal", "Switchover") not in moves[1][1]


def test_a_slot_migration_is_paced_but_not_counted_as_a_failover() -> None:
    from valkey_operator.actions import MigrateSlots

    move = MigrateSlots("cache-0", ((((4096, 5461),), "id6"),))
    told = Event("Normal", "MigratingSlots", f"{move}.")
    first = pace([], [move], [told], NOW)
    assert (first.actions, first.events, first.first_attempts) == ((move,), (told,), 0)
    assert pace(first.records, [move], [told], later(2)).actions == ()
