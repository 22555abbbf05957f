"""More shards, then fewer, on a running cluster, on eight real Valkey 9.1 servers (scripts/valkey-9.sh):
three shards of two formed by the operator's own code, then `shards: 4`, then `shards: 3` again, while a
cluster client writes without pause. The operator's passes (`sharding.form`, carried out by
`reconcile.act` over TLS, names verified) meet the two new nodes, make one the new shard's primary and the
other its replica, and move a quarter of the slots to it with atomic slot migration (CLUSTER MIGRATESLOTS);
back to three, the shard on the pods a scale-down removes gives every slot back. Every acknowledged write
is read back afterwards from the shards that serve it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, example, free_port, run_with_hosts, spawn_with_hosts
from tests.acceptance.test_sharding import CHILD
from valkey_operator.clock import SystemClock
from valkey_operator.pki.plan import Observed, plan
from valkey_operator.valkey_admin import parse_slot_migrations

pytestmark = pytest.mark.acceptance
IMAGE = "valkey/valkey:9.1.2"

# Writes key:0, key:1, ... through a cluster client (it follows MOVED/ASK) until the stop file appears,
# counting each acknowledged SET and each failed attempt; then reads every acknowledged key back.
WRITER = """
import sys, time
from pathlib import Path
from valkey.cluster import ValkeyCluster
tls, host, port, password, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
c = ValkeyCluster(host=host, port=port, password=password, ssl=True, ssl_ca_certs=f"{tls}/ca.crt",
                  ssl_certfile=f"{tls}/connection.crt", ssl_keyfile=f"{tls}/connection.key",
                  ssl_check_hostname=True, cluster_error_retry_attempts=10)
acked, failed, longest, last = 0, 0, 0.0, time.monotonic()
deadline = time.monotonic() + 300  # bounded
while not stop.exists() and time.monotonic() < deadline:
    try:
        c.set(f"key:{acked}", acked)
    except Exception as exc:
        failed += 1
        print("failed", type(exc).__name__, str(exc)[:80], flush=True)
        time.sleep(0.05)
        continue
    now = time.monotonic()
    longest, last = max(longest, now - last), now
    acked += 1
missing = [i for i in range(acked) if c.get(f"key:{i}") != str(i).encode()]
print("acked", acked, "failed", failed, "longest_ms", int(longest * 1000), "missing", len(missing), missing[:10])
"""


def test_three_shards_grow_to_four_and_back_to_three_by_atomic_slot_migration_under_writes(
    launch: Any, valkey9: Path, tmp_path: Path
) -> None:
    cluster = example(mode="cluster", shards=3, replicasPerShard=1, image=IMAGE)
    n = cluster.names
    port, bus = free_port("127.0.0.2"), free_port("127.0.0.2")
    hosts = {n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 2}" for i in range(8)}

    def start(i: int, **kw: Any) -> Any:
        return launch(cluster, host=f"127.0.0.{i + 2}", port=port, bus_port=bus, pod=f"cache-{i}", hosts=hosts,
                      bin_dir=valkey9, **kw)  # fmt: skip

    # The server certificate names every pod of four shards (the operator re-issues it when shards grows).
    four = plan(example(mode="cluster", shards=4, replicasPerShard=1, image=IMAGE), Observed(), SystemClock().now())
    assert four.material is not None, four.problems
    nodes = [start(i, material=four.material) for i in range(8)]
    first = nodes[0]
    assert "v=9.1.2" in first.log.read_text() or "9.1.2" in first.cli("INFO", "server").stdout
    first.client_files()
    tls = first.layout.tls_dir

    def passes(shards: int, budget: float) -> str:
        out = run_with_hosts(tmp_path, hosts, CHILD, tls, str(port), str(bus), PASSWORD, str(budget), str(shards),
                             "8", IMAGE, timeout=budget + 30)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "formed" in out.stdout, out.stdout
        return out.stdout

    passes(3, 60)  # three shards of two; cache-6 and cache-7 run alone, not met
    stop = tmp_path / "stop"
    writer = spawn_with_hosts(tmp_path, hosts, WRITER, tls, n.pod_fqdn("cache-0"), str(port), PASSWORD, str(stop))
    try:
        time.sleep(2)  # writes before the change
        started = time.monotonic()
        grown = passes(4, 120)
        took = time.monotonic() - started
        four_counts = slot_counts(first)
        time.sleep(1)  # writes between the changes
        started = time.monotonic()
        shrunk = passes(3, 120)
        took_back = time.monotonic() - started
        time.sleep(1)  # writes after it
    finally:
        stop.touch()
    written, _ = writer.communicate(timeout=120)
    print(grown)
    print(shrunk)
    print(written)
    print(f"three shards became four in {took:.1f} s, and three again in {took_back:.1f} s")
    assert "migrate slots of cache-0" in grown, grown
    assert "migrate slots of cache-6" in shrunk, shrunk
    summary = written.strip().splitlines()[-1].split()
    assert summary[0] == "acked", written
    assert int(summary[1]) > 500, written
    assert summary[6:8] == ["missing", "0"], written  # every acknowledged write is there
    # Four shards of two, 4096 slots each, every node ok; then three, cache-6 (the pod a scale-down would
    # remove) serving nothing, its replica cache-7 with it.
    assert four_counts == [4096, 4096, 4096, 4096]
    three_again(nodes)
    # In batches of at most 1,024 slots, each a job of its own that the giving node ran to success.
    assert exports(nodes[0]) == [("4096-5119", "success"), ("5120-5461", "success")]
    assert exports(nodes[6]) == [
        (r, "success") for r in ("4096-5119", "5120-5461", "9558-10581", "10582-10922", "15019-16042", "16043-16383")
    ]


def exports(node: Any) -> list[tuple[str, str]]:
    """The slot ranges and states of the EXPORT jobs `node`'s CLUSTER GETSLOTMIGRATIONS lists, oldest first."""
    lines = node.cli("CLUSTER", "GETSLOTMIGRATIONS").stdout.splitlines()  # each job's fields, flat: key, value
    jobs: list[list[str]] = []
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key == "name":
            jobs.append([])
        jobs[-1] += [key, value]
    return [(m.slots, m.state) for m in parse_slot_migrations(jobs) if m.operation == "EXPORT"]


def three_again(nodes: list[Any]) -> None:
    """Every node ok; three shards serve all 16384 slots; cache-6 (its pod the one a scale-down removes)
    serves none."""
    for inst in nodes:
        info = inst.cli("CLUSTER", "INFO").stdout
        assert "cluster_state:ok" in info, info
        assert "cluster_known_nodes:8" in info, info
        assert "cluster_slots_assigned:16384" in info, info
    assert slot_counts(nodes[0]) == [5461, 5461, 5462]
    mine = [line.split() for line in nodes[6].cli("CLUSTER", "NODES").stdout.splitlines() if "myself" in line]
    assert mine[0][8:] == [], mine


def slot_counts(node: Any) -> list[int]:
    """How many slots each primary serves, as `node` sees it (primaries without slots left out)."""
    lines = [line.split() for line in node.cli("CLUSTER", "NODES").stdout.splitlines()]
    owned = [f[8:] for f in lines if "master" in f[2].split(",") and f[8:]]
    return sorted(sum(int(r.split("-")[-1]) - int(r.split("-")[0]) + 1 for r in ranges) for ranges in owned)
