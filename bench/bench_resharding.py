"""Time to move 1,000 slots between two shards by atomic slot migration (CLUSTER MIGRATESLOTS, Valkey 9.x).
Prints figures; asserts nothing.

Two real Valkey 9.1 servers (scripts/valkey-9.sh) on loopback, started by the operator's rendered start
script with the rendered config (TLS on the client port and the cluster bus): the first serves every slot
and holds `--keys-per-slot` keys of `--value-bytes` in each of slots 0..999; the second joins empty.
`CLUSTER MIGRATESLOTS SLOTSRANGE 0 999 NODE <second>` (the command the operator sends), then
`CLUSTER GETSLOTMIGRATIONS` every 0.1 s until the job reports success, both over TLS with valkey-cli.

    .venv/bin/python bench/bench_resharding.py [--runs 3] [--keys-per-slot 100] [--value-bytes 100]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the tests package importable
sys.path.insert(0, str(ROOT / "operator"))

from tests.acceptance.conftest import PASSWORD, example, free_port, start_instance  # noqa: E402
from valkey.crc import key_slot  # noqa: E402

from valkey_operator.pki.issue import KeyPair  # noqa: E402
from valkey_operator.valkey_admin import Credentials, connect  # noqa: E402

SLOTS = 1000


def keys_for_slots(per_slot: int) -> dict[int, list[str]]:
    """`per_slot` key names in each of slots 0..SLOTS-1 (found by hashing candidate names)."""
    found: dict[int, list[str]] = {s: [] for s in range(SLOTS)}
    i = 0
    while any(len(v) < per_slot for v in found.values()):
        name = f"k{i}"
        slot = key_slot(name.encode())
        if slot < SLOTS and len(found[slot]) < per_slot:
            found[slot].append(name)
        i += 1
    return found


def move_once(workdir: Path, bin_dir: Path, keys: dict[int, list[str]], value_bytes: int) -> tuple[float, int]:
    cluster = example(mode="cluster", shards=3, replicasPerShard=0, image="valkey/valkey:9.1.2")
    port, bus = free_port("127.0.0.2"), free_port("127.0.0.2")
    a = start_instance(cluster, workdir / "a", host="127.0.0.2", port=port, bus_port=bus, pod="cache-0",
                       bin_dir=bin_dir)  # fmt: skip
    b = start_instance(cluster, workdir / "b", host="127.0.0.3", port=port, bus_port=bus, pod="cache-1",
                       material=a.material, bin_dir=bin_dir)  # fmt: skip
    try:
        a.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        a.cli("CLUSTER", "MEET", "127.0.0.3", str(port), str(bus))
        value = "v" * value_bytes
        for _ in range(100):  # bounded: a serves every slot once it says ok
            if "cluster_state:ok" in a.cli("CLUSTER", "INFO").stdout:
                break
            time.sleep(0.1)
        cert, key = a.client_files()
        creds = Credentials(a.material.bundle, KeyPair(cert.read_bytes(), key.read_bytes()), PASSWORD)
        with connect("localhost", port, creds, address="127.0.0.2", timeout=30) as conn:
            names = [k for per_slot in keys.values() for k in per_slot]
            for i in range(0, len(names), 1000):
                pipe = conn.pipeline(transaction=False)
                for k in names[i : i + 1000]:
                    pipe.set(k, value)
                pipe.execute()  # type: ignore[no-untyped-call]
        assert int(a.cli("DBSIZE").stdout.strip()) == len(names)
        target = b.cli("CLUSTER", "MYID").stdout.strip()
        for _ in range(100):  # bounded: the two must know each other before a migration
            if "cluster_state:ok" in b.cli("CLUSTER", "INFO").stdout:
                break
            time.sleep(0.1)
        started = time.monotonic()
        asked = a.cli("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", "0", str(SLOTS - 1), "NODE", target)
        assert "OK" in asked.stdout, asked.stdout + asked.stderr
        state = ""
        while time.monotonic() < started + 600:  # bounded
            jobs = a.cli("CLUSTER", "GETSLOTMIGRATIONS").stdout.split("\n")
            state = jobs[jobs.index("state") + 1] if "state" in jobs else ""
            if state in ("success", "failed", "cancelled"):
                break
            time.sleep(0.1)
        took = time.monotonic() - started
        if state != "success":
            raise SystemExit(f"migration ended as {state!r}")
        return took, int(b.cli("DBSIZE").stdout.strip())
    finally:
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys-per-slot", type=int, default=100)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "valkey-9.sh")], capture_output=True, text=True, check=True)
    bin_dir = Path(out.stdout.strip().splitlines()[-1]) / "bin"
    keys = keys_for_slots(args.keys_per_slot)
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-resharding-") as tmp:
            took, moved = move_once(Path(tmp), bin_dir, keys, args.value_bytes)
        times.append(took)
        size_mb = moved * (args.value_bytes + 8) / 1e6
        print(f"moved {SLOTS} slots, {moved} keys (~{size_mb:.1f} MB of values) in {took:.2f} s over TLS: "
              f"{moved / took:,.0f} keys/s")  # fmt: skip
    print(f"median {statistics.median(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
