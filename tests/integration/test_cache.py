"""The cache over kopf's real indexes, swept against the real API server: a sweep hides nothing that exists.

A ghost itself (an object deleted while kopf's watch was away) needs a watch gap: a 410 Gone or a lost
connection of the session's shared API server, which no test here can cause on demand without disturbing
the others. The ghost rule is table-tested in tests/unit/k8s/test_cache.py; this test checks its real inputs:
the LIST's resourceVersion and uids, and the uids and resourceVersions kopf's index entries carry.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from tests.integration.conftest import (
    CountingReconciler,
    OperatorThread,
    apply,
    example_body,
    kubectl_json,
    wait_until,
)
from valkey_operator import names
from valkey_operator.k8s.cache import INDEXED

pytestmark = pytest.mark.integration
KINDS = [kind for kind in INDEXED if kind not in (names.KIND, "Certificate")]  # a SelfSigned cluster has none
API_VERSIONS = {"StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1"}


def test_a_sweep_against_the_real_api_server_hides_nothing_that_exists(
    operator: OperatorThread, namespace: str
) -> None:
    apply(example_body(namespace))
    cached: Any = cast(CountingReconciler, operator.reconciler).kube  # the operator's CachedKube, over kopf's indexes

    def listed(kind: str) -> list[str]:
        found = kubectl_json("get", kind, "-n", namespace, "-l", names.OWNED_SELECTOR)["items"]
        return sorted(o["metadata"]["name"] for o in found)

    def cached_names(kind: str) -> list[str]:
        objs = cached.list(API_VERSIONS.get(kind, "v1"), kind, namespace, names.owned_selector("cache"))
        return sorted(o["metadata"]["name"] for o in objs)

    wait_until(
        lambda: all(listed(kind) and cached_names(kind) == listed(kind) for kind in KINDS),
        timeout=120,
        what="every owned kind created, and the index showing it",
    )
    for kind in KINDS:
        # kopf's entries carry their uids and numeric resourceVersions: a LIST that lacked them all, taken
        # after them, would hide each one (put right at once by the real sweep below) ...
        assert cached.cache.swept(kind, namespace, {}, str(10**15)) == {"cache"}, kind
        # ... and the real LIST finds every one: nothing is hidden.
        assert cached.sweep(kind, namespace) == (tuple(listed(kind)), set()), kind
        assert cached_names(kind) == listed(kind), kind
    assert cached.sweep(names.KIND, namespace) == (("cache",), set())  # the ValkeyClusters' LIST: every one there
    assert cached.get(names.API_VERSION, names.KIND, namespace, "cache") is not None
