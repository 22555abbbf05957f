"""One idempotent, level-based pass: gather what exists, decide with pure functions, act, report.

The same pass serves create, update, resume and the timer. It owns the status.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from valkey_operator import metrics, names, rollout
from valkey_operator.api.spec import SpecError, ValkeyCluster, parse_cluster
from valkey_operator.api.status import (
    CERTIFICATES_READY,
    EXPIRING_SOON,
    Observation,
    conditions,
    merge_conditions,
    phase,
)
from valkey_operator.builders.configmap import config_files, config_map
from valkey_operator.builders.desired import Inputs, desired_objects
from valkey_operator.builders.services import ROLE_LABEL, ROLE_PRIMARY, ROLE_REPLICA
from valkey_operator.clock import Clock
from valkey_operator.conf.layout import POD_LAYOUT, PRIMARY_KEY
from valkey_operator.pki import renewal
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material, Observed, Plan, SecretData, plan

log = logging.getLogger(__name__)


class KubeAPI(Protocol):
    """What reconcile needs from Kubernetes (k8s.client.Kube implements it)."""

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list(
        self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[dict[str, Any]]: ...
    def read_secret(self, namespace: str, name: str) -> SecretData | None: ...
    def delete_pod(self, namespace: str, name: str, uid: str) -> None: ...
    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> None: ...


class Switchover(Protocol):
    """Moves the primary role away from `pod` before it restarts (valkey_admin in production)."""

    def __call__(
        self, cluster: ValkeyCluster, material: Material, password: str | None, pod: str, target: str
    ) -> None: ...


class PodCall(Protocol):
    def __call__(self, cluster: ValkeyCluster, material: Material, password: str | None, pod: str) -> Any: ...


@dataclass(frozen=True)
class PodTLS:
    """HotReload's two pod calls: the fingerprint a pod serves, and 'CONFIG SET the files again'."""

    served: PodCall
    reload: PodCall


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def _observe_secrets(
    kube: KubeAPI, cluster: ValkeyCluster, sts: Mapping[str, Any] | None, pods: list[rollout.PodState]
) -> Observed:
    n = cluster.names
    issuer = cluster.spec.tls.issuer
    clients = {c: kube.read_secret(cluster.namespace, n.client_secret(c)) for c in cluster.spec.tls.clients}
    clients[CONNECTION_CLIENT] = kube.read_secret(cluster.namespace, n.connection_secret)
    return Observed(
        ca=kube.read_secret(cluster.namespace, n.ca_secret) if issuer.type == "SelfSigned" else None,
        issuer=kube.read_secret(cluster.namespace, issuer.secret_name) if issuer.secret_name else None,
        server=kube.read_secret(cluster.namespace, n.tls_secret),
        clients={k: v for k, v in clients.items() if v is not None},
        rollout_complete=_rollout_complete(sts, pods, cluster.spec.pod_count),
    )


def _rollout_complete(sts: Mapping[str, Any] | None, pods: list[rollout.PodState], desired: int) -> bool:
    if sts is None:
        return True
    status = sts.get("status") or {}
    if status.get("observedGeneration", 0) < sts["metadata"].get("generation", 0):
        return False
    update = status.get("updateRevision")
    return len(pods) >= desired and all(p.revision == update and p.ready for p in pods)


def _pod_states(raw: list[dict[str, Any]]) -> list[rollout.PodState]:
    out = []
    for p in raw:
        conds = (p.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        out.append(
            rollout.PodState(
                name=p["metadata"]["name"],
                uid=p["metadata"]["uid"],
                revision=(p["metadata"].get("labels") or {}).get("controller-revision-hash", ""),
                ready=ready,
                terminating=bool(p["metadata"].get("deletionTimestamp")),
            )
        )
    return out


def _password(kube: KubeAPI, cluster: ValkeyCluster) -> str | None:
    if not cluster.spec.auth_enabled:
        return None
    existing = kube.read_secret(cluster.namespace, cluster.names.auth_secret)
    if existing and existing.get("password"):
        return existing.data["password"].decode()
    return pysecrets.token_urlsafe(24)


def _primary(kube: KubeAPI, cluster: ValkeyCluster) -> str:
    cm = kube.get("v1", "ConfigMap", cluster.namespace, cluster.names.config_map)
    current = ((cm or {}).get("data") or {}).get(PRIMARY_KEY)
    pods = cluster.names.pods(cluster.spec.pod_count)
    return current if current in pods else pods[0]


CertReport = tuple[dict[str, Any], dict[str, metrics.CertTimes], list[str], datetime | None]


def _cert_status(cluster: ValkeyCluster, material: Material, now: datetime) -> CertReport:
    certs = cluster.spec.tls.certificates
    status: dict[str, Any] = {}
    times: dict[str, metrics.CertTimes] = {}
    expiring: list[str] = []

    def track(label: str, pem: bytes, renew: bool) -> Any:
        info = describe_pem(pem)
        when = renewal.renewal_time(info, certs.renew_before) if renew else None
        times[label] = metrics.CertTimes(info.not_before, info.not_after, when, now < info.not_after)
        if renewal.expiring_soon(info, now, certs.warn_before):
            expiring.append(label)
        return info, when

    ca_source = material.ca.cert_pem if material.ca else material.bundle
    if ca_source:
        ca, _ = track("ca", ca_source, False)
        status["ca"] = {
            "notBefore": _iso(ca.not_before),
            "notAfter": _iso(ca.not_after),
            "serial": ca.serial,
            "fingerprintSHA256": ca.fingerprint_sha256,
            "secretName": cluster.names.ca_secret if material.ca else cluster.spec.tls.issuer.secret_name,
        }
    server, when = track("server", material.server.cert_pem, cluster.spec.tls.issuer.type != "External")
    status["server"] = {
        "notBefore": _iso(server.not_before),
        "notAfter": _iso(server.not_after),
        "serial": server.serial,
        "fingerprintSHA256": server.fingerprint_sha256,
        "dnsNames": list(server.dns_names),
        "secretName": cluster.names.tls_secret,
        "revision": material.revision,
    }
    if when is not None:
        status["server"]["renewalTime"] = _iso(when)
    status["clients"] = []
    for name, pair in material.clients.items():
        info, _ = track(f"client/{name}", pair.cert_pem, True)
        secret = cluster.names.connection_secret if name == CONNECTION_CLIENT else cluster.names.client_secret(name)
        status["clients"].append({"name": name, "notAfter": _iso(info.not_after), "secretName": secret})
    soonest = min((t.not_after for t in times.values()), default=None)
    return status, times, expiring, soonest


def _condition(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    conds = (body.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conds if c.get("type") == kind), {})


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Holds the adapters and the clock; `reconcile(body)` is one pass."""

    def __init__(
        self,
        kube: KubeAPI,
        clock: Clock,
        switchover: Switchover | None = None,
        cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN,
        pod_tls: PodTLS | None = None,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.switchover = switchover
        self.cluster_domain = cluster_domain
        self.pod_tls = pod_tls

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        now = self.clock.now()
        previous = (body.get("status") or {}).get("conditions") or []
        generation = int(body.get("metadata", {}).get("generation", 0))
        try:
            cluster = parse_cluster(body, self.cluster_domain)
        except SpecError as exc:
            obs = Observation(0, 0, 0, 0, spec_error=(exc.reason, exc.message), exists=False)
            return Outcome(
                {
                    "observedGeneration": generation,
                    "phase": phase(obs),
                    "conditions": merge_conditions(previous, conditions(obs), now, generation),
                },
                [Event("Warning", exc.reason, exc.message)],
            )
        ns, n = cluster.namespace, cluster.names
        sts = self.kube.get("apps/v1", "StatefulSet", ns, n.statefulset)
        pods = _pod_states(self.kube.list("v1", "Pod", ns, names.selector_labels(cluster.name)))
        decided = plan(cluster, _observe_secrets(self.kube, cluster, sts, pods), now)
        if decided.problems or decided.material is None:
            return self._refuse(cluster, body, decided, sts, pods, now)
        material = decided.material
        password = _password(self.kube, cluster)
        primary = _primary(self.kube, cluster)
        for manifest in desired_objects(cluster, Inputs(material, password, primary)):
            applied = self.kube.apply(manifest)
            if manifest["kind"] == "StatefulSet":
                sts = applied
        events = [
            Event(
                "Normal",
                "CertificateRotated",
                f"Re-issued the {r.certificate} certificate (reason {r.reason}); pods pick it up one at a time.",
            )
            for r in decided.rotations
        ]
        for r in decided.rotations:
            metrics.record_rotation(ns, cluster.name, r.certificate, r.reason)
        if cluster.spec.mode == "replication":
            self._label_roles(cluster, pods, primary)
        self._roll(cluster, sts, pods, primary, material, password, events)
        served = self._hot_reload(cluster, pods, material, password, events)
        return self._report(cluster, body, material, sts, pods, now, events, served)

    def _hot_reload(
        self,
        cluster: ValkeyCluster,
        pods: list[rollout.PodState],
        material: Material,
        password: str | None,
        events: list[Event],
    ) -> list[dict[str, str]] | None:
        """HotReload: each ready pod re-reads its files until a live handshake shows the current certificate."""
        if cluster.spec.tls.rotation_strategy != "HotReload" or self.pod_tls is None or not cluster.spec.tls.enabled:
            return None
        want = describe_pem(material.server.cert_pem).fingerprint_sha256
        served: list[dict[str, str]] = []
        for pod in (p for p in pods if p.ready):
            try:
                got = self.pod_tls.served(cluster, material, password, pod.name)
                if got != want:
                    self.pod_tls.reload(cluster, material, password, pod.name)
                    got = self.pod_tls.served(cluster, material, password, pod.name)
                    if got == want:
                        events.append(Event("Normal", "CertificateReloaded", f"{pod.name} serves the new certificate."))
            except (OSError, ValueError) as exc:  # unreachable or refusing: try again on the next pass
                log.warning("hot reload of %s/%s failed: %s", cluster.namespace, pod.name, exc)
                got = ""
            served.append({"pod": pod.name, "fingerprintSHA256": got})
        return served

    def _label_roles(self, cluster: ValkeyCluster, pods: list[rollout.PodState], primary: str) -> None:
        raw = {
            p["metadata"]["name"]: p
            for p in self.kube.list("v1", "Pod", cluster.namespace, names.selector_labels(cluster.name))
        }
        # The primary first: the read-write Service then never has zero endpoints.
        for pod in sorted(pods, key=lambda p: p.name != primary):
            role = ROLE_PRIMARY if pod.name == primary else ROLE_REPLICA
            if (raw.get(pod.name, {}).get("metadata", {}).get("labels") or {}).get(ROLE_LABEL) != role:
                self.kube.label_pod(cluster.namespace, pod.name, {ROLE_LABEL: role})

    def _roll(
        self,
        cluster: ValkeyCluster,
        sts: Mapping[str, Any] | None,
        pods: list[rollout.PodState],
        primary: str,
        material: Material,
        password: str | None,
        events: list[Event],
    ) -> rollout.Step:
        if sts is None:
            return rollout.Step("wait", message="StatefulSet not created yet.")
        status = sts.get("status") or {}
        update = status.get("updateRevision")
        if not update or status.get("observedGeneration", 0) < sts["metadata"].get("generation", 0):
            return rollout.Step("wait", message="The StatefulSet controller has not seen the new template yet.")
        primaries = [primary] if cluster.spec.mode == "replication" else []
        step = rollout.next_step(pods, update, primaries, cluster.spec.pod_count)
        if step.action == "switchover" and step.pod and self.switchover is not None:
            target = next(p.name for p in pods if p.name != step.pod and p.revision == update and p.ready)
            self.switchover(cluster, material, password, step.pod, target)
            # The whole ConfigMap again: a partial apply by the same field manager would drop the other keys.
            self.kube.apply(config_map(cluster, config_files(cluster), target))
            # Move the read-write Service to the new primary now, not a rollout interval later.
            self._label_roles(cluster, pods, target)
            events.append(Event("Normal", "Switchover", f"Moved the primary from {step.pod} to {target}."))
            return rollout.Step("wait", message=f"Switched over to {target}.")
        if step.action == "delete" and step.pod and step.uid:
            self.kube.delete_pod(cluster.namespace, step.pod, step.uid)
            events.append(Event("Normal", "RollingPod", step.message))
        return step

    def _refuse(
        self,
        cluster: ValkeyCluster,
        body: Mapping[str, Any],
        decided: Plan,
        sts: Mapping[str, Any] | None,
        pods: list[rollout.PodState],
        now: datetime,
    ) -> Outcome:
        problem = decided.problems[0]
        desired = cluster.spec.pod_count
        ready = sum(p.ready for p in pods)
        obs = Observation(desired, ready, desired, 0, (problem.reason, problem.message), exists=sts is not None)
        metrics.record_not_ready(cluster.namespace, cluster.name, ["server"])
        metrics.record_cluster_ready(cluster.namespace, cluster.name, False)
        status = self._base_status(cluster, body, obs, now, ready)
        # One Event per new problem, not one per timer tick.
        news = _condition(body, CERTIFICATES_READY).get("reason") != problem.reason
        return Outcome(status, [Event("Warning", problem.reason, problem.message)] if news else [])

    def _base_status(
        self, cluster: ValkeyCluster, body: Mapping[str, Any], obs: Observation, now: datetime, ready: int
    ) -> dict[str, Any]:
        previous = (body.get("status") or {}).get("conditions") or []
        desired = cluster.spec.pod_count
        return {
            "observedGeneration": cluster.generation,
            "phase": phase(obs),
            "replicas": desired,
            "readyReplicas": ready,
            "readyDisplay": f"{ready}/{desired}",
            "tls": {"mode": cluster.spec.tls.mode, "clientAuth": cluster.spec.tls.client_auth},
            "conditions": merge_conditions(previous, conditions(obs), now, cluster.generation),
        }

    def _report(
        self,
        cluster: ValkeyCluster,
        body: Mapping[str, Any],
        material: Material,
        sts: Mapping[str, Any] | None,
        pods: list[rollout.PodState],
        now: datetime,
        events: list[Event],
        served: list[dict[str, str]] | None = None,
    ) -> Outcome:
        ns, n = cluster.namespace, cluster.names
        cert_status, times, expiring, soonest = _cert_status(cluster, material, now)
        update = ((sts or {}).get("status") or {}).get("updateRevision")
        ready = sum(p.ready for p in pods)
        updated = sum(1 for p in pods if p.revision == update) if update else 0
        outdated = sum(1 for p in pods if p.revision != update) if update else 0
        # Under HotReload a pod serving an older certificate is as outdated as one on an older template.
        current = cert_status["server"]["fingerprintSHA256"]
        outdated += sum(1 for s in served or [] if s["fingerprintSHA256"] != current)
        obs = Observation(
            cluster.spec.pod_count, ready, updated, outdated, None, tuple(expiring), soonest, exists=sts is not None
        )
        status = self._base_status(cluster, body, obs, now, ready)
        primary_host = n.service_host(n.service)
        scheme = "rediss" if cluster.spec.tls.enabled else "redis"
        if served is not None:
            cert_status["served"] = served
        status.update(
            certificates=cert_status,
            endpoints={"primary": f"{scheme}://{primary_host}:{POD_LAYOUT.port}"},
            connectionSecret=n.connection_secret,
        )
        if cluster.spec.mode == "replication":
            status["endpoints"]["readOnly"] = f"{scheme}://{n.service_host(n.ro_service)}:{POD_LAYOUT.port}"
            status["primary"] = _primary(self.kube, cluster)
        metrics.record_certificates(ns, cluster.name, times)
        metrics.record_cluster_ready(ns, cluster.name, obs.all_ready)
        if expiring and _condition(body, EXPIRING_SOON).get("status") != "True":
            message = next(c["message"] for c in status["conditions"] if c["type"] == EXPIRING_SOON)
            events.append(Event("Warning", "CertificateExpiringSoon", message))
        return Outcome(status, events)
