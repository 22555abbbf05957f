"""This replica's pause as the passes follow it, driven through kopf's own pause toggles (kopf's peering
turns them; here the test does)."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits.aiotoggles import ToggleSet

from valkey_operator.handlers.pauses import Pauses


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_pause_after_serving_drops_the_clusters_once_and_a_start_paused_replica_drops_nothing() -> None:
    dropped: list[bool] = []

    async def main() -> None:
        toggles = ToggleSet(any)
        peering = await toggles.make_toggle(True, name="peering CRD is missing")  # kopf starts it paused
        pauses = Pauses(lambda: dropped.append(pauses.paused()), lambda namespace: None)
        assert pauses.paused() is False  # no toggles yet: no watch has started
        pauses.receive(toggles)
        pauses.receive(ToggleSet(any))  # once: later watches hand over nothing new
        await _settle()
        assert pauses.paused() is True
        assert dropped == []  # it served nothing yet
        await peering.turn_to(False)
        await _settle()
        assert pauses.paused() is False
        conflict = await toggles.make_toggle(True, name="another peer leads")
        await _settle()
        assert dropped == [True]  # followed while paused: the scheduler already starts nothing
        await _settle()
        assert dropped == [True]  # once per pause
        await conflict.turn_to(False)
        await _settle()
        await conflict.turn_to(True)
        await _settle()
        assert dropped == [True, True]
        await pauses.stop()
        await conflict.turn_to(False)
        await conflict.turn_to(True)
        await _settle()
        assert dropped == [True, True]  # stopped: followed no more

    asyncio.run(main())


def test_a_pause_whose_following_raised_does_not_stop_the_next_from_being_followed() -> None:
    calls: list[int] = []

    def on_pause() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("boom")

    async def main() -> None:
        toggles = ToggleSet(any)
        pauses = Pauses(on_pause, lambda namespace: None)
        pauses.receive(toggles)
        await _settle()  # followed while serving
        conflict = await toggles.make_toggle(True, name="another peer leads")
        await _settle()
        await conflict.turn_to(False)
        await _settle()
        await conflict.turn_to(True)
        await _settle()
        await pauses.stop()

    asyncio.run(main())
    assert calls == [0, 1]
