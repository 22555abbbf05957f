"""The workaround for kopf's leaked index toggles: an ended watcher leaves no toggle holding the operator.

kopf's real ToggleSet is used; the watcher it wraps is stood in for (kopf's own needs a watch stream), by
one that stops as kopf's does when its namespace goes away: after making its toggles, before dropping them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._core.reactor import queueing

from valkey_operator.handlers import kopf_fixes

RESOURCE = "pods.v1"  # kopf names a per-object toggle by repr((resource, uid)); a string stands in here


async def _toggles() -> tuple[ToggleSet, Any, Any, Any, Any]:
    indexed = ToggleSet(all)
    own = await indexed.make_toggle(name=f"{RESOURCE}@ns")
    done = await indexed.make_toggle(True, name=repr((RESOURCE, "uid-done")))
    other_kind = await indexed.make_toggle(name=repr(("secrets.v1", "uid-x")))
    earlier = await indexed.make_toggle(name=repr((RESOURCE, "uid-earlier")))
    return indexed, own, done, other_kind, earlier


def test_leftover_is_the_watchers_own_toggle_and_its_objects_made_since_it_started() -> None:
    async def main() -> None:
        indexed, own, done, other_kind, earlier = await _toggles()
        before = set(indexed)
        mine = await indexed.make_toggle(name=repr((RESOURCE, "uid-1")))
        assert set(kopf_fixes.leftover(indexed, before, RESOURCE, own)) == {own, mine}
        assert kopf_fixes.leftover(indexed, set(indexed), RESOURCE, None) == []  # nothing new, none its own
        assert done not in kopf_fixes.leftover(indexed, set(), RESOURCE, own)  # on already: harmless
        assert other_kind not in kopf_fixes.leftover(indexed, set(), RESOURCE, own)
        assert earlier in kopf_fixes.leftover(indexed, set(), RESOURCE, own)

    asyncio.run(main())


def test_a_watcher_stopped_before_its_list_finished_no_longer_holds_the_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def stopped_mid_list(*, resource: Any, operator_indexed: Any, resource_indexed: Any, **_: Any) -> None:
        await operator_indexed.make_toggle(name=repr((resource, "uid-listed")))  # a worker not yet run
        await asyncio.sleep(3600)  # its LIST still refused: cancelled here, as kopf does

    monkeypatch.setattr(queueing, "watcher", stopped_mid_list)
    kopf_fixes.install()
    kopf_fixes.install()  # once per process: a second call wraps nothing again
    assert queueing.watcher.__wrapped__ is stopped_mid_list  # type: ignore[attr-defined]

    async def main() -> None:
        indexed = ToggleSet(all)
        own = await indexed.make_toggle(name=f"{RESOURCE}@gone")
        task = asyncio.create_task(queueing.watcher(resource=RESOURCE, operator_indexed=indexed, resource_indexed=own))
        await asyncio.sleep(0.01)
        assert indexed.is_off()  # the operator waits for this watcher's index
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(indexed.wait_for(True), timeout=5)  # ...and no longer once it is gone
        assert len(indexed) == 0

    asyncio.run(main())
