"""The tests' "did anyone write this object?" digest (conftest.written): a controller's status write is not
a write of the object; a change of its spec, data, labels or its writers' managed fields is."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import written

BASE: dict[str, Any] = {
    "kind": "StatefulSet",
    "metadata": {
        "name": "cache",
        "resourceVersion": "1971",
        "labels": {"app.kubernetes.io/instance": "cache"},
        "managedFields": [
            {"manager": "valkey-operator", "operation": "Apply", "time": "2026-11-28T16:00:00Z"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "time": "2026-11-28T16:00:01Z"},
        ],
    },
    "spec": {"replicas": 3},
    "status": {"replicas": 1},
}  # fmt: skip


def _status(o: dict[str, Any]) -> None:
    o["status"]["replicas"] = 3
    o["metadata"]["resourceVersion"] = "1974"
    o["metadata"]["managedFields"][1]["time"] = "2026-11-28T16:00:05Z"


def _spec(o: dict[str, Any]) -> None:
    o["spec"]["replicas"] = 4


def _label(o: dict[str, Any]) -> None:
    o["metadata"]["labels"]["x"] = "y"


def _applied(o: dict[str, Any]) -> None:
    o["metadata"]["managedFields"][0]["time"] = "2026-11-28T16:00:09Z"


@pytest.mark.parametrize(
    ("change", "same"),
    [(_status, True), (_spec, False), (_label, False), (_applied, False)],
)
def test_only_a_status_write_leaves_the_digest(change: Callable[[dict[str, Any]], None], same: bool) -> None:
    after = copy.deepcopy(BASE)
    change(after)
    assert (written(after) == written(BASE)) is same
