"""Workarounds for two kopf bugs (seen in kopf 1.45.2).

**Toggles left behind stop the whole operator.** kopf holds every handler back until its indexes are
filled. Each watcher (one per resource kind and namespace) holds a toggle of `operator_indexed` until its
first LIST is done, and each object that LIST brings holds one until its index handlers ran. When a watched
namespace goes away (or a CRD is removed) while such a watcher still lists or its objects still wait, kopf
stops the watcher and its per-object workers but never drops their toggles: from then on it handles
nothing, for any cluster, until the process restarts. It happens when a namespace is deleted while the
operator starts, or while cert-manager's CRDs arrive (a Certificates watcher starts in every namespace,
and its first LIST can be refused for a while: "storage is (re)initializing").

`install()` wraps kopf's watcher: when one ends, the toggles it made (in its own task: its objects' ones)
and its own are dropped if still off. Another namespace's watcher of the same kind is left alone: kopf
names an object's toggle by kind and uid only. kopf's orchestration looks the watcher up in its module at
each spawn, so the wrapper serves every watcher.

**A namespace created while the operator starts is not served until it changes.** Watching namespace
patterns, kopf lists the namespaces once (the ones it serves from the start), and then its namespace
watcher lists them again and watches from that second listing, but ignores what the second listing shows.
A namespace created between the two listings is in neither the first listing nor the watch: kopf does not
serve it, and its ValkeyClusters get no pass, until the Namespace object itself changes (rarely) or the
operator restarts (a CI run saw it: a namespace created as the operator started). A re-listing after a 410
Gone is ignored the same way. `install()` wraps kopf's namespace-event processor: a namespace a listing
shows that kopf does not serve yet (and should) is served, as an ADDED event would have made it; one it
serves already, or one that is not the operator's, costs nothing. kopf's namespace observer looks the
processor up in its module when it starts. Not covered (nor by kopf): a namespace deleted within such a
gap keeps its watchers, which list nothing.

**A CRD created while the operator starts is not watched until it changes.** The same gap for resources:
kopf scans the API's resources once, then its CRD watcher lists the CRDs and ignores that listing. A CRD
created between the two (cert-manager installed as the operator starts) got no kopf watch of its objects
(Certificates) until the CRD itself changed or the operator restarted. `install()` wraps kopf's CRD-event
processor: a listed CRD that one of kopf's selectors (a handler's, an index's, or its own peering's) picks
and kopf serves no version of is scanned, as an ADDED event would have made kopf scan it; any other costs
a set lookup.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.reactor import observation, queueing

# A running watcher's task -> the toggles it made, weakly: those kopf dropped go (its objects' toggles,
# made until the operator is first indexed), and one left off is still held by operator_indexed.
_MADE: dict[asyncio.Task[Any], weakref.WeakSet[Any]] = {}
_DROPPING: set[asyncio.Task[None]] = set()  # kept until done: the loop holds tasks only weakly


def leftover(own: Any, made: Iterable[Any]) -> list[Any]:
    """The toggles an ended watcher leaves off: its own (its first LIST never finished), and those it made
    for its objects whose workers were stopped before their index handlers ran."""
    return [t for t in (own, *made) if t is not None and t.is_off()]


def install() -> None:
    """Both workarounds; once per process."""
    _drop_leftover_toggles()
    _serve_listed_namespaces()
    _serve_listed_resources()


def unserved(crd: Any, selectors: Iterable[Any], served: Iterable[Any]) -> bool:
    """Whether a CRD has a served version that one of `selectors` picks while none of `served` (kopf's
    resources) is one of its versions."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group"), names.get("plural")
    if not group or not plural or any(r.group == group and r.plural == plural for r in served):
        return False
    resources = [
        references.Resource(
            group=group,
            version=str(version.get("name")),
            plural=plural,
            kind=names.get("kind"),
            singular=names.get("singular"),
            shortcuts=frozenset(names.get("shortNames") or ()),
            categories=frozenset(names.get("categories") or ()),
            namespaced=spec.get("scope") == "Namespaced",
            preferred=True,  # whichever version the API prefers: kopf's own scan decides which is served
        )
        for version in spec.get("versions") or ()
        if version.get("served")
    ]
    return any(selector.check(resource) for selector in selectors for resource in resources)


def _serve_listed_resources() -> None:
    """Wrap kopf's CRD-event processor: a listed CRD kopf should serve and does not is scanned."""
    if getattr(observation.process_discovered_resource_event, "_valkey_serves_listed", False):
        return
    original = observation.process_discovered_resource_event

    @functools.wraps(original)
    async def process_discovered_resource_event(*, raw_event: Any, registry: Any, insights: Any, **kwargs: Any) -> None:
        if raw_event.get("type") is None:
            selectors = (
                registry._webhooks.get_all_selectors()
                | registry._indexing.get_all_selectors()
                | registry._watching.get_all_selectors()
                | registry._spawning.get_all_selectors()
                | registry._changing.get_all_selectors()
                | set(insights.backbone.selectors)
            )
            served = {
                *insights.watched_resources,
                *insights.indexed_resources,
                *insights.webhook_resources,
                *insights.backbone.values(),
            }
            if not unserved(raw_event["object"], selectors, served):
                return  # kopf serves it already (every listing shows them all), or it is not the operator's
            raw_event = {"type": "ADDED", "object": raw_event["object"]}  # kopf scans the CRD's group
        await original(raw_event=raw_event, registry=registry, insights=insights, **kwargs)

    process_discovered_resource_event._valkey_serves_listed = True  # type: ignore[attr-defined]
    observation.process_discovered_resource_event = process_discovered_resource_event


def _serve_listed_namespaces() -> None:
    """Wrap kopf's namespace-event processor: a listed namespace it does not serve yet is served."""
    if getattr(observation.process_discovered_namespace_event, "_valkey_serves_listed", False):
        return
    original = observation.process_discovered_namespace_event

    @functools.wraps(original)
    async def process_discovered_namespace_event(
        *, raw_event: Any, namespaces: Any, insights: Any, **kwargs: Any
    ) -> None:
        if raw_event.get("type") is not None:
            await original(raw_event=raw_event, namespaces=namespaces, insights=insights, **kwargs)
            return
        name = raw_event["object"]["metadata"]["name"]
        if name in insights.namespaces or not any(references.match_namespace(name, p) for p in namespaces):
            return  # served already (every listing shows them all), or not one of the operator's
        async with insights.revised:
            observation.revise_namespaces(raw_events=[raw_event], insights=insights, namespaces=namespaces)
            if name in insights.namespaces:  # it matches a pattern and is not being deleted
                insights.revised.notify_all()

    process_discovered_namespace_event._valkey_serves_listed = True  # type: ignore[attr-defined]
    observation.process_discovered_namespace_event = process_discovered_namespace_event


def _drop_leftover_toggles() -> None:
    """Wrap kopf's watcher, and record which watcher makes each toggle."""
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
