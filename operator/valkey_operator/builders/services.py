"""Services: the read-write endpoint, the read-only endpoint for replicas, the headless peer Service."""

from __future__ import annotations

from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.common import Manifest, metadata
from valkey_operator.conf.layout import Layout

ROLE_LABEL, ROLE_PRIMARY, ROLE_REPLICA = names.ROLE_LABEL, names.ROLE_PRIMARY, names.ROLE_REPLICA


def ports(cluster: ValkeyCluster, layout: Layout) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "valkey", "port": layout.port, "targetPort": "valkey", "protocol": "TCP"}]
    if cluster.spec.tls.mode == "preferred":
        out.append({"name": "valkey-plain", "port": layout.plain_port, "targetPort": "valkey-plain", "protocol": "TCP"})
    return out


def _service(cluster: ValkeyCluster, layout: Layout, name: str, selector: dict[str, str], **spec: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, name, names.COMPONENT_SERVER),
        "spec": {"selector": selector, "ports": ports(cluster, layout), **spec},
    }


def services(cluster: ValkeyCluster, layout: Layout) -> list[Manifest]:
    base = names.selector_labels(cluster.name)
    # In replication mode the operator labels pods with their role, so `cache` reaches the primary only.
    replicated = cluster.spec.mode == "replication"
    primary = {**base, ROLE_LABEL: ROLE_PRIMARY} if replicated else base
    out = [
        _service(cluster, layout, cluster.names.service, primary, type="ClusterIP"),
        _service(
            cluster,
            layout,
            cluster.names.headless_service,
            base,
            clusterIP="None",
            # Peers must resolve each other before they are Ready (replication sync, cluster meet).
            publishNotReadyAddresses=True,
        ),
    ]
    if replicated:
        out.append(
            _service(cluster, layout, cluster.names.ro_service, {**base, ROLE_LABEL: ROLE_REPLICA}, type="ClusterIP")
        )
    if cluster.spec.mode == "cluster":
        out[1]["spec"]["ports"].append({"name": "bus", "port": layout.bus_port, "targetPort": "bus", "protocol": "TCP"})
    return out
