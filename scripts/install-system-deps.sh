#!/usr/bin/env bash
# Installs the Debian packages the tests need (valkey-server/valkey-tools with TLS, openssl).
# Valkey comes from bookworm-backports, added from the same mirror the machine already uses,
# so no host name is written here. Safe to run again: it does nothing when all is present.
set -euo pipefail

need=()
command -v valkey-server >/dev/null || need+=(valkey-server)
command -v valkey-cli >/dev/null || need+=(valkey-tools)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: need root to install: ${need[*]}" >&2
  exit 1
fi

src=/etc/apt/sources.list.d/valkey-operator-backports.sources
if [ ! -f "$src" ]; then
  # Reuse the URI and key of the machine's own Debian source.
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  if [ -z "$uri" ]; then
    echo "install-system-deps: cannot find the machine's Debian mirror" >&2
    exit 1
  fi
  cat > "$src" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
pkgs=()
for p in "${need[@]}"; do
  case "$p" in
    valkey-server|valkey-tools) pkgs+=("$p/bookworm-backports") ;;
    *) pkgs+=("$p") ;;
  esac
done
# policy-rc.d keeps package scripts from starting a system valkey (PID 1 is not systemd here).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
