"""A workaround for a kopf bug that stops the whole operator (seen in kopf 1.45.2).

kopf holds every handler back until its indexes are filled. Each watcher (one per resource kind and
namespace) holds a toggle of `operator_indexed` until its first LIST is done, and each object that LIST
brings holds one until its index handlers ran. When a watched namespace goes away (or a CRD is removed)
while such a watcher still lists or its objects still wait, kopf stops the watcher and its per-object
workers but never drops their toggles: from then on it handles nothing, for any cluster, until the
process restarts. It happens when a namespace is deleted while the operator starts, or while cert-manager's
CRDs arrive (a Certificates watcher starts in every namespace, and its first LIST can be refused for a
while: "storage is (re)initializing").

`install()` wraps kopf's watcher: when one ends, the toggles it leaves behind are dropped. kopf's
orchestration looks the watcher up in its module at each spawn, so the wrapper serves every watcher.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Collection, Iterable
from typing import Any

from kopf._core.reactor import queueing

_DROPPING: set[asyncio.Task[None]] = set()  # kept until done: the loop holds tasks only weakly


def leftover(toggles: Iterable[Any], before: Collection[Any], resource: object, own: Any) -> list[Any]:
    """The toggles an ended watcher of `resource` leaves off: its own (its first LIST never finished),
    and those made since it started for that resource's objects (named `(resource, uid)` by kopf) whose
    workers were stopped before their index handlers ran."""
    prefix = f"({resource!r}, "
    return [
        t for t in toggles if t.is_off() and (t is own or (t not in before and str(t.name or "").startswith(prefix)))
    ]


def install() -> None:
    """Wrap kopf's watcher once per process."""
    if getattr(queueing.watcher, "_valkey_drops_toggles", False):
        return
    original = queueing.watcher

    @functools.wraps(original)
    async def watcher(
        *, resource: Any, operator_indexed: Any = None, resource_indexed: Any = None, **kwargs: Any
    ) -> None:
        before = set(operator_indexed) if operator_indexed is not None else set()
        try:
            await original(
                resource=resource, operator_indexed=operator_indexed, resource_indexed=resource_indexed, **kwargs
            )
        finally:
            left = leftover(
                operator_indexed if operator_indexed is not None else (), before, resource, resource_indexed
            )
            if left:
                # A task of its own: this one is being cancelled, and the set's lock must be awaited.
                task = asyncio.get_running_loop().create_task(operator_indexed.drop_toggles(left))
                _DROPPING.add(task)
                task.add_done_callback(_DROPPING.discard)

    watcher._valkey_drops_toggles = True  # type: ignore[attr-defined]
    queueing.watcher = watcher
