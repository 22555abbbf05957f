"""The operator never takes what is not its own, on a real API server: a user's Secret, Service or ConfigMap
with a name the cluster derives keeps its content, and the cluster stops with a condition naming it; two
ValkeyClusters whose derived names collide (`q` derives the Service `q-ro`, which is `q-ro`'s own) are
told apart the same way. Removing the user's object lets the cluster go on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.integration.conftest import (
    OperatorThread,
    apply,
    condition,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    wait_until,
)

pytestmark = pytest.mark.integration


def user_object(namespace: str, kind: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    if kind == "Secret":
        body["stringData"] = {"mine": "do not touch"}
    elif kind == "ConfigMap":
        body["data"] = {"mine": "do not touch"}
    else:
        body["spec"] = {"ports": [{"port": 1234, "name": "mine"}], "selector": {"app": "mine"}}
    return body


def content(namespace: str, kind: str, name: str) -> tuple[str, str]:
    obj = kubectl_json("get", kind.lower(), name, "-n", namespace)
    kept = {k: v for k, v in obj.items() if k in ("data", "spec")}
    return obj["metadata"]["resourceVersion"], json.dumps(kept, sort_keys=True)


def refused_for(namespace: str, name: str, what: str) -> dict[str, Any]:
    def said() -> dict[str, Any] | None:
        cond = condition(get_vkc(namespace, name), "Degraded")
        return cond if cond.get("reason") == "ObjectNotOwned" else None

    cond: dict[str, Any] = wait_until(said, what=f"{name} to refuse over {what}")
    assert what in cond["message"], cond
    assert condition(get_vkc(namespace, name), "Ready")["status"] == "False"
    events = kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}").stdout
    assert events.count("ObjectNotOwned") == 1, events
    return cond


@pytest.mark.parametrize(
    ("kind", "name"), [("Secret", "cache-tls"), ("Service", "cache-ro"), ("ConfigMap", "cache-config")]
)
def test_a_users_object_with_a_derived_name_keeps_its_content(
    operator: OperatorThread, namespace: str, kind: str, name: str
) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(user_object(namespace, kind, name)))
    before = content(namespace, kind, name)
    apply(example_body(namespace))
    refused_for(namespace, "cache", f"{kind} {name}")
    # Nothing of the cluster's was made, the user's object is as it was.
    assert kubectl("get", "statefulset", "cache", "-n", namespace, check=False).returncode != 0
    assert content(namespace, kind, name) == before
    # Once the user's object is gone, the cluster goes on by itself (the next pass finds the name free).
    kubectl("delete", kind.lower(), name, "-n", namespace)
    wait_until(lambda: kubectl("get", "statefulset", "cache", "-n", namespace, check=False).returncode == 0,
               timeout=90, what="the StatefulSet once the name is free")  # fmt: skip
    owner = kubectl_json("get", kind.lower(), name, "-n", namespace)["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owner] == ["ValkeyCluster"]


def test_two_clusters_whose_derived_names_collide(operator: OperatorThread, namespace: str) -> None:
    apply(example_body(namespace, name="q-ro"))
    wait_until(lambda: kubectl("get", "service", "q-ro", "-n", namespace, check=False).returncode == 0,
               what="q-ro's read-write Service")  # fmt: skip
    before = content(namespace, "Service", "q-ro")
    apply(example_body(namespace, name="q"))
    refused_for(namespace, "q", "Service q-ro")
    assert content(namespace, "Service", "q-ro")[1] == before[1]
    owners = kubectl_json("get", "service", "q-ro", "-n", namespace)["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["q-ro"]


def test_two_clusters_whose_derived_names_collide_the_other_way_round(operator: OperatorThread, namespace: str) -> None:
    # `q` first: its read-only Service is `q-ro`; then `q-ro` wants that name for its read-write Service.
    apply(example_body(namespace, name="q"))
    wait_until(lambda: kubectl("get", "service", "q-ro", "-n", namespace, check=False).returncode == 0,
               what="q's read-only Service")  # fmt: skip
    before = content(namespace, "Service", "q-ro")
    apply(example_body(namespace, name="q-ro"))
    refused_for(namespace, "q-ro", "Service q-ro")
    assert content(namespace, "Service", "q-ro")[1] == before[1]
    owners = kubectl_json("get", "service", "q-ro", "-n", namespace)["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["q"]
