"""Fault injection under load, shared by the e2e fault modules: a steady writer through the read-write
Service (50 acknowledged SETs a second, mTLS) that counts acknowledged writes, failed attempts and the
longest pause and at the end reads every acknowledged key back; a status sampler that compares, second by
second, what the ValkeyCluster says with what the pods do; and the faults themselves (a pod's server
killed, its network cut). Figures go to .e2e-failover-report.json for the closing note.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.conftest import (
    NS,
    OPERATOR_NS,
    ROOT,
    Creds,
    condition,
    finish_pod,
    get_json,
    is_ready,
    kubectl,
    operator_logs,
    pod_fqdn,
    pods,
    role,
    start_client_pod,
    vkc,
    wait_for,
    writer_script,
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
        serving = len(heads) == 1 and serves(self.creds, heads[0])
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
                "timeline": self.changes()}  # fmt: skip

    def _longest(self, bad: Callable[[dict[str, Any]], bool]) -> float:
        longest, since = 0.0, None
        for s in (s for s in self.samples if "error" not in s and s["t"] >= self.judged_from):
            if bad(s):
                since = s["t"] if since is None else since
                longest = max(longest, s["t"] - since + 1.0)
            else:
                since = None
        return round(longest, 1)

    def changes(self) -> list[str]:
        """The timeline: what status and the pods said, at each change."""
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


def serves(creds: Creds, pod: dict[str, Any]) -> bool:
    """The pod says it is the primary; one that does not answer within 3 s (cut off) does not serve."""
    try:
        info = creds.cli(pod["status"]["podIP"], pod_fqdn(pod["metadata"]["name"]), "INFO", "replication",
                         timeout=3)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return "role:master" in info


def settled(node: Node, desired: int = 3, creds: Creds | None = None) -> bool:
    """Status says Ready, every pod is ready, and status's primary is the primary-labelled pod. With `creds`
    also what the pods do: that pod is the only one labelled so, and answers as the primary. Right after a
    fault, status (one timer period late) and the pods' readiness (a probe period late) may still describe
    the moment before it: without the pods' own word that moment counts as settled."""
    body = vkc(node)
    live = [p for p in pods(node) if not p["metadata"].get("deletionTimestamp")]
    heads = [p for p in live if role(p) == ROLE_PRIMARY]
    said = (
        body.get("status", {}).get("phase") == "Ready"
        and len(live) == desired
        and all(is_ready(p) for p in live)
        and body["status"].get("primary") == next((p["metadata"]["name"] for p in heads), None)
    )
    return said and (creds is None or (len(heads) == 1 and serves(creds, heads[0])))


def under_writer(
    node: Node,
    creds: Creds,
    image: str,
    tag: str,
    fault: Callable[[StatusWatch], None],
    desired: int = 3,
    writer_on: str | None = None,
    wait: int = 0,
) -> dict[str, Any]:
    """Start a writer (on node `writer_on` if given), inject the fault, wait until the cluster is Ready again,
    stop the writer; its report and the status sampler's, printed and kept for the closing note."""
    writer = writer_script(tag, 900, wait)
    start_client_pod(node, f"writer-{tag}", image, ["python", "-c", writer], on=writer_on)
    wait_for(lambda: "first write acknowledged" in kubectl(node, "logs", f"writer-{tag}", "-n", NS, check=False),
             f"the writer {tag}", 120)  # fmt: skip
    time.sleep(3)  # a few seconds of writes before the fault
    watch = StatusWatch(node, creds, desired)
    before = vkc(node)["status"].get("primary")
    try:
        try:
            fault(watch)
            wait_for(lambda: settled(node, desired, creds), f"Ready again after {tag}", 300)
            time.sleep(3)
        finally:
            sampled = watch.finish()
        top = head(node)
        info = creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "INFO", "replication")
        assert "role:master" in info, info  # the Service's endpoint is the pod that really is the primary
        assert "OK" in creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "SET", f"{tag}:stop", "1")
        report = json.loads(finish_pod(node, f"writer-{tag}", 180).splitlines()[-1])
    except Exception:
        print(diagnosis(node, tag, watch.changes, f"writer-{tag}"))
        raise
    report.update(sampled, primary_before=before, primary_after=top["metadata"]["name"])
    print(f"\n{tag}: " + json.dumps({k: v for k, v in report.items() if k != "timeline"}))
    print("\n".join(report["timeline"]))
    figures = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    figures[tag] = report
    REPORT.write_text(json.dumps(figures, indent=2))
    assert report["acked"] > 100, report
    assert sampled["false_ready_s"] <= STATUS_LAG_S, report
    return dict(report)


def diagnosis(node: Node, tag: str, timeline: Callable[[], list[str]], writer: str) -> str:
    """What a failed fault test leaves in the log for whoever reads it: the status sampler's `timeline`, the
    ValkeyCluster's status, each pod's role label, readiness and restarts, and the last lines of the `writer`
    pod and of the operator (the failure itself may be a timeout that says none of this)."""
    lines = [f"--- {tag} failed"]

    def state() -> list[str]:
        out = ["status: " + json.dumps(vkc(node).get("status", {}), sort_keys=True)]
        for p in pods(node):
            gone = ", terminating" if p["metadata"].get("deletionTimestamp") else ""
            out.append(f"pod {p['metadata']['name']}: role {role(p)}, ready {is_ready(p)}, "
                       f"restarts {restart_count(p)}{gone}")  # fmt: skip
        return out

    reads: list[tuple[str, Callable[[], list[str]]]] = [
        ("status and pods, second by second", lambda: list(timeline())),
        ("status and pods now", state),
        ("writer", lambda: [kubectl(node, "logs", writer, "-n", NS, "--tail=5", check=False, timeout=20)]),
        ("operator", lambda: [operator_logs(node, 60, timeout=20)]),
    ]  # fmt: skip
    for what, read in reads:
        try:  # the API server may be what failed: say so, keep the rest, and never hide the test's own failure
            lines += [f"{what}:", *read()]
        except Exception as exc:
            lines.append(f"{what} unreadable: {exc!r}"[:300])
    return "\n".join(lines)


def valkey_server_pid(node: Node, pod: str) -> int:
    """The host PID of `pod`'s valkey-server."""
    return pod_process(node, pod, NS, "valkey-server")


def pod_process(node: Node, pod: str, namespace: str, comm: str) -> int:
    """The host PID of the process named `comm` in `pod` (the node's containers are processes of this
    machine): the one whose network namespace holds the pod's IP (valkey-server's environment is
    overwritten by its process title, so the environment cannot tell)."""
    ip = get_json(node, "pod", pod, "-n", namespace)["status"]["podIP"]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != comm:
                continue
            local = (entry / "net" / "fib_trie").read_text()
        except OSError:
            continue
        if f"|-- {ip}\n" in local:
            return int(entry.name)
    raise AssertionError(f"no {comm} process for {pod} ({ip})")


def restarts(node: Node, pod: str) -> int:
    return restart_count(get_json(node, "pod", pod, "-n", NS))


def restart_count(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0)) for c in pod.get("status", {}).get("containerStatuses") or [])


def node_of(node: Node, pod: str) -> str:
    return str(get_json(node, "pod", pod, "-n", NS)["spec"]["nodeName"])


@contextmanager
def network_cut(node: Node, pod: str) -> Iterator[None]:
    """Drop every packet in and out of the pod's eth0, inside its network namespace (loopback stays, so the
    kubelet's exec probes still pass: to Kubernetes the pod looks fine, to everyone else it is gone)."""
    pid = valkey_server_pid(node, pod)
    rules = [("INPUT", "-i"), ("OUTPUT", "-o")]
    for chain, way in rules:
        subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", "-I", chain, "1", way, "eth0", "-j", "DROP"],
                       check=True, timeout=30)  # fmt: skip
    try:
        yield
    finally:
        for chain, way in rules:
            subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", "-D", chain, way, "eth0", "-j", "DROP"],
                           check=True, timeout=30)  # fmt: skip


def delete_primary_and_a_replica(node: Node) -> Callable[[StatusWatch], None]:
    """Two pods deleted at once: the primary and a replica."""

    def fault(watch: StatusWatch) -> None:
        top = head(node)["metadata"]["name"]
        replica = next(p["metadata"]["name"] for p in pods(node) if p["metadata"]["name"] != top)
        kubectl(node, "delete", "pod", top, replica, "-n", NS, "--wait=false")

    return fault


def operator_down_then_primary_deleted(node: Node, timing: dict[str, float]) -> Callable[[StatusWatch], None]:
    """The operator scaled to zero, the primary deleted and back (waiting: it was the recorded primary),
    then the operator started again; `timing` gets how long it took to be ready and to recover."""

    def fault(watch: StatusWatch) -> None:
        deployment = get_json(node, "deployments", "-n", OPERATOR_NS)["items"][0]["metadata"]["name"]
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
        wait_for(lambda: settled(node, creds=watch.creds), "the failover once the operator is back", 300)
        timing["recovered_s"] = time.monotonic() - timing["operator_started"]

    return fault
