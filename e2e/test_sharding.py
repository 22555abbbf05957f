"""A sharded cluster on the real nodes: `mode: cluster` with 3 shards of a primary and a replica, formed by
the operator in its pod (the nodes meet by pod IP, slots are split over the primaries, replicas follow),
Ready only once every node says cluster_state:ok, and then a cluster client in a pod that verifies host
names (valkey-py's ValkeyCluster, the connection Secret's client certificate) writes and reads keys over
every slot, redirected between shards by the pods' stable names.

Then a cluster writer (the same client, 50 acknowledged SETs a second over every slot) through a
RollingRestart rotation, a HotReload rotation, a shard primary's pod deleted, a replica's pod deleted and
a shard primary's server killed (a container restart that loses the data kept in memory): every
acknowledged key is read back from its shard's primary, and after each step every node says
cluster_state:ok, serves the current certificate, and status says Ready only when the nodes are.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import (
    NAME,
    NS,
    ROOT,
    SERVICE_DNS,
    Creds,
    cluster_events,
    condition,
    finish_pod,
    is_ready,
    kubectl,
    plain,
    pod_fqdn,
    pods,
    read_creds,
    run_pod,
    secret,
    served_fingerprint,
    start_client_pod,
    vkc,
    wait_for,
    writer_script,
)
from e2e.faults import RESUME_WITHIN_MS, STATUS_LAG_S, diagnosis, restart_count, valkey_server_pid
from e2e.node import Node
from valkey_operator import names

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


def apply_sharded(node: Node, image: str, writer: tuple[str, str] | None = None, **tls: Any) -> dict[str, Any]:
    """The shipped example in cluster mode (3 shards, a replica each: six pods) with a local image and `tls`
    settings; the resource once Ready. With `writer` (its tag and image), a cluster writer starts as soon as
    the connection Secret exists and writes through formation (`formation_under_writer` stops it), while
    status is sampled against what the pods do."""
    body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    body["spec"]["image"], body["spec"]["imagePullPolicy"] = image, "Never"
    body["spec"].pop("replicas", None)
    body["spec"].update(mode="cluster", shards=3, replicasPerShard=1)
    body["spec"]["tls"].update(tls)
    started = time.monotonic()
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    watch = None
    if writer is not None:
        wait_for(lambda: kubectl(node, "get", "secret", f"{NAME}-connection", "-n", NS, check=False),
                 "the connection Secret", 120)  # fmt: skip
        start_client_pod(
            node, f"cw-{writer[0]}", writer[1], ["python", "-c", writer_script(writer[0], 900, cluster=True)]
        )
        watch = Watch(node, read_creds(node, Path(tempfile.mkdtemp(prefix="formation-"))))
    try:
        ready = wait_for(lambda: vkc(node).get("status", {}).get("phase") == "Ready" and vkc(node), "Ready", 400)
        took = time.monotonic() - started
    finally:
        if watch is not None:
            FORMATION.update(watch.finish())
    FORMATION["ready_s"] = round(took, 1)
    FORMATION["ready_at"] = started + took
    print(f"\nsharded cluster ({image}) Ready {took:.1f} s after it was applied")
    return dict(ready)


FORMATION: dict[str, Any] = {}  # what apply_sharded measured of the formation: status samples, time to Ready


@pytest.fixture(scope="module")
def example(node: Node, installed: None, valkey_image: str, operator_image: str) -> dict[str, Any]:
    return apply_sharded(node, valkey_image, writer=("formation-8", operator_image))


def formed_as_asked(node: Node, creds: Creds, release: str) -> None:
    """The cluster the operator formed, as its nodes and its status say: six pods on `release`, each node
    cluster_state:ok over 16384 slots and 6 known nodes, three primaries with a replica each, status.shards
    and clusterState as the nodes report, ClusterFormed and SlotsAssigned True, the connection Secret marked
    as a cluster's, no failed pass, and every host name the nodes hand out a pod's stable name that
    verifies against ca.crt (every_node_is_current)."""
    live = pods(node)
    assert len(live) == 6
    for p in live:
        ip, fqdn = p["status"]["podIP"], pod_fqdn(p["metadata"]["name"])
        info = creds.cli(ip, fqdn, "CLUSTER", "INFO")
        assert "cluster_state:ok" in info, info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
        assert f"valkey_version:{release}" in creds.cli(ip, fqdn, "INFO", "server"), p["metadata"]["name"]
    top = live[0]
    shards = creds.cli(top["status"]["podIP"], pod_fqdn(top["metadata"]["name"]), "CLUSTER", "SHARDS")
    assert shards.count("role\nmaster") == 3, shards
    assert shards.count("role\nreplica") == 3, shards
    events = cluster_events(node)
    assert "ReconcileError" not in events, events
    # Status says what the nodes report: three shards, each a primary with one replica, every slot.
    body = vkc(node)
    status = body["status"]
    assert status["clusterState"] == "ok"
    assert [(s["primary"], len(s["replicas"])) for s in status["shards"]] == [(f"{NAME}-{i}", 1) for i in range(3)], (
        status["shards"]
    )
    assert ",".join(s["slots"] for s in status["shards"]) == "0-5461,5462-10922,10923-16383"
    assert secret(node, f"{NAME}-connection")["cluster"] == b"true"
    assert (condition(body, "ClusterFormed")["status"], condition(body, "SlotsAssigned")["status"]) == ("True", "True")
    assert (condition(body, "Ready")["status"], status["phase"]) == ("True", "Ready")
    every_node_is_current(node, creds)


def formation_under_writer(node: Node, creds: Creds, tag: str) -> dict[str, Any]:
    """Stop the writer apply_sharded started before the cluster formed; its figures. It could write only
    once the cluster served (its failed attempts are the formation), and loses nothing after that."""
    # At least 10 s of writing on the formed cluster before the stop (it was stopped 2 s after Ready once,
    # with 100 writes, which said nothing of the formation).
    time.sleep(max(0.0, FORMATION["ready_at"] + 10 - time.monotonic()))
    report = stop_cluster_writer(node, creds, tag)
    report.update(
        {k: v for k, v in FORMATION.items() if k not in ("timeline", "ready_at")}, step_s=FORMATION["ready_s"]
    )
    report["timeline"] = FORMATION.get("timeline", [])
    record(tag, report)
    assert report["acked"] > 100, report
    assert report["missing_count"] == 0, report
    assert report["false_ready_s"] <= STATUS_LAG_S, report
    return report


def test_the_operator_forms_the_cluster_and_says_ready_only_then(node: Node, creds: Creds) -> None:
    formed_as_asked(node, creds, "8.1.")
    formation_under_writer(node, creds, "formation-8")


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


# --- a cluster writer through rotations and pod loss ---------------------------------------------------------
REPORT = ROOT / ".e2e-sharding-report.json"


def desired(body: dict[str, Any]) -> int:
    spec = body["spec"]
    return int(spec["shards"]) * (1 + int(spec["replicasPerShard"]))


def cluster_ok(creds: Creds, pod: dict[str, Any]) -> bool:
    try:
        info = creds.cli(pod["status"]["podIP"], pod_fqdn(pod["metadata"]["name"]), "CLUSTER", "INFO", timeout=3)
    except subprocess.TimeoutExpired:
        return False
    return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info


def serving(node: Node, creds: Creds) -> bool:
    """What the pods do: every desired pod live and ready, each saying cluster_state:ok with every slot."""
    live = [p for p in pods(node) if not p["metadata"].get("deletionTimestamp")]
    want = desired(vkc(node))
    return len(live) == want and all(is_ready(p) for p in live) and all(cluster_ok(creds, p) for p in live)


class Watch:
    """Samples, about once a second, whether status says Ready while the pods do not serve (or the reverse)."""

    def __init__(self, node: Node, creds: Creds) -> None:
        self.node, self.creds = node, creds
        self.samples: list[tuple[float, bool, bool]] = []
        self.timeline: list[str] = []  # what status said and what the pods did, at each change
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                ready = condition(vkc(self.node), "Ready")
                says, does, t = ready.get("status") == "True", serving(self.node, self.creds), time.monotonic()
                self.samples.append((t - self.started, says, does))
                line = f"Ready={ready.get('status')}/{ready.get('reason')}, pods serve: {does}"
                if not self.timeline or not self.timeline[-1].endswith(line):
                    self.timeline.append(f"{t - self.started:6.1f}s {line}")
            except Exception as exc:  # a pod or the API server between states: sample again
                print(f"sample skipped: {exc!r:.80}")
            self.stop.wait(1.0)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(30)
        return {"false_ready_s": self._longest(lambda says, does: says and not does),
                "late_ready_s": self._longest(lambda says, does: does and not says),
                "timeline": self.timeline}  # fmt: skip

    def _longest(self, bad: Callable[[bool, bool], bool]) -> float:
        longest, since = 0.0, None
        for t, says, does in self.samples:
            if bad(says, does):
                since = t if since is None else since
                longest = max(longest, t - since + 1.0)
            else:
                since = None
        return round(longest, 1)


def cluster_settled(node: Node, creds: Creds) -> bool:
    """Status says Ready and every shard serves (faults.settled is the same question of a primary with replicas)."""
    body = vkc(node)
    return body.get("status", {}).get("phase") == "Ready" and serving(node, creds)


def shard_primaries(node: Node) -> list[str]:
    return [s["primary"] for s in vkc(node)["status"]["shards"]]


def shard_replicas(node: Node) -> list[str]:
    return [r for s in vkc(node)["status"]["shards"] for r in s["replicas"]]


def under_cluster_writer(
    node: Node, creds: Creds, image: str, tag: str, step: Callable[[], None], done: Callable[[], bool]
) -> dict[str, Any]:
    """A cluster writer through `step`, until `done` and the cluster serves and says Ready again; its figures."""
    start_client_pod(node, f"cw-{tag}", image, ["python", "-c", writer_script(tag, 900, cluster=True)])
    wait_for(lambda: "first write acknowledged" in kubectl(node, "logs", f"cw-{tag}", "-n", NS, check=False),
             f"the cluster writer {tag}", 120)  # fmt: skip
    time.sleep(3)
    watch = Watch(node, creds)
    started = time.monotonic()
    try:
        try:
            step()
            wait_for(lambda: done() and cluster_settled(node, creds), f"Ready again after {tag}", 600, every=2)
            took = time.monotonic() - started
            time.sleep(3)
        finally:
            sampled = watch.finish()
        report = stop_cluster_writer(node, creds, tag)
    except Exception:
        print(diagnosis(node, tag, lambda: watch.timeline, f"cw-{tag}"))
        raise
    report.update(sampled, step_s=round(took, 1))
    record(tag, report)
    assert report["acked"] > 100, report
    assert report["missing_count"] == 0, report
    assert sampled["false_ready_s"] <= STATUS_LAG_S, report
    every_node_is_current(node, creds)
    return dict(report)


def stop_cluster_writer(node: Node, creds: Creds, tag: str) -> dict[str, Any]:
    """Ask the writer `tag` to stop (its stop key, on the shard primary that owns it); its figures."""
    owner = owner_of(node, creds, f"{tag}:stop")
    assert "OK" in creds.cli(owner["status"]["podIP"], pod_fqdn(owner["metadata"]["name"]), "SET", f"{tag}:stop", "1")
    return dict(json.loads(finish_pod(node, f"cw-{tag}", 240).splitlines()[-1]))


def record(tag: str, report: dict[str, Any]) -> None:
    """Print a step's figures and keep them in the module's report file."""
    print(f"\n{tag}: {json.dumps({k: v for k, v in report.items() if k != 'timeline'})}")
    print("\n".join(report["timeline"]))
    figures = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    figures[tag] = report
    REPORT.write_text(json.dumps(figures, indent=2))


def owner_of(node: Node, creds: Creds, key: str) -> dict[str, Any]:
    """The pod that serves `key`'s slot, by status.shards (the host cannot follow a MOVED to a pod name)."""
    live = pods(node)
    first = live[0]
    slot = int(creds.cli(first["status"]["podIP"], pod_fqdn(first["metadata"]["name"]), "CLUSTER", "KEYSLOT", key))
    for shard in vkc(node)["status"]["shards"]:
        for part in shard["slots"].split(","):
            a, _, b = part.partition("-")
            if int(a) <= slot <= int(b or a):
                return next(p for p in live if p["metadata"]["name"] == shard["primary"])
    raise AssertionError(f"no shard serves slot {slot}")


def every_node_is_current(node: Node, creds: Creds) -> None:
    """Every node says cluster_state:ok over all slots, knows every desired node, and serves the certificate status
    names (a live handshake that verifies the pod's name); the host names the nodes hand out are the pods'
    stable names."""
    body = vkc(node)
    count = desired(body)
    want = plain(body["status"]["certificates"]["server"]["fingerprintSHA256"])
    for p in pods(node):
        ip, fqdn = p["status"]["podIP"], pod_fqdn(p["metadata"]["name"])
        info = creds.cli(ip, fqdn, "CLUSTER", "INFO")
        assert "cluster_state:ok" in info, (p["metadata"]["name"], info)
        assert f"cluster_known_nodes:{count}" in info, (p["metadata"]["name"], info)
        assert served_fingerprint(creds, ip, fqdn) == want, p["metadata"]["name"]
        hostnames = {line.strip() for line in creds.cli(ip, fqdn, "CLUSTER", "SHARDS").split("hostname\n")[1:]}
        assert all(h.split()[0] in {pod_fqdn(f"{NAME}-{i}") for i in range(count)} for h in hostnames), hostnames
    assert body["status"]["clusterState"] == "ok"
    assert sum(1 + len(s["replicas"]) for s in body["status"]["shards"]) == count


def uids(node: Node) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}


def rotation(node: Node) -> tuple[Callable[[], None], Callable[[], bool]]:
    serial = vkc(node)["status"]["certificates"]["server"]["serial"]
    stamp = str(time.time())

    def start() -> None:
        kubectl(node, "annotate", "--overwrite", "valkeycluster", NAME, "-n", NS,
                f"{names.ANN_ROTATE_CERTIFICATES}={stamp}")  # fmt: skip

    def done() -> bool:
        return bool(vkc(node)["status"]["certificates"]["server"]["serial"] != serial)

    return start, done


def test_a_rolling_restart_hands_each_shard_over_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str
) -> None:
    before = uids(node)
    start, rotated = rotation(node)
    report = under_cluster_writer(
        node, creds, operator_image, "rolling-restart", start,
        lambda: rotated() and all(uids(node).get(p) not in (None, u) for p, u in before.items()),
    )  # fmt: skip
    events = cluster_events(node)
    assert events.count("Switchover") >= 1, events  # shard primaries were handed over, not just deleted
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report


def test_a_hot_reload_rotation_restarts_nothing_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str
) -> None:
    patch = {"spec": {"tls": {"rotation": {"strategy": "HotReload"}}}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: cluster_settled(node, creds) and vkc(node)["status"].get("observedGeneration")
             == vkc(node)["metadata"]["generation"], "Ready under HotReload", 600, every=2)  # fmt: skip
    before = uids(node)
    start, rotated = rotation(node)
    report = under_cluster_writer(node, creds, operator_image, "hot-reload", start, rotated)
    assert uids(node) == before  # no pod was replaced
    assert report["failures"] == 0, report


def deleted_under_writer(node: Node, creds: Creds, image: str, tag: str, victim: str) -> dict[str, Any]:
    """`kubectl delete pod victim` (graceful) under a cluster writer, until its replacement serves."""
    uid = uids(node)[victim]

    def step() -> None:
        kubectl(node, "delete", "pod", victim, "-n", NS, "--wait=false")

    return under_cluster_writer(node, creds, image, tag, step, lambda: uids(node).get(victim) not in (None, uid))


def primary_deleted(node: Node, creds: Creds, image: str, tag: str) -> None:
    """A shard primary's pod deleted under the writer: its replica serves the shard, it comes back as a
    replica, and writes resume within the bound."""
    victim = shard_primaries(node)[1]
    report = deleted_under_writer(node, creds, image, tag, victim)
    assert victim not in shard_primaries(node)  # its replica serves the shard; it came back as a replica
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report


def replica_deleted(node: Node, creds: Creds, image: str, tag: str) -> None:
    """A replica's pod deleted under the writer: it rejoins its shard; writes never pause past the bound."""
    report = deleted_under_writer(node, creds, image, tag, shard_replicas(node)[0])
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report


def test_a_shard_primary_deleted_hands_its_slots_over_first(node: Node, creds: Creds, operator_image: str) -> None:
    primary_deleted(node, creds, operator_image, "primary-deleted")


def test_a_replica_deleted_rejoins_its_shard(node: Node, creds: Creds, operator_image: str) -> None:
    replica_deleted(node, creds, operator_image, "replica-deleted")


def test_a_shard_primary_killed_is_never_an_empty_primary(node: Node, creds: Creds, operator_image: str) -> None:
    """SIGKILL to a shard primary's valkey-server: the container restarts in the same pod (same address,
    nodes.conf kept, data gone). Its replica takes the slots over; the restarted server waits for that and
    joins as a new, empty replica. Writes to that shard resume within 10 s; nothing acknowledged is lost."""
    victim = shard_primaries(node)[2]

    def step() -> None:
        pid = valkey_server_pid(node, victim)
        subprocess.run(["kill", "-9", str(pid)], check=True)

    def restarted() -> bool:
        pod = next((p for p in pods(node) if p["metadata"]["name"] == victim), None)
        return pod is not None and restart_count(pod) >= 1 and victim not in shard_primaries(node)

    report = under_cluster_writer(node, creds, operator_image, "primary-killed", step, restarted)
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report


def test_replicas_per_shard_up_and_down_hands_a_leaving_primary_over(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """replicasPerShard 1 -> 2: three new pods join, one per shard, as replicas. Then cache-6 is made shard
    0's primary by hand (CLUSTER FAILOVER on it), and replicasPerShard 2 -> 1 removes cache-6..8: the
    operator first hands shard 0 back to a replica that stays, then lets the StatefulSet shrink, and
    forgets the removed nodes everywhere. Nothing acknowledged is lost."""

    def scale(n: int) -> Callable[[], None]:
        def step() -> None:
            patch = {"spec": {"replicasPerShard": n}}
            kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))

        return step

    up = under_cluster_writer(node, creds, operator_image, "replicas-up", scale(2), lambda: len(pods(node)) == 9)
    assert [len(s["replicas"]) for s in vkc(node)["status"]["shards"]] == [2, 2, 2]
    six = next(p for p in pods(node) if p["metadata"]["name"] == f"{NAME}-6")
    assert "OK" in creds.cli(six["status"]["podIP"], pod_fqdn(f"{NAME}-6"), "CLUSTER", "FAILOVER")
    wait_for(lambda: f"{NAME}-6" in shard_primaries(node), "cache-6 to serve shard 0", 60)
    down = under_cluster_writer(node, creds, operator_image, "replicas-down", scale(1), lambda: len(pods(node)) == 6)
    assert all(int(p.rsplit("-", 1)[1]) < 6 for p in shard_primaries(node))
    assert [len(s["replicas"]) for s in vkc(node)["status"]["shards"]] == [1, 1, 1]
    assert up["failures"] == 0, up
    assert down["longest_pause_ms"] < RESUME_WITHIN_MS, down
