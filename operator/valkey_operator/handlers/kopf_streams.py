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

The stream is also where kopf shows what it serves, which it tells no handler: the first watch of an
operator hands over kopf's pause toggles (peering: another peer leads, and every watch stops) to whatever
its startup asked for them with `on_pauses`, and a watch that ends (the operator stops, or a namespace
goes) tells the receiver `on_watch_end` named (handlers.pauses: the passes stop too).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._cogs.clients import watching
from kopf._cogs.configs.configuration import OperatorSettings

KEPT = frozenset({"Certificate"})  # kinds whose managedFields a pass reads (k8s.cache.slim)
_PAUSES = "_valkey_operator_pauses"  # the settings' attribute that holds on_pauses' receiver until handed over
_ENDS = "_valkey_operator_watch_ends"  # the settings' attribute that holds on_watch_end's receiver


def on_pauses(settings: OperatorSettings, receive: Callable[[ToggleSet], None]) -> None:
    """`receive` gets the pause toggles of the operator that runs with `settings` when its first watch
    starts (in its loop, before that watch's first event); once."""
    vars(settings)[_PAUSES] = receive


def on_watch_end(settings: OperatorSettings, ended: Callable[[str, str | None], None]) -> None:
    """`ended(kind, namespace)` is called (in the loop) when a watch of the operator that runs with
    `settings` ends: cancelled at the operator's stop, or when kopf stops watching a namespace (None: a
    cluster-wide watch)."""
    vars(settings)[_ENDS] = ended


def _hand_over(settings: object, toggles: object) -> None:
    if isinstance(settings, OperatorSettings) and isinstance(toggles, ToggleSet):
        receive = vars(settings).pop(_PAUSES, None)
        if receive is not None:
            receive(toggles)


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
        settings = kwargs.get("settings")
        _hand_over(settings, kwargs.get("operator_paused"))
        # Not closed here by hand: kopf cancels a watcher inside the stream (its own cleanup runs then), and
        # at the loop's shutdown asyncio closes every generator left, this one's included (closing it here
        # too would race that: "aclose(): asynchronous generator is already running").
        try:
            async for raw_event in original(resource=resource, **kwargs):
                if slim:
                    without_managed_fields(raw_event)
                yield raw_event
        finally:
            ended = vars(settings).get(_ENDS) if isinstance(settings, OperatorSettings) else None
            if ended is not None:
                ended(str(getattr(resource, "kind", "")), kwargs.get("namespace"))

    infinite_watch._valkey_slims = True  # type: ignore[attr-defined]
    return infinite_watch


def install() -> None:
    """Wrap kopf's watch stream; once per process."""
    if getattr(watching.infinite_watch, "_valkey_slims", False):
        return
    watching.infinite_watch = wrap(watching.infinite_watch)
