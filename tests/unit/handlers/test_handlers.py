"""The handlers' glue: a pass that wants another look gets it even when kopf would not run its handler again."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from valkey_operator.handlers import _pass
from valkey_operator.reconcile import Outcome


class _Runner:
    """Stands in for handlers.passes.Passes: the pass itself is not run here, its outcome is given."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.timers: list[tuple[Any, float]] = []

    def run(self, key: Any, fn: Any) -> Outcome:
        return self.outcome

    def later(self, key: Any, delay: float, fn: Any) -> None:
        self.timers.append((key, delay))


def test_a_pass_that_wants_another_look_sets_the_runners_timer_too() -> None:
    # The fast timer's filter turns false once the phase is Ready; kopf then retries nothing, so the
    # runner's own timer must carry "look again in 5 s" (a cut-off old primary that may return).
    runner = _Runner(Outcome(body={}, status={}, retry_after=5.0))
    memo = kopf.Memo(passes=runner)
    body = kopf.Body({"metadata": {"namespace": "ns", "name": "cache"}})  # type: ignore[arg-type]
    with pytest.raises(kopf.TemporaryError):
        _pass("rollout", body, memo, 5.0)
    assert runner.timers == [(("ns", "cache"), 5.0)]
    settled = _Runner(Outcome(body={}, status={}))
    _pass("rollout", body, kopf.Memo(passes=settled), 5.0)
    assert settled.timers == []
