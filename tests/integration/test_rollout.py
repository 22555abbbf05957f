"""The operator's own rollout on a real API server: replicas first, then a switchover, then the primary.

No node runs pods here, so the test plays the kubelet's part for readiness (it patches pod status, as
a kubelet does); the switchover itself is the one seam no real part reaches in this tier, so it is a
recording stand-in here, and runs for real against valkey-server in tests/acceptance.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import apply, example_body, kubectl, kubectl_json, wait_until
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import SystemClock
from valkey_operator.k8s.client import Kube
from valkey_operator.pki.plan import Material
from valkey_operator.reconcile import Reconciler

pytestmark = pytest.mark.integration


def mark_ready(namespace: str) -> None:
    """What the kubelet would report: every live pod Ready."""
    for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
        kubectl(
            "patch",
            "pod",
            pod["metadata"]["name"],
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )


def pods(namespace: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in kubectl_json("get", "pods", "-n", namespace)["items"]}


def test_replicas_roll_first_then_switchover_then_the_primary(control_plane: Any, crd: None, namespace: str) -> None:
    switched: list[tuple[str, str]] = []

    def switchover(cluster: ValkeyCluster, material: Material, password: str | None, pod: str, target: str) -> None:
        switched.append((pod, target))

    reconciler = Reconciler(Kube(), SystemClock(), switchover)

    def reconcile() -> Any:
        body = kubectl_json("get", "valkeycluster", "cache", "-n", namespace)
        return reconciler.reconcile(body)

    apply(example_body(namespace))
    reconcile()
    wait_until(lambda: len(pods(namespace)) == 3, what="pods")
    mark_ready(namespace)
    first = {name: p["metadata"]["uid"] for name, p in pods(namespace).items()}
    kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "valkeyops.dev/rotate-certificates=roll")

    order: list[str] = []
    right_after_switchover: dict[str, str] = {}
    roles_after_switchover: dict[str, str] = {}
    for _ in range(12):  # bounded: three pods, one step per pass
        reconcile()
        if switched and not right_after_switchover:
            right_after_switchover = kubectl_json("get", "configmap", "cache-config", "-n", namespace)["data"]
            roles_after_switchover = {
                n: p["metadata"]["labels"].get("valkeyops.dev/role") for n, p in pods(namespace).items()
            }
        wait_until(
            lambda: (
                all(not p["metadata"].get("deletionTimestamp") for p in pods(namespace).values())
                and len(pods(namespace)) == 3
            ),
            what="the StatefulSet controller to replace the pod",
        )
        current = pods(namespace)
        order += [name for name, uid in first.items() if current[name]["metadata"]["uid"] != uid and name not in order]
        mark_ready(namespace)
        if len(order) == 3:
            break
    assert order == ["cache-2", "cache-1", "cache-0"], order
    ((old_primary, target),) = switched
    assert old_primary == "cache-0"
    assert target in {"cache-1", "cache-2"}  # a replica already on the new revision
    # The pass that switched over names the new primary and keeps every other key of the ConfigMap:
    # pods mount it as a directory, so a missing valkey.conf would reach them.
    assert right_after_switchover["primary"] == target
    assert {"valkey.conf", "start.sh", "probe.sh"} <= set(right_after_switchover)
    # ... and moves the role labels at once, so the read-write Service follows the new primary in that
    # pass rather than a rollout interval later (clients would see READONLY meanwhile).
    want = {name: "primary" if name == target else "replica" for name in ("cache-0", "cache-1", "cache-2")}
    assert roles_after_switchover == want
    reconcile()
    roles = {n: p["metadata"]["labels"].get("valkeyops.dev/role") for n, p in pods(namespace).items()}
    assert roles == {name: "primary" if name == target else "replica" for name in ("cache-0", "cache-1", "cache-2")}
