#!/usr/bin/env bash
# e2e/cluster.sh up [--node] | down | env | status | import IMAGE...: the project's local Kubernetes
# (e2e/cli.py: controlplane.py, node.py). `import` loads local podman images into the node's containerd.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(bash "$root/scripts/setup-python.sh")
cd "$root"
exec "$venv/bin/python" -m e2e.cli "$@"
