#!/usr/bin/env bash
# Container images with no registry: a Debian base made by debootstrap and imported into podman, and
# the operator image built from the project's Dockerfile on that base.
#
#   e2e/images.sh base       the base image (Debian bookworm minbase + python3), cached as a tarball
#   e2e/images.sh operator   the operator image (podman build of ./Dockerfile on the base)
#   e2e/images.sh check      run the operator image: `valkey-operator version` must print the version
#   e2e/images.sh valkey     a Valkey image: Debian trixie's valkey-server 8.1 (with TLS) on the same base
#   e2e/images.sh valkey9    a Valkey 9.1 image: Debian forky's valkey-server 9.1.2 (with TLS), a forky minbase
#                            made by debootstrap (forky's valkey needs forky's C library), cached as a tarball
# Prints the image name last. Needs root (debootstrap, podman).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${VALKEY_OPERATOR_CACHE:-$HOME/.cache/valkey-tls-operator}
IMAGES="$CACHE/images"
BASE_IMAGE=localhost/valkey-operator-base:bookworm
VERSION=$(cd "$root" && python3 -c 'import re;print(re.search(r"\"(.+)\"", open("operator/valkey_operator/__init__.py").read()).group(1))')
OPERATOR_IMAGE=localhost/valkey-tls-operator:$VERSION
VALKEY_IMAGE=localhost/valkey:8.1
VALKEY9_IMAGE=localhost/valkey:9.1
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

minbase() {  # minbase SUITE TARBALL PACKAGES [SCRIPT]: a Debian minbase root as a tarball, made once
  local suite=$1 tarball=$2 include=$3 script=${4:-} rootfs="$IMAGES/rootfs-$1"
  [ -f "$tarball" ] && return 0
  rm -rf "$rootfs"
  log "debootstrap $suite (minbase + $include) into $rootfs"
  # shellcheck disable=SC2086  # SCRIPT is optional: no argument when empty
  debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$(mirror)" $script >&2
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
}

base() {
  ensure_tools
  mkdir -p "$IMAGES"
  local tarball="$IMAGES/base-bookworm.tar"
  minbase bookworm "$tarball" python3,python3-venv,python3-pip,ca-certificates
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

valkey9() {
  ensure_tools
  mkdir -p "$IMAGES"
  local tarball="$IMAGES/valkey-9.1-forky.tar"
  # bookworm's debootstrap has no script named forky; sid's fits every suite after trixie.
  minbase forky "$tarball" valkey-server,valkey-tools,ca-certificates /usr/share/debootstrap/scripts/sid
  if ! podman image exists "$VALKEY9_IMAGE"; then
    podman import --change 'USER 999:999' --change 'ENTRYPOINT ["valkey-server"]' "$tarball" "$VALKEY9_IMAGE" >&2
  fi
  echo "$VALKEY9_IMAGE"
}

case "${1:-}" in
  base) base ;;
  operator) operator ;;
  check) check ;;
  valkey) valkey ;;
  valkey9) valkey9 ;;
  *) echo "usage: $0 base|operator|check|valkey|valkey9" >&2; exit 2 ;;
esac
