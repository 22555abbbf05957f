#!/usr/bin/env bash
# e2e/cluster.sh up|down|env|status: the project's local Kubernetes control plane (see controlplane.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(bash "$root/scripts/setup-python.sh")
exec "$venv/bin/python" "$root/e2e/controlplane.py" "$@"
