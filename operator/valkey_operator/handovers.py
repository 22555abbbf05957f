"""Pacing role handovers (FAILOVER TO in replication mode, CLUSTER FAILOVER in cluster mode) and slot
migrations (CLUSTER MIGRATESLOTS), which the same way complete later or not at all. Pure.

A handover is asynchronous: the pass that asks for it reads its outcome later. One that does not complete
(FAILOVER TO aborts when the target does not catch up within its timeout; a CLUSTER FAILOVER asked again
restarts one in progress) must not be asked again on every pass: each attempt pauses writes. So every
handover asked for is kept in `status.handovers` ({action, attempts, at}), and the same one is asked again
only after 5 s, then 10, 20, 40 and 60 s; from the second attempt on, a Warning Event says that the last one
did not complete. A record older than `FORGOTTEN_AFTER` belongs to a handover that is over; so does one
that a pass with nothing under way (no role moving, no FAILOVER between its steps, no slots migrating) no
longer asks for once its wait is over: it completed, and the same handover asked for later is a new one,
not a retry. (A pass that skips the ask for another reason, within the wait, does not reset the pacing.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from valkey_operator.actions import Action, ClusterFailover, Event, MigrateSlots, Switchover
from valkey_operator.clock import iso, parse_iso

FIRST_WAIT = 5.0
LONGEST_WAIT = 60.0
FORGOTTEN_AFTER = timedelta(seconds=2 * LONGEST_WAIT)
REASON = "Switchover"  # the Events a first attempt posts
MIGRATION_REASON = "MigratingSlots"
RETRY_REASON = "SwitchoverRetried"


def wait_after(attempts: int) -> float:
    """Seconds before the same handover is asked again after `attempts` attempts."""
    return float(min(FIRST_WAIT * 2 ** max(attempts - 1, 0), LONGEST_WAIT))


@dataclass(frozen=True)
class Paced:
    actions: tuple[Action, ...]
    events: tuple[Event, ...]
    records: tuple[Mapping[str, Any], ...]  # status.handovers
    retry_after: float | None  # when a held-back handover may be asked again
    first_attempts: int  # handovers asked for the first time in this pass (the failovers metric)


def _is_handover(action: Action) -> bool:
    return isinstance(action, (Switchover, ClusterFailover, MigrateSlots))


def _waited(record: Mapping[str, Any], now: datetime) -> bool:
    at = parse_iso(record.get("at"))
    return at is None or now - at >= timedelta(seconds=wait_after(int(record.get("attempts", 1))))


def pace(
    before: Sequence[Mapping[str, Any]],
    actions: Sequence[Action],
    events: Sequence[Event],
    now: datetime,
    under_way: bool = False,
) -> Paced:
    """Hold back each handover asked for too recently; record the ones asked for now. The Events the
    deciding code posted for handovers (reason `Switchover`) go only with a first attempt. `under_way`: a
    handover may be between its steps, so records this pass does not ask for are kept."""
    records: dict[str, dict[str, Any]] = {}
    for r in before:
        at = parse_iso(r.get("at"))
        if at is not None and now - at <= FORGOTTEN_AFTER:
            records[str(r.get("action"))] = dict(r)
    kept: list[Action] = []
    retried: list[Event] = []
    first = fresh = 0
    retry_after: float | None = None
    asked = {str(a) for a in actions if _is_handover(a)}
    if not under_way:
        records = {k: r for k, r in records.items() if k in asked or not _waited(r, now)}
    for action in actions:
        if not _is_handover(action):
            kept.append(action)
            continue
        last = records.get(str(action))
        attempts = int(last.get("attempts", 0)) if last else 0
        if last:
            due = parse_iso(last.get("at"))
            assert due is not None  # kept above only with a time
            due += timedelta(seconds=wait_after(attempts))
            if now < due:
                wait = (due - now).total_seconds()
                retry_after = wait if retry_after is None else min(retry_after, wait)
                continue
            retried.append(
                Event(
                    "Warning",
                    RETRY_REASON,
                    f"The last {action} did not complete ({attempts} attempt{'s' if attempts > 1 else ''}); "
                    f"asking again, then waiting {wait_after(attempts + 1):.0f} s before another.",
                )
            )
        else:
            fresh += 1
            first += not isinstance(action, MigrateSlots)  # the failovers metric counts role moves only
        kept.append(action)
        records[str(action)] = {"action": str(action), "attempts": attempts + 1, "at": iso(now)}
    told = [e for e in events if e.reason not in (REASON, MIGRATION_REASON) or fresh]
    return Paced(tuple(kept), (*told, *retried), tuple(records.values()), retry_after, first)
