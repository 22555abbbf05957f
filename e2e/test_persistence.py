"""Fault 7 of the failover issue: the same faults with `persistence.enabled: true`, each pod's data on a
real volume (pre-made local PersistentVolumes on the two nodes, a `no-provisioner` StorageClass that binds
when the pod is scheduled, as a cluster without a dynamic provisioner does it).

With persistence every pod writes an append-only file (appendfsync everysec). A deleted primary hands over
first; a killed primary server restarts with its data and rejoins as a replica; and what an in-memory cache
cannot survive, losing every pod at once (the StatefulSet deleted, or every pod deleted), loses nothing:
the pods come back on their volumes, each as a replica, and the operator promotes the recorded primary
once every pod has answered. The module installs the chart and its own ValkeyCluster, and removes the
claims, volumes and StorageClass it made.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import NAME, NS, ROOT, SELECTOR, Creds, kubectl, pod_fqdn, pods, vkc, wait_for
from e2e.faults import (
    RESUME_WITHIN_MS,
    StatusWatch,
    delete_primary_and_a_replica,
    head,
    operator_down_then_primary_deleted,
    restarts,
    under_writer,
    valkey_server_pid,
)
from e2e.node import Node

STORAGE_CLASS = "e2e-local"
VOLUMES_PER_NODE = 3


def _volume(n: Node, index: int, path: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{STORAGE_CLASS}-{n.name}-{index}", "labels": {"e2e": STORAGE_CLASS}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [n.name]}]}
                    ]
                }
            },
        },
    }


@pytest.fixture(scope="module")
def local_volumes(node: Node, nodes: list[Node]) -> Iterator[str]:
    """A StorageClass without a provisioner and VOLUMES_PER_NODE local PersistentVolumes on each node (folders
    in the node's state folder); the claims the StatefulSet made, the volumes and the class go at the end."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    ]
    for n in nodes:
        for i in range(VOLUMES_PER_NODE):
            path = n.state_dir / "volumes" / str(i)
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # the kubelet applies the pod's fsGroup to the files it writes
            docs.append(_volume(n, i, path))
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    try:
        yield STORAGE_CLASS
    finally:
        kubectl(node, "delete", "valkeycluster", NAME, "-n", NS, "--wait=true", "--timeout=120s", check=False)
        kubectl(node, "delete", "pvc", "-n", NS, "-l", SELECTOR, "--wait=true", "--timeout=60s", check=False)
        kubectl(node, "delete", "pv", "-l", f"e2e={STORAGE_CLASS}", "--wait=true", "--timeout=60s", check=False)
        kubectl(node, "delete", "storageclass", STORAGE_CLASS, check=False)


@pytest.fixture(scope="module")
def example(node: Node, installed: None, valkey_image: str, local_volumes: str) -> dict[str, Any]:
    """The shipped example with persistence on (the local StorageClass) and the locally built image."""
    body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    body["spec"]["image"], body["spec"]["imagePullPolicy"] = valkey_image, "Never"
    body["spec"]["persistence"] = {"enabled": True, "size": "1Gi", "storageClassName": local_volumes}
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    return dict(wait_for(lambda: vkc(node).get("status", {}).get("phase") == "Ready" and vkc(node), "Ready", 300))


def test_each_pod_keeps_its_data_on_its_own_bound_volume(node: Node, creds: Creds) -> None:
    claims = kubectl(node, "get", "pvc", "-n", NS, "-l", SELECTOR, "-o", "jsonpath={.items[*].status.phase}")
    assert claims.split() == ["Bound"] * 3, claims
    top = head(node)
    conf = creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "CONFIG", "GET", "appendonly")
    assert "appendonly\nyes" in conf, conf


def test_a_deleted_primary_hands_over_and_loses_nothing(node: Node, creds: Creds, operator_image: str) -> None:
    def delete_primary(watch: StatusWatch) -> None:
        kubectl(node, "delete", "pod", head(node)["metadata"]["name"], "-n", NS, "--wait=false")

    report = under_writer(node, creds, operator_image, "persistent-delete-primary", delete_primary)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] <= RESUME_WITHIN_MS, report


def test_a_killed_primary_server_reloads_its_data_and_rejoins_as_a_replica(
    node: Node, creds: Creds, operator_image: str
) -> None:
    old = head(node)["metadata"]["name"]
    before = restarts(node, old)

    def kill_server(watch: StatusWatch) -> None:
        os.kill(valkey_server_pid(node, old), signal.SIGKILL)

    report = under_writer(node, creds, operator_image, "persistent-kill-primary-server", kill_server)
    assert restarts(node, old) > before
    assert report["primary_after"] != old
    assert report["longest_pause_ms"] <= RESUME_WITHIN_MS, report
    assert report["missing_count"] <= 25, report  # the replication lag at the kill, as without persistence


def test_deleting_the_statefulset_loses_nothing(node: Node, creds: Creds, operator_image: str) -> None:
    def delete_statefulset(watch: StatusWatch) -> None:
        kubectl(node, "delete", "statefulset", NAME, "-n", NS, "--wait=false")

    report = under_writer(node, creds, operator_image, "persistent-delete-statefulset", delete_statefulset)
    assert report["missing_count"] == 0, report
    print(f"writes paused {report['longest_pause_ms']} ms while every pod restarted from its volume")


def test_every_pod_deleted_at_once_loses_nothing(node: Node, creds: Creds, operator_image: str) -> None:
    def delete_all(watch: StatusWatch) -> None:
        kubectl(node, "delete", "pod", "-n", NS, "-l", SELECTOR, "--wait=false")

    report = under_writer(node, creds, operator_image, "persistent-delete-every-pod", delete_all)
    assert report["missing_count"] == 0, report
    assert {p["metadata"]["name"] for p in pods(node)} == {f"{NAME}-{i}" for i in range(3)}


def test_scaling_down_and_up_again_brings_back_stale_volumes_that_resync_from_the_primary(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """3 -> 1 keeps the removed pods' claims (a StatefulSet never deletes them); 1 -> 3 brings those volumes
    back with an append-only file from before, minutes behind. The pods must come back as replicas that take
    the primary's data, never serve or spread what their stale files hold."""

    def scale(n: int) -> Callable[[StatusWatch], None]:
        def go(watch: StatusWatch) -> None:
            kubectl(
                node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", f'{{"spec":{{"replicas":{n}}}}}'
            )

        return go

    down = under_writer(node, creds, operator_image, "persistent-scale-3-to-1", scale(1), desired=1)
    assert down["missing_count"] == 0, down
    up = under_writer(node, creds, operator_image, "persistent-scale-1-to-3", scale(3), desired=3)
    assert up["missing_count"] == 0, up

    def sizes() -> list[str]:
        return [creds.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "DBSIZE").strip() for p in pods(node)]

    same = wait_for(lambda: len(set(s := sizes())) == 1 and s, "every pod to hold the primary's keys", 60)
    print(f"after 3 -> 1 -> 3 on kept volumes every pod holds {same[0]} keys")


def test_two_pods_deleted_at_once_come_back_on_their_volumes_and_lose_nothing(
    node: Node, creds: Creds, operator_image: str
) -> None:
    report = under_writer(node, creds, operator_image, "persistent-delete-two", delete_primary_and_a_replica(node))
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] <= 2 * RESUME_WITHIN_MS, report


def test_with_the_operator_down_a_deleted_primary_comes_back_on_its_volume_and_the_failover_waits(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """The old primary reloads its append-only file and waits as a replica; the operator, back, promotes the
    most advanced replica, and the old primary re-syncs from it."""
    timing: dict[str, float] = {}
    report = under_writer(
        node, creds, operator_image, "persistent-operator-down", operator_down_then_primary_deleted(node, timing)
    )
    print(f"operator ready {timing['operator_ready_s']:.1f} s after its start; writes back (Ready) "
          f"{timing['recovered_s']:.1f} s after its start")  # fmt: skip
    assert report["missing_count"] == 0, report
    assert report["primary_after"] != report["primary_before"]
