"""One pass's decision, pure: from the resource and what the pass saw to the writes, Events and status.

No I/O, no clock reads, no metrics: `decide(cluster, snapshot, now)` returns a Decision, and
`reconcile.act` carries out its actions in order. Randomness (keys, serials, a new password) is the only
thing a test cannot pin.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from valkey_operator import access, failover, handovers, names, rollout, sharding, versions
from valkey_operator.actions import (
    Action,
    Apply,
    ClusterFailover,
    DeleteCertificate,
    DeletePod,
    Event,
    MigrateSlots,
    Reissue,
    Relabel,
    Reload,
    Repoint,
    Switchover,
)
from valkey_operator.api.spec import SpecError, ValkeyCluster
from valkey_operator.api.status import (
    CERTIFICATES_READY,
    EXPIRING_SOON,
    READY,
    RECONCILE_ERROR,
    Observation,
    conditions,
    failed_pass_conditions,
    merge_conditions,
    phase,
    spec_error_conditions,
)
from valkey_operator.builders.certificates import certificate_manifests
from valkey_operator.builders.configmap import config_files, config_hash
from valkey_operator.builders.desired import Inputs, desired_objects
from valkey_operator.builders.diff import contains
from valkey_operator.builders.statefulset import template_digest
from valkey_operator.clock import iso, parse_iso
from valkey_operator.conf import users
from valkey_operator.conf.layout import POD_LAYOUT
from valkey_operator.conf.version import image_version
from valkey_operator.pki.certmanager import CERTIFICATE_ISSUING, STUCK_AFTER
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.plan import Material, Observed, Plan, plan, rotation_since
from valkey_operator.report import CertReport, Metrics, certificates
from valkey_operator.snapshot import (
    ROLE_MASTER,
    PodReport,
    PodView,
    Snapshot,
    client_passwords,
    observed_secrets,
    password,
    pods,
    secret_data,
    statefulset_settled,
    template_hash,
)

# "Not yet": how soon to look again while a switchover (an asynchronous FAILOVER) completes.
SWITCHOVER_RECHECK = failover.RECHECK
__all__ = ["Decision", "Event", "decide", "decide_failed", "decide_invalid", "needs_fast_look"]
NOT_OWNED = "ObjectNotOwned"
# A pass that raised is tried again this soon (the error may be passing: a conflict, an API server restart).
FAILED_PASS_RETRY = 15.0


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    metrics: Metrics = field(default_factory=Metrics)
    retry_after: float | None = None  # look again this soon, instead of at the next timer
    next_due: datetime | None = None  # the next time the clock alone makes work (a renewal, a phase's end)


def _previous_conditions(snap: Snapshot) -> list[Mapping[str, Any]]:
    return list(snap.status.get("conditions") or [])


def _condition(snap: Snapshot, kind: str) -> Mapping[str, Any]:
    return next((c for c in _previous_conditions(snap) if c.get("type") == kind), {})


def decide_invalid(
    status: Mapping[str, Any], generation: int, error: SpecError, now: datetime, retry_after: float | None = None
) -> Decision:
    """A spec the operator cannot serve (`retry_after`: not yet): say why, keep every condition, touch nothing."""
    previous: list[Mapping[str, Any]] = list(status.get("conditions") or [])
    ready: Mapping[str, Any] = next((c for c in previous if c.get("type") == "Ready"), {})
    news = ready.get("reason") != error.reason
    return Decision(
        status={
            "observedGeneration": generation,
            "phase": phase(Observation(0, 0, 0, 0, spec_error=(error.reason, error.message))),
            "conditions": merge_conditions(
                previous, spec_error_conditions(previous, error.reason, error.message), now, generation
            ),
        },
        events=(Event("Warning", error.reason, error.message),) if news else (),
        retry_after=retry_after,
    )


def decide_failed(status: Mapping[str, Any], generation: int, message: str, now: datetime) -> Decision:
    """A pass that raised (a bug, or a failure no decision foresaw): say so, touch nothing else; one Event
    per new message."""
    previous: list[Mapping[str, Any]] = list(status.get("conditions") or [])
    degraded: Mapping[str, Any] = next((c for c in previous if c.get("type") == "Degraded"), {})
    news = degraded.get("reason") != RECONCILE_ERROR or degraded.get("message") != message
    return Decision(
        status={"conditions": merge_conditions(previous, failed_pass_conditions(previous, message), now, generation)},
        events=(Event("Warning", RECONCILE_ERROR, message),) if news else (),
        retry_after=FAILED_PASS_RETRY,
    )


def _pod_state(
    pod: PodView, snap: Snapshot, template: str | None, fingerprint: str | None, hot: bool, growing: bool = False
) -> rollout.PodState:
    """`growing`: cluster mode with more shards asked for than serve slots, whose new primaries wait empty
    for their slots (and must not hold back a roll, such as the image change those slots wait for)."""
    report = snap.reports.get(pod.name)
    rep = report.replication if report else None
    return rollout.PodState(
        name=pod.name,
        uid=pod.uid,
        current=template is not None and pod.template_hash == template,
        ready=pod.ready,
        terminating=pod.terminating,
        synced=(rep is None or rep.role == ROLE_MASTER or rep.link_up) and not (_lone(report) and not growing),
        # Under HotReload a pod is done when its live handshake shows the current certificate; a pod that is
        # not ready is not asked (it counts as not ready, not as outdated).
        serving=not hot or not pod.ready or (report is not None and report.serves(fingerprint)),
        running=pod.running,
        offset=rep.offset if rep else 0,
    )


def _states(
    cluster: ValkeyCluster,
    snap: Snapshot,
    views: Sequence[PodView],
    template: str | None,
    fingerprint: str | None,
    hot: bool,
) -> list[rollout.PodState]:
    grow = cluster.spec.mode == "cluster" and sharding.growing(cluster, snap.cluster_views)
    return [_pod_state(p, snap, template, fingerprint, hot, grow) for p in views]


def _lone(report: PodReport | None) -> bool:
    """Cluster mode: a node that serves no slot and follows no one has not joined its shard yet."""
    return report is not None and report.cluster is not None and sharding.loose(report.cluster)


def _fingerprint(pem: bytes | None) -> str | None:
    return describe_pem(pem).fingerprint_sha256 if pem else None


def _certificates(cluster: ValkeyCluster, snap: Snapshot) -> tuple[list[Action], Observed]:
    """Issuer CertManager: the Certificates to apply (when cert-manager is installed) and those to delete
    (whatever the issuer: no client, mTLS or issuer asks for them any more, and cert-manager would renew
    them for ever), and the Secrets as observed, where what cert-manager issued counts only for
    Certificates this pass leaves as they are."""
    secrets = observed_secrets(cluster, snap)
    wanted = certificate_manifests(cluster)
    keep = {m["metadata"]["name"] for m in wanted}
    deletes: list[Action] = [
        DeleteCertificate(str(c["metadata"]["name"]), str(c["metadata"].get("uid") or ""))
        for c in snap.of_kind("Certificate")
        if c["metadata"]["name"] not in keep
    ]
    cm = secrets.cert_manager
    if cm is None or not cm.installed:
        return deletes, secrets
    applies: list[Action] = [
        Apply(m) for m in wanted if not contains(snap.get("Certificate", m["metadata"]["name"]), m)
    ]
    stale = tuple(a.manifest["metadata"]["name"] for a in applies if isinstance(a, Apply))
    return [*applies, *deletes], replace(secrets, cert_manager=replace(cm, stale=stale))


def _refuse(
    cluster: ValkeyCluster, snap: Snapshot, planned: Plan, now: datetime, cm_applies: Sequence[Action] = ()
) -> Decision:
    """Certificates the operator cannot serve: no object is written but cert-manager Certificates (what is
    asked of cert-manager is all that changes, nothing that runs), and roles still move (a primary lost
    while an issuer Secret is broken is still replaced: that needs no new certificate)."""
    problem = planned.problems[0]
    views = pods(snap)
    live = [p for p in views if not p.terminating]
    desired = cluster.spec.pod_count
    ready = sum(p.ready for p in live)
    exists = snap.get("StatefulSet", cluster.names.statefulset) is not None
    roles = failover.roles(cluster, snap, views, now)
    issuing = problem.reason == CERTIFICATE_ISSUING
    obs = Observation(
        desired, ready, desired, 0, (problem.reason, problem.message), exists=exists, cert_issuing=issuing
    )
    news = _condition(snap, CERTIFICATES_READY).get("reason") != problem.reason and not issuing
    status = _base_status(cluster, snap, obs, now, ready, _tls_status(cluster, snap, rolling=False))
    if roles.record is not None:
        status["primary"] = roles.primary
        status["replicationId"] = failover.history(snap, roles.primary)
        status["failover"] = dict(roles.failover_status) if roles.failover_status else None
    moves = [a for a in roles.actions if not isinstance(a, Repoint)]
    repoints = [a for a in roles.actions if isinstance(a, Repoint)]
    labels = _role_actions(live, roles.primary) if roles.primary else []
    return Decision(
        actions=(*moves, *labels, *repoints, *cm_applies),
        status=status,
        events=(*roles.events, *((Event("Warning", problem.reason, problem.message),) if news else ())),
        metrics=Metrics(not_ready=("server",), cluster_ready=False, failovers=roles.failovers),
        retry_after=roles.retry_after,
        next_due=_stuck_at(status.get("conditions"), now) if issuing else None,
    )


def _tls_status(cluster: ValkeyCluster, snap: Snapshot, rolling: bool) -> dict[str, str]:
    """What the pods serve: while they still run an older configuration, what was reported before."""
    before = snap.status.get("tls")
    if rolling and isinstance(before, Mapping) and before.get("mode"):
        return dict(before)
    tls = cluster.spec.tls
    # Without TLS no client presents a certificate: say so, whatever clientAuth would be with TLS on.
    return {"mode": tls.mode, "clientAuth": tls.client_auth if tls.enabled else "none"}


def _base_status(
    cluster: ValkeyCluster, snap: Snapshot, obs: Observation, now: datetime, ready: int, tls: Mapping[str, str]
) -> dict[str, Any]:
    desired = cluster.spec.pod_count
    return {
        "observedGeneration": cluster.generation,
        "phase": phase(obs),
        "replicas": desired,
        "readyReplicas": ready,
        "readyDisplay": f"{ready}/{desired}",
        "tls": dict(tls),
        "conditions": merge_conditions(_previous_conditions(snap), conditions(obs), now, cluster.generation),
    }


def _scale_floor(cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView], roles: failover.Roles) -> int:
    """How many pods a scale-down must keep for now (the StatefulSet removes the highest ordinals first).
    Replication: up to the primary's ordinal, and, while the primary is lost or moving, every pod (the most
    advanced replica may be one the scale-down would remove). Cluster: up to the last pod that serves
    slots, until it has handed them to a replica that stays."""
    if cluster.spec.mode == "cluster":
        if sharding.silent(views, snap.cluster_views):
            # A ready pod that did not answer may serve slots: keep every pod until it answers.
            current = snap.get("StatefulSet", cluster.names.statefulset)
            return int(((current or {}).get("spec") or {}).get("replicas") or 0)
        return max((names.ordinal(p) + 1 for p in sharding.primaries(views, snap.cluster_views)), default=0)
    if roles.record is None:
        return 0
    keep = names.ordinal(roles.primary) + 1 if roles.primary else 0
    if roles.moving or roles.primary is None:
        current = snap.get("StatefulSet", cluster.names.statefulset)
        keep = max(keep, int(((current or {}).get("spec") or {}).get("replicas") or 0))
    return keep


def _hold_scale_down(manifest: dict[str, Any], floor: int) -> dict[str, Any]:
    if manifest["kind"] != "StatefulSet" or floor <= manifest["spec"]["replicas"]:
        return manifest
    return {**manifest, "spec": {**manifest["spec"], "replicas": floor}}


def _role_actions(views: Sequence[PodView], primary: str) -> list[Action]:
    # The primary first: the read-write Service then never has zero endpoints.
    out: list[Action] = []
    for pod in sorted(views, key=lambda p: p.name != primary):
        role = names.ROLE_PRIMARY if pod.name == primary else names.ROLE_REPLICA
        if not pod.terminating and pod.role_label != role:
            out.append(Relabel(pod.name, role))
    return out


@dataclass(frozen=True)
class _Roll:
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    retry_after: float | None = None


def _roll(
    cluster: ValkeyCluster,
    snap: Snapshot,
    states: Sequence[rollout.PodState],
    primary: str | None,
    template_changes: bool,
    views: Sequence[PodView],
) -> _Roll:
    if any(r.replication is not None and r.replication.failing_over for r in snap.reports.values()):
        return _Roll(retry_after=SWITCHOVER_RECHECK)  # a FAILOVER is under way: read its outcome first
    sts = snap.get("StatefulSet", cluster.names.statefulset)
    if template_changes or not statefulset_settled(sts):
        return _Roll()  # a pod deleted now could come back on the old template
    sharded = cluster.spec.mode == "cluster"
    # A sharded cluster has a primary per shard, each handing its slots only to a replica of its own.
    followers = sharding.primaries(views, snap.cluster_views) if sharded else None
    primaries = list(followers) if followers is not None else [primary] if primary else []
    step = rollout.next_step(states, primaries, cluster.spec.pod_count, followers)
    if (
        sharded
        and step.pod
        and step.action == "delete"
        and not sharding.restart_safe(views, snap.cluster_views, step.pod)
    ):
        return _Roll(retry_after=sharding.RECHECK)
    if step.action == "switchover" and not _reports_master(snap, step.pod):
        # Only a primary that says so over the wire is switched over, and its outcome read the same way.
        return _Roll()
    if step.action == "switchover" and step.pod and step.target:
        moved = f"Handing the primary role from {step.pod} to {step.target}."
        if sharded:
            return _Roll(
                (ClusterFailover(step.target),),
                (Event("Normal", "Switchover", moved),),
                sharding.FAILOVER_RECHECK,
            )
        return _Roll((Switchover(step.pod, step.target),), (Event("Normal", "Switchover", moved),), SWITCHOVER_RECHECK)
    if step.action == "delete" and step.pod and step.uid:
        return _Roll((DeletePod(step.pod, step.uid),), (Event("Normal", "RollingPod", step.message),))
    return _Roll()


def _reloads(snap: Snapshot, views: Sequence[PodView], fingerprint: str) -> tuple[list[Action], list[Event]]:
    """HotReload: ready pods that serve another certificate re-read their files; the next pass confirms."""
    actions: list[Action] = []
    events: list[Event] = []
    before = {s.get("pod"): s.get("fingerprintSHA256") for s in _served_before(snap)}
    for pod in views:
        report = snap.reports.get(pod.name)
        if not pod.ready or report is None or report.served is None:
            continue
        if not report.serves(fingerprint):
            actions.append(Reload(pod.name))
        elif before.get(pod.name) not in (None, fingerprint):
            events.append(Event("Normal", "CertificateReloaded", f"{pod.name} serves the new certificate."))
    return actions, events


def _served_before(snap: Snapshot) -> list[Mapping[str, Any]]:
    return list(((snap.status.get("certificates") or {}).get("served")) or [])


def _served(views: Sequence[PodView], snap: Snapshot) -> list[dict[str, str]]:
    out = []
    for pod in views:
        report = snap.reports.get(pod.name)
        if pod.ready:
            out.append({"pod": pod.name, "fingerprintSHA256": (report.served if report else None) or ""})
    return out


def not_owned(cluster: ValkeyCluster, snap: Snapshot) -> SpecError | None:
    """Objects with names this cluster derives that someone else made: the operator stops and says which."""
    if not snap.foreign:
        return None
    named = ", ".join(f"{kind} {name}" for kind, name in snap.foreign[:3])
    more = f" and {len(snap.foreign) - 3} more" if len(snap.foreign) > 3 else ""
    return SpecError(
        NOT_OWNED,
        f"{named}{more}: already in namespace {cluster.namespace}, not created by this ValkeyCluster (no owner "
        "reference to it; for a Secret cert-manager issues into, not written by cert-manager for this cluster's "
        "Certificate). The operator never adopts or overwrites what it did not create: delete or rename "
        "it, or give this ValkeyCluster another name",
    )


def _hold(cluster: ValkeyCluster, snap: Snapshot) -> tuple[ValkeyCluster | None, SpecError | None]:
    """A change the running cluster cannot make (now) is held: the refused field keeps what runs (the
    StatefulSet's image; the shards that serve, or that slots move for) and the rest of the pass goes on
    (failover, handovers, certificates, rotations), with status saying why. None: nothing runs to hold to."""
    error = versions.downgrade(cluster, snap.reports)
    if error is not None:
        running = _running_image(snap, cluster)
        if running is None:
            return None, error
        cluster = replace(cluster, spec=replace(cluster.spec, image=running))
    if cluster.spec.mode == "cluster":
        views = snap.cluster_views
        shards = sharding.layout_change(cluster, views) or sharding.change_during_migration(cluster, views, snap.status)
        if shards is not None:
            kept = sharding.held_shards(cluster, views, snap.status)
            cluster = replace(cluster, spec=replace(cluster.spec, shards=kept))
            error = error or shards
    return cluster, error


def _admitted(
    cluster: ValkeyCluster, snap: Snapshot, now: datetime
) -> Decision | tuple[ValkeyCluster, SpecError | None]:
    """Objects someone else made stop the pass; a change the cluster cannot make is held (`_hold`)."""
    foreign = not_owned(cluster, snap)
    if foreign is not None:
        return decide_invalid(snap.status, cluster.generation, foreign, now)
    held_to, held = _hold(cluster, snap)
    if held_to is None:
        assert held is not None  # nothing runs to hold a refused change to
        return decide_invalid(snap.status, cluster.generation, held, now)
    return held_to, held


def _running_image(snap: Snapshot, cluster: ValkeyCluster) -> str | None:
    sts = snap.get("StatefulSet", cluster.names.statefulset) or {}
    containers = ((((sts.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or [{}]
    image = containers[0].get("image")
    return str(image) if image else None


def decide(cluster: ValkeyCluster, snap: Snapshot, now: datetime) -> Decision:
    """Every decision of one pass."""
    admitted = _admitted(cluster, snap, now)
    if isinstance(admitted, Decision):
        return admitted
    cluster, held = admitted
    n = cluster.names
    views = pods(snap)
    live = [p for p in views if not p.terminating]
    hot = cluster.spec.tls.rotation_strategy == "HotReload" and cluster.spec.tls.enabled
    cm_applies, secrets = _certificates(cluster, snap)
    # The rollout of what the Secrets hold now: the trust bundle may shrink only once it is complete.
    old_template = template_hash(snap.get("StatefulSet", n.statefulset))
    old_fp = _fingerprint(secrets.server.get("tls.crt") if secrets.server else None)
    before = _states(cluster, snap, views, old_template, old_fp, hot)
    secrets = replace(secrets, rollout_complete=rollout.complete(before, cluster.spec.pod_count))
    planned = plan(cluster, secrets, now)
    if planned.problems or planned.material is None:
        return _refuse(cluster, snap, planned, now, cm_applies)
    material = planned.material
    pw = (password(cluster, snap) or pysecrets.token_urlsafe(24)) if cluster.spec.auth_enabled else None
    users_checked = _wanted_users(cluster, snap, views, material.clients)
    acl, acl_events = _acl_work(snap, users_checked, live)
    roles = failover.roles(cluster, snap, views, now)
    primary = roles.primary
    floor = _scale_floor(cluster, snap, views, roles)
    manifests = [
        _hold_scale_down(m, floor)
        for m in desired_objects(
            cluster,
            Inputs(
                material,
                pw,
                roles.record,
                users_checked.given,
                snap.get("Secret", n.users_secret) is not None,
                layout=POD_LAYOUT,
            ),
        )
    ]
    applies = [Apply(m) for m in manifests if not contains(snap.get(m["kind"], m["metadata"]["name"]), m)]
    sts_manifest = next(m for m in manifests if m["kind"] == "StatefulSet")
    fingerprint = describe_pem(material.server.cert_pem).fingerprint_sha256
    states = _states(cluster, snap, views, template_digest(sts_manifest), fingerprint, hot)

    # cert-manager asked to issue again before the Secrets record the request as handled (a failed ask
    # fails the pass, and the next one asks again).
    actions: list[Action] = [
        *_roles_in_order(roles, live),
        *cm_applies,
        *(Reissue(r.certificate, r.index, iso(now), r.resource_version) for r in planned.reissue),
        *applies,
    ]
    events = [
        *roles.events,
        *_reissue_events(planned),
        *(
            Event(
                "Normal",
                "CertificateRotated",
                f"Re-issued the {r.certificate} certificate (reason {r.reason}); pods pick it up one at a time.",
            )
            for r in planned.rotations
        ),
    ]
    if hot:
        reloads, reloaded = _reloads(snap, live, fingerprint)
        actions += reloads
        events += reloaded
    failovers = roles.failovers
    retry_after = roles.retry_after
    if not roles.moving and retry_after is None:
        # No restart while the primary is lost, moves, or a replica changes primary. The template changes
        # when its hash does; an apply for another reason (a quantity the API server writes in canonical
        # form) changes no pod, and must not hold the rollout back.
        template_changes = old_template != template_digest(sts_manifest)
        roll = _roll(cluster, snap, states, primary, template_changes, views)
        actions += roll.actions
        events += roll.events
        retry_after = roll.retry_after
        failovers += (failover.SWITCHOVER,) * sum(isinstance(a, Switchover) for a in roll.actions)
    shard_work = _shard_work(
        cluster,
        snap,
        views,
        quiet=not applies and not any(isinstance(a, (DeletePod, ClusterFailover)) for a in actions),
    )
    actions += shard_work.actions
    events += shard_work.events
    retry_after = _soonest(retry_after, shard_work.retry_after)
    # A handover asked for too recently (it may still be under way, or it aborted) is not asked again yet.
    paced = handovers.pace(snap.status.get("handovers") or [], actions, events, now, _under_way(snap, roles))
    certs = certificates(cluster, material, now)
    status, report_events, metrics = _report(
        cluster,
        snap,
        certs,
        states,
        live,
        roles,
        now,
        hot,
        planned,
        held or users_checked.error,
        (acl.pending, users_checked.waiting),
    )
    status.update(_asked(cluster, snap, paced), **({"acl": acl.status} if acl.status is not None else {}))
    return Decision(
        (*paced.actions, *acl.actions),
        status,
        (*paced.events, *acl_events, *report_events),
        replace(metrics, failovers=_role_moves(failovers, paced)),
        _soonest(retry_after, paced.retry_after),
        _next_due(cluster, material, certs, now, status.get("conditions") or snap.status.get("conditions")),
    )


def _reissue_events(planned: Plan) -> list[Event]:
    return [
        Event("Normal", "CertificateReissueRequested", f"Asked cert-manager to issue {r.certificate} now: {r.why}.")
        for r in planned.reissue
    ]


def _roles_in_order(roles: failover.Roles, live: Sequence[PodView]) -> list[Action]:
    """Role moves first (writes resume soonest), then the labels that move the Services, then replicas
    repointed to the primary (the objects come after these)."""
    moves = [a for a in roles.actions if not isinstance(a, Repoint)]
    repoints = [a for a in roles.actions if isinstance(a, Repoint)]
    labels = _role_actions(live, roles.primary) if roles.primary else []
    return [*moves, *labels, *repoints]


def _asked(cluster: ValkeyCluster, snap: Snapshot, paced: handovers.Paced) -> dict[str, Any]:
    """What status keeps of what was asked of the nodes: handovers, and the shards count slots move for."""
    out: dict[str, Any] = {"handovers": list(paced.records) or None}
    if cluster.spec.mode == "cluster":
        moving = any(isinstance(a, MigrateSlots) for a in paced.actions)
        before = snap.status.get("reshardingTo")
        out["reshardingTo"] = sharding.resharding_to(cluster, snap.cluster_views, moving, before)
    return out


def _under_way(snap: Snapshot, roles: failover.Roles) -> bool:
    """A handover may be between its steps: a role moving, a FAILOVER in progress, slots migrating."""
    return (
        roles.moving
        or any(r.replication is not None and r.replication.failing_over for r in snap.reports.values())
        or any(v.migrating for v in snap.cluster_views.values())
    )


def _shard_work(cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView], quiet: bool) -> _Roll:
    """Cluster mode: a leaving primary's handover first; else, when the objects are in place and no pod
    restarts (`quiet`), the next step of forming or healing the cluster. Nothing in the other modes."""
    if cluster.spec.mode != "cluster":
        return _Roll()
    replication = {p: r.replication for p, r in snap.reports.items() if r.replication is not None}
    handed = sharding.handovers(cluster, views, snap.cluster_views, replication)
    if handed:
        told = tuple(Event("Normal", "Switchover", f"A leaving primary hands its slots to {a.pod}.") for a in handed)
        return _Roll(handed, told, sharding.FAILOVER_RECHECK)
    if not quiet:
        return _Roll()
    formed = sharding.form(cluster, views, snap.cluster_views)
    told = tuple(
        Event("Normal", handovers.MIGRATION_REASON, f"{a}.") for a in formed.actions if isinstance(a, MigrateSlots)
    )
    return _Roll(formed.actions, told, formed.retry_after)


def _role_moves(failovers: Sequence[str], paced: handovers.Paced) -> tuple[str, ...]:
    """The failovers metric: a handover counts once, when first asked for, not at each attempt."""
    return (*(f for f in failovers if f != failover.SWITCHOVER), *(failover.SWITCHOVER,) * paced.first_attempts)


def _soonest(*delays: float | None) -> float | None:
    return min((t for t in delays if t is not None), default=None)


def _next_due(
    cluster: ValkeyCluster, material: Material, certs: CertReport, now: datetime, conditions: Any = None
) -> datetime | None:
    """When the clock alone will next make work: the earliest renewal, a scheduled CA renewal, the end of a
    CA rotation's overlap, the moment cert-manager's issuance counts as stuck (STUCK_AFTER after the
    CertificatesReady condition turned CertificateIssuing). The handlers wake up then when it comes before
    the slow timer."""
    due = [t.renewal for t in certs.times.values() if t.renewal is not None]
    stuck = _stuck_at(conditions, now)
    if stuck is not None:
        due.append(stuck)
    spec = cluster.spec.tls.certificates
    if material.ca is not None:
        due.append(describe_pem(material.ca.cert_pem).not_after - 2 * spec.duration)
    since = rotation_since(material.rotation)
    if material.rotation.get(names.ANN_CA_ROTATION_PHASE) in ("Trusting", "Reissuing") and since:
        due.append(since + spec.ca_rotation_overlap)
    future = [d for d in due if d > now]
    return min(future, default=None)


def _issuing(conditions: Any) -> tuple[bool, datetime | None]:
    """Whether the CertificatesReady condition says cert-manager is at work (CertificateIssuing), and since
    when."""
    ready: Mapping[str, Any] = next((c for c in conditions or [] if c.get("type") == CERTIFICATES_READY), {})
    return ready.get("reason") == CERTIFICATE_ISSUING, parse_iso(ready.get("lastTransitionTime"))


def _stuck_at(conditions: Any, now: datetime) -> datetime | None:
    """When cert-manager's issuance under way will count as stuck (CertificateNotReady): STUCK_AFTER after
    the CertificatesReady condition turned CertificateIssuing; None when it is not, or that has passed."""
    issuing, since = _issuing(conditions)
    if not issuing or since is None or since + STUCK_AFTER <= now:
        return None
    return since + STUCK_AFTER


def needs_fast_look(status: Mapping[str, Any], now: datetime, horizon: timedelta) -> bool:
    """Whether a cluster wants the fast timer: pods start or roll, a CA rotation is under way, or a renewal
    falls due within `horizon` (the slow timer would look too late)."""
    if status.get("phase") in ("Provisioning", "Rotating") or status.get("failover"):
        return True
    certs = status.get("certificates") or {}
    if certs.get("caRotation"):
        return True
    # cert-manager at work (a new Certificate, or one whose spec changed): it takes seconds; its Certificate
    # watch starts passes too, the timer is the backstop for STUCK_AFTER. A failed or stuck issuance (and one
    # cert-manager never gets to) is looked at at the slow timer's pace.
    issuing, since = _issuing(status.get("conditions"))
    if issuing and (since is None or now - since < STUCK_AFTER):
        return True
    when = parse_iso((certs.get("server") or {}).get("renewalTime"))
    return when is not None and when - now < horizon


def _reports_master(snap: Snapshot, pod: str | None) -> bool:
    report = snap.reports.get(pod or "")
    return report is not None and report.replication is not None and report.replication.role == ROLE_MASTER


def _primary_serving(snap: Snapshot, live: Sequence[PodView], roles: failover.Roles) -> bool:
    """Replication: the read-write endpoint has a ready pod behind it that says it is the primary."""
    if roles.record is None:
        return True  # no roles in this mode
    pod = next((p for p in live if p.name == roles.primary), None)
    return pod is not None and pod.ready and _reports_master(snap, pod.name) and not roles.moving


_FAILOVER_MESSAGES = {
    failover.STATE_LOST: "The primary {primary} is lost since {since}; the most advanced replica is promoted "
    "after failover.after (writes fail until then; reads go on from the replicas that are in sync).",
    failover.STATE_FAILING_OVER: "The primary role is moving from {primary} (since {since}).",
}


_VOLUME_WAIT_MESSAGE = (
    "The primary {primary} is lost since {since}, and every replica restarted from its volume too: {primary}'s "
    "volume holds the last writes, so it is waited for until {waitingUntil} before a replica takes the role."
)


def _failover_observed(roles: failover.Roles) -> tuple[str, str] | None:
    state = roles.failover_status
    if not state:
        return None
    template = _VOLUME_WAIT_MESSAGE if "waitingUntil" in state else _FAILOVER_MESSAGES[str(state["state"])]
    return str(state["state"]), template.format(**state)


def _acl_work(snap: Snapshot, checked: access.Checked, live: Sequence[PodView]) -> tuple[access.Plan, list[Event]]:
    """The clients' ACL users, live on every running pod (their actions go last, after the objects: a new
    pod reads them from its file too), and one Event when the rules change."""
    wanted = checked.given
    acl = access.plan(wanted, live, snap.reports, snap.status.get("acl") or {}, checked.withheld)
    if not (acl.actions and wanted) or (snap.status.get("acl") or {}).get("digest") == (acl.status or {}).get("digest"):
        return acl, []
    told = ", ".join(u.name for u in wanted)
    return acl, [Event("Normal", "AclUsersChanged", f"Giving every pod the ACL users {told} (ACL SETUSER).")]


def _wanted_users(
    cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView], certified: Collection[str]
) -> access.Checked:
    """The clients' ACL users to give the pods and their file, of the clients with a certificate this pass
    (`certified`: one cert-manager has not issued yet waits with its Secret, which keeps its password). Rules
    that name a command some pod does not know are held to what the file holds (a pod would refuse them,
    even from its file when it starts)."""
    secret = secret_data(snap.get("Secret", cluster.names.users_secret))
    text = secret.get(users.USERS_KEY) if secret else None
    kept = users.kept_rules(cluster, text.decode() if text else "")
    wanted = [u for u in users.users(cluster, _client_passwords(cluster, snap, views)) if u.client in certified]
    return access.checked(wanted, snap.reports, kept, _every_pod(cluster, views), image_version(cluster.spec.image))


def _every_pod(cluster: ValkeyCluster, views: Sequence[PodView]) -> list[str]:
    """The pods the spec asks for and every other pod still there (one being scaled away still serves)."""
    return sorted(set(cluster.names.pods(cluster.spec.pod_count)) | {p.name for p in views if not p.terminating})


def _client_passwords(cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView]) -> dict[str, str]:
    """The passwords of the clients' ACL users: as their Secrets keep them, and new ones for those that need
    one and have none. Once the certificate alone logs a user in, a password kept from before (an upgrade
    from 8.x, or `clientAuth` made `required`) stays until every pod maps certificates to users; then it
    goes, and no `AUTH` opens the user any more (nor, under `tls.mode: preferred`, the plaintext port)."""
    kept = client_passwords(cluster, snap)
    if users.needs_password(cluster):
        return {client: kept.get(client) or pysecrets.token_urlsafe(24) for client, _ in cluster.spec.tls.acls}
    return {} if _certificates_log_in(cluster, snap, views) else kept


def _certificates_log_in(cluster: ValkeyCluster, snap: Snapshot, views: Sequence[PodView]) -> bool:
    """Every pod maps client certificates to users now: it says (INFO server) it runs a release that can,
    and it was made from the StatefulSet's template as read, whose config is the one rendered from the spec
    now (which asks for it). A pod of an older template may run a config without `tls-auth-clients-user`,
    where the password is the only way in."""
    every = _every_pod(cluster, views)
    if not versions.every_pod_supports(every, snap.reports, "tls-auth-clients-user"):
        return False
    sts = snap.get("StatefulSet", cluster.names.statefulset)
    annotations = (((sts or {}).get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    if annotations.get(names.ANN_CONFIG_HASH) != config_hash(config_files(cluster, POD_LAYOUT)):
        return False
    template = template_hash(sts)
    on = {p.name: p.template_hash for p in views if not p.terminating}
    return all(on.get(pod) == template for pod in every)


def _report(
    cluster: ValkeyCluster,
    snap: Snapshot,
    certs: CertReport,
    states: Sequence[rollout.PodState],
    live: Sequence[PodView],
    roles: failover.Roles,
    now: datetime,
    hot: bool,
    planned: Plan,
    held: SpecError | None = None,
    acl_users: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> tuple[dict[str, Any], list[Event], Metrics]:
    """status, Events and metrics from what was observed. `users`: the ready pods that do not hold the
    clients' current ACL users yet, and the clients whose rules wait for every pod to be asked (`acl_users`)."""
    n = cluster.names
    live_states = [s for s in states if not s.terminating]
    ready = sum(p.ready for p in live)
    done = sum(1 for s in live_states if s.current and s.serving)
    outdated = len(live_states) - done
    unready = planned.unready[0] if planned.unready else None
    obs = Observation(
        cluster.spec.pod_count,
        ready,
        done,
        outdated,
        (unready.reason, unready.message) if unready else None,
        certs.expiring,
        certs.soonest,
        exists=True,
        primary_serving=_primary_serving(snap, live, roles),
        failover=_failover_observed(roles),
        persistent=cluster.spec.persistence.enabled,
        vulnerable=versions.vulnerable(cluster, snap.reports),
        held=(held.reason, held.message) if held else None,
        users_pending=tuple(acl_users[0]),
        users_waiting=tuple(acl_users[1]),
        sharded=sharding.cluster_conditions(cluster, live, snap.cluster_views)
        if cluster.spec.mode == "cluster"
        else None,
        cert_issuing=unready is not None and unready.reason == CERTIFICATE_ISSUING,
    )
    status = _base_status(cluster, snap, obs, now, ready, _tls_status(cluster, snap, rolling=obs.rolling))
    scheme = "rediss" if cluster.spec.tls.enabled else "redis"
    cert_status = dict(certs.status)
    if hot:
        cert_status["served"] = _served(live, snap)
    status.update(
        certificates=cert_status,
        endpoints={"primary": f"{scheme}://{n.service_host(n.service)}:{POD_LAYOUT.port}"},
        connectionSecret=n.connection_secret,
    )
    events: list[Event] = []
    if cluster.spec.mode == "cluster":
        status["shards"], status["clusterState"] = sharding.shard_status(cluster, live, snap.cluster_views)
    if roles.record is not None:
        status["endpoints"]["readOnly"] = f"{scheme}://{n.service_host(n.ro_service)}:{POD_LAYOUT.port}"
        # What the pods report (or the pod promoted in this pass); None while no pod serves as primary.
        status["primary"] = roles.primary
        status["replicationId"] = failover.history(snap, roles.primary)
        status["failover"] = dict(roles.failover_status) if roles.failover_status else None
        was, primary = snap.status.get("primary"), roles.primary
        if was and primary and was != primary:
            events.append(Event("Normal", "PrimaryMoved", f"{primary} is the primary now (was {was})."))
    status["advisory"] = versions.advisory_key(cluster, snap.reports)
    if obs.vulnerable and status["advisory"] != snap.status.get("advisory"):
        events.append(Event("Warning", versions.VULNERABLE, obs.vulnerable[1]))
    if unready and not obs.cert_issuing and _condition(snap, CERTIFICATES_READY).get("reason") != unready.reason:
        events.append(Event("Warning", unready.reason, unready.message))
    if held and _condition(snap, READY).get("reason") != held.reason:
        events.append(Event("Warning", held.reason, held.message))
    if certs.expiring and _condition(snap, EXPIRING_SOON).get("status") != "True":
        message = next(c["message"] for c in status["conditions"] if c["type"] == EXPIRING_SOON)
        events.append(Event("Warning", "CertificateExpiringSoon", message))
    metrics = Metrics(certs.times, (), planned.rotations, obs.all_ready)
    return status, events, metrics
