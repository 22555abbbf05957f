"""Six real cluster-enabled valkey-servers, lone as new pods are, formed into three shards by the operator's
own code: `sharding.form` over what the nodes report (CLUSTER MYID, INFO, NODES over TLS, names
verified), carried out by `reconcile.act` through ValkeyAdmin (MEET by address, ADDSLOTSRANGE, REPLICATE).
Then a cluster client that verifies host names (valkey-py's ValkeyCluster, a client certificate) writes
and reads keys over every slot: the nodes hand out their pod names, which the certificate covers.

Healing, on the same real servers: a shard primary whose server is killed and restarted in place (a
container restart: nodes.conf survives, the data kept in memory does not) and a replica that comes back
as a new, empty node; every acknowledged key is read back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import (
    PASSWORD,
    Instance,
    example,
    free_port,
    probe,
    run_with_hosts,
    start_instance,
    write_material,
)
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import SystemClock
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.plan import Observed, SecretData, plan

pytestmark = pytest.mark.acceptance

# Operator passes in a child process that resolves pod names as a pod would. Only the Kubernetes side is
# stood in for (the pods' objects, as a Snapshot): no Kubernetes API runs here.
CHILD = """
import json, os, sys, time
from pathlib import Path
from valkey_operator import sharding
from valkey_operator.api.spec import parse_cluster
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.reconcile import act
from valkey_operator.snapshot import PodReport, Snapshot, pods
from valkey_operator.valkey_admin import Credentials, PodError, ValkeyAdmin

tls, port, bus, password = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
budget = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
shards, count = (int(sys.argv[6]), int(sys.argv[7])) if len(sys.argv) > 7 else (3, 6)  # asked for; pods that run
image = {"image": sys.argv[8]} if len(sys.argv) > 8 else {}
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port, bus_port=bus))
cluster = parse_cluster({"metadata": {"name": "cache", "namespace": "default"},
                         "spec": {"mode": "cluster", "shards": shards, "replicasPerShard": 1, **image}})
names = cluster.names
base = int(os.environ.get("POD_IP_BASE", "2"))  # pod i at 127.0.0.(base + i)
objects = {("Pod", p): {"metadata": {"name": p, "uid": p},
                        "status": {"phase": "Running", "podIP": f"127.0.0.{i + base}",
                                   "conditions": [{"type": "Ready", "status": "True"}]}}
           for i, p in enumerate(names.pods(count))}
views = pods(Snapshot(objects))
deadline = time.monotonic() + budget  # bounded
while time.monotonic() < deadline:
    reports = {}
    for p in names.pods(count):
        try:
            reports[p] = admin.cluster_view(names.pod_fqdn(p), creds)
        except PodError as exc:
            print("no answer", p, exc)
    step = sharding.form(cluster, views, reports)
    print("pass", [str(a) for a in step.actions], step.waiting, flush=True)
    if not step.actions and not step.waiting:
        print("formed")
        break
    assert act(None, admin, cluster, creds, step.actions) == []
    time.sleep(0.5)
print("shards", json.dumps(sharding.primaries(views, reports)))
"""

CLIENT = """
import sys
from valkey.cluster import ValkeyCluster
tls, host, port, password = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = ValkeyCluster(host=host, port=port, password=password, ssl=True, ssl_ca_certs=f"{tls}/ca.crt",
                  ssl_certfile=f"{tls}/connection.crt", ssl_keyfile=f"{tls}/connection.key",
                  ssl_check_hostname=True)
keys = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
if sys.argv[6:] != ["read-only"]:
    for i in range(keys):
        c.set(f"key:{i}", i)
print("read", sum(c.get(f"key:{i}") == str(i).encode() for i in range(keys)))
print("hosts", sorted({n.host for n in c.get_nodes()}))
"""


@dataclass
class Six:
    """Six lone cluster nodes on 127.0.0.2..7 (pods cache-0..5), all on the same ports."""

    cluster: ValkeyCluster
    nodes: list[Instance]
    hosts: dict[str, str]
    port: int
    bus: int

    def passes(self, tmp_path: Path, budget: float = 60.0) -> str:
        """Operator passes until the cluster is formed; their output."""
        tls = self.nodes[0].layout.tls_dir
        out = run_with_hosts(tmp_path, self.hosts, CHILD, tls, str(self.port), str(self.bus), PASSWORD, str(budget))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "formed" in out.stdout, out.stdout
        return out.stdout

    def client(self, tmp_path: Path, keys: int, *mode: str) -> str:
        host = self.cluster.names.pod_fqdn("cache-0")
        tls = self.nodes[0].layout.tls_dir
        out = run_with_hosts(tmp_path, self.hosts, CLIENT, tls, host, str(self.port), PASSWORD, str(keys), *mode)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def restart(self, i: int, *, keep_files: bool, host: str | None = None) -> Instance:
        """Kill node i's server at once and start it again in its folder: with its files (a container
        restart: nodes.conf survives) or without them (the pod was replaced: a new, empty node); at `host`
        if given (a pod back with a new IP: `hosts` must name it there already)."""
        old = self.nodes[i]
        if old.proc.poll() is None:
            old.proc.kill()
            old.proc.wait(10)
        workdir = Path(old.layout.config_dir).parent
        if not keep_files:
            for f in Path(old.layout.data_dir).iterdir():
                f.unlink()
        self.nodes[i] = start_instance(
            self.cluster, workdir, host=host or old.host, port=self.port, bus_port=self.bus, pod=f"cache-{i}",
            material=old.material, hosts=self.hosts,
        )  # fmt: skip
        return self.nodes[i]

    def cluster_ok(self) -> None:
        for inst in self.nodes:
            info = inst.cli("CLUSTER", "INFO").stdout
            assert "cluster_state:ok" in info, info
            assert "cluster_slots_assigned:16384" in info
            assert "cluster_known_nodes:6" in info, info


def caught_up(primary: Instance, replica: Instance) -> None:
    """Wait (bounded: 20 s) until `replica`'s link is up and it has everything `primary` has sent."""

    def offset(inst: Instance, key: str) -> int:
        info = inst.cli("INFO", "replication").stdout
        return next((int(line.split(":")[1]) for line in info.splitlines() if line.startswith(f"{key}:")), -1)

    for _ in range(100):
        up = "master_link_status:up" in replica.cli("INFO", "replication").stdout
        if up and offset(replica, "slave_repl_offset") >= offset(primary, "master_repl_offset") > 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the replica did not catch up:\n{replica.cli('INFO', 'replication').stdout}")


@pytest.fixture
def six(launch: Any, instances: list[Instance], request: pytest.FixtureRequest) -> Iterator[Six]:
    """Six lone nodes; a test marked `persistent` gets them with persistence on (an append-only file each)."""
    persistent = request.node.get_closest_marker("persistent") is not None
    more = {"persistence": {"enabled": True}} if persistent else {}
    cluster = example(mode="cluster", shards=3, replicasPerShard=1, **more)
    n = cluster.names
    port, bus = free_port("127.0.0.2"), free_port("127.0.0.2")
    hosts = {n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 2}" for i in range(6)}
    first = launch(cluster, host="127.0.0.2", port=port, bus_port=bus, pod="cache-0", hosts=hosts)
    nodes = [first] + [
        launch(cluster, host=f"127.0.0.{i + 2}", port=port, bus_port=bus, pod=f"cache-{i}", material=first.material,
               hosts=hosts)
        for i in range(1, 6)
    ]  # fmt: skip
    first.client_files()
    made = Six(cluster, nodes, hosts, port, bus)
    yield made
    for inst in made.nodes:  # restarted ones too
        inst.stop()


def test_six_lone_nodes_are_formed_into_three_shards_that_serve_every_slot(six: Six, tmp_path: Path) -> None:
    n = six.cluster.names
    first = six.nodes[0]
    for inst in six.nodes:
        assert "cluster_state:fail" in inst.cli("CLUSTER", "INFO").stdout  # lone: no slots, no peers
    # A lone node is a primary without slots: not ready (no client is sent to it, no rollout moves on).
    assert [probe(inst, "readiness") for inst in six.nodes] == [1] * 6
    six.passes(tmp_path)
    six.cluster_ok()
    # Formed; each replica is ready once its first sync is done (bounded: 10 s).
    for _ in range(20):
        if [probe(inst, "readiness") for inst in six.nodes] == [0] * 6:
            break
        time.sleep(0.5)
    assert [probe(inst, "readiness") for inst in six.nodes] == [0] * 6
    shards = first.cli("CLUSTER", "SHARDS").stdout
    assert shards.count("role\nmaster") == 3, shards
    assert shards.count("role\nreplica") == 3, shards
    client = six.client(tmp_path, 2000)
    assert "read 2000" in client, client
    # The client learned the nodes by their pod names (cluster-announce-hostname), and verified each.
    assert all(n.pod_fqdn(f"cache-{i}") in client for i in range(3)), client


def test_a_primary_restarted_without_its_data_never_serves_its_slots_empty(six: Six, tmp_path: Path) -> None:
    """cache-0 (shard 0's primary) is killed and restarted in place, as a container restart does: its
    nodes.conf survives, its data (memory only, persistence off) does not. The start script sets its old
    identity aside, so it comes back as a new, empty node instead of the owner of slots 0-5461 for cache-3
    to re-sync from; it asks cache-3 to take over at once, waits until it has, and the operator forgets
    the old id and makes the new node cache-3's replica. Every acknowledged key is still there."""
    six.passes(tmp_path)
    assert "read 3000" in six.client(tmp_path, 3000)
    # Replication is asynchronous: only what reached the replica can survive the primary's death (a busy
    # machine can leave cache-3 still in its first sync), so the keys are counted once it has them all.
    caught_up(six.nodes[0], six.nodes[3])
    old_id = six.nodes[0].cli("CLUSTER", "MYID").stdout.strip()
    # A dump in the data folder, as a replica's earlier full sync leaves one: stale once the node restarts.
    # (SAVE is refused while a replica's full sync still writes its own dump: tried again, bounded.)
    saved = ""
    for _ in range(60):
        saved = six.nodes[0].cli("SAVE").stdout
        if "OK" in saved:
            break
        time.sleep(0.5)
    assert "OK" in saved, saved
    back = six.restart(0, keep_files=True)
    assert back.cli("DBSIZE").stdout.strip() == "0"  # it did not load the stale dump
    # Its old self is dead for certain: it asked the replica to take over at once, not after the timeout.
    assert "(CLUSTER FAILOVER FORCE)" in back.log.read_text()
    assert back.cli("CLUSTER", "MYID").stdout.strip() != old_id
    assert Path(back.layout.data_dir, "nodes.conf.without-data").exists()
    out = six.passes(tmp_path, budget=90)
    assert f"cluster forget {old_id}" in out, out
    assert '"cache-3": ["cache-0"]' in out, out  # cache-3 serves shard 0; cache-0 follows it
    six.cluster_ok()
    assert "read 3000" in six.client(tmp_path, 3000, "read-only")


def test_a_replica_replaced_by_an_empty_node_rejoins_its_shard(six: Six, tmp_path: Path) -> None:
    """cache-4 (shard 1's replica) comes back as a new node without files (its pod was replaced): it is met,
    its old id forgotten on every node, and it follows shard 1's primary again."""
    six.passes(tmp_path)
    assert "read 1000" in six.client(tmp_path, 1000)
    old_id = six.nodes[4].cli("CLUSTER", "MYID").stdout.strip()
    six.restart(4, keep_files=False)
    out = six.passes(tmp_path)
    assert "cluster meet cache-0 -> 127.0.0.6" in out, out
    assert out.count(f"cluster forget {old_id}") == 5, out
    assert '"cache-1": ["cache-4"]' in out, out
    six.cluster_ok()
    assert "read 1000" in six.client(tmp_path, 1000, "read-only")


SERVED = """
import sys
from pathlib import Path
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

tls, port, bus, password, action = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
for fqdn, files in (arg.split("=") for arg in sys.argv[6:]):  # each node's files in a folder of its own
    admin = ValkeyAdmin(Layout(tls_dir=files, port=port, bus_port=bus))
    if action == "reload":
        admin.reload(fqdn, creds)
    print(fqdn, admin.served(fqdn, creds), admin.served(fqdn, creds, bus=True))
"""


def test_hot_reload_is_confirmed_on_the_cluster_bus_as_on_the_client_port(six: Six, tmp_path: Path) -> None:
    """HotReload in a formed cluster: a re-issued server certificate in every node's files, then the
    operator's own reload (CONFIG SET of the same paths) and its live handshakes on the client port and on
    the cluster bus port (which asks for a client certificate), both verifying the pod's name. Before the
    reload both listeners present the old certificate; after it both present the new one, and the nodes,
    whose bus links now handshake with the new certificate, stay ok."""
    six.passes(tmp_path)
    n = six.cluster.names
    fqdns = [n.pod_fqdn(f"cache-{i}") for i in range(6)]
    tls = six.nodes[0].layout.tls_dir
    args = (tls, str(six.port), str(six.bus), PASSWORD)

    def served(action: str) -> dict[str, tuple[str, str]]:
        nodes = [f"{fqdn}={inst.layout.tls_dir}" for fqdn, inst in zip(fqdns, six.nodes, strict=True)]
        out = run_with_hosts(tmp_path, six.hosts, SERVED, *args, action, *nodes)
        assert out.returncode == 0, out.stdout + out.stderr
        return {line.split()[0]: (line.split()[1], line.split()[2]) for line in out.stdout.splitlines()}

    old_fp = describe_pem(six.nodes[0].material.server.cert_pem).fingerprint_sha256
    assert set(served("check").values()) == {(old_fp, old_fp)}
    old = six.nodes[0].material
    assert old.ca is not None
    observed = Observed(ca=SecretData({"tls.crt": old.ca.cert_pem, "tls.key": old.ca.key_pem, "ca.crt": old.bundle}))
    new = plan(six.cluster, observed, SystemClock().now()).material
    assert new is not None
    new_fp = describe_pem(new.server.cert_pem).fingerprint_sha256
    assert new_fp != old_fp
    for inst in six.nodes:  # the kubelet's refresh of the Secret volume, by hand
        write_material(Path(inst.layout.tls_dir), new)
    six.nodes[0].client_files()  # the connection client's files, beside them
    assert set(served("check").values()) == {(old_fp, old_fp)}, "Valkey re-reads files only when told to"
    assert set(served("reload").values()) == {(new_fp, new_fp)}
    assert all(inst.proc.poll() is None for inst in six.nodes), "no restart"
    time.sleep(2)  # bus links re-established since have handshaked with the new certificate
    six.cluster_ok()


@pytest.mark.persistent
def test_every_node_back_at_a_new_address_is_met_again_by_its_id(
    six: Six, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Persistence on, and every pod of the cluster back at once with a new IP (`kubectl delete statefulset`,
    or a node outage): each keeps its nodes.conf and its data, so its id, slots and keys, but every node
    knows every other at an address nobody has any more, so no node reaches any other. The first pod meets
    each other node at its new address by the id it reports (CLUSTER MEET keeps a known id), gossip spreads
    the rest, and the cluster serves every key again with the same shards."""
    six.passes(tmp_path)
    assert "read 1000" in six.client(tmp_path, 1000)
    ids = [inst.cli("CLUSTER", "MYID").stdout.strip() for inst in six.nodes]
    shards_before = sorted(line.split()[0] for line in six.nodes[0].cli("CLUSTER", "NODES").stdout.splitlines()
                           if "master" in line)  # fmt: skip
    for inst in six.nodes:  # a graceful stop: the append-only file and nodes.conf are written
        inst.stop()
    n = six.cluster.names
    six.hosts.update({n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 12}" for i in range(6)})
    for i in range(6):
        six.restart(i, keep_files=True, host=f"127.0.0.{i + 12}")
    assert [inst.cli("CLUSTER", "MYID").stdout.strip() for inst in six.nodes] == ids  # same identities
    monkeypatch.setenv("POD_IP_BASE", "12")
    out = six.passes(tmp_path, budget=90)
    assert "cluster meet cache-0 -> 127.0.0.13" in out, out
    six.cluster_ok()
    # The same nodes serve the same shards, at their new addresses, and every key is there.
    view = six.nodes[0].cli("CLUSTER", "NODES").stdout
    assert sorted(line.split()[0] for line in view.splitlines() if "master" in line) == shards_before, view
    # Every node knows every other at its new address (its own `myself` line keeps whatever a peer last told
    # it its address is, which is not what peers use).
    for inst in six.nodes:
        peers = [line for line in inst.cli("CLUSTER", "NODES").stdout.splitlines() if "myself" not in line]
        assert sorted(line.split()[1].split(":")[0] for line in peers) == sorted(
            f"127.0.0.{i + 12}" for i in range(6) if f"127.0.0.{i + 12}" != inst.host
        ), peers
    assert "read 1000" in six.client(tmp_path, 1000, "read-only")
