"""Shards, slots and roll order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from valkey_operator.topology import SLOTS, plan_shards, roll_order, slot_ranges


@given(st.integers(min_value=1, max_value=500))
def test_slot_ranges_cover_every_slot_once(shards: int) -> None:
    ranges = slot_ranges(shards)
    covered = [s for first, last in ranges for s in range(first, last + 1)]
    assert covered == list(range(SLOTS))
    sizes = [last - first + 1 for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(min_value=3, max_value=50), st.integers(min_value=0, max_value=5))
def test_every_pod_has_exactly_one_role(shards: int, rps: int) -> None:
    plan = plan_shards(shards, rps)
    pods = [s.primary for s in plan] + [r for s in plan for r in s.replicas]
    assert sorted(pods) == list(range(shards * (1 + rps)))
    assert [s.primary for s in plan] == list(range(shards))


def test_roll_order_replicas_first_primary_last() -> None:
    assert roll_order(["c-0", "c-1", "c-2", "c-10"], ["c-1"]) == ["c-10", "c-2", "c-0", "c-1"]
