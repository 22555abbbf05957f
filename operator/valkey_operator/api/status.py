"""Observed state -> status: conditions (metav1.Condition shape) and the phase. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

READY = "Ready"
CERTIFICATES_READY = "CertificatesReady"
EXPIRING_SOON = "CertificateExpiringSoon"
ROTATING = "Rotating"
DEGRADED = "Degraded"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Condition], now: datetime, generation: int
) -> list[dict[str, Any]]:
    """New conditions in contract order; lastTransitionTime moves only when a status flips."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        changed = old is None or old.get("status") != status
        out.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": _iso(now) if changed or old is None else old.get("lastTransitionTime"),
                "observedGeneration": generation,
            }
        )
    return out


@dataclass(frozen=True)
class Observation:
    """What one reconcile pass saw, reduced to what status needs."""

    desired: int
    ready: int
    updated: int  # pods running the current template
    outdated: int  # pods still running an older template
    cert_problem: tuple[str, str] | None = None  # (reason, message)
    expiring: tuple[str, ...] = ()  # labels of certificates under warnBefore
    soonest_expiry: datetime | None = None
    spec_error: tuple[str, str] | None = None
    exists: bool = True  # the StatefulSet exists

    @property
    def rolling(self) -> bool:
        return self.exists and self.outdated > 0

    @property
    def all_ready(self) -> bool:
        return self.exists and self.ready >= self.desired and not self.rolling


def conditions(obs: Observation) -> list[Condition]:
    out: list[Condition] = []
    if obs.spec_error:
        reason, message = obs.spec_error
        return [Condition(READY, False, reason, message), Condition(DEGRADED, True, reason, message)]
    if obs.all_ready:
        out.append(Condition(READY, True, "AllPodsReady", f"All {obs.desired} pods serve the current certificates."))
    else:
        out.append(
            Condition(READY, False, "PodsNotReady", f"{obs.ready} of {obs.desired} pods are ready; wait or check pods.")
        )
    if obs.cert_problem:
        out.append(Condition(CERTIFICATES_READY, False, *obs.cert_problem))
    else:
        out.append(Condition(CERTIFICATES_READY, True, "Valid", "Every certificate is valid and covers every name."))
    if obs.expiring:
        when = obs.soonest_expiry.isoformat() if obs.soonest_expiry else "soon"
        out.append(
            Condition(
                EXPIRING_SOON,
                True,
                "ExpiringSoon",
                f"Certificate {', '.join(obs.expiring)} expires at {when}: renew it or check the issuer.",
            )
        )
    else:
        out.append(Condition(EXPIRING_SOON, False, "NotExpiring", "No certificate is near its expiry."))
    if obs.rolling:
        out.append(
            Condition(ROTATING, True, "RollingPods", f"{obs.updated} of {obs.desired} pods run the new revision.")
        )
    else:
        out.append(Condition(ROTATING, False, "Idle", "No rotation is under way."))
    if obs.cert_problem and obs.exists:
        out.append(Condition(DEGRADED, True, obs.cert_problem[0], obs.cert_problem[1]))
    else:
        out.append(Condition(DEGRADED, False, "AsExpected", "Nothing needs attention."))
    return out


def phase(obs: Observation) -> str:
    if obs.spec_error:
        return "Failed"
    if obs.cert_problem:
        return "Degraded" if obs.exists else "Pending"
    if not obs.exists:
        return "Pending"
    if obs.rolling:
        return "Rotating"
    if obs.all_ready:
        return "Ready"
    return "Provisioning"
