"""k8s.client.Kube against the real API server: a GET's three outcomes (the object, None for none, the
dynamic client's error type for any other failure) and an apply's decoded answer."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.dynamic.exceptions import ForbiddenError

from tests.integration.conftest import kubectl
from valkey_operator import names
from valkey_operator.k8s.client import Kube, load_config


def _configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def test_get_answers_the_object_or_none(unwatched_namespace: str) -> None:
    kube = Kube()
    assert kube.get("v1", "ConfigMap", unwatched_namespace, "not-made") is None
    kubectl("create", "configmap", "made", "-n", unwatched_namespace, "--from-literal=answer=42")
    found = kube.get("v1", "ConfigMap", unwatched_namespace, "made")
    assert found is not None
    assert (found["kind"], found["metadata"]["name"], found["data"]) == ("ConfigMap", "made", {"answer": "42"})
    # Many GETs of missing names in a row: each gives its connection back to the pool, and the next takes
    # it again (a response left unread would hold its connection: each GET would open one more).
    for i in range(100):
        assert kube.get("v1", "Secret", unwatched_namespace, f"missing-{i}") is None
    pool = kube.api_client.rest_client.pool_manager.connection_from_url(kube.api_client.configuration.host)
    assert pool.num_connections <= 2, pool.num_connections
    assert kube.get("v1", "ConfigMap", unwatched_namespace, "made") == found


def test_get_answers_a_cluster_scoped_object_or_none(unwatched_namespace: str) -> None:
    """A kind with no namespace (the path has none): the namespace made for this test, and one never made."""
    kube = Kube()
    found = kube.get("v1", "Namespace", "", unwatched_namespace)
    assert found is not None
    assert (found["kind"], found["metadata"]["name"]) == ("Namespace", unwatched_namespace)
    assert kube.get("v1", "Namespace", "", f"{unwatched_namespace}-never-made") is None


def test_get_raises_the_dynamic_clients_error_for_any_other_failure(unwatched_namespace: str) -> None:
    api_client = load_config()
    # No RBAC grants this user anything. (kubernetes is py.typed but leaves set_default_header unannotated.)
    api_client.set_default_header("Impersonate-User", "nobody-at-all")  # type: ignore[no-untyped-call]
    with pytest.raises(ForbiddenError) as raised:
        Kube(api_client).get("v1", "ConfigMap", unwatched_namespace, "not-made")
    assert raised.value.status == 403


def test_apply_answers_the_object_as_written(unwatched_namespace: str) -> None:
    kube = Kube()
    out = kube.apply(_configmap(unwatched_namespace, "applied", answer="42"))
    assert isinstance(out, dict)
    assert (out["metadata"]["name"], out["data"]) == ("applied", {"answer": "42"})
    assert out["metadata"]["managedFields"][0]["manager"] == names.MANAGER
    again = kube.apply(_configmap(unwatched_namespace, "applied", answer="43"))
    assert again["data"] == {"answer": "43"}
    assert int(again["metadata"]["resourceVersion"]) > int(out["metadata"]["resourceVersion"])
