"""Apply N ValkeyClusters to a real API server and measure the operator. Prints figures; asserts nothing.

Measures: time until every resource is Ready-for-pods (all owned objects created and status written),
the operator's peak memory (VmHWM of its process), and the per-resource reconcile time (p50/p95, from
the operator's own log lines). Uses the current KUBECONFIG if set, else the project's local control plane.

    .venv/bin/python bench/bench_apiserver.py [--count 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the e2e package importable


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ready_for_pods(namespace: str) -> int:
    items = json.loads(kubectl("get", "valkeyclusters", "-n", namespace, "-o", "json"))["items"]
    return sum(1 for i in items if (i.get("status") or {}).get("certificates", {}).get("server"))


def run(count: int, namespace: str) -> None:
    kubectl("apply", "-f", str(ROOT / "crds"))
    from e2e.procs import wait_established

    wait_established(["kubectl"], ["valkeyclusters.valkeyops.dev"])
    kubectl("create", "namespace", namespace)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    env = {**os.environ, "VALKEY_OPERATOR_TIMER_INTERVAL": "3600"}
    cli = Path(sys.executable).parent / "valkey-operator"
    proc = subprocess.Popen(
        [str(cli), "run", "--namespace", namespace, "--standalone", "--metrics-port", "0", "--health-port", "0"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        time.sleep(3)
        base = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
        docs = []
        for i in range(count):
            doc = json.loads(json.dumps(base))
            doc["metadata"] = {"name": f"vk-{i}", "namespace": namespace}
            docs.append(doc)
        start = time.monotonic()
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        applied = time.monotonic() - start
        done = 0
        deadline = start + 1800
        while time.monotonic() < deadline:
            done = ready_for_pods(namespace)
            if done >= count:
                break
            time.sleep(1)
        total = time.monotonic() - start
        peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True, check=False)
    times = [float(m) for m in re.findall(r"reconciled \S+ \(reconcile\) in ([0-9.]+) s", log.read_text())]
    print(f"resources               {count}")
    print(f"ready-for-pods          {done}/{count}")
    print(f"kubectl apply           {applied:.1f} s")
    print(f"all ready-for-pods      {total:.1f} s ({count / total:.1f} resources/s)")
    print(f"operator peak RSS       {peak:.1f} MiB")
    if len(times) >= 2:
        q = statistics.quantiles(times, n=100)
        print(f"reconcile passes        {len(times)}")
        print(f"reconcile p50 / p95     {1000 * statistics.median(times):.0f} ms / {1000 * q[94]:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--namespace", default=f"bench-{int(time.time())}")
    args = parser.parse_args()
    if os.environ.get("KUBECONFIG"):
        run(args.count, args.namespace)
        return
    from e2e.controlplane import LocalCluster

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp)) as cluster:
        os.environ.update(cluster.env())
        run(args.count, args.namespace)


if __name__ == "__main__":
    main()
