"""The StatefulSet: a hardened pod with its TLS Secret and config mounted as directories, TLS probes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.common import Manifest, metadata
from valkey_operator.conf import scripts
from valkey_operator.conf.layout import PROBE_KEY, START_KEY, Layout

UID = 999  # the valkey user of the official and the Debian-based images
CONTAINER = "valkey"


def _env(cluster: ValkeyCluster) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": scripts.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": scripts.ENV_POD_DOMAIN, "value": cluster.names.pod_domain},
    ]
    if cluster.spec.auth_enabled:
        env.append(
            {
                "name": scripts.ENV_PASSWORD,
                "valueFrom": {"secretKeyRef": {"name": cluster.names.auth_secret, "key": "password"}},
            }
        )
    return env


def _container_ports(cluster: ValkeyCluster, layout: Layout) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "valkey", "containerPort": layout.port, "protocol": "TCP"}]
    if cluster.spec.tls.mode == "preferred":
        out.append({"name": "valkey-plain", "containerPort": layout.plain_port, "protocol": "TCP"})
    if cluster.spec.mode == "cluster":
        out.append({"name": "bus", "containerPort": layout.bus_port, "protocol": "TCP"})
    return out


def _probe(layout: Layout, kind: str, period: int, failures: int, initial_delay: int) -> dict[str, Any]:
    return {
        "exec": {"command": ["sh", f"{layout.config_dir}/{PROBE_KEY}", kind]},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _volumes(cluster: ValkeyCluster) -> list[dict[str, Any]]:
    # Mounted as whole directories, never subPath: the kubelet refreshes them when the Secret changes.
    volumes: list[dict[str, Any]] = [
        {"name": "tls", "secret": {"secretName": cluster.names.tls_secret, "defaultMode": 0o440}},
        {"name": "config", "configMap": {"name": cluster.names.config_map, "defaultMode": 0o444}},
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    if not cluster.spec.persistence.enabled:
        volumes.append({"name": "data", "emptyDir": {}})
    if cluster.spec.tls.acls:  # the clients' ACL users: only then, so that other clusters do not roll
        # optional: a pod starts without it (start.sh includes the file only if present), so the Secret can go
        # once no client has rules, whatever pod still names it.
        users = {"secretName": cluster.names.users_secret, "defaultMode": 0o440, "optional": True}
        volumes.append({"name": "users", "secret": users})
    return volumes


def _claim_templates(cluster: ValkeyCluster) -> list[dict[str, Any]]:
    p = cluster.spec.persistence
    if not p.enabled:
        return []
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": p.size}}}
    if p.storage_class_name:
        spec["storageClassName"] = p.storage_class_name
    return [{"metadata": {"name": "data", "labels": names.selector_labels(cluster.name)}, "spec": spec}]


def _spread(cluster: ValkeyCluster) -> list[dict[str, Any]]:
    """Pods of one ValkeyCluster prefer different nodes (never a hard rule: a one-node cluster still runs)."""
    selector = {"matchLabels": names.selector_labels(cluster.name)}
    if cluster.spec.topology_spread is None:
        return [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
            }
        ]
    return [{"labelSelector": selector, **c} for c in cluster.spec.topology_spread]


def bundle_digest(bundle: bytes) -> str:
    return hashlib.sha256(bundle).hexdigest()[:16]


def pod_template(
    cluster: ValkeyCluster, layout: Layout, tls_revision: int, config_digest: str, trust: str = ""
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cluster.spec.image,
        "imagePullPolicy": cluster.spec.image_pull_policy,
        "command": ["sh", f"{layout.config_dir}/{START_KEY}"],
        "env": _env(cluster),
        "ports": _container_ports(cluster, layout),
        "readinessProbe": _probe(layout, "readiness", period=5, failures=3, initial_delay=2),
        "livenessProbe": _probe(layout, "liveness", period=10, failures=6, initial_delay=10),
        # Replication, and each shard of a cluster: a primary being deleted keeps serving until the operator
        # has handed its role over (FAILOVER TO, CLUSTER FAILOVER).
        **(
            {"lifecycle": {"preStop": {"exec": {"command": ["sh", f"{layout.config_dir}/{PROBE_KEY}", "prestop"]}}}}
            if cluster.spec.mode != "standalone"
            else {}
        ),
        "resources": dict(cluster.spec.resources),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tls", "mountPath": layout.tls_dir, "readOnly": True},
            {"name": "config", "mountPath": layout.config_dir, "readOnly": True},
            {"name": "run", "mountPath": layout.run_dir},
            {"name": "data", "mountPath": layout.data_dir},
            *([{"name": "users", "mountPath": layout.users_dir, "readOnly": True}] if cluster.spec.tls.acls else []),
        ],
    }
    annotations = {names.ANN_CONFIG_HASH: config_digest}
    if cluster.spec.tls.rotation_strategy == "RollingRestart":
        annotations[names.ANN_TLS_REVISION] = str(tls_revision)
    elif trust:
        # Under HotReload a new leaf reaches pods without a restart (a live handshake confirms it), so the
        # revision stays off the template. A new trust bundle (a CA rotation's phases) cannot be confirmed
        # from outside, so it restarts pods, one at a time, like RollingRestart.
        annotations[names.ANN_TRUST_BUNDLE] = trust
    template: dict[str, Any] = {
        "metadata": {
            "labels": {**names.labels(cluster.name, names.COMPONENT_SERVER)},
            "annotations": annotations,
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **({"topologySpreadConstraints": spread} if (spread := _spread(cluster)) else {}),
            "containers": [container],
            "volumes": _volumes(cluster),
        },
    }
    # Every pod carries the digest of the template it was made from, so "is this pod current" is a
    # comparison of two strings, read from the pod itself (not from the StatefulSet's status, which lags).
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]
    annotations[names.ANN_TEMPLATE_HASH] = digest
    return template


def template_digest(manifest: Manifest) -> str:
    """The template hash of a StatefulSet manifest built here."""
    return str(manifest["spec"]["template"]["metadata"]["annotations"][names.ANN_TEMPLATE_HASH])


def statefulset(
    cluster: ValkeyCluster, layout: Layout, tls_revision: int, config_digest: str, trust: str = ""
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cluster, cluster.names.statefulset, names.COMPONENT_SERVER),
        "spec": {
            "serviceName": cluster.names.headless_service,
            "replicas": cluster.spec.pod_count,
            "selector": {"matchLabels": names.selector_labels(cluster.name)},
            # Peers start together (a cluster meets all at once); the operator rolls them itself, one at a
            # time, replicas first and the primary last after a switchover.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "template": pod_template(cluster, layout, tls_revision, config_digest, trust),
            "volumeClaimTemplates": _claim_templates(cluster),
        },
    }


def pod_disruption_budget(cluster: ValkeyCluster) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cluster, cluster.names.pdb, names.COMPONENT_SERVER),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector_labels(cluster.name)}},
    }
