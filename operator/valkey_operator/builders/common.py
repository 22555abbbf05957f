"""Metadata every owned object shares: name, namespace, labels, owner reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster

Manifest = dict[str, Any]


def owner_reference(cluster: ValkeyCluster) -> dict[str, Any]:
    """Controller owner reference: deleting the ValkeyCluster garbage-collects the object."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": cluster.name,
        "uid": cluster.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    cluster: ValkeyCluster,
    name: str,
    component: str,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": cluster.namespace,
        "labels": names.labels(cluster.name, component),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if cluster.uid:
        # Offline renders have no uid; an owner reference without one would be refused.
        meta["ownerReferences"] = [owner_reference(cluster)]
    return meta
