"""Forming a sharded cluster, step by step, from what the nodes report (a table of cluster states)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tests.unit.conftest import example
from valkey_operator.actions import AddSlots, ClusterFailover, Forget, Meet, MigrateSlots, Replicate
from valkey_operator.sharding import cluster_conditions, form, handovers, migration_progress, primaries
from valkey_operator.snapshot import ClusterNode, ClusterView, PodView, Replication, SlotMigration

C = example(mode="cluster", shards=3, replicasPerShard=1)
PODS = C.names.pods(6)
IDS = {p: f"id{i}" for i, p in enumerate(PODS)}


def pod(name: str, running: bool = True) -> PodView:
    return PodView(name, f"uid-{name}", True, False, running, None, "", ip=f"10.0.0.{PODS.index(name) + 10}")


def node(p: str, me: str, slots: tuple[tuple[int, int], ...] = (), master: str | None = None) -> ClusterNode:
    flags = {"slave" if master else "master", *({"myself"} if p == me else set())}
    return ClusterNode(IDS[p], frozenset(flags), master, slots)


def view(me: str, known: list[str], state: str = "fail", **layout: object) -> ClusterView:
    slots: dict[str, tuple[tuple[int, int], ...]] = layout.get("slots", {})  # type: ignore[assignment]
    masters: dict[str, str] = layout.get("masters", {})  # type: ignore[assignment]
    return ClusterView(
        IDS[me], state, tuple(node(p, me, slots.get(p, ()), masters.get(p)) for p in known), version=(9, 1)
    )


def views(state: str = "fail", known: list[str] | None = None, **layout: object) -> dict[str, ClusterView]:
    return {p: view(p, known or PODS, state, **layout) for p in PODS}


SLOTS = {"cache-0": ((0, 5461),), "cache-1": ((5462, 10922),), "cache-2": ((10923, 16383),)}
FOLLOW = {"cache-3": "id0", "cache-4": "id1", "cache-5": "id2"}


def test_it_waits_until_every_pod_runs_and_answers() -> None:
    out = form(C, [pod(p) for p in PODS[:5]], views())
    assert (out.actions, "cache-5" in out.waiting) == ((), True)
    partial = views()
    del partial["cache-2"]
    assert form(C, [pod(p) for p in PODS], partial).actions == ()


def test_lone_nodes_are_met_by_the_first_pod_by_address() -> None:
    lone = {p: view(p, [p]) for p in PODS}
    assert form(C, [pod(p) for p in PODS], lone).actions == tuple(
        Meet("cache-0", f"10.0.0.{i + 10}") for i in range(1, 6)
    )


def test_it_waits_for_gossip_before_assigning_slots() -> None:
    reports = views()
    reports["cache-4"] = view("cache-4", ["cache-0", "cache-4"])
    out = form(C, [pod(p) for p in PODS], reports)
    assert out.actions == ()
    assert "cache-4" in out.waiting


def test_slots_are_split_evenly_over_the_primaries_of_a_new_cluster() -> None:
    out = form(C, [pod(p) for p in PODS], views())
    assert out.actions == (
        AddSlots("cache-0", 0, 5461),
        AddSlots("cache-1", 5462, 10922),
        AddSlots("cache-2", 10923, 16383),
    )


def test_replicas_follow_their_shards_primary() -> None:
    out = form(C, [pod(p) for p in PODS], views(slots=SLOTS))
    assert out.actions == tuple(Replicate(r, FOLLOW[r]) for r in ("cache-3", "cache-4", "cache-5"))
    half = views(slots=SLOTS, masters={"cache-3": "id0"})
    assert form(C, [pod(p) for p in PODS], half).actions == (Replicate("cache-4", "id1"), Replicate("cache-5", "id2"))


def test_formed_when_every_node_says_ok() -> None:
    waiting = form(C, [pod(p) for p in PODS], views(slots=SLOTS, masters=FOLLOW))
    assert (waiting.actions, "cluster_state:ok" in waiting.waiting) == ((), True)
    done = form(C, [pod(p) for p in PODS], views("ok", slots=SLOTS, masters=FOLLOW))
    assert (done.actions, done.waiting, done.retry_after) == ((), "", None)


def test_fewer_shards_than_asked_get_new_shard_primaries_then_their_share_of_the_slots() -> None:
    """One node serves every slot, three shards are asked for (on Valkey 9.x: decide refuses it before)."""
    one = {"cache-1": ((0, 16383),)}
    out = form(C, [pod(p) for p in PODS], views("ok", slots=one))
    # cache-0 and cache-2, the lowest loose nodes, become the new shards' primaries; the rest follow the
    # shard with the fewest replicas.
    assert out.actions == (Replicate("cache-3", "id1"), Replicate("cache-4", "id0"), Replicate("cache-5", "id2"))
    placed = views("ok", slots=one, masters={"cache-3": "id1", "cache-4": "id0", "cache-5": "id2"})
    out = form(C, [pod(p) for p in PODS], placed)
    # In batches of at most 1024 slots, each its own job (Valkey runs them one after another).
    assert out.actions == (
        MigrateSlots(
            "cache-1",
            (
                (((5462, 6485),), "id0"), (((6486, 7509),), "id0"), (((7510, 8533),), "id0"),
                (((8534, 9557),), "id0"), (((9558, 10581),), "id0"), (((10582, 10922),), "id0"),
                (((10923, 11946),), "id2"), (((11947, 12970),), "id2"), (((12971, 13994),), "id2"),
                (((13995, 15018),), "id2"), (((15019, 16042),), "id2"), (((16043, 16383),), "id2"),
            ),
        ),
    )  # fmt: skip
    # While a migration runs, nothing else happens.
    busy = {
        p: replace(v, migrations=(SlotMigration("EXPORT", "5462-10922", "id1", "id0", "snapshotting"),))
        for p, v in placed.items()
    }
    assert form(C, [pod(p) for p in PODS], busy).actions == ()
    done = {
        p: replace(v, migrations=(SlotMigration("EXPORT", "5462-10922", "id1", "id0", "success"),))
        for p, v in placed.items()
    }
    assert form(C, [pod(p) for p in PODS], done).actions != ()


def test_three_shards_grow_to_four_by_moving_a_quarter_of_the_slots() -> None:
    four = example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:9.1.2")
    pods8 = four.names.pods(8)
    ids = {p: f"id{i}" for i, p in enumerate(pods8)}
    reports = seen_by_all(ids, SLOTS, {**FOLLOW, "cache-7": "id6"})
    out = form(
        four,
        [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(pods8)],
        reports,
    )
    # Each shard keeps its lowest 4096 slots and gives the rest to the new shard's primary, cache-6.
    assert out.actions == (
        MigrateSlots("cache-0", ((((4096, 5119),), "id6"), (((5120, 5461),), "id6"))),
        MigrateSlots("cache-1", ((((9558, 10581),), "id6"), (((10582, 10922),), "id6"))),
        MigrateSlots("cache-2", ((((15019, 16042),), "id6"), (((16043, 16383),), "id6"))),
    )
    moved = [m for a in out.actions if isinstance(a, MigrateSlots) for m in a.moves]
    assert sum(b - a + 1 for ranges, _ in moved for a, b in ranges) == 4096
    # The Event names each batch, one line per target.
    assert str(out.actions[0]) == "migrate slots of cache-0: 4096-5119 5120-5461 to id6"


def test_status_shards_say_what_the_nodes_report() -> None:
    from valkey_operator.sharding import shard_status

    formed = views("ok", slots=SLOTS, masters=FOLLOW)
    shards, state = shard_status(C, [pod(p) for p in PODS], formed)
    assert state == "ok"
    assert shards == [
        {"index": 0, "primary": "cache-0", "replicas": ["cache-3"], "slots": "0-5461"},
        {"index": 1, "primary": "cache-1", "replicas": ["cache-4"], "slots": "5462-10922"},
        {"index": 2, "primary": "cache-2", "replicas": ["cache-5"], "slots": "10923-16383"},
    ]
    # A replica that took over its shard is reported as its primary, not as the layout would have it.
    masters = {"cache-0": "id3", "cache-4": "id1", "cache-5": "id2"}
    swapped = views("ok", slots={**SLOTS, "cache-3": ((0, 5461),), "cache-0": ()}, masters=masters)
    first = shard_status(C, [pod(p) for p in PODS], swapped)[0][0]
    assert (first["primary"], first["replicas"]) == ("cache-3", ["cache-0"])
    assert shard_status(C, [pod(p) for p in PODS], views()) == ([], "fail")
    assert shard_status(C, [], {}) == ([], None)


# --- healing -------------------------------------------------------------------------------------------------
FORMED = views("ok", slots=SLOTS, masters=FOLLOW)
GONE = "idgone"


def seen_by_all(
    ids: dict[str, str],
    slots: Mapping[str, tuple[tuple[int, int], ...]],
    masters: dict[str, str],
    extra: tuple[ClusterNode, ...] = (),
    state: str = "ok",
) -> dict[str, ClusterView]:
    """Every pod's view of the same cluster: the pods' nodes (by `ids`), plus `extra` nodes no pod has."""

    def seen(me: str) -> ClusterView:
        nodes = [
            ClusterNode(
                ids[p],
                frozenset({"slave" if p in masters else "master", *({"myself"} if p == me else set())}),
                masters.get(p),
                slots.get(p, ()),
                ip=f"10.0.0.{int(p.rsplit('-', 1)[1]) + 10}",
            )
            for p in ids
        ]
        return ClusterView(ids[me], state, (*nodes, *extra), version=(9, 1))

    return {p: seen(p) for p in ids}


def test_a_pod_back_as_a_new_node_is_met() -> None:
    alone = ClusterNode("idnew", frozenset({"myself", "master"}), None)
    reports = {**FORMED, "cache-3": ClusterView("idnew", "fail", (alone,))}
    out = form(C, [pod(p) for p in PODS], reports)
    assert out.actions == (Meet("cache-0", "10.0.0.13"),)


def test_a_pod_known_at_an_old_address_is_met_again_at_its_new_one() -> None:
    stale = ClusterNode("id4", frozenset({"slave"}), "id1", connected=False, ip="10.0.0.200")
    formed = seen_by_all(IDS, SLOTS, FOLLOW)
    reports = {
        p: ClusterView(v.myid, v.state, tuple(stale if n.id == "id4" else n for n in v.nodes))
        for p, v in formed.items()
    }
    assert form(C, [pod(p) for p in PODS], reports).actions == (Meet("cache-0", "10.0.0.14"),)
    # Known at its current address: nothing to do.
    assert form(C, [pod(p) for p in PODS], formed).actions == ()
    # The hub knows it at its new address, but cache-2 still only at the old one: cache-2 meets it itself.
    only_two = {**formed, "cache-2": reports["cache-2"]}
    assert form(C, [pod(p) for p in PODS], only_two).actions == (Meet("cache-2", "10.0.0.14"),)


def test_a_node_no_pod_has_is_forgotten_on_every_node() -> None:
    gone = ClusterNode(GONE, frozenset({"slave", "fail"}), "id0", connected=False)
    out = form(C, [pod(p) for p in PODS], seen_by_all(IDS, SLOTS, FOLLOW, (gone,)))
    assert out.actions == tuple(Forget(p, GONE) for p in PODS)


def test_a_gone_node_that_still_serves_slots_waits_for_its_replica_to_take_over() -> None:
    """cache-0 restarted without its data, as a new node (idnew); its old id still serves shard 0's slots.
    Valkey's own failover promotes cache-3: until then nothing is assigned and nothing forgotten."""
    old0 = ClusterNode("id0", frozenset({"master", "fail"}), None, ((0, 5461),), connected=False)
    slots = {p: r for p, r in SLOTS.items() if p != "cache-0"}
    out = form(C, [pod(p) for p in PODS], seen_by_all({**IDS, "cache-0": "idnew"}, slots, FOLLOW, (old0,), "fail"))
    assert out.actions == ()
    assert "take over" in out.waiting


def test_an_empty_node_rejoins_as_a_replica_of_whoever_serves_its_shard() -> None:
    """After the failover cache-3 serves shard 0. cache-0 came back as a new, empty node: its old id is
    forgotten, then it becomes a replica of cache-3; it never takes slots back by itself."""
    ids = {**IDS, "cache-0": "idnew"}
    slots = {"cache-3": ((0, 5461),), "cache-1": SLOTS["cache-1"], "cache-2": SLOTS["cache-2"]}
    masters = {"cache-4": "id1", "cache-5": "id2"}
    old = ClusterNode("id0", frozenset({"slave", "fail"}), "id3", connected=False)
    with_old = seen_by_all(ids, slots, masters, (old,))
    with_old["cache-0"] = seen_by_all(ids, slots, masters)["cache-0"]  # the new node never knew its old self
    assert form(C, [pod(p) for p in PODS], with_old).actions == tuple(Forget(p, "id0") for p in PODS[1:])
    out = form(C, [pod(p) for p in PODS], seen_by_all(ids, slots, masters))
    assert out.actions == (Replicate("cache-0", "id3"),)


def test_a_replica_is_never_told_to_forget_its_own_primary() -> None:
    gone = ClusterNode(GONE, frozenset({"master", "fail"}), None, connected=False)
    reports = seen_by_all(IDS, SLOTS, {**FOLLOW, "cache-5": GONE}, (gone,))
    assert Forget("cache-5", GONE) not in form(C, [pod(p) for p in PODS], reports).actions


def test_primaries_and_their_followers() -> None:
    assert primaries([pod(p) for p in PODS], FORMED) == {
        "cache-0": ["cache-3"],
        "cache-1": ["cache-4"],
        "cache-2": ["cache-5"],
    }


def rep(offset: int, link_up: bool = True) -> Replication:
    return Replication("slave", "x", link_up, offset)


def test_a_leaving_primary_hands_its_slots_to_its_most_caught_up_linked_replica() -> None:
    reports = seen_by_all(IDS, SLOTS, FOLLOW)
    leaving = [PodView(p, "u", True, p == "cache-1", True, None, "") for p in PODS]
    two = {
        **reports,
        "cache-3": ClusterView(
            "id3",
            "ok",
            tuple(
                ClusterNode(n.id, n.flags, "id1" if n.id == "id3" else n.master, n.slots)
                for n in reports["cache-3"].nodes
            ),
        ),
    }
    # cache-3 now follows cache-1 too (as it says of itself): the one further ahead takes the slots.
    assert handovers(C, leaving, two, {"cache-3": rep(250), "cache-4": rep(100)}) == (ClusterFailover("cache-3"),)
    # The most caught-up replica's link is down: the linked one takes them.
    assert handovers(C, leaving, two, {"cache-3": rep(250, link_up=False), "cache-4": rep(100)}) == (
        ClusterFailover("cache-4"),
    )
    # No primary leaves: nothing.
    staying = [PodView(p, "u", True, False, True, None, "") for p in PODS]
    assert handovers(C, staying, reports, {"cache-4": rep(100)}) == ()


def test_a_replica_a_scale_down_removes_hands_its_slots_to_one_that_stays() -> None:
    """replicasPerShard 1 -> 0: cache-3..5 go. After a failover cache-3 serves shard 0; cache-0 follows it."""
    smaller = example(mode="cluster", shards=3, replicasPerShard=0)
    slots = {"cache-3": ((0, 5461),), "cache-1": SLOTS["cache-1"], "cache-2": SLOTS["cache-2"]}
    reports = seen_by_all(IDS, slots, {"cache-0": "id3", "cache-4": "id1", "cache-5": "id2"})
    out = handovers(smaller, [pod(p) for p in PODS], reports, {"cache-0": rep(10)})
    assert out == (ClusterFailover("cache-0"),)


def test_a_change_of_shards_on_a_formed_cluster_is_refused_with_what_it_needs() -> None:
    from valkey_operator.sharding import layout_change

    assert layout_change(C, FORMED) is None
    assert layout_change(C, views()) is None  # nothing formed yet
    # A lone node that claims slots of its own (it is not met yet) is not part of the layout.
    lone = ClusterNode("idlone", frozenset({"myself", "master"}), None, ((10927, 10928), (10932, 10932)))
    assert layout_change(C, {**FORMED, "cache-2": ClusterView("idlone", "fail", (lone,))}) is None
    four = example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:8.1")
    refused = layout_change(four, FORMED)
    assert refused is not None
    assert refused.reason == "ShardsChangeNotSupported"
    assert "split over 3 shards" in refused.message
    assert "Valkey 9.0" in refused.message
    assert "back to 3" in refused.message
    # Valkey 9.x grows and shrinks by atomic slot migration; 8.x refuses either.
    assert (
        layout_change(example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:9.1.2"), FORMED)
        is None
    )
    four_formed = seen_by_all(
        {p: f"id{i}" for i, p in enumerate(four.names.pods(8))},
        {
            "cache-0": ((0, 4095),),
            "cache-1": ((4096, 8191),),
            "cache-2": ((8192, 12287),),
            "cache-3": ((12288, 16383),),
        },
        {},
    )
    assert (
        layout_change(example(mode="cluster", shards=3, replicasPerShard=1, image="valkey/valkey:9.1.2"), four_formed)
        is None
    )
    refused8 = layout_change(
        example(mode="cluster", shards=3, replicasPerShard=1, image="valkey/valkey:8.1.1"), four_formed
    )
    assert refused8 is not None
    assert "split over 4 shards" in refused8.message
    assert "back to 4" in refused8.message
    # Slots no node serves are a loss, not a change of layout.
    assert layout_change(four, seen_by_all(IDS, {**SLOTS, "cache-2": ()}, FOLLOW)) is None


def test_a_failover_nobody_asked_for_shows_against_the_recorded_shards() -> None:
    from valkey_operator.sharding import shards_hold

    def named(view: ClusterView) -> ClusterView:
        return ClusterView(view.myid, view.state, tuple(
            ClusterNode(n.id, n.flags, n.master, n.slots, hostname=f"{PODS[int(n.id[2:])]}.cache-headless.default.svc")
            for n in view.nodes
        ))  # fmt: skip

    recorded = [
        {"index": 0, "primary": "cache-0", "replicas": ["cache-3"], "slots": "0-5461"},
        {"index": 1, "primary": "cache-1", "replicas": ["cache-4"], "slots": "5462-10922"},
        {"index": 2, "primary": "cache-2", "replicas": ["cache-5"], "slots": "10923-16383"},
    ]
    assert shards_hold(recorded, named(FORMED["cache-1"]))
    # cache-3 took shard 0 over (CLUSTER FAILOVER by hand): the recorded shards no longer hold.
    swapped = seen_by_all(
        IDS, {**SLOTS, "cache-0": (), "cache-3": ((0, 5461),)}, {"cache-0": "id3", "cache-4": "id1", "cache-5": "id2"}
    )
    assert not shards_hold(recorded, named(swapped["cache-1"]))


def test_cluster_nodes_lines_are_read_with_address_name_and_migrations() -> None:
    from valkey_operator.valkey_admin import parse_cluster_nodes

    text = (
        "a1 10.244.0.5:6379@16379,cache-0.cache-headless.default.svc,tls-port=6379 myself,master - 0 0 1 "
        "connected 0-5460 [5461->-b2]\n"
        "b2 :0@0,cache-3.cache-headless.default.svc master,fail,noaddr - 1 1 2 disconnected\n"
        "c3 10.244.1.7:6379@16379 slave a1 0 0 1 connected\n"
    )
    a, b, c = parse_cluster_nodes(text)
    assert (a.ip, a.hostname, a.slots, a.migrating) == (
        "10.244.0.5",
        "cache-0.cache-headless.default.svc",
        ((0, 5460),),
        True,
    )
    assert (b.ip, b.hostname, b.failed, b.connected) == ("", "cache-3.cache-headless.default.svc", True, False)
    assert (c.ip, c.hostname, c.master, c.migrating) == ("10.244.1.7", "", "a1", False)


def test_a_gone_node_any_view_says_serves_slots_is_not_forgotten() -> None:
    """One node still sees the old id with slots (gossip has not reached it that they moved): the id is not
    forgotten anywhere yet, whichever view comes last."""
    holding = ClusterNode(GONE, frozenset({"master", "fail"}), None, ((0, 5461),), connected=False)
    empty = ClusterNode(GONE, frozenset({"master", "fail"}), None, connected=False)
    reports = seen_by_all(IDS, SLOTS, FOLLOW, (empty,))
    reports["cache-0"] = seen_by_all(IDS, SLOTS, FOLLOW, (holding,))["cache-0"]
    out = form(C, [pod(p) for p in PODS], reports)
    assert not [a for a in out.actions if isinstance(a, Forget)]
    assert "take over" in out.waiting


def test_a_handshake_entry_is_a_meeting_under_way_not_a_node_to_forget() -> None:
    shaking = ClusterNode("random", frozenset({"master", "handshake"}), None, connected=False)
    out = form(C, [pod(p) for p in PODS], seen_by_all(IDS, SLOTS, FOLLOW, (shaking,)))
    assert not [a for a in out.actions if isinstance(a, Forget)]


def test_slots_two_nodes_claim_during_a_failover_are_counted_once() -> None:
    from valkey_operator.sharding import cluster_conditions

    both = seen_by_all(IDS, {**SLOTS, "cache-3": SLOTS["cache-0"]}, {"cache-4": "id1", "cache-5": "id2"})
    _, slots = cluster_conditions(C, [pod(p) for p in PODS], both)
    assert slots[0] is True
    less = seen_by_all(IDS, {**SLOTS, "cache-2": (), "cache-3": SLOTS["cache-0"]}, {"cache-4": "id1"})
    assert "10923 of 16384" in cluster_conditions(C, [pod(p) for p in PODS], less)[1][2]


def test_status_shards_come_from_the_view_that_knows_the_most_nodes() -> None:
    from valkey_operator.sharding import shard_status

    reports = dict(FORMED)
    reports["cache-0"] = view("cache-0", ["cache-0"], "fail")  # back as a lone node, not met yet
    shards, _ = shard_status(C, [pod(p) for p in PODS], reports)
    assert [s["slots"] for s in shards] == ["0-5461", "5462-10922", "10923-16383"]


def test_ipv6_node_addresses_keep_their_colons() -> None:
    from valkey_operator.valkey_admin import parse_cluster_nodes

    text = "a1 fd00:10:244::5:6379@16379,cache-0.cache-headless.default.svc myself,master - 0 0 1 connected 0-5\n"
    (a,) = parse_cluster_nodes(text)
    assert (a.ip, a.hostname) == ("fd00:10:244::5", "cache-0.cache-headless.default.svc")


def test_shards_changed_again_during_a_migration_wait_for_it_then_aim_for_the_new_count() -> None:
    """The user asks for 5 shards while slots still move to the fourth: nothing new starts until the
    running migration is over; then the plan is made for five."""
    five = example(mode="cluster", shards=5, replicasPerShard=1, image="valkey/valkey:9.1.2")
    pods10 = five.names.pods(10)
    ids = {p: f"id{i}" for i, p in enumerate(pods10)}
    four = {**SLOTS, "cache-0": ((0, 4095),), "cache-6": ((4096, 5461),)}
    masters = {**FOLLOW, "cache-7": "id6", "cache-9": "id8"}
    views10 = [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(pods10)]
    running = SlotMigration("EXPORT", "9558-10922", "id1", "id6", "snapshotting")
    busy = {p: replace(v, migrations=(running,)) for p, v in seen_by_all(ids, four, masters).items()}
    out = form(five, views10, busy)
    assert out.actions == ()
    assert "migrations to finish" in out.waiting
    out = form(five, views10, seen_by_all(ids, four, masters))
    moved = [(a.pod, target) for a in out.actions if isinstance(a, MigrateSlots) for _, target in a.moves]
    assert {target for _, target in moved} <= {"id6", "id8"}
    assert "id8" in {target for _, target in moved}


def test_a_growth_that_stopped_half_way_is_finished_by_the_same_rule() -> None:
    """cache-0's slots reached the new shard, cache-1's and cache-2's migrations failed: cache-6 serves 1,366
    slots, the others more than their share. The next pass moves the rest; a balanced cluster moves nothing."""
    four = example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:9.1.2")
    pods8 = four.names.pods(8)
    ids = {p: f"id{i}" for i, p in enumerate(pods8)}
    views8 = [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(pods8)]
    half = {**SLOTS, "cache-0": ((0, 4095),), "cache-6": ((4096, 5461),)}
    out = form(four, views8, seen_by_all(ids, half, {**FOLLOW, "cache-7": "id6"}))
    assert out.actions == (
        MigrateSlots("cache-1", ((((9558, 10581),), "id6"), (((10582, 10922),), "id6"))),
        MigrateSlots("cache-2", ((((15019, 16042),), "id6"), (((16043, 16383),), "id6"))),
    )
    done = {"cache-0": ((0, 4095),), "cache-6": ((4096, 5461), (9558, 10922), (15019, 16383)),
            "cache-1": ((5462, 9557),), "cache-2": ((10923, 15018),)}  # fmt: skip
    assert form(four, views8, seen_by_all(ids, done, {**FOLLOW, "cache-7": "id6"})).actions == ()


def test_slots_move_only_once_every_node_runs_valkey_9() -> None:
    """An image change to 9.x still rolling: the new shard's primary waits empty, nothing is sent to an 8.x
    node that would refuse it."""
    four = example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:9.1.2")
    pods8 = four.names.pods(8)
    ids = {p: f"id{i}" for i, p in enumerate(pods8)}
    views8 = [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(pods8)]
    reports = seen_by_all(ids, SLOTS, {**FOLLOW, "cache-7": "id6"})
    reports["cache-2"] = replace(reports["cache-2"], version=(8, 1))
    out = form(four, views8, reports)
    assert out.actions == ()
    assert "Valkey 9.0 or later on cache-2" in out.waiting


# --- fewer shards ---------------------------------------------------------------------------------------------
GROWN = {  # 3 -> 4 shards: cache-6 is the fourth shard's primary, cache-7 its replica
    "cache-0": ((0, 4095),),
    "cache-1": ((5462, 9557),),
    "cache-2": ((10923, 15018),),
    "cache-6": ((4096, 5461), (9558, 10922), (15019, 16383)),
}
IDS8 = {p: f"id{i}" for i, p in enumerate(C.names.pods(8))}
VIEWS8 = [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(IDS8)]


def slots_moved(actions: tuple[object, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in actions:
        assert isinstance(a, MigrateSlots)
        for ranges, target in a.moves:
            out[target] = out.get(target, 0) + sum(b - x + 1 for x, b in ranges)
    return out


def test_four_shards_grown_to_three_drain_the_shard_the_scale_down_removes() -> None:
    three = example(mode="cluster", shards=3, replicasPerShard=1, image="valkey/valkey:9.1.2")
    out = form(three, VIEWS8, seen_by_all(IDS8, GROWN, {**FOLLOW, "cache-7": "id6"}))
    # cache-6 and cache-7 (the highest ordinals) go: cache-6 gives every slot it has to the shards that stay.
    assert [a.pod for a in out.actions if isinstance(a, MigrateSlots)] == ["cache-6"]
    assert slots_moved(out.actions) == {"id0": 1366, "id1": 1365, "id2": 1365}
    # Drained, cache-6 serves nothing: the StatefulSet may now remove it; nothing else moves.
    after = {p: ((0, 5461),) if p == "cache-0" else r for p, r in SLOTS.items()}
    out = form(three, VIEWS8, seen_by_all(IDS8, after, {**FOLLOW, "cache-7": "id6"}))
    assert out.actions == ()
    assert primaries(VIEWS8, seen_by_all(IDS8, after, {**FOLLOW, "cache-7": "id6"})).keys() == set(SLOTS)


def test_four_shards_formed_as_four_drain_the_highest_shard_whose_replica_goes_and_it_then_follows_another() -> None:
    three = example(mode="cluster", shards=3, replicasPerShard=1, image="valkey/valkey:9.1.2")
    quarters = {f"cache-{i}": ((4096 * i, 4096 * i + 4095),) for i in range(4)}
    canonical = {"cache-4": "id0", "cache-5": "id1", "cache-6": "id2", "cache-7": "id3"}
    out = form(three, VIEWS8, seen_by_all(IDS8, quarters, canonical))
    # cache-6 and cache-7 go (replicas); shards 2 and 3 keep no replica, 3 is the highest: it is drained.
    assert [a.pod for a in out.actions if isinstance(a, MigrateSlots)] == ["cache-3"]
    assert slots_moved(out.actions) == {"id0": 1366, "id1": 1365, "id2": 1365}
    # Drained and the scale-down done: the empty cache-3 follows the shard left without a replica.
    six = {p: i for p, i in IDS8.items() if p in three.names.pods(6)}
    reports = seen_by_all(six, SLOTS, {"cache-4": "id0", "cache-5": "id1"})
    assert form(three, VIEWS8[:6], reports).actions == (Replicate("cache-3", "id2"),)


def test_fewer_replicas_after_a_growth_move_a_replica_that_stays_to_the_shard_whose_pods_go() -> None:
    """replicasPerShard 1 -> 0 after 3 -> 4 shards: the pods that stay are cache-0..3, but cache-6 serves the
    fourth shard. cache-3 (a replica of shard 0) joins it first; then the leaving primary hands over."""
    lean = example(mode="cluster", shards=4, replicasPerShard=0, image="valkey/valkey:9.1.2")
    follow = {**FOLLOW, "cache-7": "id6"}
    out = form(lean, VIEWS8, seen_by_all(IDS8, GROWN, follow))
    assert out.actions == (Replicate("cache-3", "id6"),)
    joined = seen_by_all(IDS8, GROWN, {**follow, "cache-3": "id6"})
    assert handovers(lean, VIEWS8, joined, {"cache-3": rep(90), "cache-7": rep(100)}) == (ClusterFailover("cache-3"),)


def test_two_leaving_shards_each_get_their_own_replica_never_the_same_one_twice() -> None:
    """replicasPerShard 0 after two growths: cache-6 and cache-7 serve shards but go; cache-2 and cache-3 both
    follow cache-0's shard. Each leaving primary gets one of them, in one pass, and none is moved twice."""
    lean = example(mode="cluster", shards=4, replicasPerShard=0, image="valkey/valkey:9.1.2")
    slots = {"cache-0": ((0, 4095),), "cache-1": ((4096, 8191),), "cache-6": ((8192, 12287),),
             "cache-7": ((12288, 16383),)}  # fmt: skip
    reports = seen_by_all(IDS8, slots, {"cache-2": "id0", "cache-3": "id0", "cache-4": "id1", "cache-5": "id1"})
    out = form(lean, VIEWS8, reports)
    moved = [(a.pod, a.primary_id) for a in out.actions if isinstance(a, Replicate)]
    assert sorted(target for _, target in moved) == ["id6", "id7"]
    assert len({pod for pod, _ in moved}) == 2


def test_migration_progress_counts_the_batches_of_each_running_migratesslots() -> None:
    """cache-0 gives 4096-5461 to cache-6 in two batches; the first is done, the second copying. Older jobs
    (an earlier migration, created before) do not count; a node that only imports says nothing."""
    four = example(mode="cluster", shards=4, replicasPerShard=1, image="valkey/valkey:9.1.2")
    pods8 = four.names.pods(8)
    ids = {p: f"id{i}" for i, p in enumerate(pods8)}
    views8 = [PodView(p, f"uid-{p}", True, False, True, None, "", ip=f"10.0.0.{i + 10}") for i, p in enumerate(pods8)]
    reports = seen_by_all(ids, SLOTS, {**FOLLOW, "cache-7": "id6"})
    jobs = (
        SlotMigration("EXPORT", "0-99", "id0", "id5", "success", 100),
        SlotMigration("EXPORT", "4096-5119", "id0", "id6", "success", 200),
        SlotMigration("EXPORT", "5120-5461", "id0", "id6", "snapshotting", 200),
    )
    importing = (SlotMigration("IMPORT", "5120-5461", "id0", "id6", "snapshotting", 200),)
    reports = {
        **reports,
        "cache-0": replace(reports["cache-0"], migrations=jobs),
        "cache-6": replace(reports["cache-6"], migrations=importing),
    }
    said = migration_progress(reports.values())
    assert said == "1 of 2 batches done (1024 of 1366 slots), now 5120-5461 to id6 (snapshotting)"
    _, slots = cluster_conditions(four, views8, reports)
    assert slots == (False, "SlotsMigrating", f"Slots are being migrated between shards: {said}.")
    # Every batch done: nothing runs, nothing to say.
    over = replace(reports["cache-0"], migrations=(*jobs[:2], replace(jobs[2], state="success")))
    assert migration_progress([over]) == ""
