"""Which pod to restart next when the pod template changed: one at a time, replicas first, primary last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from valkey_operator.topology import roll_order


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    revision: str  # controller-revision-hash label
    ready: bool
    terminating: bool = False


@dataclass(frozen=True)
class Step:
    """`delete` a pod, `switchover` away from a primary first, `wait`, or `done`."""

    action: str
    pod: str | None = None
    uid: str | None = None
    message: str = ""


def next_step(pods: Sequence[PodState], update_revision: str, primaries: Sequence[str], desired: int) -> Step:
    outdated = [p for p in pods if p.revision != update_revision]
    if not outdated and len(pods) >= desired:
        return Step("done", message="Every pod runs the current revision.")
    if any(p.terminating for p in pods):
        return Step("wait", message="A pod is terminating.")
    # A pod that never became ready serves nobody: replacing it cannot lose a write.
    for p in outdated:
        if not p.ready:
            return Step("delete", p.name, p.uid, f"{p.name} is not ready and outdated.")
    if len(pods) < desired or any(not p.ready for p in pods):
        return Step("wait", message="Waiting for every pod to be ready before restarting the next one.")
    order = roll_order([p.name for p in outdated], primaries)
    by_name = {p.name: p for p in outdated}
    nxt = by_name[order[0]]
    if nxt.name in primaries and len(pods) > 1:
        return Step("switchover", nxt.name, nxt.uid, f"{nxt.name} is the primary: switch over before restarting it.")
    return Step("delete", nxt.name, nxt.uid, f"Restarting {nxt.name} on the new revision.")
