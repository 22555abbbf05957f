"""Six real cluster-enabled valkey-servers, lone as new pods are, formed into three shards by the operator's
own code: `sharding.form` over what the nodes report (CLUSTER MYID, INFO, NODES over TLS, names
verified), carried out by `reconcile.act` through ValkeyAdmin (MEET by address, ADDSLOTSRANGE, REPLICATE).
Then a cluster client that verifies host names (valkey-py's ValkeyCluster, a client certificate) writes
and reads keys over every slot: the nodes hand out their pod names, which the certificate covers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, example, free_port, run_with_hosts

pytestmark = pytest.mark.acceptance

# Operator passes in a child process that resolves pod names as a pod would. Only the Kubernetes side is
# stood in for (the pods' objects, as a Snapshot): no Kubernetes API runs here.
CHILD = """
import sys, time
from pathlib import Path
from valkey_operator import sharding
from valkey_operator.api.spec import parse_cluster
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.reconcile import act
from valkey_operator.snapshot import PodReport, Snapshot, pods
from valkey_operator.valkey_admin import Credentials, PodError, ValkeyAdmin

tls, port, bus, password = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port, bus_port=bus))
cluster = parse_cluster({"metadata": {"name": "cache", "namespace": "default"},
                         "spec": {"mode": "cluster", "shards": 3, "replicasPerShard": 1}})
names = cluster.names
objects = {("Pod", p): {"metadata": {"name": p, "uid": p},
                        "status": {"phase": "Running", "podIP": f"127.0.0.{i + 2}",
                                   "conditions": [{"type": "Ready", "status": "True"}]}}
           for i, p in enumerate(names.pods(6))}
views = pods(Snapshot(objects))
for attempt in range(120):  # bounded: 60 s
    reports = {}
    for p in names.pods(6):
        try:
            reports[p] = admin.cluster_view(names.pod_fqdn(p), creds)
        except PodError as exc:
            print("no answer", p, exc)
    step = sharding.form(cluster, views, reports)
    print("pass", [str(a) for a in step.actions], step.waiting)
    if not step.actions and not step.waiting:
        print("formed")
        break
    assert act(None, admin, cluster, creds, step.actions) == []
    time.sleep(0.5)
"""

CLIENT = """
import sys
from valkey.cluster import ValkeyCluster
tls, host, port, password = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = ValkeyCluster(host=host, port=port, password=password, ssl=True, ssl_ca_certs=f"{tls}/ca.crt",
                  ssl_certfile=f"{tls}/connection.crt", ssl_keyfile=f"{tls}/connection.key",
                  ssl_check_hostname=True)
for i in range(2000):
    c.set(f"key:{i}", i)
print("read", sum(int(c.get(f"key:{i}")) == i for i in range(2000)))
print("hosts", sorted({n.host for n in c.get_nodes()}))
"""


def test_six_lone_nodes_are_formed_into_three_shards_that_serve_every_slot(launch: Any, tmp_path: Path) -> None:
    cluster = example(mode="cluster", shards=3, replicasPerShard=1)
    n = cluster.names
    port, bus = free_port("127.0.0.2"), free_port("127.0.0.2")
    hosts = {n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 2}" for i in range(6)}
    first = launch(cluster, host="127.0.0.2", port=port, bus_port=bus, pod="cache-0", hosts=hosts)
    nodes = [first] + [
        launch(cluster, host=f"127.0.0.{i + 2}", port=port, bus_port=bus, pod=f"cache-{i}", material=first.material,
               hosts=hosts)
        for i in range(1, 6)
    ]  # fmt: skip
    for inst in nodes:
        assert "cluster_state:fail" in inst.cli("CLUSTER", "INFO").stdout  # lone: no slots, no peers
    first.client_files()
    out = run_with_hosts(tmp_path, hosts, CHILD, first.layout.tls_dir, str(port), str(bus), PASSWORD)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "formed" in out.stdout, out.stdout
    for inst in nodes:
        info = inst.cli("CLUSTER", "INFO").stdout
        assert "cluster_state:ok" in info, info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
    shards = first.cli("CLUSTER", "SHARDS").stdout
    assert shards.count("role\nmaster") == 3, shards
    assert shards.count("role\nreplica") == 3, shards
    client = run_with_hosts(tmp_path, hosts, CLIENT, first.layout.tls_dir, n.pod_fqdn("cache-0"), str(port), PASSWORD)
    assert client.returncode == 0, client.stdout + client.stderr
    assert "read 2000" in client.stdout, client.stdout
    # The client learned the nodes by their pod names (cluster-announce-hostname), and verified each.
    assert all(n.pod_fqdn(f"cache-{i}") in client.stdout for i in range(3)), client.stdout
