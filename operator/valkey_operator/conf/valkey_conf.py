"""spec -> valkey.conf: every TLS, replication and cluster directive the spec implies."""

from __future__ import annotations

from valkey_operator.api.rules import quantity
from valkey_operator.api.schema import INTERMEDIATE_CIPHERS
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.conf.layout import POD_LAYOUT, Layout
from valkey_operator.conf.users import maps_certificates
from valkey_operator.conf.version import Version, effective_version, supports

AUTH_CLIENTS = {"required": "yes", "optional": "optional", "none": "no"}
# How often Valkey >= 9.1 re-reads its certificate files by itself under HotReload.
AUTO_RELOAD_INTERVAL_SECONDS = 60
# io-threads from a CPU limit: at most this many (Valkey's own advice: more rarely helps).
MAX_IO_THREADS = 8


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tls_lines(cluster: ValkeyCluster, layout: Layout, version: Version) -> list[str]:
    tls = cluster.spec.tls
    if not tls.enabled:
        return [f"port {layout.port}"]
    lines = [
        f"port {layout.plain_port if tls.mode == 'preferred' else 0}",
        f"tls-port {layout.port}",
        f"tls-cert-file {layout.cert_file}",
        f"tls-key-file {layout.key_file}",
        f"tls-ca-cert-file {layout.ca_file}",
        f"tls-auth-clients {AUTH_CLIENTS[tls.client_auth]}",
        f"tls-protocols {_quote(' '.join(tls.protocols))}",
    ]
    # Unset: Mozilla's intermediate profile (ECDHE + AEAD), not OpenSSL's wider default.
    lines.append(f"tls-ciphers {_quote(tls.ciphers or INTERMEDIATE_CIPHERS)}")
    if tls.ciphersuites:
        lines.append(f"tls-ciphersuites {_quote(tls.ciphersuites)}")
    if cluster.spec.mode != "standalone":
        lines.append(f"tls-replication {'yes' if tls.replication else 'no'}")
    if cluster.spec.mode == "cluster":
        lines.append(f"tls-cluster {'yes' if tls.cluster_bus else 'no'}")
    if tls.rotation_strategy == "HotReload" and supports(version, "tls-auto-reload-interval"):
        lines.append(f"tls-auto-reload-interval {AUTO_RELOAD_INTERVAL_SECONDS}")
    return lines


def io_threads(cluster: ValkeyCluster) -> int:
    """spec.ioThreads, else the whole cores of the container's CPU limit (at most 8), else 1."""
    if cluster.spec.io_threads is not None:
        return cluster.spec.io_threads
    cores = quantity((cluster.spec.resources.get("limits") or {}).get("cpu", "1"))
    return 1 if cores.is_nan() else max(1, min(int(cores), MAX_IO_THREADS))


def _thread_lines(cluster: ValkeyCluster, version: Version) -> list[str]:
    """Network I/O (and, from Valkey 8.1 on, TLS work) on more threads than the main one. Before 8.0 (and
    for an image whose version is unknown), never with TLS: threaded I/O on TLS connections is a known crash
    on the 7.2 line; without TLS, reads stay on the main thread unless asked."""
    threads = io_threads(cluster)
    if threads == 1 or (version < (8, 0) and cluster.spec.tls.enabled):
        return []
    return [f"io-threads {threads}", *(["io-threads-do-reads yes"] if version < (8, 0) else [])]


def _mode_lines(cluster: ValkeyCluster, layout: Layout) -> list[str]:
    if cluster.spec.mode != "cluster":
        return []
    return [
        "cluster-enabled yes",
        f"cluster-config-file {layout.data_dir}/nodes.conf",
        "cluster-node-timeout 5000",
        f"cluster-port {layout.bus_port}",
        # Peers and clients get hostnames, which the certificates cover; pod IPs are not in them.
        "cluster-preferred-endpoint-type hostname",
        "cluster-require-full-coverage no",
        "cluster-allow-replica-migration no",
    ]


def _replication_lines(cluster: ValkeyCluster) -> list[str]:
    """A primary pings its replicas every second (not every 10 s), so a replica's silence tells the operator
    within seconds that its primary is cut off. Write safety: an isolated primary stops accepting writes it
    would later lose."""
    rep = cluster.spec.replication
    if cluster.spec.mode == "standalone":
        return []
    lines = ["repl-ping-replica-period 1"]
    if rep.min_replicas_to_write:
        lines += [f"min-replicas-to-write {rep.min_replicas_to_write}", f"min-replicas-max-lag {rep.max_lag_seconds}"]
    return lines


def _persistence_lines(cluster: ValkeyCluster, layout: Layout) -> list[str]:
    lines = [f"dir {layout.data_dir}"]
    if cluster.spec.persistence.enabled:
        lines += ["appendonly yes", "appendfsync everysec"]
    else:
        # A replica's full sync leaves the received RDB in the data folder: drop it once loaded, so no pod
        # ever starts again from a stale copy (the start script removes any left over, too).
        lines += ["appendonly no", 'save ""', "rdb-del-sync-files yes"]
    return lines


def _user_lines(cluster: ValkeyCluster) -> list[str]:
    """Clients with ACL users, on Valkey 9.0 or later with client certificates asked for: the certificate's
    CN names the user a connection logs in as. (The users themselves come from a file of their own, which
    the start script includes: see conf.scripts.)"""
    return ["tls-auth-clients-user CN"] if maps_certificates(cluster) else []


def render_valkey_conf(cluster: ValkeyCluster, layout: Layout = POD_LAYOUT) -> str:
    """The shared valkey.conf of every pod; per-pod lines come from the start script's runtime.conf."""
    version = effective_version(cluster.spec.image)
    lines = [
        f"# valkey.conf for ValkeyCluster {cluster.namespace}/{cluster.name}, rendered by valkey-tls-operator",
        f"# for Valkey {version[0]}.{version[1]}. The operator overwrites edits.",
        "bind * -::*",
        "protected-mode no",
        "daemonize no",
        'logfile ""',
        *_tls_lines(cluster, layout, version),
        *_mode_lines(cluster, layout),
        *_replication_lines(cluster),
        *_persistence_lines(cluster, layout),
        *_thread_lines(cluster, version),
    ]
    if supports(version, "hide-user-data-from-log"):
        lines.append("hide-user-data-from-log yes")
    lines += _user_lines(cluster)
    # Last, so the per-pod settings (replicaof, announce names, password) win.
    lines.append(f"include {layout.runtime_file}")
    return "\n".join(lines) + "\n"
