"""Which pod to restart next when pods run an older template: one at a time, replicas first, primary last.

A primary is never deleted while it holds the role: it hands the role over first (a switchover).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from valkey_operator.topology import roll_order


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    current: bool  # runs the current template (and, under HotReload, serves the current certificate)
    ready: bool
    terminating: bool = False
    synced: bool = True  # a replica whose link to the primary is up (or not known otherwise)
    serving: bool = True  # serves the current certificate (HotReload: a live handshake showed it)
    running: bool = True  # its container was started (phase Running): it may hold data
    offset: int = 0  # replication offset it reports: a role goes to the most caught-up replica


@dataclass(frozen=True)
class Step:
    """`delete` a pod, `switchover` away from a primary first (to `target`), `wait`, or `done`."""

    action: str
    pod: str | None = None
    uid: str | None = None
    message: str = ""
    target: str | None = None


def complete(pods: Sequence[PodState], desired: int) -> bool:
    """The rollout is complete: every desired pod exists, is ready, runs the current template and serves the
    current certificate. One answer for the trust bundle, for `Rotating` and for `Ready`."""
    live = [p for p in pods if not p.terminating]
    return len(live) >= desired and all(p.current and p.serving and p.ready for p in live)


def next_step(
    pods: Sequence[PodState],
    primaries: Sequence[str],
    desired: int,
    followers: Mapping[str, Sequence[str]] | None = None,
) -> Step:
    """The next step. `followers`: for a sharded cluster, the pods a primary may hand its role to (its own
    shard's replicas); otherwise any other pod may take it."""
    outdated = [p for p in pods if not p.current]
    if not outdated and len(pods) >= desired:
        return Step("done", message="Every pod runs the current revision.")
    if any(p.terminating for p in pods):
        return Step("wait", message="A pod is terminating.")
    # A replica that is not ready serves nobody: replacing it cannot lose a write. A running primary is
    # replaced only after its role has moved, ready or not; one that never started holds nothing.
    for p in outdated:
        if not p.ready and (p.name not in primaries or len(pods) == 1 or not p.running):
            return Step("delete", p.name, p.uid, f"{p.name} is not ready and outdated.")
    if len(pods) < desired or any(not p.ready for p in pods):
        return Step("wait", message="Waiting for every pod to be ready before restarting the next one.")
    if any(not p.synced for p in pods):
        # A replica re-syncing is about to be unavailable: restarting another now would make two.
        return Step("wait", message="Waiting for every replica's link to the primary before the next restart.")
    order = roll_order([p.name for p in outdated], primaries)
    nxt = next(p for p in outdated if p.name == order[0])
    if nxt.name in primaries and len(pods) > 1:
        allowed = followers.get(nxt.name, ()) if followers is not None else [p.name for p in pods]
        # The most caught-up of the current, synced replicas (the first listed on a tie).
        eligible = [p for p in pods if p.name in allowed and p.name != nxt.name and p.current and p.ready and p.synced]
        target = max(eligible, key=lambda p: p.offset).name if eligible else None
        if target is None:
            return Step("wait", message=f"No current, synced replica to hand {nxt.name}'s primary role to yet.")
        return Step(
            "switchover", nxt.name, nxt.uid, f"{nxt.name} is the primary: switch over to {target} first.", target
        )
    return Step("delete", nxt.name, nxt.uid, f"Restarting {nxt.name} on the new revision.")
