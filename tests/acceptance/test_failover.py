"""Failover on three real valkey-servers, decided by the operator's own code from what they report.

The primary's server is killed and restarted empty (what an OOM kill does to a pod without persistence). It
boots, as every pod does, as a replica: its peers keep their data instead of re-syncing an empty dataset.
The primary frozen (SIGSTOP: to everyone else, a network cut): the operator cannot reach it and its replicas
stop hearing it; once `failover.after` has passed, a replica is promoted, and when the old primary comes
back it is fenced (made a replica of the new one).
The operator's decision (`failover.roles` over the servers' real `INFO replication`, carried out by
`reconcile.act` through ValkeyAdmin over TLS) promotes the most advanced replica and repoints the others;
every acknowledged write is read back from the new primary and from the old one, now its replica.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, Instance, Trio, run_with_hosts, wait_for_info

pytestmark = pytest.mark.acceptance

# Operator passes in a child process that resolves pod names as a pod would. Only the Kubernetes side is
# stood in for (the pods' objects and the ConfigMap, as a Snapshot): no Kubernetes API runs here.
CHILD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from valkey_operator import failover
from valkey_operator.api.spec import parse_cluster
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.reconcile import act
from valkey_operator.snapshot import PodReport, Snapshot, pods
from valkey_operator.valkey_admin import Credentials, PodError, ValkeyAdmin

tls, port, password, recorded = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
history = sys.argv[5] if len(sys.argv) > 5 else None  # the primary's replication ID, as status keeps it
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port))
cluster = parse_cluster({"metadata": {"name": "cache", "namespace": "default"}, "spec": {}})
names = cluster.names
pod_objects = {("Pod", p): {"metadata": {"name": p, "uid": p},
                            "status": {"phase": "Running", "podIP": "10.0.0.1",
                                       "conditions": [{"type": "Ready", "status": "True"}]}}
               for p in names.pods(3)}
status = {"primary": recorded, "replicationId": history}

def one_pass():
    global status
    config = {("ConfigMap", names.config_map): {"data": {"primary": status.get("primary") or "cache-0"}}}
    reports = {}
    for p in names.pods(3):
        try:
            reports[p] = PodReport(admin.replication(names.pod_fqdn(p), creds))
        except PodError:
            pass
    snap = Snapshot({**pod_objects, **config}, None, reports, status)
    roles = failover.roles(cluster, snap, pods(snap), datetime.now(UTC))
    for event in roles.events:
        print("event", event.reason, event.message)
    assert act(None, admin, cluster, creds, roles.actions) == []
    status = {"primary": roles.primary, "failover": roles.failover_status,
              "replicationId": failover.history(snap, roles.primary)}
    return roles

for attempt in range(40):  # bounded: 20 s
    roles = one_pass()
    print("pass", [str(a) for a in roles.actions], roles.primary, roles.failover_status)
    if roles.primary and not roles.actions and not roles.failover_status:
        print("primary", roles.primary, "history", status["replicationId"])
        break
    time.sleep(0.5)
"""


def field(info: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(f"{name}:"))


def dbsize(inst: Instance) -> int:
    return int(inst.cli("DBSIZE").stdout.strip())


def write_to_all(primary: Instance, count: int) -> None:
    """`count` keys, acknowledged by both replicas (WAIT, on the writes' own connection)."""
    writes = primary.cli(stdin="".join(f"SET k{i} {i}\n" for i in range(count)) + "WAIT 2 5000\n")
    assert writes.stdout.split() == ["OK"] * count + ["2"]


def sizes(insts: Sequence[Instance], want: int) -> list[int]:
    """Each instance's DBSIZE once all reach `want` (bounded: 10 s), or as they are then."""
    for _ in range(50):
        if all(dbsize(i) == want for i in insts):
            break
        time.sleep(0.2)
    return [dbsize(i) for i in insts]


def test_a_primary_restarted_empty_is_replaced_by_the_most_advanced_replica_and_nothing_is_lost(
    trio: Trio, launch: Any, tmp_path: Path
) -> None:
    cluster, port, hosts, primary, replicas = trio.cluster, trio.port, trio.hosts, trio.primary, trio.replicas
    n = cluster.names
    # Acknowledged by both replicas (WAIT, on the writes' own connection), then the primary dies and
    # comes back empty.
    write_to_all(primary, 300)
    # One replication history: the replicas report their primary's replication ID as theirs.
    history = field(primary.cli("INFO", "replication").stdout, "master_replid")
    assert [field(r.cli("INFO", "replication").stdout, "master_replid") for r in replicas] == [history, history]
    primary.proc.kill()
    primary.proc.wait(10)
    restarted = launch(
        cluster, host="127.0.0.2", port=port, pod="cache-0", material=primary.material, hosts=hosts, promote=False
    )
    info = wait_for_info(restarted, "role:slave")
    assert "master_host:127.0.0.1\nmaster_port:1\n" in info  # waits for the operator: it serves no sync
    assert dbsize(restarted) == 0
    time.sleep(2)  # the replicas retry their link meanwhile: they must keep every key
    assert [dbsize(r) for r in replicas] == [300, 300]

    primary.client_files()
    out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, str(port), PASSWORD, "cache-0", history)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "event FailedOver Promoted cache-1" in out.stdout, out.stdout
    # The promoted replica starts a history of its own; status follows it.
    promoted = field(replicas[0].cli("INFO", "replication").stdout, "master_replid")
    assert promoted != history
    assert f"primary cache-1 history {promoted}" in out.stdout, out.stdout
    new_primary, third = replicas
    assert "role:master" in new_primary.cli("INFO", "replication").stdout
    assert new_primary.cli("SET", "after", "failover").stdout.strip() == "OK"
    for inst in (third, restarted):
        info = wait_for_info(inst, "master_link_status:up")
        assert f"master_host:{n.pod_fqdn('cache-1')}" in info
    assert sizes((new_primary, third, restarted), 301) == [301, 301, 301]
    assert [new_primary.cli("GET", f"k{i}").stdout.strip() for i in (0, 150, 299)] == ["0", "150", "299"]


def test_a_primary_cut_off_is_replaced_and_fenced_when_it_returns(trio: Trio, tmp_path: Path) -> None:
    port, hosts, primary, replicas = trio.port, trio.hosts, trio.primary, trio.replicas
    n = trio.cluster.names
    write_to_all(primary, 300)
    primary.proc.send_signal(signal.SIGSTOP)  # no answer to anyone, no RST: what a network cut looks like
    try:
        # The replicas' links stay up on paper (repl-timeout is 60 s); only their silence tells.
        assert "master_link_status:up" in replicas[0].cli("INFO", "replication").stdout
        primary.client_files()
        out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, str(port), PASSWORD, "cache-0")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "event FailedOver Promoted cache-1" in out.stdout, out.stdout
        assert "primary cache-1" in out.stdout, out.stdout
        new_primary, third = replicas
        assert new_primary.cli("SET", "after", "cut").stdout.strip() == "OK"
        assert f"master_host:{n.pod_fqdn('cache-1')}" in wait_for_info(third, "master_link_status:up")
    finally:
        primary.proc.send_signal(signal.SIGCONT)
    # The old primary is back and still says master: two primaries. The recorded one (cache-1) keeps the role.
    assert "role:master" in wait_for_info(primary, "role:master")
    out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, str(port), PASSWORD, "cache-1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "event SplitBrain" in out.stdout, out.stdout
    assert "primary cache-1" in out.stdout, out.stdout
    assert f"master_host:{n.pod_fqdn('cache-1')}" in wait_for_info(primary, "master_link_status:up")
    assert sizes((new_primary, third, primary), 301) == [301, 301, 301]
