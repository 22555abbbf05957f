"""A workaround for a kopf bug that stops the whole operator (seen in kopf 1.45.2).

kopf holds every handler back until its indexes are filled. Each watcher (one per resource kind and
namespace) holds a toggle of `operator_indexed` until its first LIST is done, and each object that LIST
brings holds one until its index handlers ran. When a watched namespace goes away (or a CRD is removed)
while such a watcher still lists or its objects still wait, kopf stops the watcher and its per-object
workers but never drops their toggles: from then on it handles nothing, for any cluster, until the
process restarts. It happens when a namespace is deleted while the operator starts, or while cert-manager's
CRDs arrive (a Certificates watcher starts in every namespace, and its first LIST can be refused for a
while: "storage is (re)initializing").

`install()` wraps kopf's watcher: when one ends, the toggles it made (in its own task: its objects' ones)
and its own are dropped if still off. Another namespace's watcher of the same kind is left alone: kopf
names an object's toggle by kind and uid only. kopf's orchestration looks the watcher up in its module at
each spawn, so the wrapper serves every watcher.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import queueing

# A running watcher's task -> the toggles it made, weakly: those kopf dropped go (its objects' toggles,
# made until the operator is first indexed), and one left off is still held by operator_indexed.
_MADE: dict[asyncio.Task[Any], weakref.WeakSet[Any]] = {}
_DROPPING: set[asyncio.Task[None]] = set()  # kept until done: the loop holds tasks only weakly


def leftover(own: Any, made: Iterable[Any]) -> list[Any]:
    """The toggles an ended watcher leaves off: its own (its first LIST never finished), and those it made
    for its objects whose workers were stopped before their index handlers ran."""
    return [t for t in (own, *made) if t is not None and t.is_off()]


def install() -> None:
    """Wrap kopf's watcher, and record which watcher makes each toggle; once per process."""
    if getattr(queueing.watcher, "_valkey_drops_toggles", False):
        return
    original_make = aiotoggles.ToggleSet.make_toggle

    @functools.wraps(original_make)
    async def make_toggle(self: Any, *args: Any, **kwargs: Any) -> Any:
        toggle = await original_make(self, *args, **kwargs)
        made = _MADE.get(asyncio.current_task())  # type: ignore[arg-type]
        if made is not None:
            made.add(toggle)
        return toggle

    original = queueing.watcher

    @functools.wraps(original)
    async def watcher(
        *, resource: Any, operator_indexed: Any = None, resource_indexed: Any = None, **kwargs: Any
    ) -> None:
        task = asyncio.current_task()
        if operator_indexed is not None and task is not None:
            _MADE[task] = weakref.WeakSet()
        try:
            await original(
                resource=resource, operator_indexed=operator_indexed, resource_indexed=resource_indexed, **kwargs
            )
        finally:
            left = leftover(resource_indexed, list(_MADE.pop(task, ()))) if task is not None else []
            if operator_indexed is not None and left:
                # A task of its own: this one is being cancelled, and the set's lock must be awaited.
                dropping = asyncio.get_running_loop().create_task(operator_indexed.drop_toggles(left))
                _DROPPING.add(dropping)
                dropping.add_done_callback(_DROPPING.discard)

    aiotoggles.ToggleSet.make_toggle = make_toggle  # type: ignore[method-assign]
    watcher._valkey_drops_toggles = True  # type: ignore[attr-defined]
    queueing.watcher = watcher
