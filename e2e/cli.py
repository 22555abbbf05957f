"""e2e/cluster.sh up [--node] | down | env | status | import IMAGE...: the project's local Kubernetes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from e2e.controlplane import CACHE, LocalCluster, bin_dir
from e2e.network import NETWORK
from e2e.node import Node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.sh", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("verb", choices=["up", "down", "env", "status", "import"])
    parser.add_argument("images", nargs="*", help="import: local podman images to load into the node")
    parser.add_argument("--dir", type=Path, default=CACHE / "cluster", help="state folder")
    parser.add_argument(
        "--node", action="store_true", help="up: also a node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS)"
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir)
    node = Node(cluster, args.dir / "node")
    if args.verb == "up":
        started = time.monotonic()
        if args.node:
            cluster.node_ip = NETWORK.first.node_ip
        cluster.up()
        if args.node and not node.running():
            node.up()
        print(
            f"control plane up in {time.monotonic() - started:.1f}s; KUBECONFIG={cluster.kubeconfig}", file=sys.stderr
        )
    elif args.verb == "down":
        if node.state_dir.exists():
            node.down()
        cluster.down()
    elif args.verb == "import":
        if not (cluster.healthy() and node.running()):
            print("no node is running: e2e/cluster.sh up --node first", file=sys.stderr)
            return 1
        cluster.bins = bin_dir()
        for image in args.images:
            node.import_image(image)
    elif args.verb == "env":
        for key, value in cluster.env().items():
            print(f"export {key}={value!r}".replace("'", '"'))
    else:
        ok = cluster.healthy()
        print("running" if ok else "stopped")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
