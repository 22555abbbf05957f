#!/usr/bin/env bash
# The main job: the operator running against a cluster, with the example applied.
# Uses the current kubeconfig's cluster when it answers; otherwise starts the project's own local
# control plane (e2e/cluster.sh) and uses that. Ctrl-C stops the operator (the local cluster keeps
# running; `e2e/cluster.sh down` stops it). RUN_ONCE=1 stops after showing the resource.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv=$(bash scripts/setup-python.sh)
export PATH="$venv/bin:$PATH"

reachable() {
  python - <<'PY' 2>/dev/null
from kubernetes import client, config
config.load_kube_config()
client.VersionApi().get_code(_request_timeout=5)
PY
}

if reachable; then
  echo "Using the cluster of the current kubeconfig."
else
  echo "No reachable cluster in the current kubeconfig: starting the project's local control plane."
  bash e2e/cluster.sh up
  eval "$(bash e2e/cluster.sh env)"
fi
command -v kubectl >/dev/null || { echo "kubectl is not on PATH" >&2; exit 1; }

kubectl apply -f crds/
kubectl wait --for=condition=Established --timeout=60s crd/valkeyclusters.valkeyops.dev

log=$(mktemp -t valkey-operator.XXXXXX.log)
valkey-operator run --namespace default --standalone --metrics-port "${METRICS_PORT:-8080}" \
  --health-port "${HEALTH_PORT:-8081}" >"$log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true; wait $operator 2>/dev/null || true' EXIT
echo "Operator started (pid $operator, log $log)."

kubectl apply -f examples/valkeycluster.yaml
for _ in $(seq 1 60); do
  phase=$(kubectl get valkeycluster cache -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [ -n "$phase" ] && break
  kill -0 "$operator" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
kubectl get valkeyclusters
if [ "${RUN_ONCE:-0}" = "1" ]; then
  exit 0
fi
echo "The operator keeps running; Ctrl-C to stop. Its log follows."
tail -n +1 -f "$log" &
wait "$operator"
