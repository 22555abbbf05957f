#!/usr/bin/env bash
# e2e/cluster.sh up [--node]|down|env|status: the project's local Kubernetes (see controlplane.py, node.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(bash "$root/scripts/setup-python.sh")
cd "$root"
exec "$venv/bin/python" -m e2e.controlplane "$@"
