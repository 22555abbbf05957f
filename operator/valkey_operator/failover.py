"""Replication roles, from what the pods report: who is the primary, and what to do when it is lost. Pure.

Roles belong to the operator. Every pod boots as a replica (of the recorded primary, or of itself when it
is the recorded primary: it waits for the operator), so a pod that restarted empty never becomes the source
its peers re-sync from. The operator then decides here:
- one pod reports itself primary: that is the primary, whatever the records say; replicas that follow
  another pod are repointed, a second primary is fenced (made a replica);
- the primary is being deleted (graceful: `kubectl delete`, a drain): it hands over first (`FAILOVER TO`),
  while its `preStop` keeps the server up;
- no pod is primary: the replica with the highest replication offset is promoted (`REPLICAOF NO ONE`), at
  once when the recorded primary answers as a replica (it restarted: what it held is gone), else once the
  primary has been lost for `failover.after`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from valkey_operator import names
from valkey_operator.actions import Action, Event, Promote, Repoint, Switchover
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import iso, parse_iso
from valkey_operator.snapshot import ROLE_MASTER, ROLE_SLAVE, PodView, Replication, Snapshot, config_primary

# How soon to look again while a role moves (FAILOVER is asynchronous) or a lost primary is waited for.
RECHECK = 1.0
# A replica that has not heard from its primary for this long (or failover.after, if longer) no longer
# vouches for it; valkey.conf makes primaries ping their replicas every second.
SILENCE = 3.0
# How soon to look again while a running pod does not answer (each look waits out its timeout).
UNANSWERED_RECHECK = 5.0
# With persistence, every pod restarted (none has replicated since it started): the lost primary's volume
# holds the newest writes, so it is waited for this long (or failover.after, if longer) before a replica
# restored from an older file takes the role.
VOLUME_WAIT = timedelta(seconds=120)
# Metric reasons (valkey_operator_failovers_total).
PRIMARY_LOST = "primary-lost"
SWITCHOVER = "switchover"
# status.failover.state
STATE_LOST = "PrimaryLost"
STATE_FAILING_OVER = "FailingOver"


@dataclass(frozen=True)
class Roles:
    primary: str | None  # the pod that serves writes (confirmed, or promoted/handed to in this pass)
    record: str | None  # the primary the ConfigMap names, for pods that start
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    failovers: tuple[str, ...] = ()  # metric reasons of role moves started in this pass
    failover_status: Mapping[str, Any] | None = None  # status.failover while the primary is lost or moving
    retry_after: float | None = None

    @property
    def moving(self) -> bool:
        """The primary is lost or its role is moving: nothing else (a rollout step) may happen now."""
        return self.failover_status is not None


def _since(snap: Snapshot, now: datetime) -> datetime:
    """When the primary was first found lost or moving: kept from the last pass while either lasts (a
    promotion that failed does not start the clock again)."""
    before = snap.status.get("failover") or {}
    return parse_iso(before.get("since")) or now


def _replications(snap: Snapshot, views: Sequence[PodView]) -> dict[str, Replication]:
    out = {}
    for pod in views:
        report = snap.reports.get(pod.name)
        if report is not None and report.replication is not None:
            out[pod.name] = report.replication
    return out


def _best(candidates: Sequence[str], reps: Mapping[str, Replication], prefer: str | None) -> str | None:
    """The most advanced replica: the highest offset; on a tie the preferred pod, then the lowest ordinal."""
    if not candidates:
        return None
    return max(candidates, key=lambda p: (reps[p].offset, p == prefer, -names.ordinal(p)))


def _follow(
    cluster: ValkeyCluster, views: Sequence[PodView], reps: Mapping[str, Replication], primary: str
) -> list[Action]:
    """Every other live pod follows the primary: a replica of another pod is repointed, a second primary fenced."""
    want = cluster.names.pod_fqdn(primary)
    out: list[Action] = []
    for pod in views:
        rep = reps.get(pod.name)
        if pod.name == primary or pod.terminating or rep is None:
            continue
        if rep.role == ROLE_MASTER or (rep.role == ROLE_SLAVE and rep.master_host != want):
            out.append(Repoint(pod.name, want))
    return out


def roles(cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView], now: datetime) -> Roles:
    """Replication mode: the primary and the role moves of this pass."""
    if cluster.spec.mode != "replication":
        return Roles(None, None)
    desired = cluster.names.pods(cluster.spec.pod_count)
    recorded = config_primary(cluster, snap)
    record = recorded if recorded in desired else desired[0]
    reps = _replications(snap, views)
    live = [p for p in views if not p.terminating]
    masters = [p.name for p in live if p.name in reps and reps[p.name].role == ROLE_MASTER]
    # Replicas that may take the role: live and answering. A pod a scale-down removes may hold the most
    # data: it may be promoted too, and then hands over to a pod that stays (the StatefulSet waits).
    candidates = [p.name for p in live if p.name in reps and reps[p.name].role == ROLE_SLAVE]
    staying = [p for p in candidates if p in desired]

    if masters:
        primary = masters[0] if len(masters) == 1 else _split_brain_winner(masters, reps, recorded)
        actions = _follow(cluster, views, reps, primary)
        events: list[Event] = []
        if len(masters) > 1:
            others = ", ".join(m for m in masters if m != primary)
            events.append(Event("Warning", "SplitBrain", f"{others} also acted as primary; {primary} keeps the role."))
        # A running pod that does not answer may be a cut-off old primary that comes back as a second one:
        # look again soon until every pod answers, not at the slow timer.
        silent = any(p.running and p.name not in reps for p in live)
        again = RECHECK if actions else UNANSWERED_RECHECK if silent else None
        if primary in desired:
            return Roles(primary, primary, tuple(actions), tuple(events), retry_after=again)
        # A scale-down removes the primary's ordinal: hand the role to a pod that stays first.
        return _hand_over(snap, reps, primary, staying, recorded, now, tuple(actions), tuple(events))

    leaving = [p.name for p in views if p.terminating and p.name in reps and reps[p.name].role == ROLE_MASTER]
    if leaving:
        # A graceful deletion or a drain: the server stays up in its preStop until the role has moved.
        return _hand_over(snap, reps, leaving[0], staying or candidates, recorded, now, (), ())
    if any(r.failing_over for r in reps.values()):
        # A FAILOVER is between its steps (the old primary already says replica): read its outcome first.
        was = str(snap.status.get("primary") or record)
        status = {"state": STATE_FAILING_OVER, "primary": was, "since": iso(_since(snap, now))}
        return Roles(None, record, failover_status=status, retry_after=RECHECK)
    unanswered = [p.name for p in live if p.running and p.name not in reps]
    return _lost(cluster, snap, reps, candidates, unanswered, record, now)


def history(snap: Snapshot, primary: str | None) -> str | None:
    """status.replicationId: the replication history of the primary that serves now (its master_replid),
    kept from the last pass while none does, so that a failover knows which offsets compare."""
    report = snap.reports.get(primary or "")
    rep = report.replication if report is not None else None
    if rep is not None and rep.role == ROLE_MASTER and rep.replid:
        return rep.replid
    kept = snap.status.get("replicationId")
    return str(kept) if kept else None


def _split_brain_winner(masters: Sequence[str], reps: Mapping[str, Replication], recorded: str | None) -> str:
    if recorded is not None and recorded in masters:
        return recorded
    return max(masters, key=lambda p: (reps[p].offset, -names.ordinal(p)))


def _hand_over(
    snap: Snapshot,
    reps: Mapping[str, Replication],
    primary: str,
    candidates: Sequence[str],
    recorded: str | None,
    now: datetime,
    actions: tuple[Action, ...],
    events: tuple[Event, ...],
) -> Roles:
    """The primary must go (deleted, or its ordinal removed): FAILOVER TO the most advanced synced replica."""
    status = {"state": STATE_FAILING_OVER, "primary": primary, "since": iso(_since(snap, now))}
    if reps[primary].failing_over:
        return Roles(primary, primary, actions, events, failover_status=status, retry_after=RECHECK)
    synced = [p for p in candidates if reps[p].link_up]
    target = _best(synced, reps, recorded)
    if target is None:
        return Roles(primary, primary, actions, events, failover_status=status, retry_after=RECHECK)
    message = (
        f"Handing the primary role from {primary} (offset {reps[primary].offset}) to {target} "
        f"(offset {reps[target].offset}) before {primary} goes."
    )
    return Roles(
        primary,
        primary,
        (*actions, Switchover(primary, target)),
        (*events, Event("Normal", "Switchover", message)),
        (SWITCHOVER,),
        status,
        RECHECK,
    )


def _lost(
    cluster: ValkeyCluster,
    snap: Snapshot,
    reps: Mapping[str, Replication],
    candidates: Sequence[str],
    unanswered: Sequence[str],
    record: str,
    now: datetime,
) -> Roles:
    """No pod serves as the primary: promote the most advanced replica, now or after `failover.after`.

    Never an empty pod while a pod that may hold data has not answered, never one behind another replica
    when failover is off, and never while a replica still hears from the primary (it is alive, only the
    operator cannot reach it: promoting would make two). A replica's link stays up on paper for
    repl-timeout (60 s) after its primary is cut off; one that has heard nothing for `failover.after` (the
    primary pings every second) no longer counts."""
    before = snap.status.get("failover") or {}
    if not before and not snap.status.get("primary") and all(reps[p].offset == 0 for p in candidates):
        # A new cluster: no pod holds data yet. The recorded pod becomes the primary once it answers.
        if record not in candidates:
            return Roles(None, record)
        event = Event("Normal", "PrimaryElected", f"{record} is the primary.")
        return Roles(record, record, (Promote(record),), (event,), retry_after=RECHECK)
    lost = str(before.get("primary") or snap.status.get("primary") or record)
    since = _since(snap, now)
    # The replicas say how long the primary has been silent: the loss began no later than that (a primary
    # cut off is found by the operator only at its next look).
    silences = [s for p in candidates if (s := reps[p].silent_s) is not None]
    if silences:
        since = min(since, now - timedelta(seconds=min(silences)))
    lost_status = {"state": STATE_LOST, "primary": lost, "since": iso(since)}
    wait = max(RECHECK, (since + cluster.spec.failover.after - now).total_seconds())
    # Offsets compare only on one replication history: a pod on another (a fenced old primary that took
    # writes while cut off and never re-synced) is promoted only when no pod is on the lost primary's.
    recorded_history = str(snap.status.get("replicationId") or "")
    on_history = [p for p in candidates if reps[p].on_history(recorded_history)]
    best = _best(on_history or candidates, reps, record)
    silence = max(SILENCE, cluster.spec.failover.after.total_seconds())
    linked = [p for p in candidates if reps[p].hears_primary(silence)]
    if best is None or linked:
        return Roles(None, record, failover_status=lost_status, retry_after=wait)
    if not cluster.spec.failover.enabled:
        # Off: only the recorded pod takes the role back, and only when no replica holds more (a human
        # decides otherwise).
        if record not in candidates or any(reps[p].offset > reps[record].offset for p in candidates):
            return Roles(None, record, failover_status=lost_status)
        best = record
    if reps[best].offset == 0 and unanswered:
        # The most advanced answer is an empty pod, and a pod that may hold the data has not answered.
        return Roles(None, record, failover_status=lost_status, retry_after=wait)
    restarted = lost in reps and reps[lost].role == ROLE_SLAVE and not unanswered  # it came back, as a replica
    if not (restarted or now - since >= cluster.spec.failover.after):
        return Roles(None, record, failover_status=lost_status, retry_after=wait)
    if cluster.spec.persistence.enabled and lost not in reps and all(reps[p].offset == 0 for p in candidates):
        # Every replica restarted too (none has replicated since): each holds only what its own volume kept,
        # and the lost primary's volume kept the last writes it acknowledged after they stopped. Wait for it.
        until = since + max(VOLUME_WAIT, cluster.spec.failover.after)
        if now < until:
            status = {**lost_status, "waitingUntil": iso(until)}
            return Roles(None, record, failover_status=status, retry_after=max(RECHECK, (until - now).total_seconds()))
    if cluster.spec.persistence.enabled and lost in candidates and all(reps[p].offset == 0 for p in candidates):
        best = lost  # every pod restarted from its volume: the lost primary's holds the newest writes
    was = f"offset {reps[lost].offset}, restarted empty" if lost in reps else "not answering"
    others = ", ".join(
        f"{p} at {reps[p].offset}" + (" on another replication history" if on_history and p not in on_history else "")
        for p in candidates
        if p != best
    )
    others = others or "no other replica"
    message = (
        f"Promoted {best} (offset {reps[best].offset}) in place of the lost primary {lost} ({was}); "
        f"{others}. The others follow {best}."
    )
    return Roles(
        best,
        best,
        (Promote(best),),
        (Event("Warning", "FailedOver", message),),
        (PRIMARY_LOST,),
        {"state": STATE_FAILING_OVER, "primary": lost, "since": iso(since)},
        RECHECK,
    )
