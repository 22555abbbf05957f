"""Time to form a TLS sharded cluster with the operator's own code. Prints figures; asserts nothing.

Six real cluster-enabled valkey-servers on loopback (3 shards of a primary and a replica, TLS on the client
port and the cluster bus, names verified), formed by `sharding.form` + `reconcile.act` exactly as the
acceptance test does, a pass every 0.5 s: the wall time from the first pass until every node reports
cluster_state:ok, and how many passes that took. Needs root (each server resolves pod names through a
private /etc/hosts in a mount namespace of its own).

Moving slots between shards (CLUSTER MIGRATESLOTS, Valkey >= 9.0): bench/bench_resharding.py.

    .venv/bin/python bench/bench_sharding.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the tests package importable

from tests.acceptance.conftest import PASSWORD, example, free_port, run_with_hosts, start_instance  # noqa: E402
from tests.acceptance.test_sharding import CHILD  # noqa: E402


def form_once(workdir: Path) -> tuple[float, int]:
    cluster = example(mode="cluster", shards=3, replicasPerShard=1)
    n = cluster.names
    port, bus = free_port("127.0.0.2"), free_port("127.0.0.2")
    hosts = {n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 2}" for i in range(6)}
    first = start_instance(
        cluster, workdir / "i0", host="127.0.0.2", port=port, bus_port=bus, pod="cache-0", hosts=hosts
    )
    nodes = [first]
    try:
        for i in range(1, 6):
            nodes.append(
                start_instance(
                    cluster,
                    workdir / f"i{i}",
                    host=f"127.0.0.{i + 2}",
                    port=port,
                    bus_port=bus,
                    pod=f"cache-{i}",
                    material=first.material,
                    hosts=hosts,
                )
            )
        first.client_files()
        started = time.monotonic()
        out = run_with_hosts(workdir, hosts, CHILD, first.layout.tls_dir, str(port), str(bus), PASSWORD)
        took = time.monotonic() - started
        if "formed" not in out.stdout:
            raise SystemExit(f"not formed:\n{out.stdout}{out.stderr}")
        return took, out.stdout.count("pass ")
    finally:
        for inst in nodes:
            inst.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times, passes = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-sharding-") as tmp:
            took, count = form_once(Path(tmp))
        times.append(took)
        passes.append(count)
        print(f"formed 3 shards x 2 nodes in {took:.2f} s ({count} passes, one every 0.5 s)")
    print(f"median {statistics.median(times):.2f} s over {args.runs} runs; passes {passes}")


if __name__ == "__main__":
    main()
