"""Faults on the real node, under a steady writer through the read-write Service (50 acknowledged SETs a
second, mTLS): the primary deleted, its server SIGKILLed, the operator down while the primary goes, a
scale-down with the primary on the highest ordinal, a replica and two pods deleted.

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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import (
    NAME,
    NS,
    OPERATOR_NS,
    ROOT,
    SERVICE_DNS,
    WRITER_PY,
    Creds,
    condition,
    finish_pod,
    get_json,
    is_ready,
    kubectl,
    pod_fqdn,
    pods,
    role,
    start_client_pod,
    vkc,
    wait_for,
)
from e2e.node import Node
from valkey_operator.builders.services import ROLE_PRIMARY

REPORT = ROOT / ".e2e-failover-report.json"
RESUME_WITHIN_MS = 10_000  # the bound for writes to resume (goal 5 s)
STATUS_LAG_S = 10.0  # status may trail the pods by one fast-timer period (5 s), plus sampling


@dataclass
class StatusWatch:
    """Samples the ValkeyCluster's status and the pods about once a second: how long status said Ready
    while the pods were not (one ready, live, primary-labelled pod that reports master; every pod ready)."""

    node: Node
    creds: Creds
    desired: int = 3
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    judged_from: float = 0.0  # status is held to the pods from here on (an operator that is down says nothing)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[str, Any]:
        body = vkc(self.node)
        live = [p for p in pods(self.node) if not p["metadata"].get("deletionTimestamp")]
        heads = [p for p in live if role(p) == ROLE_PRIMARY and is_ready(p)]
        serving = len(heads) == 1 and "role:master" in self.creds.cli(
            heads[0]["status"]["podIP"], pod_fqdn(heads[0]["metadata"]["name"]), "INFO", "replication", timeout=5
        )
        ready = sum(is_ready(p) for p in live)
        return {
            "t": round(time.monotonic() - self.started, 1),
            "status": f"{body.get('status', {}).get('phase')}/{condition(body, 'Ready').get('reason')}",
            "says_ready": condition(body, "Ready").get("status") == "True",
            "pods_ready": serving and ready >= self.desired,
            "pods": f"{ready} ready, primary {heads[0]['metadata']['name'] if serving else '-'}",
        }

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception as exc:  # a pod or the API server between states: sample again
                self.samples.append({"t": round(time.monotonic() - self.started, 1), "error": repr(exc)[:80]})
            self.stop.wait(1.0)

    def judge_from_now(self) -> None:
        self.judged_from = round(time.monotonic() - self.started, 1)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(15)
        return {"false_ready_s": self._longest(lambda s: s["says_ready"] and not s["pods_ready"]),
                "late_ready_s": self._longest(lambda s: s["pods_ready"] and not s["says_ready"]),
                "timeline": self._changes()}  # fmt: skip

    def _longest(self, bad: Callable[[dict[str, Any]], bool]) -> float:
        longest, since = 0.0, None
        for s in (s for s in self.samples if "error" not in s and s["t"] >= self.judged_from):
            if bad(s):
                since = s["t"] if since is None else since
                longest = max(longest, s["t"] - since + 1.0)
            else:
                since = None
        return round(longest, 1)

    def _changes(self) -> list[str]:
        out, last = [], None
        for s in self.samples:
            line = s.get("error") or f"status {s['status']}, pods {s['pods']}"
            if line != last:
                out.append(f"{s['t']:6.1f}s {line}")
                last = line
        return out


def head(node: Node) -> dict[str, Any]:
    found = [p for p in pods(node) if role(p) == ROLE_PRIMARY and not p["metadata"].get("deletionTimestamp")]
    assert len(found) == 1, [(p["metadata"]["name"], role(p)) for p in pods(node)]
    return found[0]


def settled(node: Node, desired: int = 3) -> bool:
    body = vkc(node)
    live = [p for p in pods(node) if not p["metadata"].get("deletionTimestamp")]
    return (
        body.get("status", {}).get("phase") == "Ready"
        and len(live) == desired
        and all(is_ready(p) for p in live)
        and body["status"].get("primary")
        == next((p["metadata"]["name"] for p in live if role(p) == ROLE_PRIMARY), None)
    )


def under_writer(
    node: Node, creds: Creds, image: str, tag: str, fault: Callable[[StatusWatch], None], desired: int = 3
) -> dict[str, Any]:
    """Start a writer, inject the fault, wait until the cluster is Ready again, stop the writer; its report
    and the status sampler's, printed and kept for the closing note."""
    writer = WRITER_PY % {"service": SERVICE_DNS, "max_seconds": 900, "prefix": tag}
    start_client_pod(node, f"writer-{tag}", image, ["python", "-c", writer])
    wait_for(lambda: "first write acknowledged" in kubectl(node, "logs", f"writer-{tag}", "-n", NS, check=False),
             f"the writer {tag}", 120)  # fmt: skip
    time.sleep(3)  # a few seconds of writes before the fault
    watch = StatusWatch(node, creds, desired)
    before = vkc(node)["status"].get("primary")
    try:
        fault(watch)
        wait_for(lambda: settled(node, desired), f"Ready again after {tag}", 300)
        time.sleep(3)
    finally:
        sampled = watch.finish()
    top = head(node)
    info = creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "INFO", "replication")
    assert "role:master" in info, info  # the Service's endpoint is the pod that really is the primary
    assert "OK" in creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "SET", f"{tag}:stop", "1")
    report = json.loads(finish_pod(node, f"writer-{tag}", 180).splitlines()[-1])
    report.update(sampled, primary_before=before, primary_after=top["metadata"]["name"])
    print(f"\n{tag}: " + json.dumps({k: v for k, v in report.items() if k != "timeline"}))
    print("\n".join(report["timeline"]))
    figures = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    figures[tag] = report
    REPORT.write_text(json.dumps(figures, indent=2))
    assert report["acked"] > 100, report
    assert sampled["false_ready_s"] <= STATUS_LAG_S, report
    return dict(report)


def valkey_server_pid(node: Node, pod: str) -> int:
    """The host PID of `pod`'s valkey-server (the node's containers are processes of this machine): the one
    whose network namespace holds the pod's IP (its environment is overwritten by the process title)."""
    ip = get_json(node, "pod", pod, "-n", NS)["status"]["podIP"]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "valkey-server":
                continue
            local = (entry / "net" / "fib_trie").read_text()
        except OSError:
            continue
        if f"|-- {ip}\n" in local:
            return int(entry.name)
    raise AssertionError(f"no valkey-server process for {pod} ({ip})")


def restarts(node: Node, pod: str) -> int:
    p = get_json(node, "pod", pod, "-n", NS)
    return sum(int(c.get("restartCount", 0)) for c in p.get("status", {}).get("containerStatuses") or [])


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
    events = kubectl(node, "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={NAME}")
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
    events = kubectl(node, "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={NAME}")
    assert "FailedOver" in events, events


def test_with_the_operator_down_the_failover_happens_when_it_returns(
    node: Node, cluster: Creds, operator_image: str
) -> None:
    deployment = get_json(node, "deployments", "-n", OPERATOR_NS)["items"][0]["metadata"]["name"]
    timing: dict[str, float] = {}

    def operator_down_then_primary_deleted(watch: StatusWatch) -> None:
        kubectl(node, "scale", "deployment", deployment, "-n", OPERATOR_NS, "--replicas=0")
        wait_for(lambda: not get_json(node, "pods", "-n", OPERATOR_NS)["items"], "the operator to stop", 120)
        old = head(node)["metadata"]["name"]
        kubectl(node, "delete", "pod", old, "-n", NS, "--wait=true", "--timeout=90s")
        # The pod comes back, waiting for the operator (it was the recorded primary): nobody serves writes,
        # the replicas keep the data.
        wait_for(lambda: any(p["metadata"]["name"] == old for p in pods(node)), f"{old} to come back", 120)
        time.sleep(5)
        timing["operator_started"] = time.monotonic()
        kubectl(node, "scale", "deployment", deployment, "-n", OPERATOR_NS, "--replicas=1")
        wait_for(
            lambda: [p for p in get_json(node, "pods", "-n", OPERATOR_NS)["items"] if is_ready(p)],
            "the operator to be ready",
            120,
        )
        timing["operator_ready_s"] = time.monotonic() - timing["operator_started"]
        # Nothing updates status while the operator is down (it said Ready all along: documented); from
        # the moment it is ready, status is held to what the pods do.
        watch.judge_from_now()
        wait_for(lambda: settled(node), "the failover once the operator is back", 300)
        timing["recovered_s"] = time.monotonic() - timing["operator_started"]

    report = under_writer(node, cluster, operator_image, "operator-down", operator_down_then_primary_deleted)
    print(f"operator ready {timing['operator_ready_s']:.1f} s after its start; writes back (Ready) "
          f"{timing['recovered_s']:.1f} s after its start")  # fmt: skip
    assert report["missing_count"] == 0, report
    assert report["primary_after"] != report["primary_before"]


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
        wait_for(lambda: settled(node) and head(node)["metadata"]["name"] == "cache-2", "cache-2 to be primary", 60)
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

    def delete_primary_and_a_replica(watch: StatusWatch) -> None:
        top = head(node)["metadata"]["name"]
        replica = next(p["metadata"]["name"] for p in pods(node) if p["metadata"]["name"] != top)
        kubectl(node, "delete", "pod", top, replica, "-n", NS, "--wait=false")

    two = under_writer(node, cluster, operator_image, "delete-two", delete_primary_and_a_replica)
    assert two["missing_count"] == 0, two
    # The issue bounds faults 1 and 2 at 10 s; two pods at once has no bound there. One CI run measured
    # 11.2 s here (the handover's pass slowed by a DNS timeout): the figure is reported, and a pause past
    # 20 s fails.
    assert two["longest_pause_ms"] <= 2 * RESUME_WITHIN_MS, two
