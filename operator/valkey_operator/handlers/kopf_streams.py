"""kopf's watch streams without managedFields: what kopf holds of each object costs half the memory.

kopf keeps the last body of every ValkeyCluster for as long as its daemon runs, and the events of every
watched object while its worker waits on a busy loop. managedFields is often half of a decoded object
(a StatefulSet's template, field by field, for each manager), and nothing the operator or kopf reads of a
watched object needs it: kopf's diff base holds the spec, labels and annotations; k8s.cache drops it (but
for a Certificate's own entry: when the operator last applied its spec, which the stuck-issuance check
reads). At 1,000 clusters the ValkeyClusters' bodies alone held 32 MiB (bench --census).

`install()` wraps kopf's watch stream, once per process: each event's object loses its managedFields
before kopf queues it, but a Certificate's. kopf's watcher looks the stream up in its module at each
start, so the wrapper serves every watcher.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from kopf._cogs.clients import watching

KEPT = frozenset({"Certificate"})  # kinds whose managedFields a pass reads (k8s.cache.slim)


def without_managed_fields(raw_event: object) -> None:
    """Drop the managedFields of a watch event's object, in place (a bookmark or a marker is left alone)."""
    if not isinstance(raw_event, dict):
        return
    obj = raw_event.get("object")
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


def wrap(original: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncGenerator[Any, None]]:
    """kopf's infinite_watch, its events' objects without managedFields but for the KEPT kinds."""

    @functools.wraps(original)
    async def infinite_watch(*, resource: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        slim = getattr(resource, "kind", None) not in KEPT
        # Not closed here by hand: kopf cancels a watcher inside the stream (its own cleanup runs then), and
        # at the loop's shutdown asyncio closes every generator left, this one's included (closing it here
        # too would race that: "aclose(): asynchronous generator is already running").
        async for raw_event in original(resource=resource, **kwargs):
            if slim:
                without_managed_fields(raw_event)
            yield raw_event

    infinite_watch._valkey_slims = True  # type: ignore[attr-defined]
    return infinite_watch


def install() -> None:
    """Wrap kopf's watch stream; once per process."""
    if getattr(watching.infinite_watch, "_valkey_slims", False):
        return
    watching.infinite_watch = wrap(watching.infinite_watch)
