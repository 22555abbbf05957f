"""kopf's namespace race against the real API server: a namespace created while the operator starts,
between kopf's first listing of the namespaces and its namespace watcher's own listing, is served
(handlers.kopf_fixes).

In nature the window is milliseconds wide (a CI run fell into it once: a test's namespace got no pass for
60 s). The test holds it open: kopf's own fetch is wrapped so that, in the operator thread that makes its
second listing of namespaces, the namespace is created just before that listing runs. Everything else is
real: kopf, the operator's handlers and the API server.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import fetching

from tests.integration.conftest import OperatorThread, apply, example_body, get_vkc, kubectl, wait_until

pytestmark = pytest.mark.integration


def test_a_namespace_created_between_kopfs_two_listings_is_served(
    crd: None, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"race-{uuid.uuid4().hex[:8]}"
    original = fetching.fetch_objs
    listings: dict[threading.Thread, int] = {}
    created = threading.Event()

    async def fetch_objs(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if resource.plural == "namespaces" and not created.is_set():
            thread = threading.current_thread()
            listings[thread] = listings.get(thread, 0) + 1
            if listings[thread] == 2:  # the namespace watcher's listing, after the one kopf serves from
                await asyncio.to_thread(kubectl, "create", "namespace", namespace)
                created.set()
        async for item in original(resource=resource, **kwargs):
            yield item

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    op = OperatorThread(clock, namespaces=["race-*"]).start()
    try:
        wait_until(created.is_set, what="kopf's second listing of the namespaces")
        monkeypatch.setattr(fetching, "fetch_objs", original)
        apply(example_body(namespace))
        assert op.reconciler is not None
        reconciler = op.reconciler
        wait_until(lambda: reconciler.passes.get((namespace, "cache"), 0) >= 1, what="a pass of the cluster")
        wait_until(lambda: get_vkc(namespace).get("status", {}).get("phase"), what="its status")
    finally:
        op.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert op.error is None, op.error
