"""kopf's start-up races against the real API server (handlers.kopf_fixes):
- a namespace created while the operator starts, between kopf's first listing of the namespaces and its
  namespace watcher's own listing, is served;
- a CRD created between kopf's first scan of the API's resources and its CRD watcher's listing is watched.

In nature each window is milliseconds wide (a CI run fell into the first once: a test's namespace got no
pass for 60 s). The tests hold it open: kopf's own fetch is wrapped so that, in the operator's thread, the
namespace or CRD is created just before that listing runs. Everything else is real: kopf, the operator's
handlers and the API server.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kopf._cogs.clients import fetching

from tests.integration.conftest import OperatorThread, apply, example_body, get_vkc, kubectl, wait_until
from valkey_operator import handlers

pytestmark = pytest.mark.integration


def _start_holding_the_window(
    clock: Any, monkeypatch: pytest.MonkeyPatch, plural: str, listing: int, create: Callable[[], object]
) -> OperatorThread:
    """An operator started with kopf's fetch wrapped: in the operator's own thread (not a session
    operator's), `create` runs just before kopf's `listing`-th listing of `plural`. Returns once it ran,
    with kopf's fetch restored."""
    original = fetching.fetch_objs
    before = set(threading.enumerate())
    listings: Counter[threading.Thread] = Counter()
    created = threading.Event()

    async def fetch_objs(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
        thread = threading.current_thread()
        if resource.plural == plural and thread not in before and not created.is_set():
            listings[thread] += 1
            if listings[thread] == listing:
                await asyncio.to_thread(create)
                created.set()
        async for item in original(resource=resource, **kwargs):
            yield item

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    op = OperatorThread(clock, namespaces=["race-*"]).start()
    try:
        wait_until(created.is_set, what=f"kopf's listing of the {plural}")
    except BaseException:
        op.stop()
        raise
    monkeypatch.setattr(fetching, "fetch_objs", original)
    return op


def test_a_namespace_created_between_kopfs_two_listings_is_served(
    crd: None, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created just before the namespace watcher's listing (kopf's second), after the one kopf serves from."""
    namespace = f"race-{uuid.uuid4().hex[:8]}"
    op = _start_holding_the_window(
        clock, monkeypatch, "namespaces", 2, lambda: kubectl("create", "namespace", namespace)
    )
    try:
        apply(example_body(namespace))
        assert op.reconciler is not None
        reconciler = op.reconciler
        wait_until(lambda: reconciler.passes.get((namespace, "cache"), 0) >= 1, what="a pass of the cluster")
        wait_until(lambda: get_vkc(namespace).get("status", {}).get("phase"), what="its status")
    finally:
        op.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert op.error is None, op.error


def _widget_crd(group: str) -> dict[str, Any]:
    """A cluster-scoped test kind of a group of its own (nothing else in the session serves it)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "scope": "Cluster",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def test_a_crd_created_between_kopfs_scan_and_its_crd_listing_is_watched(
    crd: None, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's registry with one more handler, on a test kind whose CRD does not exist when kopf
    scans the API's resources at start; it is created (and served) just before kopf's CRD watcher lists the
    CRDs. An object of that kind, made later, must reach the handler: kopf watches the kind."""
    import kopf

    group = f"r{uuid.uuid4().hex[:8]}.race.test"
    seen: list[str] = []
    made = handlers.registry

    def registry(config: Any) -> Any:
        reg = made(config)

        @kopf.on.event(group, "v1", "widgets", registry=reg)
        def widget(name: str, **_: Any) -> None:
            seen.append(name)

        return reg

    monkeypatch.setattr(handlers, "registry", registry)

    def create_crd() -> None:
        apply(_widget_crd(group))
        kubectl("wait", "--for=condition=established", f"crd/widgets.{group}", "--timeout=60s")
        wait_until(lambda: kubectl("get", f"widgets.{group}", check=False).returncode == 0, what="the kind served")

    # The CRD watcher's first listing: kopf scanned the API's resources already.
    op = _start_holding_the_window(clock, monkeypatch, "customresourcedefinitions", 1, create_crd)
    try:
        apply({"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "made-after"}})
        wait_until(lambda: "made-after" in seen, what="kopf to hand the widget to its handler")
    finally:
        op.stop()
        kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)
    assert op.error is None, op.error
