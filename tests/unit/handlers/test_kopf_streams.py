"""kopf's watch streams without managedFields: kopf's real watcher hands its processor each object without
them (but a Certificate's), still learns that its LIST is done, and stopping it closes the stream beneath;
the first watch hands kopf's pause toggles over.

Only the API server's stream is stood in for (what kopf's infinite_watch yields): the test is about what
kopf receives, not about the API server."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._cogs.clients import watching
from kopf._cogs.configs.configuration import OperatorSettings
from kopf._cogs.structs.references import NamespaceName, Resource
from kopf._core.reactor import queueing

from valkey_operator.handlers import kopf_streams

FIELDS = [{"manager": "valkey-tls-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]


def _event(uid: str) -> dict[str, Any]:
    return {"type": "ADDED", "object": {"metadata": {"uid": uid, "name": uid, "managedFields": list(FIELDS)}}}


def test_the_watcher_hands_on_objects_without_managed_fields_but_a_certificates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []

    async def stream(*, resource: Resource, **_: Any) -> Any:
        try:
            yield watching.Bookmark.LISTED  # a marker, not an event: passed on untouched
            yield _event(f"{resource.plural}-1")
            await asyncio.sleep(3600)
        finally:
            closed.append(resource.plural)

    monkeypatch.setattr(watching, "infinite_watch", stream)
    kopf_streams.install()
    kopf_streams.install()  # once per process: a second call wraps nothing again
    assert watching.infinite_watch.__wrapped__ is stream  # type: ignore[attr-defined]
    seen: dict[str, dict[str, Any]] = {}

    async def processor(*, raw_event: dict[str, Any], **_: Any) -> None:
        seen[raw_event["object"]["metadata"]["uid"]] = raw_event["object"]["metadata"]

    settings = OperatorSettings()
    settings.queueing.exit_timeout = 0.1
    handed: list[tuple[ToggleSet, int]] = []
    kopf_streams.on_pauses(settings, lambda toggles: handed.append((toggles, len(seen))))
    ended: list[tuple[str, str | None]] = []
    kopf_streams.on_watch_end(settings, lambda kind, namespace: ended.append((kind, namespace)))
    pods = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
    certificates = Resource(
        group="cert-manager.io", version="v1", plural="certificates", kind="Certificate", namespaced=True
    )

    listed: list[bool] = []
    paused: list[ToggleSet] = []

    async def main() -> None:
        indexed = ToggleSet(all)
        paused.append(ToggleSet(any))
        own = [await indexed.make_toggle(name=f"{r.plural}@apps") for r in (pods, certificates)]
        tasks = [
            asyncio.create_task(
                queueing.watcher(
                    namespace=cast(NamespaceName, "apps"),
                    settings=settings,
                    resource=resource,
                    processor=cast(queueing.WatchStreamProcessor, processor),
                    operator_indexed=indexed,
                    operator_paused=paused[0],
                    resource_indexed=toggle,
                )
            )
            for resource, toggle in zip((pods, certificates), own, strict=True)
        ]
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        held = {id(toggle) for toggle in indexed}
        listed.extend(id(toggle) not in held for toggle in own)  # kopf's watcher saw Bookmark.LISTED: dropped
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert listed == [True, True]
    assert "managedFields" not in seen["pods-1"]
    assert seen["pods-1"]["name"] == "pods-1"
    assert seen["certificates-1"]["managedFields"] == FIELDS  # the stuck-issuance check reads its own entry
    assert sorted(closed) == ["certificates", "pods"]
    # kopf's pause toggles reach the operator through the first watch, once, before any event is processed.
    assert handed == [(paused[0], 0)]
    # Each watch's end is told (kopf stops its watches before its cleanup handlers run).
    assert sorted(ended) == [("Certificate", "apps"), ("Pod", "apps")]


def test_without_managed_fields_takes_them_alone_and_passes_over_what_has_no_metadata() -> None:
    event = _event("pods-2")
    event["object"]["metadata"]["labels"] = {"app": "cache"}
    kopf_streams.without_managed_fields(event)
    assert event["object"]["metadata"] == {"uid": "pods-2", "name": "pods-2", "labels": {"app": "cache"}}
    odd: object
    for odd in (watching.Bookmark.LISTED, {"type": "ERROR", "object": "gone"}, {"type": "ADDED"}, {"object": {}}):
        kopf_streams.without_managed_fields(odd)  # no error
