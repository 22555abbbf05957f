"""What one pass saw, as one frozen value, and the pure views decisions take of it.

`reconcile.gather` is the only code that fills a Snapshot; everything that reads one is pure.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.conf.layout import PRIMARY_KEY
from valkey_operator.pki.certmanager import CertManagerObserved
from valkey_operator.pki.plan import CONNECTION_CLIENT, Observed, SecretData

Object = Mapping[str, Any]
# The kinds a ValkeyCluster owns that are listed by its labels, one call each. Secrets are read by name
# (secret_names): listing Secrets would need the right to read every Secret of the namespace.
LISTED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Pod"),
)
ROLE_MASTER = "master"
ROLE_SLAVE = "slave"


@dataclass(frozen=True)
class Replication:
    """What `INFO replication` says, reduced to what decisions need (and INFO server's version)."""

    role: str  # master | slave
    master_host: str | None = None
    link_up: bool = False
    offset: int = 0
    failover_state: str = "no-failover"
    last_io_s: int | None = None  # a replica whose link is up: seconds since its primary last spoke
    link_down_s: int | None = None  # a replica whose link is down: for how long (None: never linked, or not said)
    replid: str = ""  # the replication history it is on (a replica takes its primary's)
    replid2: str = ""  # the history it was on before its last promotion, if any
    release: tuple[int, int, int] | None = None  # INFO server's version, read in the same call

    def on_history(self, replid: str) -> bool:
        return bool(replid) and replid in (self.replid, self.replid2)

    @property
    def failing_over(self) -> bool:
        return self.failover_state not in ("", "no-failover")

    def hears_primary(self, within: float) -> bool:
        """A replica whose link is up and whose primary spoke within `within` seconds (primaries ping their
        replicas every second): a link that is up on paper but silent means the primary is cut off."""
        return self.link_up and (self.last_io_s is None or self.last_io_s < within)

    @property
    def silent_s(self) -> int | None:
        """A replica: how long since it last heard from its primary, as far as it can tell."""
        return self.last_io_s if self.link_up else self.link_down_s


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES: a node as another node sees it."""

    id: str
    flags: frozenset[str]
    master: str | None  # the primary's id, for a replica
    slots: tuple[tuple[int, int], ...] = ()  # ranges it serves (a primary)
    connected: bool = True
    ip: str = ""  # the address it is reached at ("" when it has none yet)
    migrating: bool = False  # a slot of it is being migrated or imported
    hostname: str = ""  # the name it announces (cluster-announce-hostname): the pod's stable DNS name

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags or "noaddr" in self.flags


# Slot migration jobs in these states are over (CLUSTER GETSLOTMIGRATIONS keeps them a while).
MIGRATION_DONE = ("success", "failed", "cancelled", "canceled")


@dataclass(frozen=True)
class SlotMigration:
    """One job of CLUSTER GETSLOTMIGRATIONS (Valkey 9.0+): an atomic slot migration seen from one end."""

    operation: str  # EXPORT | IMPORT
    slots: str  # e.g. 0-4095
    source: str
    target: str
    state: str
    created: int = 0  # create_time: the jobs of one MIGRATESLOTS share it

    @property
    def active(self) -> bool:
        return self.state not in MIGRATION_DONE

    @property
    def slot_count(self) -> int:
        return sum(
            int(b or a) - int(a) + 1 for part in self.slots.split(",") if part for a, _, b in [part.partition("-")]
        )


@dataclass(frozen=True)
class ClusterView:
    """What one node of a sharded cluster says: its id, cluster_state, and every node it knows."""

    myid: str
    state: str  # ok | fail
    nodes: tuple[ClusterNode, ...] = ()
    migrations: tuple[SlotMigration, ...] = ()  # Valkey 9.0+: its slot migration jobs
    version: tuple[int, int] = (0, 0)  # the server's major and minor version (INFO server)

    @property
    def migrating(self) -> bool:
        return any(m.active for m in self.migrations)

    @property
    def myself(self) -> ClusterNode | None:
        return next((n for n in self.nodes if "myself" in n.flags), None)

    def knows(self, node_id: str) -> bool:
        return any(n.id == node_id for n in self.nodes)

    def node(self, node_id: str) -> ClusterNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)


@dataclass(frozen=True)
class PodReport:
    """What one pod said over TLS in this pass; None: not asked, or it did not answer."""

    replication: Replication | None = None
    served: str | None = None  # SHA-256 of the certificate it presented
    cluster: ClusterView | None = None  # cluster mode: what the node knows of the cluster
    served_bus: str | None = None  # cluster mode, bus on TLS: SHA-256 of the certificate its bus presented
    acl: Mapping[str, str] | None = None  # clients' ACL users: its `ACL LIST` line by user name (when asked)
    commands: frozenset[str] | None = None  # the command names it knows (COMMAND LIST), when clients have rules

    def serves(self, fingerprint: str | None) -> bool:
        """Every listener asked presents the certificate `fingerprint` (the client port; the bus too)."""
        return fingerprint is not None and self.served == fingerprint and self.served_bus in (None, fingerprint)


@dataclass(frozen=True)
class Snapshot:
    """Every read of one pass: the owned objects by (kind, name), the user's issuer Secret, the pods' reports."""

    objects: Mapping[tuple[str, str], Object] = field(default_factory=dict)
    issuer_secret: Object | None = None
    reports: Mapping[str, PodReport] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)  # the resource's status as read
    # Objects with a name this cluster derives that it did not create (no owner reference to it): never
    # read as its own, never written.
    foreign: tuple[tuple[str, str], ...] = ()
    # Issuer CertManager (None otherwise): whether the API server serves cert-manager's Certificates, the
    # issuer spec.tls.issuer.issuerRef names (None: absent, or of another group and not read), and the
    # Secrets cert-manager wrote for this cluster's Certificates, by name (cert-manager's: only read).
    cert_manager: CertManagerRead | None = None

    def get(self, kind: str, name: str) -> Object | None:
        return self.objects.get((kind, name))

    @property
    def cluster_views(self) -> dict[str, ClusterView]:
        """Cluster mode: what each node that answered says of the cluster."""
        return {p: r.cluster for p, r in self.reports.items() if r.cluster is not None}

    def of_kind(self, kind: str) -> list[Object]:
        return [o for (k, _), o in sorted(self.objects.items()) if k == kind]


@dataclass(frozen=True)
class CertManagerRead:
    installed: bool = True
    issuer: Object | None = None
    issuer_checked: bool = True
    issued: Mapping[str, Object] = field(default_factory=dict)
    taken: tuple[tuple[str, str], ...] = ()  # Secrets with an issued Secret's name cert-manager did not write for it


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    ready: bool
    terminating: bool
    running: bool  # has an address and runs: the operator may talk to it
    role_label: str | None
    template_hash: str  # the pod template it was created from (ANN_TEMPLATE_HASH)
    ip: str = ""  # status.podIP (CLUSTER MEET takes addresses only)


def expected_objects(cluster: ValkeyCluster) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of every object of a LISTED kind that the cluster creates (not its pods)."""
    n = cluster.names
    services = [n.service, n.headless_service, *([n.ro_service] if cluster.spec.mode == "replication" else [])]
    return [
        ("v1", "ConfigMap", n.config_map),
        *(("v1", "Service", name) for name in services),
        ("apps/v1", "StatefulSet", n.statefulset),
        ("policy/v1", "PodDisruptionBudget", n.pdb),
    ]


def owned_by(obj: Object, cluster: ValkeyCluster) -> bool:
    """The object names this ValkeyCluster (its uid) as an owner; offline renders (no uid) own everything."""
    if not cluster.uid:
        return True
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == cluster.uid for ref in refs)


def secret_names(cluster: ValkeyCluster, status: Mapping[str, Any] | None = None) -> list[str]:
    """Every Secret a cluster may own, by name (the users Secret while a client has rules, or status keeps
    users the operator made: until it is emptied)."""
    n, tls = cluster.names, cluster.spec.tls
    out = [n.ca_secret] if tls.issuer.type == "SelfSigned" else []
    out += [n.tls_secret, *(n.client_secret(c) for c in tls.clients), n.connection_secret]
    if cluster.spec.auth_enabled:
        out.append(n.auth_secret)
    if tls.acls or ((status or {}).get("acl") or {}).get("users"):
        out.append(n.users_secret)
    return out


def secret_data(obj: Object | None) -> SecretData | None:
    if obj is None:
        return None
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return SecretData(data, dict((obj.get("metadata") or {}).get("annotations") or {}))


def pods(snap: Snapshot) -> list[PodView]:
    out = []
    for p in snap.of_kind("Pod"):
        meta, status = p.get("metadata") or {}, p.get("status") or {}
        conds = status.get("conditions") or []
        out.append(
            PodView(
                name=meta["name"],
                uid=meta.get("uid", ""),
                ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds),
                terminating=bool(meta.get("deletionTimestamp")),
                running=status.get("phase") == "Running" and bool(status.get("podIP")),
                role_label=(meta.get("labels") or {}).get(names.ROLE_LABEL),
                template_hash=(meta.get("annotations") or {}).get(names.ANN_TEMPLATE_HASH, ""),
                ip=str(status.get("podIP") or ""),
            )
        )
    return sorted(out, key=lambda p: names.ordinal(p.name))


def observed_secrets(cluster: ValkeyCluster, snap: Snapshot) -> Observed:
    """The Secrets that matter to certificates, decoded (rollout_complete is decide's to fill in)."""
    n = cluster.names
    clients = {c: secret_data(snap.get("Secret", n.client_secret(c))) for c in cluster.spec.tls.clients}
    clients[CONNECTION_CLIENT] = secret_data(snap.get("Secret", n.connection_secret))
    return Observed(
        ca=secret_data(snap.get("Secret", n.ca_secret)) if cluster.spec.tls.issuer.type == "SelfSigned" else None,
        issuer=secret_data(snap.issuer_secret),
        server=secret_data(snap.get("Secret", n.tls_secret)),
        clients={k: v for k, v in clients.items() if v is not None},
        cert_manager=_cert_manager(snap),
    )


def _cert_manager(snap: Snapshot) -> CertManagerObserved | None:
    read = snap.cert_manager
    if read is None:
        return None
    issued = {name: dict(data.data) for name, obj in read.issued.items() if (data := secret_data(obj)) is not None}
    certificates = {str(o["metadata"]["name"]): o for o in snap.of_kind("Certificate")}
    return CertManagerObserved(read.installed, read.issuer, read.issuer_checked, certificates, issued)


def password(cluster: ValkeyCluster, snap: Snapshot) -> str | None:
    """The password already generated, if any."""
    secret = secret_data(snap.get("Secret", cluster.names.auth_secret))
    value = secret.get("password") if secret else None
    return value.decode() if value else None


def client_passwords(cluster: ValkeyCluster, snap: Snapshot) -> dict[str, str]:
    """The passwords already generated for the clients' ACL users, by client (from their Secrets)."""
    out = {}
    for client, _ in cluster.spec.tls.acls:
        secret = secret_data(snap.get("Secret", cluster.names.client_secret(client)))
        value = secret.get("password") if secret else None
        if value:
            out[client] = value.decode()
    return out


def config_primary(cluster: ValkeyCluster, snap: Snapshot) -> str | None:
    """The primary the ConfigMap names (what pods read when they start)."""
    cm = snap.get("ConfigMap", cluster.names.config_map) or {}
    value = (cm.get("data") or {}).get(PRIMARY_KEY)
    return str(value) if value else None


def template_hash(obj: Object | None) -> str | None:
    """The template hash a StatefulSet (as read) creates pods from."""
    if obj is None:
        return None
    meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get(names.ANN_TEMPLATE_HASH)


def statefulset_settled(obj: Object | None) -> bool:
    """The StatefulSet controller has seen the current template (so a deleted pod comes back on it)."""
    if obj is None:
        return False
    generation = (obj.get("metadata") or {}).get("generation", 0)
    return int((obj.get("status") or {}).get("observedGeneration", 0)) >= int(generation)
