"""Roles and slots: which pod is a primary, which shard each pod serves, and the order pods roll in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SLOTS = 16384


@dataclass(frozen=True)
class Shard:
    index: int
    first_slot: int
    last_slot: int
    primary: int  # pod ordinal
    replicas: tuple[int, ...]


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """16384 slots split into `shards` contiguous ranges whose sizes differ by at most one."""
    base, extra = divmod(SLOTS, shards)
    ranges, start = [], 0
    for i in range(shards):
        size = base + (1 if i < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


def plan_shards(shards: int, replicas_per_shard: int) -> list[Shard]:
    """Pods 0..shards-1 are the primaries; replica r of shard s is pod shards*(r+1)+s."""
    return [
        Shard(
            index=s,
            first_slot=first,
            last_slot=last,
            primary=s,
            replicas=tuple(shards * (r + 1) + s for r in range(replicas_per_shard)),
        )
        for s, (first, last) in enumerate(slot_ranges(shards))
    ]


def roll_order(pods: Sequence[str], primaries: Sequence[str]) -> list[str]:
    """Replicas first (highest ordinal first, as the StatefulSet controller would), primaries last."""

    def ordinal(pod: str) -> int:
        return int(pod.rsplit("-", 1)[1])

    replicas = sorted((p for p in pods if p not in primaries), key=ordinal, reverse=True)
    return replicas + sorted((p for p in pods if p in primaries), key=ordinal, reverse=True)
