"""More shards on the real nodes, on Valkey 9.1 (Debian forky's 9.1.2): `mode: cluster` with 3 shards of two
pods, then `shards: 4` under a cluster writer (50 acknowledged SETs a second over every slot, a client that
verifies host names). The StatefulSet grows to eight pods, the operator meets the two new nodes, makes one
the new shard's primary and the other its replica, and moves a quarter of the slots to it by atomic slot
migration (CLUSTER MIGRATESLOTS); the server certificate, re-issued for the new pods' names, is hot-reloaded
(HotReload), so no pod restarts. Every acknowledged key is read back from its shard's primary; status says
Ready only once every node serves, with four shards of 4096 slots. Then `shards: 3` again: the shard on the
two pods the smaller StatefulSet removes gives its slots back by the same migration before they go, and the
six nodes left forget them. Then, as test_sharding.py does on 8.1: an asked-for HotReload rotation (no
pod restarts, no write fails), a shard primary's pod deleted, a replica's pod deleted, and last a
RollingRestart rotation: every pod restarts, each shard primary after handing its slots over. The writer
runs from before the cluster forms, so formation has its figures too.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.conftest import NAME, NS, Creds, cluster_events, kubectl, pods, vkc, wait_for
from e2e.faults import RESUME_WITHIN_MS
from e2e.node import Node
from e2e.test_sharding import (
    apply_sharded,
    cluster_settled,
    formation_under_writer,
    formed_as_asked,
    primary_deleted,
    replica_deleted,
    rotation,
    uids,
    under_cluster_writer,
)


@pytest.fixture(scope="module")
def example(node: Node, installed: None, valkey9_image: str, operator_image: str) -> dict[str, Any]:
    """The shipped example in cluster mode on Valkey 9.1 (3 shards of two pods), certificates hot-reloaded,
    a cluster writer from before the cluster forms."""
    return apply_sharded(
        node, valkey9_image, writer=("formation-9", operator_image), rotation={"strategy": "HotReload"}
    )


def slot_count(ranges: str) -> int:
    return sum(int(b or a) - int(a) + 1 for part in ranges.split(",") for a, _, b in [part.partition("-")])


def test_the_operator_forms_the_cluster_on_valkey_9_and_says_ready_only_then(node: Node, creds: Creds) -> None:
    formed_as_asked(node, creds, "9.1.2")
    formation_under_writer(node, creds, "formation-9")


def test_three_shards_grow_to_four_by_atomic_slot_migration_under_a_cluster_writer(
    node: Node, creds: Creds, operator_image: str
) -> None:
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}

    def grow() -> None:
        kubectl(
            node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"shards": 4}})
        )

    def four_shards() -> bool:
        shards = vkc(node).get("status", {}).get("shards") or []
        return len(shards) == 4 and all(slot_count(s["slots"]) == 4096 for s in shards)

    report = under_cluster_writer(node, creds, operator_image, "grow-3-to-4", grow, four_shards)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report
    shards = vkc(node)["status"]["shards"]
    assert [len(s["replicas"]) for s in shards] == [1, 1, 1, 1], shards
    # No pod restarted: the six kept their identity, the certificate for the new names was hot-reloaded.
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == 8
    events = cluster_events(node)
    assert "MigratingSlots" in events, events
    print(f"shards after growing: {json.dumps(shards)}")


def test_four_shards_back_to_three_drain_the_shard_whose_pods_go_under_a_cluster_writer(
    node: Node, creds: Creds, operator_image: str
) -> None:
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}

    def shrink() -> None:
        kubectl(
            node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"shards": 3}})
        )

    def three_shards() -> bool:
        shards = vkc(node).get("status", {}).get("shards") or []
        return len(shards) == 3 and len(pods(node)) == 6 and sum(slot_count(s["slots"]) for s in shards) == 16384

    report = under_cluster_writer(node, creds, operator_image, "shrink-4-to-3", shrink, three_shards)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report
    shards = vkc(node)["status"]["shards"]
    assert sorted(slot_count(s["slots"]) for s in shards) == [5461, 5461, 5462], shards
    assert [len(s["replicas"]) for s in shards] == [1, 1, 1], shards
    # The six pods that stay are the same pods; only cache-6 and cache-7 went.
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    assert after == {k: v for k, v in before.items() if k in after}
    assert sorted(after) == [f"{NAME}-{i}" for i in range(6)]
    print(f"shards after shrinking: {json.dumps(shards)}")


def test_a_hot_reload_rotation_on_valkey_9_restarts_nothing_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """An asked-for rotation (the annotation) under HotReload: every node reloads the new certificate in
    place, on its client and bus listeners, and no write fails."""
    before = uids(node)
    start, rotated = rotation(node)
    report = under_cluster_writer(node, creds, operator_image, "hot-reload-9", start, rotated)
    assert uids(node) == before  # no pod was replaced
    assert report["failures"] == 0, report
    assert report["missing_count"] == 0, report


def test_a_shard_primary_deleted_on_valkey_9_hands_its_slots_over_first(
    node: Node, creds: Creds, operator_image: str
) -> None:
    primary_deleted(node, creds, operator_image, "primary-deleted-9")


def test_a_replica_deleted_on_valkey_9_rejoins_its_shard(node: Node, creds: Creds, operator_image: str) -> None:
    replica_deleted(node, creds, operator_image, "replica-deleted-9")


def test_a_rolling_restart_on_valkey_9_hands_each_shard_over_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str
) -> None:
    # Leaving HotReload takes tls-auto-reload-interval out of valkey.conf, which rolls every pod by itself:
    # let that roll settle first, so that the rotation below is what restarts the pods.
    switched = uids(node)
    patch = {"spec": {"tls": {"rotation": {"strategy": "RollingRestart"}}}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))

    def rolled() -> bool:
        return all(uids(node).get(p) not in (None, u) for p, u in switched.items())

    wait_for(lambda: cluster_settled(node, creds) and rolled(), "the roll out of HotReload", 900, every=3)
    before = uids(node)
    switchovers = cluster_events(node).count("Switchover")
    start, rotated = rotation(node)

    def every_pod_restarted() -> bool:
        return rotated() and all(uids(node).get(p) not in (None, u) for p, u in before.items())

    report = under_cluster_writer(node, creds, operator_image, "roll-9", start, every_pod_restarted)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report
    # Shard primaries were handed over in the rotation, not just deleted.
    assert cluster_events(node).count("Switchover") > switchovers, cluster_events(node)
