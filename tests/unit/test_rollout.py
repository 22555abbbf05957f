"""Which pod restarts next: table-driven."""

from __future__ import annotations

import pytest

from valkey_operator.rollout import PodState, next_step


def pod(i: int, rev: str = "old", ready: bool = True, terminating: bool = False) -> PodState:
    return PodState(f"cache-{i}", f"uid-{i}", rev, ready, terminating)


@pytest.mark.parametrize(
    ("pods", "primaries", "expected"),
    [
        # Nothing outdated: done.
        ([pod(0, "new"), pod(1, "new"), pod(2, "new")], ["cache-0"], ("done", None)),
        # Replicas first, highest ordinal first.
        ([pod(0), pod(1), pod(2)], ["cache-0"], ("delete", "cache-2")),
        ([pod(0), pod(1), pod(2, "new")], ["cache-0"], ("delete", "cache-1")),
        # The primary last, and only through a switchover.
        ([pod(0), pod(1, "new"), pod(2, "new")], ["cache-0"], ("switchover", "cache-0")),
        # A primary that moved to cache-2 is still last.
        ([pod(0), pod(1), pod(2)], ["cache-2"], ("delete", "cache-1")),
        # An outdated pod that never became ready serves nobody: replaced at once, even the primary.
        ([pod(0, ready=False), pod(1), pod(2)], ["cache-0"], ("delete", "cache-0")),
        # An updated pod still starting: wait before touching the next one.
        ([pod(0), pod(1), pod(2, "new", ready=False)], ["cache-0"], ("wait", None)),
        # A pod on its way out: wait.
        ([pod(0), pod(1), pod(2, terminating=True)], ["cache-0"], ("wait", None)),
        # A single pod (standalone) restarts without a switchover.
        ([pod(0)], ["cache-0"], ("delete", "cache-0")),
        # No primaries (cluster mode is not rolled by role yet): ordinal order.
        ([pod(0), pod(1)], [], ("delete", "cache-1")),
    ],
)
def test_next_step(pods: list[PodState], primaries: list[str], expected: tuple[str, str | None]) -> None:
    step = next_step(pods, "new", primaries, desired=len(pods))
    assert (step.action, step.pod) == expected
    if step.pod:
        assert step.uid == f"uid-{step.pod.rsplit('-', 1)[1]}"


def test_missing_pods_are_waited_for() -> None:
    assert next_step([pod(0, "new")], "new", ["cache-0"], desired=3).action == "wait"
