#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every tier.
#   static checks -> unit -> acceptance (real valkey-server) -> integration (real control plane)
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "system packages"
bash scripts/install-system-deps.sh
step "python environment"
venv=$(bash scripts/setup-python.sh)
export PATH="$venv/bin:$PATH"

step "static checks: ruff, mypy, import layers, CRD drift"
ruff check .
ruff format --check .
mypy
PYTHONPATH=operator lint-imports --no-cache >/dev/null

tiers=(tests/unit tests/acceptance)
if [ -d tests/integration ]; then
  step "control plane binaries (built once, cached)"
  bash e2e/build-kubernetes.sh >/dev/null
  tiers+=(tests/integration)
fi

step "pytest: ${tiers[*]}"
python -m pytest "${tiers[@]}" "$@"
