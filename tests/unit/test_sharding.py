"""Forming a sharded cluster, step by step, from what the nodes report (a table of cluster states)."""

from __future__ import annotations

from tests.unit.conftest import example
from valkey_operator.actions import AddSlots, Meet, Replicate
from valkey_operator.sharding import form
from valkey_operator.snapshot import ClusterNode, ClusterView, PodView

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
    return ClusterView(IDS[me], state, tuple(node(p, me, slots.get(p, ()), masters.get(p)) for p in known))


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


def test_slots_assigned_otherwise_are_left_alone_and_said() -> None:
    other = {"cache-1": ((0, 16383),)}
    out = form(C, [pod(p) for p in PODS], views(slots=other))
    assert out.actions == ()
    assert "otherwise" in out.waiting


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
