#!/usr/bin/env bash
# Valkey 9.1 beside the machine's own (bookworm-backports' 8.0), for the acceptance tests that need 9.x
# (atomic slot migration, certificate-mapped users): Debian forky's valkey-server and valkey-tools 9.1.2,
# built with TLS, unpacked into the project's cache with forky's C library (they need glibc 2.38; the
# machine has 2.36), and run through that library's own loader. Nothing is installed system-wide: apt reads
# forky from the machine's own Debian mirror into a private state folder.
#
#   scripts/valkey-9.sh      prints the folder whose bin/ holds valkey-server and valkey-cli 9.1
# Cached: a second run only prints the folder.
set -euo pipefail
CACHE=${VALKEY_OPERATOR_CACHE:-$HOME/.cache/valkey-tls-operator}
VERSION=9.1.2
dest="$CACHE/valkey-$VERSION"
lib="$dest/root/usr/lib/x86_64-linux-gnu"
wrap() {  # <bin folder> <name> <binary>: the binary, loaded by forky's loader with forky's libc first
  cat > "$1/$2" <<SH
#!/bin/sh
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" \\
  --argv0 "$2" "$dest/root/usr/bin/$3" "\$@"
SH
  chmod +x "$1/$2"
}
if [ -x "$dest/bin/valkey-server" ] && "$dest/bin/valkey-server" --version | grep -q "v=$VERSION"; then
  # A cache from before bench/bench_tls.py lacks the benchmark's wrapper (its binary was always unpacked).
  [ -x "$dest/bin/valkey-benchmark" ] || wrap "$dest/bin" valkey-benchmark valkey-benchmark
  echo "$dest"
  exit 0
fi

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
  echo "valkey-9: cannot find the machine's Debian mirror" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror forky main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq >&2
(cd "$work" && apt-get "${apt_opts[@]}" download "valkey-server=$VERSION-*" "valkey-tools=$VERSION-*" libc6 >&2)

rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/bin"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest.tmp/root"; done
# valkey-server is a link to the one binary, which reads its argv[0].
wrap "$dest.tmp/bin" valkey-server valkey-check-rdb
wrap "$dest.tmp/bin" valkey-cli valkey-cli
wrap "$dest.tmp/bin" valkey-benchmark valkey-benchmark
rm -rf "$dest" && mv "$dest.tmp" "$dest"
"$dest/bin/valkey-server" --version >&2
echo "$dest"
