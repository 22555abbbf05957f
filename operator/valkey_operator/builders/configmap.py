"""The ConfigMap with valkey.conf, the start and probe scripts, and the primary's name."""

from __future__ import annotations

import hashlib

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.common import Manifest, metadata
from valkey_operator.conf import layout as lay
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.scripts import render_probe_script, render_start_script
from valkey_operator.conf.valkey_conf import render_valkey_conf


def config_files(cluster: ValkeyCluster, layout: Layout) -> dict[str, str]:
    """The files whose change must restart pods (their hash goes on the pod template)."""
    conf = render_valkey_conf(cluster, layout)  # once: the start script reads which directives it has
    return {
        lay.CONFIG_KEY: conf,
        lay.START_KEY: render_start_script(cluster, layout, conf),
        lay.PROBE_KEY: render_probe_script(cluster, layout),
    }


def config_hash(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(key.encode() + b"\0" + files[key].encode() + b"\0")
    return digest.hexdigest()[:16]


def config_map(cluster: ValkeyCluster, files: dict[str, str], primary: str | None) -> Manifest:
    data = dict(files)
    if cluster.spec.mode == "replication":
        # Read at pod start; changing it (a switchover) needs no restart, so it stays out of the hash.
        data[lay.PRIMARY_KEY] = primary or cluster.names.pod(0)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cluster, cluster.names.config_map, names.COMPONENT_CONFIG),
        "data": data,
    }
