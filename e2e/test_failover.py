"""Faults on the real node, under a steady writer through the read-write Service (50 acknowledged SETs a
second, mTLS): the primary deleted, its server SIGKILLed, the operator down while the primary goes, a
scale-down with the primary on the highest ordinal, a replica and two pods deleted, a `kubectl drain` of
the node that holds the primary (the harness has two nodes; the pods spread over both by default), and the
primary's network cut for 30 s, without and then with write safety (minReplicasToWrite 1, a client that
WAITs for one replica), where a SIGKILLed primary then loses nothing either.

For each fault the writer counts acknowledged writes, failed attempts and the longest pause, and at the end
reads every acknowledged key back through the Service, whose one endpoint is checked to be the pod that
really reports itself primary. A status sampler compares, second by second, what the ValkeyCluster says
with what the pods do. The chart's default timers (300 s, 5 s) and failover.after (5 s) apply throughout.

The module installs the chart and the example afresh (after test_operator_in_cluster.py uninstalled its
own) and runs its faults in file order on one cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.conftest import (
    NAME,
    NS,
    OPERATOR_NS,
    Creds,
    cluster_events,
    condition,
    get_json,
    is_ready,
    kubectl,
    pod_fqdn,
    pods,
    role,
    vkc,
    wait_for,
)
from e2e.faults import (
    REPORT,
    RESUME_WITHIN_MS,
    StatusWatch,
    delete_primary_and_a_replica,
    head,
    network_cut,
    node_of,
    operator_down_then_primary_deleted,
    pod_process,
    restart_count,
    restarts,
    settled,
    under_writer,
    valkey_server_pid,
)
from e2e.node import Node
from valkey_operator import names
from valkey_operator.builders.services import ROLE_PRIMARY


@pytest.fixture(scope="module")
def cluster(node: Node, creds: Creds) -> Iterator[Creds]:
    yield creds
    if REPORT.exists():
        print("\nfailover figures: " + REPORT.read_text())


# --- faults, in order, on one cluster ---------------------------------------------------------------------
def test_deleting_the_primary_hands_over_first_and_loses_nothing(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    REPORT.unlink(missing_ok=True)

    def delete_primary(watch: StatusWatch) -> None:
        kubectl(node, "delete", "pod", head(node)["metadata"]["name"], "-n", NS, "--wait=false")

    report = under_writer(node, cluster, operator_image, "delete-primary", delete_primary)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] <= RESUME_WITHIN_MS, report
    assert report["primary_after"] != report["primary_before"]
    events = cluster_events(node)
    assert "Switchover" in events, events


def test_a_killed_primary_server_never_becomes_an_empty_source(node: Node, cluster: Creds, operator_image: str) -> None:
    old = head(node)["metadata"]["name"]
    restarted = restarts(node, old)

    def kill_server(watch: StatusWatch) -> None:
        os.kill(valkey_server_pid(node, old), signal.SIGKILL)  # an OOM kill: the container restarts, empty

    report = under_writer(node, cluster, operator_image, "kill-primary-server", kill_server)
    assert restarts(node, old) > restarted
    assert report["primary_after"] != old, "the restarted, empty pod must not be the primary"
    assert report["longest_pause_ms"] <= RESUME_WITHIN_MS, report
    # Asynchronous replication: what the primary acknowledged in the last moment before the kill may not
    # have reached a replica (bounded by the replication lag, a few writes at 50/s). Never the whole dataset.
    assert report["missing_count"] <= 25, report
    events = cluster_events(node)
    assert "FailedOver" in events, events


def test_with_the_operator_down_the_failover_happens_when_it_returns(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    timing: dict[str, float] = {}
    report = under_writer(
        node, cluster, operator_image, "operator-down", operator_down_then_primary_deleted(node, timing)
    )
    print(f"operator ready {timing['operator_ready_s']:.1f} s after its start; writes back (Ready) "
          f"{timing['recovered_s']:.1f} s after its start")  # fmt: skip
    assert report["missing_count"] == 0, report
    assert report["primary_after"] != report["primary_before"]


def _roles_now(node: Node, cluster: Creds) -> dict[str, str]:
    """Each pod's role label and what it reports of itself (label/reported), and the operator's record."""
    out = {"record": kubectl(node, "get", "configmap", f"{NAME}-config", "-n", NS, "-o", "jsonpath={.data.primary}")}
    for p in pods(node):
        pod = p["metadata"]["name"]
        info = cluster.cli(p["status"].get("podIP", ""), pod_fqdn(pod), "INFO", "replication", timeout=3)
        out[pod] = f"{role(p)}/{'master' if 'role:master' in info else 'replica'}"
    return out


def test_the_operator_killed_right_after_its_switchover_in_a_rotation_converges_from_the_pods(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    """A rotation rolls the replicas, then hands the primary role over (FAILOVER TO) before it restarts the
    old primary. The operator is SIGKILLed the moment it logs that switchover: before it can move its record,
    the role labels and so the Service. Its container restarts; the new process reads the roles from the
    pods (not from its ConfigMap), points the Service at the real primary within one pass, and finishes the
    rotation."""
    op = next(p for p in get_json(node, "pods", "-n", OPERATOR_NS)["items"] if is_ready(p))
    op_name = op["metadata"]["name"]
    seen: dict[str, Any] = {}

    restarted = restart_count(op)

    def operator_back() -> bool:
        now = get_json(node, "pod", op_name, "-n", OPERATOR_NS)
        return restart_count(now) > restarted and is_ready(now)

    def converged() -> bool:
        top = head(node)
        info = cluster.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "INFO", "replication", timeout=3)
        return "role:master" in info and vkc(node)["status"].get("primary") == top["metadata"]["name"]

    def kill_at_switchover(watch: StatusWatch) -> None:
        pid = pod_process(node, op_name, OPERATOR_NS, "valkey-operator")
        assert node.cluster.bins is not None
        follow = subprocess.Popen(
            [str(node.cluster.bins / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}", "logs", "-f", op_name,
             "-n", OPERATOR_NS, "--since=1s"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop = threading.Timer(600, follow.kill)  # bounds the read below
        stop.start()
        try:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            kubectl(node, "annotate", "valkeycluster", NAME, "-n", NS, "--overwrite",
                    f"{names.ANN_ROTATE_CERTIFICATES}=killed-{stamp}")  # fmt: skip
            assert follow.stdout is not None
            for line in follow.stdout:
                if "switchover cache-" in line:
                    os.kill(pid, signal.SIGKILL)
                    seen["line"] = line.strip()[-160:]
                    break
        finally:
            stop.cancel()
            follow.kill()
        assert "line" in seen, "the rotation never reached its switchover"
        seen["at_kill"] = _roles_now(node, cluster)
        wait_for(operator_back, "the operator's container to restart", 180)
        back = time.monotonic()
        watch.judge_from_now()  # nothing could update status while no operator ran
        wait_for(converged, "the Service to point at the pod that reports master", 120, every=0.5)
        seen["converged_s"] = round(time.monotonic() - back, 1)

    report = under_writer(node, cluster, operator_image, "operator-killed-after-switchover", kill_at_switchover)
    print(f"killed at: {seen['line']}\nroles right after the kill (label/reported): {seen['at_kill']}\n"
          f"Service on the real primary {seen['converged_s']} s after the new operator was ready")  # fmt: skip
    assert report["missing_count"] == 0, report
    assert seen["converged_s"] <= 10, seen  # within one pass of the new operator (the fast timer is 5 s)
    # The rotation finished: every pod on the StatefulSet's newest revision (under OnDelete the StatefulSet
    # never moves its currentRevision itself), Rotating over.
    newest = get_json(node, "statefulset", NAME, "-n", NS)["status"]["updateRevision"]
    revisions = {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"] for p in pods(node)}
    assert set(revisions.values()) == {newest}, (newest, revisions)
    assert condition(vkc(node), "Rotating")["status"] == "False", vkc(node)["status"]


def test_scaling_down_with_the_primary_on_the_highest_ordinal_then_up_again(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    # Put the primary on cache-2 the way a hand FAILOVER would (the operator follows what pods report).
    if head(node)["metadata"]["name"] != "cache-2":
        top = head(node)
        target = pod_fqdn("cache-2")
        out = cluster.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "FAILOVER", "TO", target, "6379")
        assert "OK" in out, out
        # A role change inside Valkey changes no Kubernetes object: the operator's role check (every 10 s,
        # one TLS round trip to the recorded primary) notices it and the labels follow.
        moved = time.monotonic()
        wait_for(lambda: settled(node, creds=cluster) and head(node)["metadata"]["name"] == "cache-2",
                 "cache-2 to be primary", 60)  # fmt: skip
        print(f"a hand FAILOVER was followed in {time.monotonic() - moved:.1f} s")

    def scale(n: int) -> Callable[[StatusWatch], None]:
        def go(watch: StatusWatch) -> None:
            patch = json.dumps({"spec": {"replicas": n}})
            kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", patch)

        return go

    down = under_writer(node, cluster, operator_image, "scale-3-to-1", scale(1), desired=1)
    assert down["missing_count"] == 0, down
    assert down["longest_pause_ms"] <= RESUME_WITHIN_MS, down
    assert down["primary_after"] == "cache-0"
    up = under_writer(node, cluster, operator_image, "scale-1-to-3", scale(3), desired=3)
    assert up["missing_count"] == 0, up
    assert up["longest_pause_ms"] <= RESUME_WITHIN_MS, up


def test_a_deleted_replica_and_two_pods_at_once_lose_nothing(node: Node, cluster: Creds, operator_image: str) -> None:
    def delete_a_replica(watch: StatusWatch) -> None:
        replica = next(p for p in pods(node) if role(p) != ROLE_PRIMARY)
        kubectl(node, "delete", "pod", replica["metadata"]["name"], "-n", NS, "--wait=false")

    one = under_writer(node, cluster, operator_image, "delete-replica", delete_a_replica)
    assert one["missing_count"] == 0, one
    assert one["longest_pause_ms"] <= 2_000, one  # the primary never stopped

    two = under_writer(node, cluster, operator_image, "delete-two", delete_primary_and_a_replica(node))
    assert two["missing_count"] == 0, two
    # The issue bounds faults 1 and 2 at 10 s; two pods at once has no bound there. One CI run measured
    # 11.2 s here (the handover's pass slowed by a DNS timeout): the figure is reported, and a pause past
    # 20 s fails.
    assert two["longest_pause_ms"] <= 2 * RESUME_WITHIN_MS, two


def test_draining_the_primarys_node_evicts_through_the_budget_and_loses_nothing(
    node: Node, nodes: list[Node], cluster: Creds, operator_image: str
) -> None:
    # Spread by default (a ScheduleAnyway topology spread over hostnames): the three pods use both nodes,
    # so no one node holds the primary and all its replicas.
    used = {node_of(node, p["metadata"]["name"]) for p in pods(node)}
    assert used == {n.name for n in nodes}, used
    drained = node_of(node, head(node)["metadata"]["name"])
    other = next(n.name for n in nodes if n.name != drained)
    out: dict[str, str] = {}

    def drain(watch: StatusWatch) -> None:
        # Evictions go through the PodDisruptionBudget (maxUnavailable 1): the second pod on the node is
        # evicted only once the first is back and ready elsewhere. Whatever else runs there goes too.
        out["drain"] = kubectl(
            node, "drain", drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=280s"
        )

    try:
        report = under_writer(node, cluster, operator_image, "drain-primary-node", drain, writer_on=other)
    finally:
        kubectl(node, "uncordon", drained)
    print(out.get("drain", ""))
    assert all(node_of(node, p["metadata"]["name"]) == other for p in pods(node))
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] <= RESUME_WITHIN_MS, report
    assert report["primary_after"] != report["primary_before"]


def cut_primary(node: Node, cluster: Creds, operator_image: str, tag: str, wait: int = 0) -> dict[str, Any]:
    """The primary's network cut for 30 s under a writer; afterwards one primary, the old one its replica."""
    old = head(node)["metadata"]["name"]

    def cut(watch: StatusWatch) -> None:
        with network_cut(node, old):
            time.sleep(30)

    report = under_writer(node, cluster, operator_image, tag, cut, wait=wait)
    assert report["primary_after"] != old, report
    new = report["primary_after"]
    ip = get_json(node, "pod", old, "-n", NS)["status"]["podIP"]
    info = wait_for(
        lambda: (i := cluster.cli(ip, pod_fqdn(old), "INFO", "replication", timeout=5))
        and f"master_host:{pod_fqdn(new)}" in i and "master_link_status:up" in i and i,
        f"{old} to follow {new}", 60,
    )  # fmt: skip
    assert "role:slave" in info, info
    return report


def test_a_primary_cut_off_from_the_network_is_replaced_and_rejoins_as_a_replica(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    report = cut_primary(node, cluster, operator_image, "network-cut")
    # Without write safety the cut-off primary acknowledges what reaches it before its replicas' silence
    # counts; here the writer reaches it only through the same cut network, so the loss is what had not
    # been replicated at the cut (reported; a few writes at most).
    assert report["missing_count"] <= 25, report


def test_with_write_safety_a_cut_or_killed_primary_loses_no_acknowledged_write(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    patch = json.dumps({"spec": {"replication": {"minReplicasToWrite": 1, "maxLagSeconds": 10}}})
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", patch)
    # valkey.conf changed: the pods roll (replicas first, then a switchover); then every pod has the setting.
    wait_for(lambda: settled(node) and all(
        "min-replicas-to-write\n1" in cluster.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]),
                                                   "CONFIG", "GET", "min-replicas-to-write", timeout=5)
        for p in pods(node)), "min-replicas-to-write 1 on every pod", 400)  # fmt: skip
    cut = cut_primary(node, cluster, operator_image, "network-cut-write-safety", wait=1)
    assert cut["missing_count"] == 0, cut
    old = head(node)["metadata"]["name"]

    def kill_server(watch: StatusWatch) -> None:
        os.kill(valkey_server_pid(node, old), signal.SIGKILL)

    killed = under_writer(node, cluster, operator_image, "kill-primary-server-write-safety", kill_server, wait=1)
    assert killed["primary_after"] != old
    assert killed["missing_count"] == 0, killed
