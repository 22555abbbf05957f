"""Forming a sharded cluster, from what its nodes report. Pure.

One kind of change per pass, each read back on the next pass before the next kind (the outcome of a
cluster command shows only once the nodes have gossiped):
1. meet: every node must know every other; the first pod meets each node it does not know yet, by
   address (CLUSTER MEET takes addresses only), and gossip spreads the rest;
2. slots: once all know each other, a cluster where no node serves a slot gets its 16384 slots, split
   evenly over the shards' primaries (CLUSTER ADDSLOTSRANGE);
3. replicas: every replica pod follows its shard's primary (CLUSTER REPLICATE).
Then every node reports cluster_state:ok. Pods are laid out by `topology.plan_shards`: pods 0..shards-1
are the primaries, the replicas of shard s are s + shards, s + 2*shards, ...

Only a new cluster is formed here: a cluster whose slots are partly assigned, or a node with slots where
the layout wants a replica, is left as it is and reported (healing and scaling come later).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from valkey_operator import names
from valkey_operator.actions import Action, AddSlots, Meet, Replicate
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.snapshot import ClusterView, PodView
from valkey_operator.topology import plan_shards

# How soon to look again while the cluster forms (gossip and handshakes take a moment).
RECHECK = 1.0


@dataclass(frozen=True)
class Formation:
    actions: tuple[Action, ...] = ()
    waiting: str = ""  # what formation waits for, for the Ready message; "" when formed or acting
    retry_after: float | None = None


def form(cluster: ValkeyCluster, views: Sequence[PodView], reports: Mapping[str, ClusterView]) -> Formation:
    """The next formation step of a sharded cluster whose pods all run and answer."""
    desired = cluster.names.pods(cluster.spec.pod_count)
    live = {p.name: p for p in views if not p.terminating}
    missing = [p for p in desired if p not in live or not live[p].running or p not in reports]
    if missing:
        return Formation(waiting=f"waiting for {', '.join(missing)} to run and answer", retry_after=RECHECK)
    ids = {p: reports[p].myid for p in desired}
    hub = desired[0]
    strangers = [p for p in desired[1:] if not reports[hub].knows(ids[p])]
    if strangers:
        return Formation(tuple(Meet(hub, live[p].ip) for p in strangers), retry_after=RECHECK)
    unaware = [p for p in desired if not all(reports[p].knows(ids[q]) for q in desired)]
    if unaware:
        return Formation(waiting=f"gossip to reach {', '.join(unaware)}", retry_after=RECHECK)

    shards = plan_shards(cluster.spec.shards, cluster.spec.replicas_per_shard)
    served = {n.id: n.slots for n in reports[hub].nodes if n.slots}
    name = cluster.names.pod
    if not served:
        slots = tuple(AddSlots(name(s.primary), s.first_slot, s.last_slot) for s in shards)
        return Formation(slots, retry_after=RECHECK)
    expected = {ids[name(s.primary)]: ((s.first_slot, s.last_slot),) for s in shards}
    if served != expected:
        return Formation(waiting="slots are assigned otherwise than this layout: left as they are")

    follow: list[Action] = []
    for shard in shards:
        primary_id = ids[name(shard.primary)]
        for ordinal in shard.replicas:
            replica = name(ordinal)
            me = reports[replica].myself
            if me is not None and me.master != primary_id:
                follow.append(Replicate(replica, primary_id))
    if follow:
        return Formation(tuple(follow), retry_after=RECHECK)
    not_ok = [p for p in desired if reports[p].state != "ok"]
    if not_ok:
        return Formation(waiting=f"cluster_state:ok on {', '.join(not_ok)}", retry_after=RECHECK)
    return Formation()


def shard_status(
    cluster: ValkeyCluster, views: Sequence[PodView], reports: Mapping[str, ClusterView]
) -> tuple[list[dict[str, object]], str | None]:
    """status.shards and status.clusterState from what the nodes report, not from the layout: each primary
    that serves slots (ordered by its first slot) with the pods that follow it, and `ok` only when every
    live node says so (None: no node answered)."""
    live = [p.name for p in views if not p.terminating and p.name in reports]
    if not live:
        return [], None
    pod_of = {reports[p].myid: p for p in live}
    followers: dict[str, list[str]] = {}
    for p in live:
        me = reports[p].myself
        if me is not None and me.master:
            followers.setdefault(me.master, []).append(p)
    hub = reports[live[0]]
    primaries = sorted((n for n in hub.nodes if n.is_primary and n.slots), key=lambda n: n.slots[0][0])
    shards: list[dict[str, object]] = [
        {
            "index": i,
            "primary": pod_of.get(n.id, n.id),
            "replicas": sorted(followers.get(n.id, []), key=names.ordinal),
            "slots": ",".join(f"{a}-{b}" if a != b else str(a) for a, b in n.slots),
        }
        for i, n in enumerate(primaries)
    ]
    state = "ok" if all(reports[p].state == "ok" for p in live) else "fail"
    return shards, state
