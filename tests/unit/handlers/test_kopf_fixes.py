"""The workaround for kopf's leaked index toggles: an ended watcher leaves no toggle holding the operator.

kopf's real watcher and ToggleSet are used; only the watch stream (a stand-in that lists one object and
never finishes its LIST) and the per-object processor (still waiting to index when the watcher stops) are
stood in for: no API server can be made to refuse a LIST while its namespace goes away, on demand."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._cogs.clients import scanning, watching
from kopf._cogs.configs.configuration import OperatorSettings
from kopf._cogs.structs.bodies import RawEvent
from kopf._cogs.structs.references import Insights, NamespaceName, Resource
from kopf._core.intents import registries
from kopf._core.reactor import observation, queueing

from valkey_operator.config import OperatorConfig
from valkey_operator.handlers import kopf_fixes, registry


def _install(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf_fixes.install(), with what it wraps restored after the test."""
    monkeypatch.setattr(queueing, "watcher", queueing.watcher)
    monkeypatch.setattr(ToggleSet, "make_toggle", ToggleSet.make_toggle)
    processor = observation.process_discovered_namespace_event
    monkeypatch.setattr(observation, "process_discovered_namespace_event", processor)
    resources = observation.process_discovered_resource_event
    monkeypatch.setattr(observation, "process_discovered_resource_event", resources)
    kopf_fixes.install()


def test_leftover_is_what_the_watcher_made_and_its_own_toggle_while_off() -> None:
    async def main() -> None:
        indexed = ToggleSet(all)
        own = await indexed.make_toggle(name="pods.v1@ns")
        listed = await indexed.make_toggle(name="object not indexed yet")
        indexed_one = await indexed.make_toggle(True, name="object indexed")
        assert kopf_fixes.leftover(own, [listed, indexed_one]) == [own, listed]
        assert kopf_fixes.leftover(None, []) == []
        await own.turn_to(True)
        assert kopf_fixes.leftover(own, [listed]) == [listed]

    asyncio.run(main())


async def _stuck(**_: Any) -> None:
    """A per-object processor still waiting to run its index handlers (kopf's batch window, or a worker
    limit) when the watcher is stopped."""
    await asyncio.sleep(3600)


def test_a_watcher_stopped_mid_list_leaves_no_toggle_and_another_namespaces_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf's real watcher, fed by a watch stream that brings one object per namespace and never says
    LISTED (its LIST still refused when the namespace goes away)."""

    async def stream(*, namespace: str, **_: Any) -> Any:
        yield {"type": None, "object": {"metadata": {"uid": f"uid-{namespace}", "name": "cache-0"}}}
        await asyncio.sleep(3600)

    monkeypatch.setattr(watching, "infinite_watch", stream)
    _install(monkeypatch)
    kopf_fixes.install()  # once per process: a second call wraps nothing again
    settings = OperatorSettings()
    settings.queueing.exit_timeout = 0.1
    pods = Resource(group="", version="v1", plural="pods", namespaced=True)

    async def main() -> None:
        indexed = ToggleSet(all)

        async def watch(namespace: str) -> asyncio.Task[None]:
            own = await indexed.make_toggle(name=f"{pods}@{namespace}")  # as kopf's orchestration does
            return asyncio.create_task(
                queueing.watcher(
                    namespace=NamespaceName(namespace),
                    settings=settings,
                    resource=pods,
                    processor=_stuck,
                    operator_indexed=indexed,
                    resource_indexed=own,
                )
            )

        gone, kept = await watch("gone"), await watch("kept")
        await asyncio.sleep(0.05)
        assert len(indexed) == 4  # two watchers' toggles, and their objects'
        assert indexed.is_off()
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert {t.name for t in indexed} == {f"{pods}@kept", repr((pods, "uid-kept"))}
        kept.cancel()
        await asyncio.gather(kept, return_exceptions=True)
        await asyncio.wait_for(indexed.wait_for(True), timeout=5)  # the operator handles events again

    asyncio.run(main())


def _namespace(name: str, event: str | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if status:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"type": event, "object": {"metadata": meta, "status": status or {}}}


TERMINATING = {"conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False"}]}


@pytest.mark.parametrize(
    ("served", "event", "serves", "revised"),
    [
        # kopf ignores its watcher's listing: a namespace created since its first one is served only so.
        (set(), _namespace("t-new"), {"t-new"}, True),
        # Every listing shows the namespaces served already: nothing changes, nothing is revised.
        ({"t-old"}, _namespace("t-old"), {"t-old"}, False),
        # Not one of the operator's namespaces.
        (set(), _namespace("other"), set(), False),
        # Being deleted: not served.
        (set(), _namespace("t-going", status=TERMINATING), set(), False),
        # The watch's own events stay kopf's: an ADDED serves, a DELETED stops serving.
        (set(), _namespace("t-added", "ADDED"), {"t-added"}, True),
        ({"t-gone"}, _namespace("t-gone", "DELETED"), set(), True),
    ],
    ids=["listed-new", "listed-served", "listed-other", "listed-terminating", "added", "deleted"],
)
def test_a_listed_namespace_not_served_yet_is_served(
    monkeypatch: pytest.MonkeyPatch, served: set[str], event: dict[str, Any], serves: set[str], revised: bool
) -> None:
    """kopf's real namespace processor and Insights; the wrapper serves what a listing shows."""
    _install(monkeypatch)

    async def main() -> None:
        insights = Insights()
        insights.namespaces.update(cast(set[NamespaceName], served))

        async def waiter() -> None:
            async with insights.revised:
                await insights.revised.wait()

        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0)  # the waiter holds nothing but waits for a revision
        await observation.process_discovered_namespace_event(
            raw_event=cast(RawEvent, event), namespaces=["t-*"], insights=insights
        )
        await asyncio.sleep(0.01)
        assert insights.namespaces == serves
        assert waiting.done() is revised
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    asyncio.run(main())


def _crd(group: str, plural: str, kind: str, event: str | None = None, served: bool = True) -> dict[str, Any]:
    spec = {
        "group": group,
        "names": {"plural": plural, "kind": kind, "singular": kind.lower()},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": served, "storage": True}],
    }
    return {"type": event, "object": {"metadata": {"name": f"{plural}.{group}"}, "spec": spec}}


CERTIFICATES = Resource(
    group="cert-manager.io", version="v1", plural="certificates", kind="Certificate", namespaced=True,
    verbs=frozenset({"list", "watch", "get", "patch"}),
)  # fmt: skip
PEERINGS = Resource(
    group="kopf.dev", version="v1", plural="kopfpeerings", kind="KopfPeering", namespaced=True,
    verbs=frozenset({"list", "watch", "get", "patch"}),
)  # fmt: skip


@pytest.mark.parametrize(
    ("served", "event", "scanned", "serves"),
    [
        # kopf ignores its CRD watcher's listing: a CRD created since its first scan is served only so.
        (set(), _crd("cert-manager.io", "certificates", "Certificate"), {"cert-manager.io"}, {CERTIFICATES}),
        # Every listing shows the CRDs served already: nothing is scanned.
        ({CERTIFICATES}, _crd("cert-manager.io", "certificates", "Certificate"), set(), {CERTIFICATES}),
        # A CRD no handler, index or peering of the operator picks.
        (set(), _crd("example.com", "widgets", "Widget"), set(), set()),
        # Another kind of a group the operator watches: not picked either.
        (set(), _crd("cert-manager.io", "issuers", "Issuer"), set(), set()),
        # A CRD whose versions are not served (yet): nothing to watch.
        (set(), _crd("cert-manager.io", "certificates", "Certificate", served=False), set(), set()),
        # kopf's own peering CRD: its backbone is filled the same way (leader election waits on it).
        (set(), _crd("kopf.dev", "kopfpeerings", "KopfPeering"), {"kopf.dev"}, set()),
        # The watch's own events stay kopf's: an ADDED scans the group.
        (set(), _crd("cert-manager.io", "certificates", "Certificate", "ADDED"), {"cert-manager.io"}, {CERTIFICATES}),
    ],
    ids=["listed-new", "listed-served", "listed-other", "listed-other-kind", "listed-unserved", "peerings", "added"],
)
def test_a_listed_crd_not_served_yet_is_scanned(
    monkeypatch: pytest.MonkeyPatch,
    served: set[Resource],
    event: dict[str, Any],
    scanned: set[str],
    serves: set[Resource],
) -> None:
    """kopf's real CRD processor and Insights, with the operator's own registry; the API's discovery is
    stood in for (it answers with what the CRD serves: the integration test asks the real API server)."""
    _install(monkeypatch)
    asked: list[str] = []

    async def scan_resources(*, groups: set[str], **_: Any) -> list[Resource]:
        asked.extend(groups)
        return [r for r in (CERTIFICATES, PEERINGS) if r.group in groups]

    monkeypatch.setattr(scanning, "scan_resources", scan_resources)  # observation calls it through its module
    reg: registries.OperatorRegistry = registry(OperatorConfig())

    async def main() -> None:
        insights = Insights()
        insights.watched_resources.update(served)
        insights.indexed_resources.update(served)
        await observation.process_discovered_resource_event(
            raw_event=cast(RawEvent, event), settings=OperatorSettings(), registry=reg, insights=insights
        )
        assert set(asked) == scanned
        assert insights.indexed_resources == serves
        if "kopf.dev" in scanned:
            assert PEERINGS in set(insights.backbone.values())

    asyncio.run(main())
