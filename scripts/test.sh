#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every tier:
#   static checks -> unit -> acceptance (real valkey-server) -> chart (helm, promtool)
#   -> integration (real control plane) -> e2e (images built with podman, run for real)
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "system packages"
bash scripts/install-system-deps.sh
step "Valkey 9.1 beside the machine's own, for the 9.x acceptance tests (cached)"
bash scripts/valkey-9.sh >/dev/null
step "python environment"
venv=$(bash scripts/setup-python.sh)
export PATH="$venv/bin:$PATH"

step "static checks: ruff, mypy, import layers"
ruff check .
ruff format --check .
mypy
PYTHONPATH=operator lint-imports --no-cache >/dev/null

step "Kubernetes, helm and promtool binaries (built once, cached)"
bash e2e/build-kubernetes.sh >/dev/null
step "cert-manager's controller, from its Go module (built once, cached)"
bash e2e/build-cert-manager.sh >/dev/null
step "container images: Debian base by debootstrap, the operator image by podman (cached base)"
bash e2e/images.sh operator >/dev/null

step "pytest: unit, acceptance, chart, integration, e2e"
golden_before=$(git status --porcelain -- tests/unit/*/golden 2>/dev/null || true)
python -m pytest tests/unit tests/acceptance tests/chart tests/integration e2e "$@"
# A run never rewrites the reviewed golden files (UPDATE_GOLDEN=1 is for a developer, then git diff).
if [ "$(git status --porcelain -- tests/unit/*/golden 2>/dev/null || true)" != "$golden_before" ]; then
  echo "the golden files changed during the run:" >&2
  git status --porcelain -- tests/unit/*/golden >&2
  exit 1
fi
