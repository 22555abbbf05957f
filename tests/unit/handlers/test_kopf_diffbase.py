"""kopf's essence built for the ValkeyClusters only."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from valkey_operator.handlers.kopf_diffbase import LeanDiffBase

PREFIX = "kopf.valkeyops.dev"


def _body(kind: str | None, **extra: Any) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "metadata": {
            "name": "cache",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {"valkeyops.dev/rotate-certificates": "now", f"{PREFIX}/last-handled-configuration": "{}"},
        },
        "spec": {"mode": "replication", "replicas": 3},
        "status": {"phase": "Ready"},
        **extra,
    }
    if kind is not None:
        raw["kind"] = kind
    return kopf.Body(cast(kopf.RawBody, raw))


@pytest.mark.parametrize("kind", ["ValkeyCluster", None])
def test_a_valkeycluster_or_an_object_without_kind_has_kopfs_own_essence(kind: str | None) -> None:
    body = _body(kind)
    lean = LeanDiffBase(prefix=PREFIX).build(body=body)
    assert lean == kopf.AnnotationsDiffBaseStorage(prefix=PREFIX).build(body=body)
    assert lean["spec"] == {"mode": "replication", "replicas": 3}
    assert lean["metadata"]["annotations"] == {"valkeyops.dev/rotate-certificates": "now"}


@pytest.mark.parametrize("kind", ["Pod", "Secret", "StatefulSet", "Certificate"])
def test_any_other_object_has_the_empty_essence(kind: str) -> None:
    body = _body(kind, data={"tls.key": "c2VjcmV0"})
    assert LeanDiffBase(prefix=PREFIX).build(body=body) == {}
