#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests run (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, kubectl) from the upstream k8s.io/kubernetes Go module at a pinned release, helm,
# promtool and CoreDNS from their modules, and installs etcd from Debian trixie. Everything is cached
# outside git, so only the first run pays: a second run builds nothing.
#
# If KUBEBUILDER_ASSETS names a folder with kube-apiserver, etcd and kubectl (as setup-envtest gives),
# that folder is used and nothing is built. The last line printed is the folder with the binaries.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.33.13}
HELM_VERSION=${HELM_VERSION:-v3.18.6}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}   # the Go module version of Prometheus, for promtool
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4}  # BUILD_REV below also covers its plugin list
CACHE=${VALKEY_OPERATOR_CACHE:-$HOME/.cache/valkey-tls-operator}
BIN="$CACHE/k8s/$K8S_VERSION/bin"
# Bump BUILD_REV when the way a tool is built changes, so cached binaries are rebuilt.
BUILD_REV=2
STAMP="$BIN/.complete-$K8S_VERSION-$HELM_VERSION-$PROMETHEUS_VERSION-$COREDNS_VERSION-r$BUILD_REV"
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { echo "k8s-build: $*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] \
   && [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if [ -f "$STAMP" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN" "$CACHE/go/mod" "$CACHE/go/build"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=mod GOTOOLCHAIN=local
export CGO_ENABLED=0
start=$(date +%s)

retry() {  # retry a flaky network step a bounded number of times
  local n
  for n in 1 2 3; do
    "$@" && return 0
    log "attempt $n of '$*' failed; retrying"
    sleep $((n * 5))
  done
  return 1
}

# --- etcd: Debian trixie's static binary, pinned low so nothing else upgrades -------------------------
install_etcd() {
  if command -v etcd >/dev/null; then
    ln -sf "$(command -v etcd)" "$BIN/etcd"
    return
  fi
  [ "$(id -u)" -eq 0 ] || { log "need root to install etcd-server from Debian"; exit 1; }
  local uri src=/etc/apt/sources.list.d/valkey-operator-trixie.sources
  if [ ! -f "$src" ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" > "$src"
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/valkey-operator-trixie
  fi
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  retry apt-get update -qq
  DEBIAN_FRONTEND=noninteractive retry apt-get install -y -qq --no-install-recommends etcd-server/trixie >&2
  pkill -x etcd 2>/dev/null || true   # a package script may have started one
  ln -sf "$(command -v etcd)" "$BIN/etcd"
}

# --- kubernetes: a wrapper module mapping every staging module to its published version ---------------
build_kubernetes() {
  local work="$CACHE/k8s/$K8S_VERSION/src" staging minor gomod
  mkdir -p "$work"
  minor=${K8S_VERSION#v1.}               # 33.13
  staging="v0.$minor"                     # v0.33.13
  retry go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > "$work/download.json"
  gomod=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["GoMod"])' "$work/download.json")
  (
    cd "$work"
    rm -f go.mod go.sum
    go mod init valkey-operator-k8s-build >/dev/null 2>&1
    go mod edit -go=1.24 -require="k8s.io/kubernetes@$K8S_VERSION"
    # Every "k8s.io/x => ./staging/src/k8s.io/x" of the release's own go.mod becomes "=> k8s.io/x@v0.y.z".
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
      go mod edit -replace="$m=$m@$staging"
    done
    printf 'package main\n\nfunc main() {}\n' > main.go
    local pkg ldflags v=${K8S_VERSION#v}
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${v%%.*} -X $pkg.gitMinor=$(echo "$v" | cut -d. -f2)"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2000-01-01T00:00:00Z"
    done
    local targets=()
    for b in "${K8S_BINARIES[@]}"; do targets+=("k8s.io/kubernetes/cmd/$b"); done
    log "resolving modules for ${K8S_BINARIES[*]} ($K8S_VERSION)"
    retry go get "${targets[@]/%/@}" >/dev/null 2>&1 || retry go get "k8s.io/kubernetes@$K8S_VERSION"
    log "building (a cold build takes a while on 2 cores)"
    retry go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/" "${targets[@]}"
  )
}

build_helm() {
  local work="$CACHE/helm/$HELM_VERSION"
  mkdir -p "$work"
  ( cd "$work"
    [ -f go.mod ] || { go mod init valkey-operator-helm-build >/dev/null 2>&1; printf 'package main\n\nfunc main() {}\n' > main.go; }
    retry go get "helm.sh/helm/v3@$HELM_VERSION" >/dev/null 2>&1
    # helm's own Makefile sets the Kubernetes version it assumes offline (helm template, helm lint);
    # without it helm says v1.20 and refuses charts that need newer.
    local kv="helm.sh/helm/v3/pkg" ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X $kv/lint/rules.k8sVersionMajor=1 -X $kv/lint/rules.k8sVersionMinor=33"
    ldflags+=" -X $kv/chartutil.k8sVersionMajor=1 -X $kv/chartutil.k8sVersionMinor=33"
    retry go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/helm" helm.sh/helm/v3/cmd/helm
  )
}

build_promtool() {
  GOBIN="$BIN" retry go install -trimpath -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

# CoreDNS with only the plugins a cluster's DNS needs (the documented way to choose plugins at compile
# time: a main package that sets dnsserver.Directives and imports those plugins). The full build pulls
# every cloud SDK for plugins the node never runs.
build_coredns() {
  local work="$CACHE/coredns/$COREDNS_VERSION"
  mkdir -p "$work"
  ( cd "$work"
    cat > main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order is the plugin chain's, as in CoreDNS's plugin.cfg: cache must wrap kubernetes.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
    [ -f go.mod ] || go mod init valkey-operator-coredns-build >/dev/null 2>&1
    retry go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1
    retry go mod tidy >/dev/null 2>&1
    retry go build -p 2 -trimpath -ldflags "-s -w" -o "$BIN/coredns" .
  )
}

install_etcd
for b in "${K8S_BINARIES[@]}"; do [ -x "$BIN/$b" ] || { build_kubernetes; break; }; done
[ -f "$BIN/.helm-$HELM_VERSION-r$BUILD_REV" ] || { build_helm && touch "$BIN/.helm-$HELM_VERSION-r$BUILD_REV"; }
[ -x "$BIN/promtool" ] || build_promtool
[ -f "$BIN/.coredns-$COREDNS_VERSION" ] || { build_coredns && touch "$BIN/.coredns-$COREDNS_VERSION"; }
touch "$STAMP"
log "done in $(( $(date +%s) - start )) s; cache $(du -sh "$CACHE" | cut -f1)"
echo "$BIN"
