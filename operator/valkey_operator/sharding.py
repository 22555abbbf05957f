"""Forming and healing a sharded cluster, from what its nodes report. Pure.

One kind of change per pass, each read back on the next pass before the next kind (the outcome of a
cluster command shows only once the nodes have gossiped):
1. meet: every node must know every other at its current address; the first pod meets each node it does
   not know, or knows only at an address it no longer has, by address (CLUSTER MEET takes addresses
   only; a known node id met at a new address keeps its id), and gossip spreads the rest;
2. forget: a node id that no pod has any more (its pod restarted without its data and came back as a
   new node, or was removed) is forgotten on every node, unless it still serves slots: those wait for
   Valkey's own failover to a replica;
3. slots: a cluster where no node serves a slot gets its 16384 slots, split evenly over the shards'
   primaries (CLUSTER ADDSLOTSRANGE);
4. replicas: every other pod of a shard follows the node that serves the shard's slots (CLUSTER
   REPLICATE), whichever pod that is after a failover. A node that lost its data comes back without
   slots, so it only ever becomes a replica: an empty node never becomes a primary.
Then every node reports cluster_state:ok. Pods are laid out by `topology.plan_shards`: pods 0..shards-1
start as the primaries, the replicas of shard s are s + shards, s + 2*shards, ...

Slots assigned otherwise than the layout (a change of `shards`) are left as they are and reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from valkey_operator import names
from valkey_operator.actions import Action, AddSlots, ClusterFailover, Forget, Meet, Replicate
from valkey_operator.api.spec import SpecError, ValkeyCluster
from valkey_operator.conf.version import effective_version
from valkey_operator.snapshot import ClusterNode, ClusterView, PodView, Replication
from valkey_operator.topology import SLOTS, Shard, plan_shards

SHARDS_CHANGE_REFUSED = "ShardsChangeNotSupported"
# How soon to look again while the cluster forms (gossip and handshakes take a moment).
RECHECK = 1.0
# How soon to look again after a CLUSTER FAILOVER: long enough for a coordinated one to finish (asking
# again restarts it).
FAILOVER_RECHECK = 2.0


@dataclass(frozen=True)
class Formation:
    actions: tuple[Action, ...] = ()
    waiting: str = ""  # what formation waits for, for the Ready message; "" when formed or acting
    retry_after: float | None = None


def _shard_pods(cluster: ValkeyCluster, shard: Shard) -> list[str]:
    return [cluster.names.pod(o) for o in (shard.primary, *shard.replicas)]


def _owner(view: ClusterView, first_slot: int) -> ClusterNode | None:
    """The node that serves `first_slot`, as `view` sees it."""
    return next((n for n in view.nodes if any(a <= first_slot <= b for a, b in n.slots)), None)


def form(cluster: ValkeyCluster, views: Sequence[PodView], reports: Mapping[str, ClusterView]) -> Formation:
    """The next formation or healing step of a sharded cluster whose pods all run and answer."""
    desired = cluster.names.pods(cluster.spec.pod_count)
    live = {p.name: p for p in views if not p.terminating}
    missing = [p for p in desired if p not in live or not live[p].running or p not in reports]
    if missing:
        return Formation(waiting=f"waiting for {', '.join(missing)} to run and answer", retry_after=RECHECK)
    ids = {p: reports[p].myid for p in desired}
    hub = desired[0]

    def astray(p: str) -> bool:  # unknown to the hub, or known at an address the pod no longer has
        seen = reports[hub].node(ids[p])
        return seen is None or (not seen.connected and bool(seen.ip) and seen.ip != live[p].ip)

    strangers = [p for p in desired[1:] if astray(p)]
    if strangers:
        return Formation(tuple(Meet(hub, live[p].ip) for p in strangers), retry_after=RECHECK)
    unaware = [p for p in desired if not all(reports[p].knows(ids[q]) for q in desired)]
    if unaware:
        return Formation(waiting=f"gossip to reach {', '.join(unaware)}", retry_after=RECHECK)

    mine = set(ids.values())
    # Nodes no pod has any more, as any node sees them (a handshake entry is a meeting under way, not a
    # node); one that any view says serves slots waits for its replica's takeover, never forgotten.
    gone = {n.id for p in desired for n in reports[p].nodes if n.id not in mine and "handshake" not in n.flags}
    holding = {n.id for p in desired for n in reports[p].nodes if n.id in gone and n.slots}
    orphaned = sorted(i[:8] for i in holding)
    forget = tuple(
        Forget(p, node_id)
        for node_id in sorted(gone - holding)
        for p in desired
        if reports[p].knows(node_id) and _master_of(reports[p]) != node_id  # a node cannot forget its own
    )
    if forget:
        return Formation(forget, retry_after=RECHECK)

    shards = plan_shards(cluster.spec.shards, cluster.spec.replicas_per_shard)
    name = cluster.names.pod
    served = [n for p in desired for n in reports[p].nodes if n.slots]
    if not served:
        return Formation(
            tuple(AddSlots(name(s.primary), s.first_slot, s.last_slot) for s in shards), retry_after=RECHECK
        )
    if orphaned:
        return Formation(
            waiting=f"a replica to take over the slots of node {', '.join(orphaned)}, whose pod is gone",
            retry_after=RECHECK,
        )
    follow: list[Action] = []
    for shard in shards:
        owners = {o.id: o for p in desired if (o := _owner(reports[p], shard.first_slot)) is not None}
        owner = next(iter(owners.values()), None) if len(owners) == 1 else None
        if owner is None or owner.slots != ((shard.first_slot, shard.last_slot),) or owner.id not in mine:
            return Formation(waiting="slots are assigned otherwise than this layout: left as they are")
        for pod in _shard_pods(cluster, shard):
            me = reports[pod].myself
            if pod != _pod_of(ids, owner.id) and me is not None and me.master != owner.id and not me.slots:
                follow.append(Replicate(pod, owner.id))
    if follow:
        return Formation(tuple(follow), retry_after=RECHECK)
    not_ok = [p for p in desired if reports[p].state != "ok"]
    if not_ok:
        return Formation(waiting=f"cluster_state:ok on {', '.join(not_ok)}", retry_after=RECHECK)
    return Formation()


def layout_change(cluster: ValkeyCluster, reports: Mapping[str, ClusterView]) -> SpecError | None:
    """A formed cluster whose slots are split otherwise than `spec.shards` asks (the user changed `shards`):
    refused, with what would be needed, until resharding by atomic slot migration is built. Nothing that
    runs is touched meanwhile (a StatefulSet scaled for the new layout would add pods no slot goes to)."""
    planned = {(s.first_slot, s.last_slot) for s in plan_shards(cluster.spec.shards, 0)}
    # The cluster as its members see it: a lone node (not met yet) is not part of the layout.
    members = [view for view in reports.values() if len(view.nodes) > 1]
    owners = {n.id: n.slots for view in members for n in view.nodes if n.slots}
    if not owners or all(len(r) == 1 and r[0] in planned for r in owners.values()):
        return None
    version = effective_version(cluster.spec.image)
    why = (
        "moving slots between shards without losing writes needs atomic slot migration (CLUSTER MIGRATESLOTS, "
        f"Valkey 9.0 or later) and the image runs Valkey {version[0]}.{version[1]}"
        if version < (9, 0)
        else "this version of the operator does not move slots between the shards of a formed cluster yet"
    )
    return SpecError(
        SHARDS_CHANGE_REFUSED,
        f"spec.shards is {cluster.spec.shards} but the cluster's slots are split over {len(owners)} shards: {why}. "
        f"Set spec.shards back to {len(owners)}; nothing was changed.",
    )


def _master_of(view: ClusterView) -> str | None:
    me = view.myself
    return me.master if me is not None else None


def _pod_of(ids: Mapping[str, str], node_id: str) -> str | None:
    return next((p for p, i in ids.items() if i == node_id), None)


def silent(views: Sequence[PodView], reports: Mapping[str, ClusterView]) -> list[str]:
    """Running pods that did not answer: any of them may be a primary, so who serves slots is not known."""
    return [p.name for p in views if not p.terminating and p.running and p.name not in reports]


def primaries(views: Sequence[PodView], reports: Mapping[str, ClusterView]) -> dict[str, list[str]]:
    """Each pod that serves slots, with the pods that follow it (by what each node says of itself)."""
    by_id = {reports[p.name].myid: p.name for p in views if p.name in reports}
    out: dict[str, list[str]] = {}
    for p in views:
        me = reports[p.name].myself if p.name in reports else None
        if me is not None and me.is_primary and me.slots:
            out.setdefault(p.name, [])
    for p in views:
        me = reports[p.name].myself if p.name in reports else None
        if me is not None and me.master and by_id.get(me.master) in out:
            out[by_id[me.master]].append(p.name)
    return out


def handovers(
    cluster: ValkeyCluster,
    views: Sequence[PodView],
    reports: Mapping[str, ClusterView],
    replication: Mapping[str, Replication],
) -> tuple[ClusterFailover, ...]:
    """A primary on its way out hands its slots to its most caught-up linked replica that stays (CLUSTER
    FAILOVER, coordinated): a pod being deleted (by a user, a drain; its preStop hook waits for this, so a
    graceful deletion loses no acknowledged write), or one a scale-down is about to remove (the scale-down
    waits for it)."""
    leaving = {p.name for p in views if p.terminating or names.ordinal(p.name) >= cluster.spec.pod_count}
    out = []
    for primary, followers in primaries(views, reports).items():
        if primary not in leaving:
            continue
        linked = [f for f in followers if f not in leaving and (r := replication.get(f)) is not None and r.link_up]
        if linked:
            best = max(linked, key=lambda f: replication[f].offset)
            out.append(ClusterFailover(best))
    return tuple(out)


Verdict = tuple[bool, str, str]  # (status, reason, message) of a condition


def cluster_conditions(
    cluster: ValkeyCluster, views: Sequence[PodView], reports: Mapping[str, ClusterView]
) -> tuple[Verdict, Verdict]:
    """ClusterFormed (every desired node answers, knows every other and says cluster_state:ok) and
    SlotsAssigned (the slots the nodes say they serve cover all 16384, none migrating), from the nodes."""
    desired = cluster.names.pods(cluster.spec.pod_count)
    live = {p.name for p in views if not p.terminating}
    silent = [p for p in desired if p not in live or p not in reports]
    ids = {p: reports[p].myid for p in desired if p in reports}
    unaware = [p for p in ids if not all(reports[p].knows(i) for i in ids.values())]
    failing = [p for p in ids if reports[p].state != "ok"]
    if silent:
        formed = (False, "NodesNotAnswering", f"{', '.join(silent)} do not answer yet; they are waited for.")
    elif unaware:
        formed = (
            False,
            "NodesNotMet",
            f"{', '.join(unaware)} do not know every other node yet; the operator meets them.",
        )
    elif failing:
        formed = (False, "ClusterStateFail", f"{', '.join(failing)} report cluster_state:fail.")
    else:
        formed = (True, "Formed", f"All {len(desired)} nodes know each other and report cluster_state:ok.")
    own = [me for p in ids if (me := reports[p].myself) is not None and me.is_primary]
    # The union: during a failover two nodes may both claim a range for a moment.
    served = len({slot for me in own for a, b in me.slots for slot in range(a, b + 1)})
    if any(n.migrating for p in ids for n in reports[p].nodes):
        slots = (False, "SlotsMigrating", "Slots are being migrated between shards.")
    elif served < SLOTS:
        slots = (
            False,
            "SlotsUncovered",
            f"{served} of {SLOTS} slots are served by a node that answers; keys in the others fail.",
        )
    else:
        slots = (True, "AllSlotsServed", f"All {SLOTS} slots are served, none migrating.")
    return formed, slots


def slot_text(slots: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in slots)


def shards_hold(recorded: Sequence[Mapping[str, Any]], view: ClusterView) -> bool:
    """Whether the primaries one node knows (by the pod names they announce) serve the slots status.shards
    records: a failover nobody asked the operator for (CLUSTER FAILOVER by hand, or Valkey's own) changes
    no Kubernetes object, so this cheap check is what notices it."""
    seen = {n.hostname.split(".")[0]: slot_text(n.slots) for n in view.nodes if n.is_primary and n.slots}
    return seen == {str(s.get("primary")): str(s.get("slots")) for s in recorded}


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
    # The view of the node that knows the most others (a node not met yet knows only itself).
    hub = max((reports[p] for p in live), key=lambda v: len(v.nodes))
    primaries = sorted((n for n in hub.nodes if n.is_primary and n.slots), key=lambda n: n.slots[0][0])
    shards: list[dict[str, object]] = [
        {
            "index": i,
            "primary": pod_of.get(n.id, n.id),
            "replicas": sorted(followers.get(n.id, []), key=names.ordinal),
            "slots": slot_text(n.slots),
        }
        for i, n in enumerate(primaries)
    ]
    state = "ok" if all(reports[p].state == "ok" for p in live) else "fail"
    return shards, state
