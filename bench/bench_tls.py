"""TLS against plaintext throughput on the operator's rendered config. Prints figures; asserts nothing.

For each Valkey (the machine's own, and 9.1 from scripts/valkey-9.sh) and each io-threads setting, one real
server is started by the operator's rendered start script with the rendered valkey.conf (standalone,
`tls.mode: preferred`, so TLS on one port and plaintext on another, `clientAuth: none`), and
valkey-benchmark runs SET and GET against both ports in the same run, with 1 and with 16 commands per
pipeline (-P). Printed: requests per second on each port and TLS / plaintext. The benchmark client shares
the machine's cores with the server, so the ratios say more than the absolute figures.

    .venv/bin/python bench/bench_tls.py [--requests 100000] [--clients 50] [--io-threads 1 2]
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the tests package importable
sys.path.insert(0, str(ROOT / "operator"))

from tests.acceptance.conftest import PASSWORD, Instance, example, start_instance  # noqa: E402


def valkeys() -> list[tuple[str, Path | None]]:
    """(label, bin folder) of each Valkey to measure: the machine's own (on PATH), and 9.1."""
    own = subprocess.run(["valkey-server", "--version"], capture_output=True, text=True, check=True).stdout
    out: list[tuple[str, Path | None]] = [(own.split()[2].removeprefix("v="), None)]
    nine = subprocess.run(["bash", str(ROOT / "scripts" / "valkey-9.sh")], capture_output=True, text=True, check=False)
    if nine.returncode == 0:
        out.append(("9.1.2", Path(nine.stdout.strip()) / "bin"))
    else:
        print(f"Valkey 9.1 not available: {nine.stderr.strip()[-200:]}")
    return out


def benchmark(
    inst: Instance, bin_dir: Path | None, tls: bool, pipeline: int, requests: int, clients: int
) -> dict[str, float]:
    """Requests per second of SET and GET on the TLS port or the plaintext one."""
    tool = str(bin_dir / "valkey-benchmark") if bin_dir else "valkey-benchmark"
    port = inst.layout.port if tls else inst.layout.plain_port
    cmd = [tool, "-h", inst.host, "-p", str(port), "-a", PASSWORD, "-t", "set,get", "-n", str(requests),
           "-c", str(clients), "-P", str(pipeline), "-d", "64", "--csv", "-q"]  # fmt: skip
    if tls:
        cmd += ["--tls", "--cacert", inst.layout.ca_file]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = csv.reader(io.StringIO(out))
    return {row[0]: float(row[1]) for row in rows if row and row[0] in ("SET", "GET")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--io-threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"{'valkey':>8} {'io-threads':>10} {'P':>3} {'cmd':>4} {'plain rps':>11} {'tls rps':>11} {'tls/plain':>9}")
    for label, bin_dir in valkeys():
        for threads in args.io_threads:
            side_by_side = {"mode": "preferred", "clientAuth": "none"}
            cluster = example(
                mode="standalone", replicas=1, ioThreads=threads, tls=side_by_side, image=f"valkey/valkey:{label}"
            )
            with tempfile.TemporaryDirectory() as tmp:
                inst = start_instance(cluster, Path(tmp), bin_dir=bin_dir)
                try:
                    for pipeline in (1, 16):
                        plain = benchmark(inst, bin_dir, False, pipeline, args.requests, args.clients)
                        tls = benchmark(inst, bin_dir, True, pipeline, args.requests, args.clients)
                        for cmd in ("SET", "GET"):
                            print(f"{label:>8} {threads:>10} {pipeline:>3} {cmd:>4} {plain[cmd]:>11,.0f} "
                                  f"{tls[cmd]:>11,.0f} {tls[cmd] / plain[cmd]:>9.2f}", flush=True)  # fmt: skip
                finally:
                    inst.stop()


if __name__ == "__main__":
    main()
