#!/usr/bin/env bash
# Container images with no registry: a Debian base made by debootstrap and imported into podman, and
# the operator image built from the project's Dockerfile on that base.
#
#   e2e/images.sh base       the base image (Debian bookworm minbase + python3), cached as a tarball
#   e2e/images.sh operator   the operator image (podman build of ./Dockerfile on the base)
#   e2e/images.sh check      run the operator image: `valkey-operator version` must print the version
#   e2e/images.sh valkey     a Valkey image: Debian trixie's valkey-server 8.1 (with TLS) on the same base
# Prints the image name last. Needs root (debootstrap, podman).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${VALKEY_OPERATOR_CACHE:-$HOME/.cache/valkey-tls-operator}
IMAGES="$CACHE/images"
BASE_IMAGE=localhost/valkey-operator-base:bookworm
VERSION=$(cd "$root" && python3 -c 'import re;print(re.search(r"\"(.+)\"", open("operator/valkey_operator/__init__.py").read()).group(1))')
OPERATOR_IMAGE=localhost/valkey-tls-operator:$VERSION
VALKEY_IMAGE=localhost/valkey:8.1
log() { echo "images: $*" >&2; }

ensure_tools() {
  local need=()
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v podman >/dev/null || need+=(podman)
  if [ ${#need[@]} -gt 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" runc uidmap \
      slirp4netns fuse-overlayfs >&2
  fi
  # This machine mounts cgroup v1 beside a v2 hierarchy ("hybrid"), which crun refuses; runc with the
  # cgroupfs manager (PID 1 is not systemd) works.
  # podman's default ulimits (nofile, nproc) exceed what this sandbox lets a container set: runc fails
  # with "error setting rlimit ... operation not permitted". Measured here: nofile up to 19999 and nproc
  # 4096 work; the host's own hard limits do not.
  local conf=/etc/containers/containers.conf.d/valkey-operator.conf nofile=16384 nproc=4096
  [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -gt "$nofile" ] || nofile=$(( $(ulimit -Hn) - 1 ))
  mkdir -p "$(dirname "$conf")"
  cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

mirror() {  # the machine's own Debian mirror, so no host name is written here
  awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources
}

base() {
  ensure_tools
  mkdir -p "$IMAGES"
  local tarball="$IMAGES/base-bookworm.tar"
  if [ ! -f "$tarball" ]; then
    local rootfs="$IMAGES/rootfs-bookworm"
    rm -rf "$rootfs"
    log "debootstrap bookworm (minbase + python3) into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$rootfs" "$(mirror)" >&2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  if ! podman image exists "$BASE_IMAGE"; then
    podman import --change 'CMD ["/bin/sh"]' "$tarball" "$BASE_IMAGE" >&2
  fi
  echo "$BASE_IMAGE"
}

operator() {
  base >/dev/null
  log "podman build of the Dockerfile on $BASE_IMAGE"
  # The host's CA bundle goes in for the build's pip only (this machine reaches the package index
  # through its own trust store); it is not part of any image layer.
  podman build --pull=never --network host \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" \
    -t "$OPERATOR_IMAGE" "$root" >&2
  echo "$OPERATOR_IMAGE"
}

check() {
  ensure_tools
  local got
  got=$(podman run --rm --network none --entrypoint valkey-operator "$OPERATOR_IMAGE" version)
  [ "$got" = "$VERSION" ] || { log "image printed '$got', want '$VERSION'"; exit 1; }
  log "$OPERATOR_IMAGE runs as $(podman run --rm --network none --entrypoint id "$OPERATOR_IMAGE" -u)"
  echo "$OPERATOR_IMAGE"
}

valkey() {
  base >/dev/null
  podman build --pull=never --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -f "$root/e2e/images/valkey.Containerfile" -t "$VALKEY_IMAGE" "$root/e2e/images" >&2
  echo "$VALKEY_IMAGE"
}

case "${1:-}" in
  base) base ;;
  operator) operator ;;
  check) check ;;
  valkey) valkey ;;
  *) echo "usage: $0 base|operator|check|valkey" >&2; exit 2 ;;
esac
