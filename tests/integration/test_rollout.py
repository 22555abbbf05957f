"""The operator's own rollout on a real API server: replicas first, then a switchover, then the primary.

No node runs pods here, so the test plays the kubelet's part for readiness (it patches pod status, as
a kubelet does), and the Valkey side is the one seam no real part reaches in this tier: a recording
stand-in that keeps roles as FAILOVER and REPLICAOF would. Both run for real against valkey-server in
tests/acceptance, and the whole rollout on the node in e2e/.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from tests.integration.conftest import apply, example_body, kubectl, kubectl_json, wait_until
from valkey_operator.clock import SystemClock
from valkey_operator.k8s.client import Kube
from valkey_operator.reconcile import PodAdmin, Reconciler
from valkey_operator.snapshot import Replication
from valkey_operator.valkey_admin import Credentials, PodError

pytestmark = pytest.mark.integration


class RecordingValkey:
    """Roles as Valkey would keep them; every switchover and repoint recorded."""

    def __init__(self) -> None:
        self.primary = "cache-0"
        self.follows: dict[str, str] = {}
        self.switched: list[tuple[str, str]] = []
        self.repointed: list[str] = []

    def replication(self, host: str, creds: Credentials | None, timeout: float = 3.0) -> Replication:
        pod = host.split(".", maxsplit=1)[0]
        if pod == self.primary:
            return Replication("master")
        return Replication("slave", host.replace(pod, self.follows.get(pod, self.primary), 1), link_up=True)

    def served(self, host: str, creds: Credentials | None, bus: bool = False) -> str:
        raise PodError("not asked under RollingRestart")

    def switchover(self, host: str, target_host: str, creds: Credentials | None) -> None:
        pod, target = host.split(".", maxsplit=1)[0], target_host.split(".", maxsplit=1)[0]
        self.switched.append((pod, target))
        for other in ("cache-0", "cache-1", "cache-2"):
            if other not in (pod, target):
                self.follows[other] = pod  # FAILOVER leaves the third pod on the old primary
        self.primary = target
        self.follows[pod] = target

    def promote(self, host: str, creds: Credentials | None) -> None:
        raise PodError("the primary (cache-0) reports itself from the start here: nothing to promote")

    def repoint(self, host: str, primary_host: str, creds: Credentials | None) -> None:
        self.repointed.append(host.split(".", maxsplit=1)[0])
        self.follows[host.split(".", maxsplit=1)[0]] = primary_host.split(".", maxsplit=1)[0]

    def reload(self, host: str, creds: Credentials | None) -> None:
        raise PodError("not asked under RollingRestart")


def mark_ready(namespace: str) -> None:
    """What the kubelet would report: every live pod Ready."""
    for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = {
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.9",
                "podIPs": [{"ip": "10.244.0.9"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        }
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


def test_replicas_roll_first_then_switchover_then_the_primary(
    control_plane: Any, crd: None, unwatched_namespace: str
) -> None:
    namespace = unwatched_namespace
    valkey = RecordingValkey()
    reconciler = Reconciler(Kube(), cast(PodAdmin, valkey), SystemClock())

    def reconcile() -> Any:
        return reconciler.reconcile(namespace, "cache")

    apply(example_body(namespace))
    reconcile()
    wait_until(lambda: len(pods(namespace)) == 3, what="pods")
    mark_ready(namespace)
    first = {name: p["metadata"]["uid"] for name, p in pods(namespace).items()}
    kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "valkeyops.dev/rotate-certificates=roll")

    order: list[str] = []
    after_switchover: dict[str, Any] = {}
    for _ in range(20):  # bounded: three pods, one step per pass, a switchover and its follow-up
        outcome = reconcile()
        if valkey.switched and not after_switchover and not any("switchover" in str(a) for a in outcome.actions):
            # The pass after the switchover reads the new primary from Valkey and follows it.
            after_switchover = {
                "configmap": kubectl_json("get", "configmap", "cache-config", "-n", namespace)["data"],
                "roles": {n: p["metadata"]["labels"].get("valkeyops.dev/role") for n, p in pods(namespace).items()},
                "uids": {name: p["metadata"]["uid"] for name, p in pods(namespace).items()},
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
    ((old_primary, target),) = valkey.switched
    assert old_primary == "cache-0"
    assert target in {"cache-1", "cache-2"}  # a replica already on the new revision
    # The third pod followed the new primary before the old one restarted.
    third = ({"cache-1", "cache-2"} - {target}).pop()
    assert valkey.repointed == [third]
    # The pass after the switchover names the new primary and keeps every other key of the ConfigMap:
    # pods mount it as a directory, so a missing valkey.conf would reach them. cache-0 was not yet deleted.
    assert after_switchover["configmap"]["primary"] == target
    assert {"valkey.conf", "start.sh", "probe.sh"} <= set(after_switchover["configmap"])
    assert after_switchover["uids"]["cache-0"] == first["cache-0"]
    want = {name: "primary" if name == target else "replica" for name in ("cache-0", "cache-1", "cache-2")}
    assert after_switchover["roles"] == want
    reconcile()
    roles = {n: p["metadata"]["labels"].get("valkeyops.dev/role") for n, p in pods(namespace).items()}
    assert roles == want
