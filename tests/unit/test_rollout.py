"""Which pod restarts next: table-driven."""

from __future__ import annotations

import pytest

from valkey_operator.rollout import PodState, complete, next_step


def pod(i: int, rev: str = "old", ready: bool = True, terminating: bool = False, synced: bool = True) -> PodState:
    return PodState(f"cache-{i}", f"uid-{i}", rev == "new", ready, terminating, synced)


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
        # An outdated replica that never became ready serves nobody: replaced at once.
        ([pod(0), pod(1, ready=False), pod(2)], ["cache-0"], ("delete", "cache-1")),
        # An outdated primary that is not ready is never deleted while it holds the role (it was, before:
        # "cache-0 is not ready and outdated" took the serving primary down without a switchover).
        ([pod(0, ready=False), pod(1), pod(2)], ["cache-0"], ("wait", None)),
        # ...but a primary whose container never started (Pending) holds nothing: replaced at once.
        ([PodState("cache-0", "u", False, False, running=False), pod(1), pod(2)], ["cache-0"], ("delete", "cache-0")),
        # An updated pod still starting: wait before touching the next one.
        ([pod(0), pod(1), pod(2, "new", ready=False)], ["cache-0"], ("wait", None)),
        # A pod on its way out: wait.
        ([pod(0), pod(1), pod(2, terminating=True)], ["cache-0"], ("wait", None)),
        # A single pod (standalone) restarts without a switchover, ready or not.
        ([pod(0)], ["cache-0"], ("delete", "cache-0")),
        ([pod(0, ready=False)], ["cache-0"], ("delete", "cache-0")),
        # No primaries: ordinal order.
        ([pod(0), pod(1)], [], ("delete", "cache-1")),
        # No current replica whose link is up to hand the role to: wait.
        ([pod(0), pod(1, "new", synced=False), pod(2, "new", synced=False)], ["cache-0"], ("wait", None)),
    ],
)
def test_next_step(pods: list[PodState], primaries: list[str], expected: tuple[str, str | None]) -> None:
    step = next_step(pods, primaries, desired=len(pods))
    assert (step.action, step.pod) == expected


def test_the_switchover_target_is_a_current_replica() -> None:
    step = next_step([pod(0), pod(1, "new"), pod(2, "new")], ["cache-0"], desired=3)
    assert (step.action, step.pod, step.target) == ("switchover", "cache-0", "cache-1")


def test_the_role_goes_to_the_most_caught_up_replica() -> None:
    """Two current replicas of one shard (replicasPerShard 2): the role goes to the one with the highest
    replication offset, wherever it is listed; on a tie, the first listed."""
    behind = PodState("cache-3", "u3", True, True, offset=900)
    ahead = PodState("cache-6", "u6", True, True, offset=1200)
    pods = [pod(0, "new"), pod(1, "new"), pod(2), behind, pod(4, "new"), pod(5, "new"), ahead]
    followers = {"cache-0": ["cache-4"], "cache-1": ["cache-5"], "cache-2": ["cache-3", "cache-6"]}
    step = next_step(pods, list(followers), desired=7, followers=followers)
    assert (step.action, step.pod, step.target) == ("switchover", "cache-2", "cache-6")
    tie = [p if p is not ahead else PodState("cache-6", "u6", True, True, offset=900) for p in pods]
    assert next_step(tie, list(followers), desired=7, followers=followers).target == "cache-3"
    # Replication mode, any replica may take the role: the same rule.
    reps = [pod(0), PodState("cache-1", "u1", True, True, offset=10), PodState("cache-2", "u2", True, True, offset=20)]
    assert next_step(reps, ["cache-0"], desired=3).target == "cache-2"


def test_no_restart_while_a_replica_resyncs() -> None:
    """A replica whose link is down is about to be unavailable: restarting another would make two."""
    assert next_step([pod(0, "new"), pod(1, synced=False), pod(2)], ["cache-0"], desired=3).action == "wait"


def test_missing_pods_are_waited_for() -> None:
    assert next_step([pod(0, "new")], ["cache-0"], desired=3).action == "wait"


@pytest.mark.parametrize(
    ("pods", "desired", "expected"),
    [
        ([pod(0, "new"), pod(1, "new")], 2, True),
        ([pod(0, "new"), pod(1)], 2, False),
        ([pod(0, "new"), pod(1, "new", ready=False)], 2, False),
        ([pod(0, "new")], 2, False),
        # A pod on its way out does not count for or against.
        ([pod(0, "new"), pod(1, "new"), pod(2, terminating=True)], 2, True),
        # HotReload: a pod that does not serve the current certificate yet is not done.
        ([pod(0, "new"), PodState("cache-1", "u", True, True, serving=False)], 2, False),
    ],
)
def test_complete(pods: list[PodState], desired: int, expected: bool) -> None:
    assert complete(pods, desired) is expected


def test_a_shard_primary_hands_its_slots_only_to_its_own_replica() -> None:
    """Sharded: three primaries, each with one replica; the replicas are current. Each primary's target is a
    replica of its own shard, never another shard's."""
    pods = [pod(0), pod(1), pod(2), pod(3, "new"), pod(4, "new"), pod(5, "new")]
    followers = {"cache-0": ["cache-3"], "cache-1": ["cache-4"], "cache-2": ["cache-5"]}
    step = next_step(pods, list(followers), desired=6, followers=followers)
    assert (step.action, step.pod, step.target) == ("switchover", "cache-2", "cache-5")
    # The shard's only replica is not synced: wait, rather than hand the slots to another shard's replica.
    lagging = [*pods[:5], pod(5, "new", synced=False)]
    assert next_step(lagging, list(followers), desired=6, followers=followers).action == "wait"
    # After the failover cache-5 serves shard 2 and cache-2 follows it: cache-2 is now restarted as a replica.
    moved = {"cache-0": ["cache-3"], "cache-1": ["cache-4"], "cache-5": ["cache-2"]}
    step = next_step(pods, list(moved), desired=6, followers=moved)
    assert (step.action, step.pod) == ("delete", "cache-2")
