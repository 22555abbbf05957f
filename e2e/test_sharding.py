"""A sharded cluster on the real nodes: `mode: cluster` with 3 shards of a primary and a replica, formed by
the operator in its pod (the nodes meet by pod IP, slots are split over the primaries, replicas follow),
Ready only once every node says cluster_state:ok, and then a cluster client in a pod that verifies host
names (valkey-py's ValkeyCluster, the connection Secret's client certificate) writes and reads keys over
every slot, redirected between shards by the pods' stable names.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from e2e.conftest import NAME, NS, ROOT, SERVICE_DNS, Creds, kubectl, pod_fqdn, pods, run_pod, secret, vkc, wait_for
from e2e.node import Node

CLIENT_PY = """
from valkey.cluster import ValkeyCluster
pw = open("/tls/password").read()
c = ValkeyCluster(host="%(service)s", port=6379, password=pw, ssl=True, ssl_ca_certs="/tls/ca.crt",
                  ssl_certfile="/tls/tls.crt", ssl_keyfile="/tls/tls.key", ssl_check_hostname=True)
for i in range(3000):
    c.set("k:%%d" %% i, i)
print("read", sum(int(c.get("k:%%d" %% i)) == i for i in range(3000)))
print("hosts", " ".join(sorted({n.host for n in c.get_nodes()})))
"""


@pytest.fixture(scope="module")
def example(node: Node, installed: None, valkey_image: str) -> dict[str, Any]:
    """The shipped example in cluster mode (3 shards, a replica each: six pods) with the local image."""
    body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    body["spec"]["image"], body["spec"]["imagePullPolicy"] = valkey_image, "Never"
    body["spec"].pop("replicas", None)
    body["spec"].update(mode="cluster", shards=3, replicasPerShard=1)
    started = time.monotonic()
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    ready = wait_for(lambda: vkc(node).get("status", {}).get("phase") == "Ready" and vkc(node), "Ready", 400)
    print(f"\nsharded cluster Ready {time.monotonic() - started:.1f} s after it was applied")
    return dict(ready)


def test_the_operator_forms_the_cluster_and_says_ready_only_then(node: Node, creds: Creds) -> None:
    live = pods(node)
    assert len(live) == 6
    for p in live:
        info = creds.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "CLUSTER", "INFO")
        assert "cluster_state:ok" in info, info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
    top = live[0]
    shards = creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "CLUSTER", "SHARDS")
    assert shards.count("role\nmaster") == 3, shards
    assert shards.count("role\nreplica") == 3, shards
    events = kubectl(node, "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={NAME}")
    assert "ReconcileError" not in events, events
    # Status says what the nodes report: three shards, each a primary with one replica, every slot.
    status = vkc(node)["status"]
    assert status["clusterState"] == "ok"
    assert [(s["primary"], len(s["replicas"])) for s in status["shards"]] == [(f"{NAME}-{i}", 1) for i in range(3)], (
        status["shards"]
    )
    assert ",".join(s["slots"] for s in status["shards"]) == "0-5461,5462-10922,10923-16383"
    assert secret(node, f"{NAME}-connection")["cluster"] == b"true"


def test_a_cluster_client_verifying_host_names_reaches_every_slot(
    node: Node, creds: Creds, operator_image: str
) -> None:
    log = run_pod(node, "cluster-client", operator_image, ["python", "-c", CLIENT_PY % {"service": SERVICE_DNS}])
    assert "read 3000" in log, log
    # Redirects name the pods by their stable names (in the certificate), which the client verified: every
    # primary, and whichever replicas the client learned of.
    hosts = set(log.split("hosts", 1)[1].split())
    stable = {f"{NAME}-{i}.{NAME}-headless.{NS}.svc" for i in range(6)}
    assert {f"{NAME}-{i}.{NAME}-headless.{NS}.svc" for i in range(3)} <= hosts <= stable, hosts
