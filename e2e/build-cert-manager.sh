#!/usr/bin/env bash
# Builds cert-manager's controller for the tests from e2e/certmanager (a small `main` over the controller
# packages of the github.com/cert-manager/cert-manager module, pinned in its go.mod) and copies the module's
# CRDs beside it. Cached outside git like the Kubernetes binaries: a second run builds nothing. The last line
# printed is the folder with `cert-manager-controller` and `crds/`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC="$HERE/certmanager"
CACHE=${VALKEY_OPERATOR_CACHE:-$HOME/.cache/valkey-tls-operator}
VERSION=$(awk '$1 == "github.com/cert-manager/cert-manager" || ($1 == "require" && $2 == "github.com/cert-manager/cert-manager") {print $NF; exit}' "$SRC/go.mod")
[ -n "$VERSION" ] || { echo "cert-manager-build: no cert-manager version in $SRC/go.mod" >&2; exit 1; }
DIGEST=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)
OUT="$CACHE/cert-manager/$VERSION"
STAMP="$OUT/.complete-$DIGEST"

log() { echo "cert-manager-build: $*" >&2; }

if [ -f "$STAMP" ]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$OUT/crds" "$CACHE/go/mod" "$CACHE/go/build"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
start=$(date +%s)
retry() {  # a flaky network step, a bounded number of times
  local n
  for n in 1 2 3; do
    "$@" && return 0
    log "attempt $n of '$*' failed; retrying"
    sleep $((n * 5))
  done
  return 1
}
(cd "$SRC" && retry go mod download && retry go build -p 2 -trimpath -ldflags "-s -w" -o "$OUT/cert-manager-controller" .)
module=$(cd "$SRC" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
# The CRDs as the module ships them: plain v1 schemas, no conversion webhook (none is run here).
for crd in "$module"/deploy/crds/cert-manager.io_*.yaml; do
  install -m 0644 "$crd" "$OUT/crds/"
done
rm -f "$OUT"/.complete-*
touch "$STAMP"
log "cert-manager $VERSION built in $(( $(date +%s) - start )) s"
echo "$OUT"
