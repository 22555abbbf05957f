"""The pod's start script (per-pod config, then exec valkey-server) and its TLS-aware probe."""

from __future__ import annotations

from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.conf.layout import POD_LAYOUT, Layout
from valkey_operator.conf.valkey_conf import render_valkey_conf
from valkey_operator.conf.version import BASELINE, SINCE

# Environment the StatefulSet gives the container; the scripts read nothing else.
ENV_POD_NAME = "POD_NAME"
ENV_POD_DOMAIN = "VALKEY_POD_DOMAIN"  # names.ClusterNames.pod_domain: the one spelling of pod names
ENV_PASSWORD = "VALKEY_PASSWORD"  # noqa: S105 - the variable's name, not a password
# valkey-cli reads the password from the environment (Debian's 8.0 build only under the old name).
CLI_AUTH = f'export VALKEYCLI_AUTH="${{{ENV_PASSWORD}}}" REDISCLI_AUTH="${{{ENV_PASSWORD}}}"'
# Where a pod that must wait for the operator "replicates" from: nothing listens on port 1 in a pod.
NOWHERE_HOST = "127.0.0.1"
NOWHERE_PORT = 1
# How long a primary being deleted waits for the operator's handover (within the 30 s grace period).
PRESTOP_WAIT_SECONDS = 20
# Cluster mode without persistence: how long a primary that lost its data waits for its replica to take its
# slots over before it exits to wait again (within the liveness probe's patience), and how long when no
# peer answers at all (the whole cluster restarts: there is nobody to wait for).
TAKEOVER_WAIT_SECONDS = 45
NO_PEER_WAIT_SECONDS = 10
# Key-exchange groups of Mozilla's intermediate and modern profiles. Valkey has no directive for them, so
# the start script gives valkey-server an OpenSSL configuration of its own (OPENSSL_CONF) that sets them
# for every TLS context, and keeps Debian's security level 2 (no RSA below 2048 bits, no SHA-1).
TLS_GROUPS = "X25519:prime256v1:secp384r1"
OPENSSL_CNF = f"""openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Groups = {TLS_GROUPS}
CipherString = DEFAULT:@SECLEVEL=2
"""


def render_start_script(cluster: ValkeyCluster, layout: Layout = POD_LAYOUT, conf: str | None = None) -> str:
    """The start script; `conf`: the valkey.conf it starts the server on, when the caller rendered it already."""
    mode = cluster.spec.mode
    lines = [
        "#!/bin/sh",
        "# Writes this pod's part of the configuration, then becomes valkey-server. Rendered by",
        "# valkey-tls-operator: the operator overwrites edits.",
        "set -eu",
        f'fqdn="${{{ENV_POD_NAME}}}.${{{ENV_POD_DOMAIN}}}"',
        f'out="{layout.runtime_file}"',
        "umask 077",
        f'mkdir -p "{layout.run_dir}"',
        ': > "$out"',
    ]
    if mode == "replication":
        lines += [
            'echo "replica-announce-ip $fqdn" >> "$out"',
            # A pod never makes itself primary: it boots as a replica of the primary the ConfigMap names
            # (the file may lag the ConfigMap; the operator repoints). The one named waits, read-only, as a
            # replica of a port where nothing listens (its link fails at once, without blocking the server,
            # as a TLS link to itself would), until the operator promotes it or a replica that holds the
            # data. So a pod that restarted empty is never the source its peers re-sync from.
            f'primary=$(cat "{layout.primary_file}" 2>/dev/null || true)',
            f'if [ -n "$primary" ] && [ "$primary" != "${{{ENV_POD_NAME}}}" ]; then',
            f'  echo "replicaof $primary.${{{ENV_POD_DOMAIN}}} {layout.port}" >> "$out"',
            "else",
            f'  echo "replicaof {NOWHERE_HOST} {NOWHERE_PORT}" >> "$out"',
            "fi",
        ]
    if mode == "cluster":
        lines += [
            'echo "cluster-announce-hostname $fqdn" >> "$out"',
            f'echo "cluster-announce-human-nodename ${{{ENV_POD_NAME}}}" >> "$out"',
        ]
    if cluster.spec.tls.enabled:
        cnf = f"{layout.run_dir}/openssl.cnf"
        lines += [f"cat > \"{cnf}\" <<'EOF'", *OPENSSL_CNF.splitlines(), "EOF", f'export OPENSSL_CONF="{cnf}"']
    if not cluster.spec.persistence.enabled:
        # Data lives in memory only: a dump left in the pod's volume (by a replica's sync, or a SAVE) is
        # stale. Loaded at start, it would bring back old keys; in cluster mode a new node would even claim
        # their slots as its own.
        lines.append(f'rm -f "{layout.data_dir}/dump.rdb" "{layout.data_dir}"/temp-*.rdb')
    if mode == "cluster" and not cluster.spec.persistence.enabled:
        lines += _without_data(cluster, layout)
    if cluster.spec.tls.acls:
        # The clients' ACL users, from their Secret's file (a rules change reaches running pods by ACL
        # SETUSER, not by a restart). Included only if mounted: a pod of the previous template restarting
        # before the roll reaches it must still start.
        lines += [f'if [ -f "{layout.users_file}" ]; then echo "include {layout.users_file}" >> "$out"; fi']
    lines += [
        f'if [ -n "${{{ENV_PASSWORD}:-}}" ]; then',
        f'  printf \'requirepass "%s"\\nmasterauth "%s"\\n\' "${{{ENV_PASSWORD}}}" "${{{ENV_PASSWORD}}}" >> "$out"',
        "fi",
        *_start(cluster, layout, render_valkey_conf(cluster, layout) if conf is None else conf),
    ]
    return "\n".join(lines) + "\n"


def _start(cluster: ValkeyCluster, layout: Layout, conf: str) -> list[str]:
    """exec valkey-server on the config. A config with directives newer than the baseline is read through a
    copy without the ones this server's version does not know: a pod of the previous template that restarts
    during an upgrade (an 8.1 server, a ConfigMap already rendered for 9.1) still starts, without them,
    instead of refusing the whole file. The operator reads each pod's own version (INFO server) and gives
    it nothing it needs those directives for. A version that cannot be read keeps the config whole."""
    needs = dict(SINCE)
    if cluster.spec.tls.enabled:
        needs["io-threads"] = (8, 0)  # threaded I/O on TLS connections is a known crash on the 7.2 line
    gated = sorted({w for line in conf.splitlines() for w in line.split(" ")[:1] if needs.get(w, BASELINE) > BASELINE})
    if not gated:
        return [f'exec valkey-server "{layout.config_file}" "$@"']
    copy = f"{layout.run_dir}/valkey.conf"
    unknown = " || ".join(f'($1 == "{d}" && v < {needs[d][0] * 100 + needs[d][1]})' for d in gated)
    return [
        # 901 for 9.1.x.
        "v=$(valkey-server --version | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^v=[0-9]+[.][0-9]+/) "
        '{split(substr($i, 3), p, "."); print p[1] * 100 + p[2]}}\')',
        # A fresh copy each start (a container restart finds the last one): written, not `cp`-ed, so that
        # it is the owner's to rewrite (`cp` keeps the ConfigMap file's read-only mode).
        f'rm -f "{copy}"',
        'if [ -z "$v" ]; then',
        '  echo "start.sh: valkey-server --version names no version; the config is used whole" >&2',
        f'  cat "{layout.config_file}" > "{copy}"',
        "else",
        f'  awk -v v="$v" \'{unknown} {{next}} {{print}}\' "{layout.config_file}" > "{copy}"',
        "fi",
        f'exec valkey-server "{copy}" "$@"',
    ]


# The IP of a CLUSTER NODES line's `ip:port@bus[,hostname]` (IPv6 addresses have colons of their own).
_AWK_IP = '{a = $2; sub(/:[0-9]+@.*$/, "", a); print a}'


def _without_data(cluster: ValkeyCluster, layout: Layout) -> list[str]:
    """Cluster mode without persistence: nodes.conf outlives a container restart (it sits in the pod's
    volume), the data (in memory only) does not. A node that was a primary must never come back as the
    owner of its slots, empty, for its replicas to re-sync from; and not even as a new node at the same
    address before its replica has taken the slots over (the replica would re-sync from whatever answers
    there). So it sets its old identity aside, waits (bounded) until a peer says the old id serves no
    slot any more, and only then starts, as a new, empty node that the operator makes a replica."""
    nodes = f"{layout.data_dir}/nodes.conf"
    aside = f"{nodes}.without-data"
    peer_cli = " ".join(cli_command(cluster, layout, host='"$ip"'))
    return [
        f'if grep -q "myself,master" "{nodes}" 2>/dev/null; then',
        f'  mv "{nodes}" "{aside}"',
        "fi",
        f'if [ -f "{aside}" ] && [ ! -f "{nodes}" ]; then',
        f"  old=$(awk '/myself/ {{print $1; exit}}' \"{aside}\")",
        f'  [ -n "${{{ENV_PASSWORD}:-}}" ] && {CLI_AUTH}',
        # The shell is PID 1, which ignores a signal it has no handler for: without this trap a pod deleted
        # while it waits would take its whole grace period to stop.
        "  trap 'exit 143' TERM INT",
        "  since=$(date +%s)",
        "  forced=0",
        "  held=0",
        f"  while [ $(($(date +%s) - since)) -lt {TAKEOVER_WAIT_SECONDS} ]; do",
        "    answered=0",
        "    held=0",
        "    orphan=0",
        # Peers with an address, not known to have failed; each asked for at most 2 s.
        f"    for ip in $(awk 'NF >= 8 && !/myself/ && $3 !~ /fail|noaddr|handshake/ {_AWK_IP}' \"{aside}\"); do",
        f"      view=$(timeout 2 {peer_cli} cluster nodes 2>/dev/null) || continue",
        '      case "$view" in *myself*) ;; *) continue ;; esac',  # CLUSTER NODES, not an error
        # A peer that does not know the old id (itself new) cannot tell: ask the next one.
        '      echo "$view" | awk -v id="$old" \'$1 == id {f = 1} END {exit !f}\' || continue',
        "      answered=1",
        '      if echo "$view" | awk -v id="$old" \'$1 == id && NF > 8 {f = 1} END {exit !f}\'; then held=1; fi',
        '      if [ "$held" = 1 ] && ! echo "$view" | awk -v id="$old" \'$4 == id {f = 1} END {exit !f}\'; then',
        "        orphan=1",
        "      fi",
        *_force_takeover(peer_cli),
        "      break",
        "    done",
        '    if [ "$answered" = 1 ] && [ "$held" = 0 ]; then break; fi',
        '    if [ "$orphan" = 1 ]; then',
        # No replica can take the slots over (replicasPerShard 0): the data is gone with the process; the
        # node comes back as their owner, so the shard serves again (empty) instead of never.
        f'      mv "{aside}" "{nodes}"',
        '      echo "no replica of $old can take its slots over: it starts again as their owner, without its data"',
        "      held=0",
        "      break",
        "    fi",
        f'    if [ "$answered" = 0 ] && [ $(($(date +%s) - since)) -ge {NO_PEER_WAIT_SECONDS} ]; then break; fi',
        '    if [ "$answered" = 1 ]; then',
        '      echo "waiting for a replica to take over the slots of $old (this node lost its data)"',
        "    else",
        '      echo "waiting for a peer to answer: has a replica taken over the slots of $old?"',
        "    fi",
        "    sleep 1",
        "  done",
        '  if [ "$held" = 1 ]; then',
        # Starting now would put an empty node where the old one's replica re-syncs from: exit, and the
        # kubelet starts this container again, which waits again.
        f'    echo "the slots of $old are still not taken over after {TAKEOVER_WAIT_SECONDS} s: exiting to wait again"',
        "    exit 1",
        "  fi",
        "fi",
    ]


def _force_takeover(peer_cli: str) -> list[str]:
    """Once: the old primary is dead for certain (this is its container, restarted), so its most caught-up
    linked replica is asked to take the slots over at once (CLUSTER FAILOVER FORCE, still granted by a
    majority of primaries) instead of after cluster-node-timeout. What the dead process had not replicated
    is lost either way; writes to the shard resume seconds sooner."""
    replicas = f'awk -v id="$old" \'$4 == id && $3 !~ /fail/ && $8 == "connected" {_AWK_IP}\''

    offset = "awk -F: '/^slave_repl_offset/ {print $2 + 0}'"
    return [
        '      if [ "$held" = 1 ] && [ "$forced" = 0 ]; then',
        "        forced=1",
        '        best=""',
        "        most=-1",
        f'        for ip in $(echo "$view" | {replicas}); do',
        f"          off=$(timeout 2 {peer_cli} info replication 2>/dev/null | {offset})",
        '          if [ -n "$off" ] && [ "$off" -gt "$most" ]; then best=$ip; most=$off; fi',
        "        done",
        '        if [ -n "$best" ]; then',
        "          ip=$best",
        f"          timeout 2 {peer_cli} cluster failover force > /dev/null 2>&1 || true",
        '          echo "asked $best to take over the slots of $old at once (CLUSTER FAILOVER FORCE)"',
        "        fi",
        "      fi",
    ]


def cli_command(cluster: ValkeyCluster, layout: Layout = POD_LAYOUT, host: str = "localhost") -> list[str]:
    """valkey-cli arguments that reach the local server the way a client must: TLS, name check, own cert."""
    args = ["valkey-cli", "--no-auth-warning", "-h", host, "-p", str(layout.port)]
    if cluster.spec.tls.enabled:
        args += ["--tls", "--cacert", layout.ca_file, "--sni", host]
        if cluster.spec.tls.client_auth != "none":
            # The pod's own server certificate carries clientAuth, so the probe authenticates with it.
            args += ["--cert", layout.cert_file, "--key", layout.key_file]
    return args


def probe_command(cluster: ValkeyCluster, layout: Layout = POD_LAYOUT, host: str = "localhost") -> list[str]:
    """The liveness check: a PING over the same TLS (and mTLS) a client uses."""
    return [*cli_command(cluster, layout, host), "ping"]


def _cluster_readiness(cluster: ValkeyCluster, cli: str) -> list[str]:
    """Cluster mode: a node that has not joined (a new pod, before the operator meets it and makes it a
    replica) is a lone primary without slots: not ready, so clients are not sent to it and a rollout does
    not take the next pod down meanwhile."""
    if cluster.spec.mode != "cluster":
        return []
    return [
        f"  state=$({cli} cluster info)",
        '  case "$state" in *cluster_state:ok*) ;; *) exit 1 ;; esac',
    ]


def render_probe_script(cluster: ValkeyCluster, layout: Layout = POD_LAYOUT) -> str:
    """`probe.sh` (liveness): the server answers PING. `probe.sh readiness`: it serves as a primary, or as a
    replica whose link to the primary is up; a replica still syncing (or cut off) serves stale data, and the
    rollout must not take the next pod down while it is not caught up. `probe.sh prestop`: a primary with
    replicas waits (bounded) until the operator has moved its role."""
    cli = " ".join(cli_command(cluster, layout))
    return (
        "\n".join(
            [
                "#!/bin/sh",
                "# Liveness: PING. Readiness: primary, or replica with master_link_status:up. Over the same TLS",
                "# (and mTLS) a client uses.",
                "set -eu",
                f'if [ -n "${{{ENV_PASSWORD}:-}}" ]; then',
                f"  {CLI_AUTH}",
                "fi",
                'if [ "${1:-liveness}" = prestop ]; then',
                "  # A primary with replicas keeps serving until the operator has handed its role over (FAILOVER",
                f"  # TO), at most {PRESTOP_WAIT_SECONDS} s: a graceful deletion or a drain then loses no write.",
                "  i=0",
                f'  while [ "$i" -lt {PRESTOP_WAIT_SECONDS} ]; do',
                f"    info=$({cli} info replication) || exit 0",
                '    case "$info" in *role:master*) ;; *) exit 0 ;; esac',
                '    case "$info" in *connected_slaves:0*) exit 0 ;; esac',
                "    sleep 1",
                "    i=$((i + 1))",
                "  done",
                "  exit 0",
                "fi",
                'if [ "${1:-liveness}" = readiness ]; then',
                *_cluster_readiness(cluster, cli),
                f"  info=$({cli} info replication)",
                '  case "$info" in',
                "    *role:master*|*master_link_status:up*) exit 0 ;;",
                "    *) exit 1 ;;",
                "  esac",
                "fi",
                f"{cli} ping | grep -q PONG",
            ]
        )
        + "\n"
    )
