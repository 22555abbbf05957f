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
4. places: every pod has one (`_place`): a primary that serves slots, a new shard's primary (empty until
   slots move to it), or a replica of the shard with the fewest (CLUSTER REPLICATE). A node that lost its
   data comes back without slots, so it only ever becomes a replica: an empty node never serves a shard's
   slots by itself;
5. more shards (Valkey 9.0+): each shard above its share of the slots gives its highest ones to the new
   shards (CLUSTER MIGRATESLOTS, atomic), and nothing else starts while a migration runs;
6. fewer shards (Valkey 9.0+): the shards that go (`_drained`: on pods the scale-down removes first, then
   the fewest slots, the fewest replicas that stay, the highest ordinal) give all their slots to the others
   by the same rule; an emptied primary that stays becomes a replica, one that goes is removed by the
   StatefulSet (which keeps every pod that serves slots) and forgotten.
Then every node reports cluster_state:ok. A new cluster's pods land as `topology.plan_shards` lays them out:
pods 0..shards-1 start as the primaries, the replicas of shard s are s + shards, s + 2*shards, ...

A change of shards before Valkey 9.0 is refused (`layout_change`); slots no node serves are left to a human.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from valkey_operator import names
from valkey_operator.actions import Action, AddSlots, ClusterFailover, Forget, Meet, MigrateSlots, Replicate
from valkey_operator.api.spec import SpecError, ValkeyCluster
from valkey_operator.conf.version import effective_version
from valkey_operator.snapshot import ClusterNode, ClusterView, PodView, Replication
from valkey_operator.topology import SLOTS, plan_shards, slot_ranges

SHARDS_CHANGE_REFUSED = "ShardsChangeNotSupported"
MIGRATION_BATCH = 1024  # slots per job of a CLUSTER MIGRATESLOTS (16 batches would move every slot)
SHARDS_CHANGE_DURING_MIGRATION = "ShardsChangeDuringMigration"
# Atomic slot migration (CLUSTER MIGRATESLOTS) exists from this version on.
MIGRATION_VERSION = (9, 0)
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
    # Any other node that knows a peer only at an address the peer no longer has (every pod back at once
    # with new addresses: the hub's meetings reach the others, but their links to each other stay on the old
    # addresses until gossip, which corrects an address only once the node is flagged as failing): it meets
    # that peer itself.
    stale = tuple(
        Meet(p, live[q].ip)
        for p in desired[1:]
        for q in desired
        if q != p
        and (at := reports[p].node(ids[q])) is not None
        and not at.connected
        and bool(at.ip)
        and at.ip != live[q].ip
    )
    if stale:
        return Formation(stale, retry_after=RECHECK)
    unaware = [p for p in desired if not all(reports[p].knows(ids[q]) for q in desired)]
    if unaware:
        return Formation(waiting=f"gossip to reach {', '.join(unaware)}", retry_after=RECHECK)

    # A pod the scale-down removes is still a node while it runs (it may still give its slots away).
    pod_of = {v.myid: p for p, v in reports.items()}
    mine = set(pod_of)
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
    # The shards as the nodes report them: every node must agree on which nodes serve slots.
    seen = {frozenset(n.id for n in reports[p].nodes if n.is_primary and n.slots) for p in desired}
    if len(seen) > 1:
        return Formation(waiting="the nodes to agree on which nodes serve slots", retry_after=RECHECK)
    if any(reports[p].migrating for p in desired):
        return Formation(waiting="slot migrations to finish", retry_after=RECHECK)
    view = reports[hub]
    owners = sorted((n for n in view.nodes if n.id in next(iter(seen))), key=lambda n: n.slots[0][0])
    if _covered(owners) < SLOTS:
        # Every node of a shard lost its data at once (persistence off): no node can take its slots over.
        # Assigning them anew, or moving slots around them, is left to a human (SlotsAssigned says so).
        return Formation(waiting="slots no node serves: left as they are", retry_after=None)
    drained = _drained(cluster, desired, reports, owners)
    placed = _place(cluster, desired, reports, ids, [o.id for o in owners], drained)
    if placed.actions or placed.waiting:
        return placed
    not_ok = [p for p in desired if reports[p].state != "ok"]
    if not_ok:
        return Formation(waiting=f"cluster_state:ok on {', '.join(not_ok)}", retry_after=RECHECK)
    heads = [(o.id, o.slots) for o in owners]
    empty = [ids[p] for p in desired if ids[p] not in {o.id for o in owners} and loose(reports[p])]
    heads += [(i, ()) for i in empty[: max(cluster.spec.shards - len(owners), 0)]]
    moves = _migrations(heads, pod_of, drained)
    if moves:
        older = sorted((p for p in reports if reports[p].version < MIGRATION_VERSION), key=names.ordinal)
        if older:  # an image change still rolling: slots move once every node runs 9.0 or later
            return Formation(waiting=f"Valkey 9.0 or later on {', '.join(older)} before slots move", retry_after=None)
        return Formation(moves, retry_after=RECHECK)
    return Formation()


def growing(cluster: ValkeyCluster, reports: Mapping[str, ClusterView]) -> bool:
    """More shards are asked for than serve slots (by the best-informed node): the new shards' primaries
    are empty until slots move to them, and hold nothing a restart elsewhere could lose."""
    view = best_view(reports.values())
    return view is not None and len(_serving(view)) < cluster.spec.shards


def best_view(views: Iterable[ClusterView]) -> ClusterView | None:
    """The view of the node that knows the most others (a node not met yet knows only itself). One view, not
    a union: across views, a migration that just finished would count twice."""
    return max(views, key=lambda v: len(v.nodes), default=None)


def _serving(view: ClusterView) -> list[ClusterNode]:
    """The primaries that serve slots, as `view` sees them, by their first slot."""
    return sorted((n for n in view.nodes if n.is_primary and n.slots), key=lambda n: n.slots[0][0])


def _covered(nodes: Sequence[ClusterNode]) -> int:
    """How many of the 16384 slots `nodes` serve (two that claim one, during a failover, count once)."""
    return len({slot for n in nodes for a, b in n.slots for slot in range(a, b + 1)})


def loose(view: ClusterView) -> bool:
    """A node that serves no slot and follows no one (new, or back without its data)."""
    me = view.myself
    return me is not None and me.is_primary and not me.slots


def _drained(
    cluster: ValkeyCluster, desired: Sequence[str], reports: Mapping[str, ClusterView], owners: Sequence[ClusterNode]
) -> tuple[str, ...]:
    """Fewer shards than serve slots: the primaries whose slots move to the others. Those on pods the
    scale-down removes first (no handover needed), then the fewest slots (a drain that stopped half-way is
    finished first), the fewest replicas that stay, the highest ordinal; never one that does not answer."""
    excess = len(owners) - cluster.spec.shards
    if excess <= 0:
        return ()
    pod_of = {v.myid: p for p, v in reports.items()}
    staying = [me.master for p in desired if (me := reports[p].myself) is not None and me.master]

    def key(owner: ClusterNode) -> tuple[bool, bool, int, int, int]:
        pod = pod_of.get(owner.id)
        size = sum(b - a + 1 for a, b in owner.slots)
        return (pod is None, pod in desired, size, staying.count(owner.id), -names.ordinal(pod or "x-0"))

    return tuple(o.id for o in sorted(owners, key=key)[:excess])


def _place(
    cluster: ValkeyCluster,
    desired: Sequence[str],
    reports: Mapping[str, ClusterView],
    ids: Mapping[str, str],
    owners: Sequence[str],
    drained: Sequence[str] = (),
) -> Formation:
    """Every pod has a place: a primary that serves slots; a new shard's primary, empty until slots move to
    it (as many as `spec.shards` asks beyond the shards there are, the lowest ordinals among the loose
    nodes); or a replica. A loose node, or one that follows a node that is neither, follows the shard with
    the fewest replicas (ties: the shard of the lowest slots, new shards last). A new cluster's pods so land
    where the layout puts them (pod s + k * shards follows shard s); a node back without its data rejoins the
    shard that lost a member.

    A shard that stays but whose primary a scale-down removes, with no replica that stays, gets one first:
    a replica of a shard that goes (`drained`), else of the shard with the most, joins it; `handovers` then
    gives it the slots, and the StatefulSet waits for that."""
    empty = [p for p in desired if ids[p] not in owners and loose(reports[p])]
    new_heads = [ids[p] for p in empty[: max(cluster.spec.shards - len(owners), 0)]]
    heads = [*owners, *new_heads]
    followers = dict.fromkeys(heads, 0)
    strays = []
    for p in desired:
        me = reports[p].myself
        if me is None or ids[p] in heads:
            continue
        if me.master in followers:
            followers[me.master] += 1
        else:
            strays.append(p)
    follow: list[Action] = []
    pod_of = {v.myid: p for p, v in reports.items()}
    leaving = {h for h in owners if h not in drained and pod_of.get(h, desired[0]) not in desired}
    planned = {p: _master_of(reports[p]) or "" for p in desired}  # whom each pod follows once this pass is done
    for head in sorted(leaving, key=owners.index):
        if followers[head]:
            continue
        # A replica of a shard that goes first, else of the shard with the most; never the only one that
        # stays with another leaving primary, nor one already moved in this pass.
        donors = [p for p in desired if _spare(planned[p], head, followers, leaving)]
        donors.sort(key=lambda p: (planned[p] not in drained, -followers[planned[p]]))
        if donors:
            followers[planned[donors[0]]] -= 1
            followers[head] += 1
            planned[donors[0]] = head
            follow.append(Replicate(donors[0], head))
    for p in strays:
        head = min(heads, key=lambda h: followers[h])  # min keeps the first of equals: the order of `heads`
        followers[head] += 1
        follow.append(Replicate(p, head))
    return Formation(tuple(follow), retry_after=RECHECK if follow else None)


def _spare(master: str, head: str, followers: Mapping[str, int], leaving: Collection[str]) -> bool:
    """A replica of `master` may move to `head`: it follows a shard, another one than `head`, and is not the
    only pod that stays with another leaving primary."""
    return master in followers and master != head and not (master in leaving and followers[master] < 2)


def _migrations(
    heads: Sequence[tuple[str, tuple[tuple[int, int], ...]]], pod_of: Mapping[str, str], drained: Sequence[str] = ()
) -> tuple[Action, ...]:
    """Slots to move so that every shard that stays (each primary that serves slots, then each new shard's
    empty primary, not the `drained`) serves its share of the 16384, shares differing by at most one, and
    a drained one none (Valkey 9.0+: CLUSTER MIGRATESLOTS, atomic). The shards holding most get the larger
    shares; each above its share gives away its highest slots to those below theirs, in order; one
    MIGRATESLOTS per giving primary, in batches of at most MIGRATION_BATCH slots (Valkey runs each batch
    as its own job, one after another: a smaller snapshot and a shorter hand-off each, and progress that
    CLUSTER GETSLOTMIGRATIONS shows batch by batch). Nothing when every shard holds its share (a growth or a drain that
    stopped half-way, a migration that failed, is finished by the same rule)."""
    held = {h: [slot for a, b in slots for slot in range(a, b + 1)] for h, slots in heads}
    kept = [h for h in held if h not in drained]
    shares = sorted((b - a + 1 for a, b in slot_ranges(len(kept))), reverse=True)
    order = sorted(kept, key=lambda h: -len(held[h]))  # stable: the given order among equals
    share = {**dict.fromkeys(drained, 0), **dict(zip(order, shares, strict=True))}
    want = {h: share[h] - len(held[h]) for h in held if len(held[h]) < share[h]}
    out: list[Action] = []
    for giver in (h for h, _ in heads if len(held[h]) > share[h]):
        spare = held[giver][share[giver] :]
        moved: list[tuple[tuple[tuple[int, int], ...], str]] = []
        for target in list(want):
            take = min(want[target], len(spare))
            # In batches: one SLOTSRANGE group per batch, each its own job, run one after another.
            batches = range(0, take, MIGRATION_BATCH)
            moved += [(_ranges(spare[i : min(i + MIGRATION_BATCH, take)]), target) for i in batches]
            spare = spare[take:]
            want[target] -= take
        if moved and giver in pod_of:
            out.append(MigrateSlots(pod_of[giver], tuple(moved)))
    return tuple(out)


def _ranges(slots: Sequence[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for slot in slots:
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return tuple(out)


def layout_change(cluster: ValkeyCluster, reports: Mapping[str, ClusterView]) -> SpecError | None:
    """A formed cluster with a number of shards `spec.shards` cannot get to: more or fewer shards need atomic
    slot migration (CLUSTER MIGRATESLOTS, Valkey 9.0 or later: `form` then moves the slots). Refused with
    what would be needed; nothing that runs is touched meanwhile (a StatefulSet scaled for the new layout
    would add pods no slot goes to, or remove pods that serve slots)."""
    # The cluster as its members see it: a lone node (not met yet) is not part of it. Two nodes that claim
    # the same slots (a failover under way) are one shard.
    view = best_view(reports.values())
    if view is None or len(view.nodes) < 2:
        return None
    serving = _serving(view)
    shards = {n.slots for n in serving}
    version = effective_version(cluster.spec.image)
    if _covered(serving) < SLOTS:  # slots no node serves: a loss (SlotsAssigned says so), not a layout
        return None
    if len(shards) == cluster.spec.shards or version >= MIGRATION_VERSION:
        return None
    return SpecError(
        SHARDS_CHANGE_REFUSED,
        f"spec.shards is {cluster.spec.shards} but the cluster's slots are split over {len(shards)} shards: moving "
        "slots between shards without losing writes needs atomic slot migration (CLUSTER MIGRATESLOTS, Valkey 9.0 "
        f"or later) and the image runs Valkey {version[0]}.{version[1]}. Set spec.shards back to {len(shards)}; "
        "nothing was changed.",
    )


def resharding_to(
    cluster: ValkeyCluster, reports: Mapping[str, ClusterView], asked: bool, before: object
) -> int | None:
    """status.reshardingTo: the shards count the slot migrations under way serve (`asked`: this pass starts
    some, for spec.shards); kept while any node migrates, gone once none does."""
    if asked:
        return cluster.spec.shards
    if any(v.migrating for v in reports.values()) and isinstance(before, int):
        return before
    return None


def held_shards(cluster: ValkeyCluster, reports: Mapping[str, ClusterView], status: Mapping[str, Any]) -> int:
    """The shards count a refused change is held at: the one slots still move for, else the one that serves."""
    target = status.get("reshardingTo")
    if isinstance(target, int) and any(v.migrating for v in reports.values()):
        return target
    view = best_view(reports.values())
    return len(_serving(view)) if view is not None else cluster.spec.shards


def change_during_migration(
    cluster: ValkeyCluster, reports: Mapping[str, ClusterView], status: Mapping[str, Any]
) -> SpecError | None:
    """`shards` changed while slots still move for another count: refused until that migration is over (a
    migration cannot be steered; the StatefulSet is not resized meanwhile), then taken up."""
    target = status.get("reshardingTo")
    if not isinstance(target, int) or target == cluster.spec.shards:
        return None
    if not any(v.migrating for v in reports.values()):
        return None
    return SpecError(
        SHARDS_CHANGE_DURING_MIGRATION,
        f"spec.shards is {cluster.spec.shards} but slots are still moving so that {target} shards serve them: a "
        "running migration cannot be redirected. Nothing was changed; the new count is taken up once the "
        f"migration has finished (or set spec.shards back to {target}).",
    )


def _master_of(view: ClusterView) -> str | None:
    me = view.myself
    return me.master if me is not None else None


def silent(views: Sequence[PodView], reports: Mapping[str, ClusterView]) -> list[str]:
    """Ready pods that did not answer: any of them may be a primary cut off from the operator, so who serves
    slots is not known. (A pod that is not ready and does not answer, such as one whose server crash-loops,
    serves nothing.)"""
    return [p.name for p in views if not p.terminating and p.running and p.ready and p.name not in reports]


def restart_safe(views: Sequence[PodView], reports: Mapping[str, ClusterView], pod: str) -> bool:
    """Whether restarting `pod` now can lose no data the cluster still has: one that never started or does
    not answer and is not ready (a crash loop: the fix it waits for may be this very restart) holds nothing
    reachable; otherwise every ready pod must answer (a silent one may be a primary), and a replica may go
    only while the primary it follows serves its slots and answers (a replica whose primary is gone may hold
    the shard's only copy). A shard primary is handed over by the roll before it is restarted."""
    view = next((p for p in views if p.name == pod), None)
    if view is None or not view.running:
        return True
    if pod not in reports:
        return not view.ready
    if silent(views, reports):
        return False
    me = reports[pod].myself
    if me is None or not me.master:
        return True
    by_id = {reports[p].myid: p for p in reports}
    return by_id.get(me.master) in primaries(views, reports)


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
    served = _covered(own)
    hub = best_view(reports[p] for p in ids)
    serving = {n.slots for n in _serving(hub)} if hub is not None else set()
    if any(n.migrating for p in ids for n in reports[p].nodes) or any(reports[p].migrating for p in ids):
        done = migration_progress(reports[p] for p in ids)
        slots = (False, "SlotsMigrating", f"Slots are being migrated between shards{': ' if done else ''}{done}.")
    elif served >= SLOTS and len(serving) != cluster.spec.shards:
        where = "to the new ones" if len(serving) < cluster.spec.shards else "off the shards that go"
        slots = (
            False,
            "SlotsMigrating",
            f"{len(serving)} shards serve slots and {cluster.spec.shards} are asked for; slots move {where}.",
        )
    elif served < SLOTS:
        slots = (
            False,
            "SlotsUncovered",
            f"{served} of {SLOTS} slots are served by a node that answers; keys in the others fail.",
        )
    else:
        slots = (True, "AllSlotsServed", f"All {SLOTS} slots are served, none migrating.")
    return formed, slots


def migration_progress(reports: Iterable[ClusterView]) -> str:
    """How far the running migrations are, from the giving nodes' CLUSTER GETSLOTMIGRATIONS: the batches of
    each MIGRATESLOTS (the jobs one command made share a source and a creation time) done of all, their
    slots, and the batch under way ("" when no giving node reports a running job)."""
    out = []
    for view in reports:
        exports = [m for m in view.migrations if m.operation == "EXPORT"]
        for created in sorted({m.created for m in exports if m.active}):
            batch = [m for m in exports if m.created == created]
            done = [m for m in batch if m.state == "success"]
            now = next((m for m in batch if m.active and not m.state.startswith("waiting")), None)
            now = now or next(m for m in batch if m.active)
            target = next((n.hostname.split(".")[0] for n in view.nodes if n.id == now.target and n.hostname), "")
            out.append(
                f"{len(done)} of {len(batch)} batches done ({sum(m.slot_count for m in done)} of "
                f"{sum(m.slot_count for m in batch)} slots), now {now.slots} to {target or now.target[:8]} "
                f"({now.state})"
            )
    return "; ".join(out)


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
    hub = best_view(reports[p] for p in live)
    primaries = _serving(hub) if hub is not None else []
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
