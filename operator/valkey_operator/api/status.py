"""Observed state -> status: conditions (metav1.Condition shape) and the phase. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from valkey_operator.clock import iso

READY = "Ready"
CERTIFICATES_READY = "CertificatesReady"
EXPIRING_SOON = "CertificateExpiringSoon"
ROTATING = "Rotating"
DEGRADED = "Degraded"


RECONCILE_ERROR = "ReconcileError"
CLUSTER_NOT_FORMED = "ClusterNotFormed"
CLUSTER_NOT_FORMED_MESSAGE = (
    "The pods run, but the cluster does not serve every key yet; the operator forms or heals it (nodes meet, "
    "slots are assigned, replicas follow their shard's primary)."
)

CLUSTER_FORMED = "ClusterFormed"
SLOTS_ASSIGNED = "SlotsAssigned"
CONTRACT_ORDER = (READY, CERTIFICATES_READY, EXPIRING_SOON, ROTATING, DEGRADED, CLUSTER_FORMED, SLOTS_ASSIGNED)
CLUSTER_ONLY = (CLUSTER_FORMED, SLOTS_ASSIGNED)  # reported in cluster mode only


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str


def _status_word(status: bool | None) -> str:
    return "Unknown" if status is None else "True" if status else "False"


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Condition], now: datetime, generation: int
) -> list[dict[str, Any]]:
    """New conditions in contract order; lastTransitionTime moves only when a status flips."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        status = _status_word(cond.status)
        old = before.get(cond.type)
        changed = old is None or old.get("status") != status
        out.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": iso(now) if changed or old is None else old.get("lastTransitionTime"),
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
    exists: bool = True  # the StatefulSet exists (or this pass creates it)
    primary_serving: bool = True  # replication: the read-write endpoint has a primary behind it
    failover: tuple[str, str] | None = None  # (PrimaryLost | FailingOver, message) while the primary is lost
    persistent: bool = True  # data on volumes; False: losing every pod at once empties the data
    vulnerable: tuple[str, str] | None = None  # (reason, message): a release with a known vulnerability runs
    held: tuple[str, str] | None = None  # (reason, message): a spec change the cluster cannot make (now), held
    users_pending: tuple[str, ...] = ()  # ready pods that do not hold the clients' current ACL users yet
    users_waiting: tuple[str, ...] = ()  # why clients' new ACL rules are not given yet (access.Checked.waiting)
    # Cluster mode: (ClusterFormed, SlotsAssigned) as (status, reason, message); None in the other modes.
    sharded: tuple[tuple[bool, str, str], tuple[bool, str, str]] | None = None
    cert_issuing: bool = False  # cert_problem is cert-manager at work (CertificateIssuing): said, not Degraded

    @property
    def cluster_ok(self) -> bool:
        """Cluster mode: formed and every slot served (True in the other modes)."""
        return self.sharded is None or (self.sharded[0][0] and self.sharded[1][0])

    @property
    def rolling(self) -> bool:
        return self.exists and self.outdated > 0

    @property
    def all_ready(self) -> bool:
        return (
            self.exists
            and self.ready >= self.desired
            and not self.rolling
            and self.primary_serving
            and self.failover is None
            and self.cluster_ok
            and not self.users_pending
            and not self.users_waiting
        )


def _held(
    previous: Sequence[Mapping[str, Any]], overrides: Mapping[str, Condition], unknown: tuple[str, str]
) -> list[Condition]:
    """`overrides`, and for every other condition what was last observed (nothing changed it: the pass
    stopped before acting), or Unknown with `unknown` (reason, message) when never observed."""
    before = {c.get("type"): c for c in previous}
    out = []
    for kind in CONTRACT_ORDER:
        old = before.get(kind)
        if kind in overrides:
            out.append(overrides[kind])
        elif kind in CLUSTER_ONLY and old is None:
            continue  # never reported: not a sharded cluster
        elif old is not None:
            word = old.get("status")
            status = None if word not in ("True", "False") else word == "True"
            out.append(Condition(kind, status, str(old.get("reason", "")), str(old.get("message", ""))))
        else:
            out.append(Condition(kind, None, *unknown))
    return out


def spec_error_conditions(previous: Sequence[Mapping[str, Any]], reason: str, message: str) -> list[Condition]:
    """A spec the operator cannot serve: Ready False and Degraded True, saying why."""
    overrides = {READY: Condition(READY, False, reason, message), DEGRADED: Condition(DEGRADED, True, reason, message)}
    return _held(previous, overrides, ("SpecInvalid", "Not checked while the spec is invalid: fix the spec."))


def failed_pass_conditions(previous: Sequence[Mapping[str, Any]], message: str) -> list[Condition]:
    """A pass that raised: Degraded True saying what failed, Ready Unknown (the pass could not look)."""
    ready = next((c for c in previous if c.get("type") == READY), {})
    seen = f"The last pass failed; before that: {ready.get('message') or 'not observed yet'}"
    overrides = {
        READY: Condition(READY, None, RECONCILE_ERROR, seen),
        DEGRADED: Condition(DEGRADED, True, RECONCILE_ERROR, message),
    }
    return _held(previous, overrides, (RECONCILE_ERROR, "Not checked: the pass failed."))


def _users_pending(obs: Observation) -> str:
    if obs.users_pending:
        return (
            f"{', '.join(obs.users_pending)} do not hold the clients' current ACL users yet; the operator gives "
            "them (ACL SETUSER) and confirms each pod's ACL LIST."
        )
    return (
        f"New ACL rules wait before any pod gets them: {'; '.join(obs.users_waiting)}. The pods keep the "
        "rules they hold."
    )


def conditions(obs: Observation) -> list[Condition]:
    out: list[Condition] = []
    if obs.spec_error:
        return spec_error_conditions((), *obs.spec_error)
    if obs.failover:
        out.append(Condition(READY, False, *obs.failover))
    elif obs.held:
        out.append(Condition(READY, False, *obs.held))
    elif obs.all_ready:
        volatile = "" if obs.persistent else " Data lives in memory only: losing every pod at once empties it."
        message = f"All {obs.desired} pods serve the current certificates.{volatile}"
        out.append(Condition(READY, True, "AllPodsReady", message))
    elif obs.exists and obs.ready >= obs.desired and not obs.rolling and not obs.primary_serving:
        out.append(Condition(READY, False, "NoPrimary", "No pod serves as the primary behind the read-write endpoint."))
    elif obs.exists and obs.ready >= obs.desired and not obs.rolling and obs.sharded and not obs.cluster_ok:
        failing = next(c for c in obs.sharded if not c[0])
        out.append(Condition(READY, False, CLUSTER_NOT_FORMED, f"{CLUSTER_NOT_FORMED_MESSAGE} Now: {failing[2]}"))
    elif obs.exists and obs.ready >= obs.desired and not obs.rolling and (obs.users_pending or obs.users_waiting):
        out.append(Condition(READY, False, "AclUsersPending", _users_pending(obs)))
    elif obs.exists and obs.ready >= obs.desired and obs.rolling:
        # Every pod is ready, but not every one serves the current revision yet (a rollout, or a HotReload
        # waiting for the kubelet to project the new Secret): say that, not that pods are not ready.
        message = f"{obs.updated} of {obs.desired} pods serve the current revision; the others follow one at a time."
        out.append(Condition(READY, False, "RolloutInProgress", message))
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
    if obs.failover:
        out.append(Condition(DEGRADED, True, *obs.failover))
    elif obs.held:
        out.append(Condition(DEGRADED, True, *obs.held))
    elif obs.cert_problem and obs.exists and not obs.cert_issuing:
        out.append(Condition(DEGRADED, True, obs.cert_problem[0], obs.cert_problem[1]))
    elif obs.vulnerable:
        out.append(Condition(DEGRADED, True, *obs.vulnerable))
    else:
        out.append(Condition(DEGRADED, False, "AsExpected", "Nothing needs attention."))
    if obs.sharded:
        formed, slots = obs.sharded
        out += [Condition(CLUSTER_FORMED, *formed), Condition(SLOTS_ASSIGNED, *slots)]
    return out


def phase(obs: Observation) -> str:
    if obs.spec_error:
        return "Failed"
    if obs.cert_problem and not obs.cert_issuing:
        return "Degraded" if obs.exists else "Pending"
    if not obs.exists:
        return "Pending"
    if obs.failover or obs.held:
        return "Degraded"
    if obs.rolling:
        return "Rotating"
    if obs.all_ready:
        return "Ready"
    return "Provisioning"
