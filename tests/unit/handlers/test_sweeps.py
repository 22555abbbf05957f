"""The sweeps after a re-list: one per kind and namespace, once the re-listed objects stop coming."""

from __future__ import annotations

import asyncio
import logging

import pytest

from valkey_operator.handlers.sweeps import Sweeps

SETTLE = 0.05


async def _until(check: list[tuple[str, str]], count: int) -> None:
    for _ in range(200):  # 2 s at most
        if len(check) >= count:
            return
        await asyncio.sleep(0.01)


def test_a_re_list_costs_one_sweep_per_kind_and_namespace_once_it_settles() -> None:
    swept: list[tuple[str, str]] = []

    async def main() -> None:
        sweeps = Sweeps(lambda kind, ns: swept.append((kind, ns)), settle=SETTLE)
        for _ in range(5):  # one object after another, each sooner than the settling time
            sweeps.relisted("Pod", "a")
            sweeps.relisted("Secret", "a")
            sweeps.relisted("Pod", "b")
            await asyncio.sleep(SETTLE / 5)
        assert swept == []
        assert sweeps.armed() == [("Pod", "a"), ("Pod", "b"), ("Secret", "a")]
        await _until(swept, 3)
        await asyncio.sleep(SETTLE * 2)
        assert sorted(swept) == [("Pod", "a"), ("Pod", "b"), ("Secret", "a")]
        assert sweeps.armed() == []

    asyncio.run(main())


def test_no_sweep_runs_once_cancelled() -> None:
    swept: list[tuple[str, str]] = []

    async def main() -> None:
        sweeps = Sweeps(lambda kind, ns: swept.append((kind, ns)), settle=SETTLE)
        sweeps.relisted("Pod", "a")
        sweeps.cancel()
        await asyncio.sleep(SETTLE * 4)

    asyncio.run(main())
    assert swept == []


def test_a_failed_sweep_is_logged_and_the_next_re_list_sweeps_again(caplog: pytest.LogCaptureFixture) -> None:
    tries: list[tuple[str, str]] = []

    def sweep(kind: str, ns: str) -> None:
        tries.append((kind, ns))
        raise ConnectionError("the API server is away")

    async def main() -> None:
        sweeps = Sweeps(sweep, settle=SETTLE)
        sweeps.relisted("Pod", "a")
        await _until(tries, 1)
        sweeps.relisted("Pod", "a")
        await _until(tries, 2)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert tries == [("Pod", "a"), ("Pod", "a")]
    assert "sweeping Pod in a failed" in caplog.text


def test_a_sweep_runs_in_the_context_of_the_handler_that_armed_it() -> None:
    """kopf keeps its settings in context variables; a pass a sweep asks for posts Events with them."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("kopf_like")
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        sweeps = Sweeps(lambda kind, ns: seen.append((kind, var.get("missing"))), settle=SETTLE)
        var.set("kopf's")
        sweeps.relisted("Pod", "a")
        await _until(seen, 1)

    asyncio.run(main())
    assert seen == [("Pod", "kopf's")]
