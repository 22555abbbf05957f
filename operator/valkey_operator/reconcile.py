"""One idempotent, level-based pass: gather every read, decide (pure), act on every write.

The same pass serves create, update, resume and the timers. It owns the status.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from valkey_operator import access, metrics, names, sharding
from valkey_operator.actions import (
    Action,
    AddSlots,
    Apply,
    ClusterFailover,
    DeleteCertificate,
    DeletePod,
    Forget,
    Meet,
    MigrateSlots,
    Promote,
    Reissue,
    Relabel,
    Reload,
    Replicate,
    Repoint,
    SetUsers,
    Switchover,
)
from valkey_operator.api.spec import SpecError, ValkeyCluster, parse_cluster
from valkey_operator.clock import Clock
from valkey_operator.conf.version import Release
from valkey_operator.decide import Decision, Event, decide, decide_failed, decide_invalid
from valkey_operator.pki import certmanager
from valkey_operator.pki.issue import KeyPair
from valkey_operator.pki.plan import CONNECTION_CLIENT, wanted_certificates
from valkey_operator.snapshot import (
    LISTED_KINDS,
    ROLE_MASTER,
    CertManagerRead,
    ClusterView,
    PodReport,
    Replication,
    Snapshot,
    expected_objects,
    observed_secrets,
    owned_by,
    password,
    pods,
    secret_names,
)
from valkey_operator.valkey_admin import Credentials, PodError, cipher_refusal

log = logging.getLogger(__name__)
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.DOTALL)
POD_CALL_RETRY = 5.0  # seconds: a pod that did not answer is asked again this soon
ROLE_CHECK_TIMEOUT = 2.0  # the role check waits this long for the primary (a pass, when it is silent, not again)
SILENT_HINT_S = 3.0  # how long the role check's "silent" stands for the pass it starts


class KubeAPI(Protocol):
    """What a pass needs from Kubernetes (k8s.client.Kube implements it)."""

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    def apply_many(self, manifests: Sequence[Mapping[str, Any]]) -> object: ...  # independent ones, maybe at once
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def get_many(self, wanted: Sequence[tuple[str, str, str, str]]) -> Sequence[Mapping[str, Any] | None]: ...
    def list(
        self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[dict[str, Any]]: ...
    def delete_pod(self, namespace: str, name: str, uid: str) -> None: ...
    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> object: ...
    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> object: ...
    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> object: ...
    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool: ...
    def reissue_certificate(
        self,
        namespace: str,
        name: str,
        index: int | None,
        condition: Mapping[str, Any],
        resource_version: str,
    ) -> object: ...


class PodAdmin(Protocol):
    """What a pass asks of Valkey pods, each by its stable DNS name (valkey_admin.ValkeyAdmin implements it).
    Every method raises PodError when the pod cannot be reached or refuses."""

    def replication(self, host: str, creds: Credentials | None, timeout: float = ...) -> Replication: ...
    def served(self, host: str, creds: Credentials | None, bus: bool = False) -> str: ...
    def cluster_view(self, host: str, creds: Credentials | None) -> ClusterView: ...
    def meet(self, host: str, ip: str, creds: Credentials | None) -> None: ...
    def migrate_slots(
        self, host: str, moves: Sequence[tuple[Sequence[tuple[int, int]], str]], creds: Credentials | None
    ) -> None: ...
    def add_slots(self, host: str, first: int, last: int, creds: Credentials | None) -> None: ...
    def replicate(self, host: str, primary_id: str, creds: Credentials | None) -> None: ...
    def forget(self, host: str, node_id: str, creds: Credentials | None) -> None: ...
    def cluster_failover(self, host: str, creds: Credentials | None) -> None: ...
    def switchover(self, host: str, target_host: str, creds: Credentials | None) -> None: ...
    def promote(self, host: str, creds: Credentials | None) -> None: ...
    def repoint(self, host: str, primary_host: str, creds: Credentials | None) -> None: ...
    def reload(self, host: str, creds: Credentials | None) -> None: ...
    def acl_lines(self, host: str, creds: Credentials | None) -> dict[str, str]: ...
    def commands(self, host: str, creds: Credentials | None, release: Release | None) -> frozenset[str]: ...
    def set_users(
        self,
        host: str,
        users: Sequence[tuple[str, Sequence[str]]],
        remove: Sequence[str],
        creds: Credentials | None,
    ) -> dict[str, str]: ...


@dataclass
class Outcome:
    body: Mapping[str, Any]  # the ValkeyCluster as this pass read it (Events are posted on it)
    status: dict[str, Any]  # only the fields that changed (already patched)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    actions: tuple[Action, ...] = ()
    wake_in: float | None = None  # seconds until the clock alone makes work
    after: Mapping[str, Any] = field(default_factory=dict)  # the whole status once `status` is patched
    pods_running: bool = True  # some pod of the cluster runs (False: what it waits for comes as pod events)


def credentials(cluster: ValkeyCluster, snap: Snapshot) -> Credentials | None:
    """How the operator talks to pods, from the Secrets as they are (what the pods were given); plaintext
    with the password when the cluster's TLS is disabled."""
    if not cluster.spec.tls.enabled:
        return Credentials(None, None, password(cluster, snap))
    secrets = observed_secrets(cluster, snap)
    server = secrets.server
    if server is None or not server.get("ca.crt") or not server.get("tls.crt") or not server.get("tls.key"):
        return None
    conn = secrets.clients.get(CONNECTION_CLIENT)
    if conn is not None and conn.get("tls.crt") and conn.get("tls.key"):
        client = KeyPair(conn.data["tls.crt"], conn.data["tls.key"])
    else:
        # The server certificate carries clientAuth too (Valkey presents it for replication).
        client = KeyPair(server.data["tls.crt"], server.data["tls.key"])
    return Credentials(server.data["ca.crt"], client, password(cluster, snap))


def _ask_pods(
    admin: PodAdmin, cluster: ValkeyCluster, snap: Snapshot, silent: Collection[str] = ()
) -> dict[str, PodReport]:
    """What each running pod reports over TLS, when a decision needs it: a terminating pod too (a primary
    being deleted still holds the role until it has handed it over). A pod in `silent` did not answer the
    role check a moment ago: it is not asked again (a cut-off pod would cost the pass its whole timeout).
    Every mode asks INFO replication and server: the roles, and the version each pod runs."""
    sharded = cluster.spec.mode == "cluster"
    roles = cluster.spec.mode == "replication" or sharded  # a shard has a primary and replicas too
    hot = cluster.spec.tls.rotation_strategy == "HotReload"
    bus_tls = cluster.spec.tls.cluster_bus
    # The clients' ACL users: asked for while the spec names some or status keeps some the operator made.
    users = bool(cluster.spec.tls.acls) or bool((snap.status.get("acl") or {}).get("users"))
    creds = credentials(cluster, snap)
    if creds is None:
        return {}
    out: dict[str, PodReport] = {}
    for pod in pods(snap):
        if not pod.running or (pod.terminating and not roles) or pod.name in silent:
            continue
        host = cluster.names.pod_fqdn(pod.name)
        try:
            rep = admin.replication(host, creds)
            asked = hot and pod.ready and not pod.terminating and creds.bundle is not None
            served = admin.served(host, creds) if asked else None
            # A sharded cluster's bus listener presents the certificate too: a reload is confirmed on both.
            served_bus = admin.served(host, creds, bus=True) if asked and sharded and bus_tls else None
            view = admin.cluster_view(host, creds) if sharded else None
            acl = admin.acl_lines(host, creds) if users else None
            # What the clients' rules are checked against before any pod is given them (or reads them).
            known = admin.commands(host, creds, rep.release) if cluster.spec.tls.acls else None
        except PodError as exc:
            log.info("%s/%s: %s does not answer yet: %s", cluster.namespace, cluster.name, pod.name, exc)
            continue
        out[pod.name] = PodReport(rep, served, view, served_bus, acl, known)
    return out


def _api_status(exc: BaseException) -> str | None:
    """A refused request described from the API server's Status (the kubernetes client's errors carry it
    in `body`; their first line is the bare code): its code, reason, the object and the fields it names,
    "422 Invalid: secrets/cache-ca". Not its free-text message: an admission webhook or policy may quote
    the object, a Secret's values among them, and conditions and Events are read more widely than
    Secrets."""
    body = getattr(exc, "body", None)
    if not isinstance(body, (str, bytes)):
        return None
    try:
        status = json.loads(body)
    except Exception:  # anything unreadable (a RecursionError too): the first line instead
        return None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        return None
    details = status.get("details")
    details = details if isinstance(details, dict) else {}
    causes = details.get("causes")
    causes = causes if isinstance(causes, list) else []
    fields = sorted({str(c["field"]) for c in causes if isinstance(c, dict) and c.get("field")})
    said = " ".join(str(status[k]) for k in ("code", "reason") if status.get(k))
    if details.get("kind") and details.get("name"):
        said += f": {details['kind']}/{details['name']}"
    if fields:
        said += f" (fields {', '.join(fields)})"
    return said or None


def describe_error(exc: BaseException) -> str:
    """What failed, for a condition and an Event: the exception's type and first line (for a refused API
    request, what its Status names), with any PEM block (key material) cut out, at most 300 characters."""
    text = _PEM.sub("[PEM removed]", _api_status(exc) or str(exc)).strip().splitlines()
    first = text[0] if text else ""
    return f"The pass failed: {type(exc).__name__}: {first}"[:300]


def gather(
    kube: KubeAPI, admin: PodAdmin, cluster: ValkeyCluster, status: Mapping[str, Any], silent: Collection[str] = ()
) -> Snapshot:
    """Every read of one pass: one LIST per listed owned kind (by the owner's labels), each owned Secret by
    name, a GET for each expected object the LISTs did not find (someone else's object with our name shows
    only so), the user's issuer Secret, and what the pods report over TLS. An object without this
    cluster's owner reference is set aside as foreign: never read as its own."""
    ns = cluster.namespace
    selector = names.owned_selector(cluster.name)
    objects: dict[tuple[str, str], Mapping[str, Any]] = {}
    for api_version, kind in LISTED_KINDS:
        for obj in kube.list(api_version, kind, ns, selector):
            objects[(kind, obj["metadata"]["name"])] = obj
    wanted = [("v1", "Secret", ns, name) for name in secret_names(cluster, status)]
    # An expected name the LISTs did not find: missing, or someone else's (without this cluster's labels).
    wanted += [(v, kind, ns, name) for v, kind, name in expected_objects(cluster) if (kind, name) not in objects]
    for (_, kind, _, name), found in zip(wanted, kube.get_many(wanted), strict=True):
        if found is not None:
            objects[(kind, name)] = found
    cert_manager = _read_cert_manager(kube, cluster, objects)
    foreign = tuple(sorted(key for key, obj in objects.items() if key[0] != "Pod" and not owned_by(obj, cluster)))
    foreign += cert_manager.taken if cert_manager else ()
    secret_name = cluster.spec.tls.issuer.secret_name
    issuer = kube.get("v1", "Secret", ns, secret_name) if secret_name else None
    owned = {key: obj for key, obj in objects.items() if key not in foreign}
    snap = Snapshot(objects=owned, issuer_secret=issuer, status=status, foreign=foreign, cert_manager=cert_manager)
    return replace(snap, reports=_ask_pods(admin, cluster, snap, silent))


def _read_cert_manager(
    kube: KubeAPI, cluster: ValkeyCluster, objects: dict[tuple[str, str], Mapping[str, Any]]
) -> CertManagerRead | None:
    """Issuer CertManager: whether cert-manager's Certificates are served (nothing else is read when not),
    this cluster's Certificates (by label, and each expected name the LIST did not find: someone else's
    shows only so) into `objects`, the issuer (a cert-manager.io one: another group's is not read), and the
    Secrets cert-manager wrote for them, by name."""
    chosen = cluster.spec.tls.issuer.type == "CertManager"
    if not kube.serves(names.CERT_MANAGER_API, "Certificate", rediscover=chosen):
        return CertManagerRead(installed=False) if chosen else None
    ns = cluster.namespace
    # Listed whatever the issuer: Certificates left by clients removed or an issuer switched away are deleted.
    # With another issuer, one this cluster does not own is none of its business (not a name it needs).
    for obj in kube.list(names.CERT_MANAGER_API, "Certificate", ns, names.owned_selector(cluster.name)):
        if chosen or owned_by(obj, cluster):
            objects[("Certificate", obj["metadata"]["name"])] = obj
    if not chosen:
        return None
    wanted = wanted_certificates(cluster)
    for want in wanted:
        if ("Certificate", want.certificate) not in objects:
            found = kube.get(names.CERT_MANAGER_API, "Certificate", ns, want.certificate)
            if found is not None:
                objects[("Certificate", want.certificate)] = found
    ref = cluster.spec.tls.issuer.issuer_ref
    checked = ref is not None and ref.group == names.CERT_MANAGER_GROUP and ref.kind in ("Issuer", "ClusterIssuer")
    issuer = None
    if ref is not None and checked:
        issuer = kube.get(names.CERT_MANAGER_API, ref.kind, ns if ref.kind == "Issuer" else "", ref.name)
    issued, taken = {}, []
    for want in wanted:
        secret = kube.get("v1", "Secret", ns, want.secret)
        if secret is None:
            continue
        # cert-manager writes into whatever Secret has the name: one it did not write for this Certificate
        # (another cluster's, a user's) is someone else's, never handed to cert-manager to overwrite.
        written_for = ((secret.get("metadata") or {}).get("annotations") or {}).get(names.CERT_MANAGER_CERTIFICATE)
        if written_for == want.certificate:
            issued[want.secret] = secret
        else:
            taken.append(("Secret", want.secret))
    return CertManagerRead(True, issuer, checked, issued, tuple(taken))


def act(
    kube: KubeAPI,
    admin: PodAdmin,
    cluster: ValkeyCluster,
    creds: Credentials | None,
    actions: Sequence[Action],
    applied: dict[str, dict[str, str]] | None = None,
) -> list[Action]:
    """Every write of one pass, in the decided order. A pod that does not answer (it may be restarting) fails
    its own action only: the others still run, and the failed ones are returned for a prompt retry. A
    Kubernetes API error ends the pass (kopf retries it). `applied` receives, by pod, the ACL LIST lines each
    SetUsers left (status records them: what the pod is compared with from then on)."""
    ns, n = cluster.namespace, cluster.names
    failed: list[Action] = []
    for batch in batches(actions):
        for action in batch:
            log.info("%s/%s: %s", ns, cluster.name, action)
        if len(batch) > 1:
            kube.apply_many([a.manifest for a in batch if isinstance(a, Apply)])
            continue
        action = batch[0]
        try:
            if isinstance(action, Apply):
                kube.apply(action.manifest)
            elif isinstance(action, DeleteCertificate):
                kube.delete(names.CERT_MANAGER_API, "Certificate", ns, action.certificate, action.uid)
            elif isinstance(action, Reissue):
                condition = certmanager.issuing(action.at)
                kube.reissue_certificate(ns, action.certificate, action.index, condition, action.resource_version)
            elif isinstance(action, DeletePod):
                kube.delete_pod(ns, action.pod, action.uid)
            elif isinstance(action, Relabel):
                kube.label_pod(ns, action.pod, {names.ROLE_LABEL: action.role})
            elif isinstance(action, Switchover):
                admin.switchover(n.pod_fqdn(action.pod), n.pod_fqdn(action.target), creds)
            elif isinstance(action, Promote):
                admin.promote(n.pod_fqdn(action.pod), creds)
            elif isinstance(action, Repoint):
                admin.repoint(n.pod_fqdn(action.pod), action.primary, creds)
            elif isinstance(action, Reload):
                admin.reload(n.pod_fqdn(action.pod), creds)
            elif isinstance(action, SetUsers):
                lines = admin.set_users(n.pod_fqdn(action.pod), action.users, action.remove, creds)
                if applied is not None:
                    applied[action.pod] = lines
            elif isinstance(action, Meet):
                admin.meet(n.pod_fqdn(action.pod), action.ip, creds)
            elif isinstance(action, AddSlots):
                admin.add_slots(n.pod_fqdn(action.pod), action.first, action.last, creds)
            elif isinstance(action, MigrateSlots):
                admin.migrate_slots(n.pod_fqdn(action.pod), action.moves, creds)
            elif isinstance(action, Replicate):
                admin.replicate(n.pod_fqdn(action.pod), action.primary_id, creds)
            elif isinstance(action, Forget):
                admin.forget(n.pod_fqdn(action.pod), action.node_id, creds)
            elif isinstance(action, ClusterFailover):
                admin.cluster_failover(n.pod_fqdn(action.pod), creds)
        except PodError as exc:
            log.warning("%s/%s: %s failed, trying again shortly: %s", ns, cluster.name, action, exc)
            failed.append(action)
    return failed


def batches(actions: Sequence[Action]) -> list[list[Action]]:
    """The actions in the decided order, grouped into what may run at once: a run of applies of objects
    that hold nothing another depends on (ConfigMap, Services, PodDisruptionBudget, Certificates). A
    StatefulSet starts a new run (it waits for the Secrets and ConfigMap before it; what follows it may
    join). A Secret runs alone, as does every other action: a CA, a key or a password must be written
    before what was issued from it or publishes it, and a failed write stops the pass before those."""
    out: list[list[Action]] = []
    for action in actions:
        last = out[-1] if out else None
        kind = action.manifest.get("kind") if isinstance(action, Apply) else None
        joins = (
            kind not in (None, "Secret", "StatefulSet")
            and last is not None
            and isinstance(last[-1], Apply)
            and last[-1].manifest.get("kind") != "Secret"
        )
        if joins and last is not None:
            last.append(action)
        else:
            out.append([action])
    return out


def with_users_held(decision: Decision, applied: Mapping[str, Mapping[str, str]]) -> Decision:
    """The decision's status with the pods this pass gave the ACL users recorded as holding them (the lines
    each reported right after), when they were given the rules status records."""
    acl = decision.status.get("acl")
    given = [a for a in decision.actions if isinstance(a, SetUsers) and a.digest == (acl or {}).get("digest")]
    held = access.held_after(applied, given)
    if not held or acl is None:
        return decision
    acl = {**acl, "pods": {**(acl.get("pods") or {}), **held}}
    return replace(decision, status={**decision.status, "acl": acl})


def changed(before: Mapping[str, Any], after: Mapping[str, Any], *, top: bool = True) -> dict[str, Any]:
    """A JSON merge patch from `before` to `after`: only what differs (no write when nothing changed), and
    None for a key that must go inside a field the pass reports (a merge patch leaves a key it does not name
    untouched). Top-level fields the pass does not report (a refused pass reports no certificates) stay."""
    patch: dict[str, Any] = {}
    for k in set(after) if top else set(before) | set(after):
        if k not in after:
            patch[k] = None
        elif isinstance(after[k], Mapping) and isinstance(before.get(k), Mapping):
            inner = changed(before[k], after[k], top=False)
            if inner:
                patch[k] = inner
        elif before.get(k) != after[k]:
            patch[k] = after[k]
    return patch


class Reconciler:
    """Holds the adapters and the clock; `reconcile(body)` is one pass."""

    def __init__(
        self,
        kube: KubeAPI,
        admin: PodAdmin,
        clock: Clock,
        cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN,
    ) -> None:
        self.kube = kube
        self.admin = admin
        self.clock = clock
        self.cluster_domain = cluster_domain
        # How the last pass talked to each cluster's pods, for primary_holds (no API call); one entry per
        # cluster that exists (`forget` drops it).
        self._credentials: dict[tuple[str, str], Credentials | None] = {}
        # The recorded primary that did not answer the role check, and when (monotonic).
        self._silent: dict[tuple[str, str], tuple[str, float]] = {}
        # The roles the last pass recorded in status (role_holds checks them): status.primary, or in cluster
        # mode status.shards; a cluster that records none has no entry.
        self._roles: dict[tuple[str, str], str | tuple[Mapping[str, Any], ...]] = {}

    def has_roles(self, namespace: str, name: str) -> bool:
        """Whether the last pass recorded roles to check."""
        return (namespace, name) in self._roles

    def role_holds(self, namespace: str, name: str) -> bool | None:
        """The role check: whether the roles the last pass recorded still hold (a FAILOVER run by hand, or
        Valkey's own in a sharded cluster, changes no Kubernetes object); None when it recorded none."""
        roles = self._roles.get((namespace, name))
        if roles is None:
            return None
        if isinstance(roles, str):
            return self.primary_holds(namespace, name, roles)
        return self.shards_hold(namespace, name, roles)

    def primary_holds(self, namespace: str, name: str, primary: str) -> bool:
        """Whether `primary` still says it is the primary, asked with the last pass's credentials; False
        when that is unknown (a full pass then finds out)."""
        key = (namespace, name)
        if key not in self._credentials:
            return False
        host = names.ClusterNames(name, namespace, self.cluster_domain).pod_fqdn(primary)
        try:
            return self.admin.replication(host, self._credentials[key], ROLE_CHECK_TIMEOUT).role == ROLE_MASTER
        except PodError:
            # Silent: the pass this check starts does not wait for it again.
            self._silent[key] = (primary, time.monotonic())
            return False

    def shards_hold(self, namespace: str, name: str, recorded: Sequence[Mapping[str, Any]]) -> bool:
        """Cluster mode: whether the primaries serve the slots status.shards records, as the first recorded
        primary sees them (asked with the last pass's credentials); False when that is unknown."""
        key = (namespace, name)
        if key not in self._credentials or not recorded:
            return False
        host = names.ClusterNames(name, namespace, self.cluster_domain).pod_fqdn(str(recorded[0].get("primary")))
        try:
            return sharding.shards_hold(recorded, self.admin.cluster_view(host, self._credentials[key]))
        except PodError:
            return False

    def forget(self, namespace: str, name: str) -> None:
        self._credentials.pop((namespace, name), None)
        self._silent.pop((namespace, name), None)
        self._roles.pop((namespace, name), None)

    def _just_silent(self, namespace: str, name: str) -> tuple[str, ...]:
        """The pod the role check found silent, if it did so within SILENT_HINT_S (used once)."""
        pod, at = self._silent.pop((namespace, name), ("", 0.0))
        return (pod,) if pod and time.monotonic() - at < SILENT_HINT_S else ()

    def reconcile(self, namespace: str, name: str) -> Outcome | None:
        """One pass over the ValkeyCluster as it is now (read afresh, so the status patch is computed
        against the status as written by the last pass); None when it is gone."""
        api_version = f"{names.GROUP}/{names.VERSION}"
        body = self.kube.get(api_version, names.KIND, namespace, name)
        if body is None:
            return None
        outcome = self.decide_and_act(body)
        if outcome.status:
            self.kube.patch_status(api_version, names.KIND, namespace, name, outcome.status)
        return outcome

    def decide_and_act(self, body: Mapping[str, Any]) -> Outcome:
        now = self.clock.now()
        status = dict(body.get("status") or {})
        meta = body.get("metadata") or {}
        try:
            cluster = parse_cluster(body, self.cluster_domain)
            refusal = cipher_refusal(cluster)
            if refusal is not None:
                raise refusal
        except SpecError as exc:
            invalid = decide_invalid(status, int(meta.get("generation", 0)), exc, now)
            after = {**status, **invalid.status}
            return Outcome(body, changed(status, invalid.status), list(invalid.events), after=after)
        except Exception as exc:  # a spec the parser did not foresee: a condition and an Event, not a traceback loop
            log.exception("%s/%s: reading the spec failed", meta.get("namespace"), meta.get("name"))
            broken = decide_failed(status, int(meta.get("generation", 0)), describe_error(exc), now)
            return _broken(body, status, broken)
        try:
            snap = gather(self.kube, self.admin, cluster, status, self._just_silent(cluster.namespace, cluster.name))
            decision: Decision = decide(cluster, snap, now)
            creds = credentials(cluster, snap)
            self._credentials[(cluster.namespace, cluster.name)] = creds
            applied: dict[str, dict[str, str]] = {}
            failed = act(self.kube, self.admin, cluster, creds, decision.actions, applied)
            decision = with_users_held(decision, applied)
        except Exception as exc:  # whatever raised, the user sees a condition and an Event, not only a log
            log.exception("%s/%s: the pass failed", cluster.namespace, cluster.name)
            broken = decide_failed(status, int(meta.get("generation", 0)), describe_error(exc), now)
            return _broken(body, status, broken)
        retry_after = decision.retry_after
        if failed:
            retry_after = min(retry_after or POD_CALL_RETRY, POD_CALL_RETRY)
        metrics.record(cluster.namespace, cluster.name, decision.metrics)
        after = {**status, **decision.status}
        roles = recorded_roles(cluster.spec.mode, after)
        if roles is None:
            self._roles.pop((cluster.namespace, cluster.name), None)
        else:
            self._roles[(cluster.namespace, cluster.name)] = roles
        wake_in = (decision.next_due - now).total_seconds() if decision.next_due else None
        return Outcome(
            body,
            changed(status, decision.status),
            list(decision.events),
            retry_after,
            decision.actions,
            wake_in,
            after,
            pods_running=any(p.running for p in pods(snap)),
        )


def recorded_roles(mode: str, status: Mapping[str, Any]) -> str | tuple[Mapping[str, Any], ...] | None:
    """What the role check asks about: the recorded primary (replication), the recorded shards (cluster);
    None when there is none (standalone, or nothing recorded yet)."""
    if mode == "replication":
        return str(status["primary"]) if status.get("primary") else None
    if mode == "cluster" and status.get("shards"):
        return tuple(status["shards"])
    return None


def _broken(body: Mapping[str, Any], status: Mapping[str, Any], broken: Decision) -> Outcome:
    return Outcome(
        body,
        changed(status, broken.status),
        list(broken.events),
        broken.retry_after,
        after={**status, **broken.status},
    )
