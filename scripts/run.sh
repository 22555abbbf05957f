#!/usr/bin/env bash
# The main job: the operator running against a cluster, with the example applied.
# Uses the current kubeconfig's cluster when it answers (the operator runs on this machine against it);
# otherwise starts the project's own local Kubernetes with a node (e2e/cluster.sh up --node), installs
# the operator there with its chart, in its own pod, and waits for the example to be Ready. The local
# cluster keeps running afterwards (`e2e/cluster.sh down` stops it). RUN_ONCE=1 stops after showing
# the resource.
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

wait_ready() {  # bounded: the example's pods pull nothing locally, so five minutes is plenty
  local phase=""
  for _ in $(seq 1 300); do
    phase=$(kubectl get valkeycluster cache -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [ "$phase" = Ready ] && return 0
    sleep 1
  done
  echo "the example is still '${phase:-without status}' after 300 s" >&2
  return 1
}

if reachable; then
  echo "Using the cluster of the current kubeconfig: the operator runs here, against it."
  command -v kubectl >/dev/null || { echo "kubectl is not on PATH" >&2; exit 1; }
  kubectl apply -f crds/
  # Polled: `kubectl wait --for=condition=Established` fails at once if it reads status.conditions: null.
  for _ in $(seq 1 120); do
    [ "$(kubectl get crd valkeyclusters.valkeyops.dev \
      -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
    sleep 0.5
  done
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
  [ "${RUN_ONCE:-0}" = "1" ] && exit 0
  echo "The operator keeps running; Ctrl-C to stop. Its log follows."
  tail -n +1 -f "$log" &
  wait "$operator"
  exit 0
fi

# The project's own cluster: a control plane and a node (kubelet, containerd, kube-proxy, CoreDNS), the
# operator image and Debian's Valkey 9.1 image built locally and loaded into the node (there is no
# registry), the chart installed, and the example applied with its image pointed at the local one.
echo "No reachable cluster in the current kubeconfig: starting the project's local Kubernetes with a node."
bash e2e/cluster.sh up --node
eval "$(bash e2e/cluster.sh env)"
operator_image=$(bash e2e/images.sh operator | tail -n 1)
valkey_image=$(bash e2e/images.sh valkey9 | tail -n 1)
bash e2e/cluster.sh import "$operator_image" "$valkey_image"
helm upgrade --install valkey-operator charts/valkey-operator -n valkey-operator-system --create-namespace \
  --set image.repository="${operator_image%:*}" --set image.tag="${operator_image##*:}" \
  --set image.pullPolicy=Never --wait --timeout 300s
sed -e "s#^  image: .*#  image: $valkey_image\n  imagePullPolicy: Never#" examples/valkeycluster.yaml | kubectl apply -f -
wait_ready
kubectl get valkeyclusters
kubectl get pods -o wide
echo "KUBECONFIG=$KUBECONFIG; e2e/cluster.sh down stops the local Kubernetes."
[ "${RUN_ONCE:-0}" = "1" ] && exit 0
echo "The operator keeps running in its pod; its log follows (Ctrl-C stops following)."
kubectl logs -f -n valkey-operator-system deploy/valkey-operator
