"""A ValkeyCluster body (a dict) -> a frozen, typed, defaulted and validated spec."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from valkey_operator import names
from valkey_operator.api import rules
from valkey_operator.api import schema as s
from valkey_operator.durations import DurationError, parse_duration


class SpecError(ValueError):
    """A spec the operator can never serve; `reason` is CamelCase for conditions and Events."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class IssuerRef:
    name: str
    kind: str = "Issuer"
    group: str = "cert-manager.io"


@dataclass(frozen=True)
class IssuerSpec:
    type: s.IssuerType = "SelfSigned"
    secret_name: str | None = None
    issuer_ref: IssuerRef | None = None


@dataclass(frozen=True)
class CertificatesSpec:
    key_algorithm: s.KeyAlgorithm = "ECDSA-P256"
    duration: timedelta = timedelta(days=90)
    renew_before: timedelta = timedelta(days=60)
    warn_before: timedelta = timedelta(days=45)
    ca_duration: timedelta = timedelta(days=3650)
    ca_rotation_overlap: timedelta = timedelta(hours=24)
    extra_dns_names: tuple[str, ...] = ()
    extra_ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class TLSSpec:
    mode: s.TLSMode = "required"
    client_auth: s.ClientAuth = "required"
    replication: bool = True
    cluster_bus: bool = True
    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str | None = None
    ciphersuites: str | None = None
    issuer: IssuerSpec = field(default_factory=IssuerSpec)
    certificates: CertificatesSpec = field(default_factory=CertificatesSpec)
    rotation_strategy: s.RotationStrategy = "RollingRestart"
    clients: tuple[str, ...] = ()
    acls: tuple[tuple[str, str], ...] = ()  # (client, ACL rules) of the clients that have an ACL user

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"


@dataclass(frozen=True)
class PersistenceSpec:
    enabled: bool = False
    size: str = "1Gi"
    storage_class_name: str | None = None


@dataclass(frozen=True)
class FailoverSpec:
    enabled: bool = True
    after: timedelta = timedelta(seconds=5)


@dataclass(frozen=True)
class ReplicationSpec:
    min_replicas_to_write: int = 0
    max_lag_seconds: int = 10


@dataclass(frozen=True)
class ClusterSpec:
    image: str = "valkey/valkey:9.1"
    image_pull_policy: str = "IfNotPresent"
    mode: s.Mode = "replication"
    replicas: int = 3
    shards: int = 3
    replicas_per_shard: int = 1
    io_threads: int | None = None  # None: from resources.limits.cpu
    resources: Mapping[str, Any] = field(default_factory=dict)
    topology_spread: tuple[Mapping[str, Any], ...] | None = None  # None: the operator's default
    persistence: PersistenceSpec = field(default_factory=PersistenceSpec)
    auth_enabled: bool = True
    tls: TLSSpec = field(default_factory=TLSSpec)
    failover: FailoverSpec = field(default_factory=FailoverSpec)
    replication: ReplicationSpec = field(default_factory=ReplicationSpec)

    @property
    def pod_count(self) -> int:
        if self.mode == "cluster":
            return self.shards * (1 + self.replicas_per_shard)
        if self.mode == "standalone":
            return 1
        return self.replicas


@dataclass(frozen=True)
class ValkeyCluster:
    """The resource as the operator sees it: identity, annotations and a typed spec."""

    name: str
    namespace: str
    spec: ClusterSpec
    uid: str = ""
    generation: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)
    cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN

    @property
    def names(self) -> names.ClusterNames:
        return names.ClusterNames(self.name, self.namespace, self.cluster_domain)


def _duration(raw: str, path: str) -> timedelta:
    try:
        return parse_duration(raw)
    except DurationError as exc:
        raise SpecError("InvalidDuration", f"spec.{path}: {exc}.") from exc


def _certificates(raw: Mapping[str, Any]) -> CertificatesSpec:
    path = "tls.certificates"
    certs = CertificatesSpec(
        key_algorithm=raw["keyAlgorithm"],
        duration=_duration(raw["duration"], f"{path}.duration"),
        renew_before=_duration(raw["renewBefore"], f"{path}.renewBefore"),
        warn_before=_duration(raw["warnBefore"], f"{path}.warnBefore"),
        ca_duration=_duration(raw["caDuration"], f"{path}.caDuration"),
        ca_rotation_overlap=_duration(raw["caRotationOverlap"], f"{path}.caRotationOverlap"),
        extra_dns_names=tuple(raw["extraDNSNames"]),
        extra_ip_addresses=tuple(raw["extraIPAddresses"]),
    )
    for addr in certs.extra_ip_addresses:
        try:
            ipaddress.ip_address(addr)
        except ValueError as exc:
            raise SpecError(
                "InvalidIPAddress", f"spec.{path}.extraIPAddresses: {addr!r} is not an IP address."
            ) from exc
    return certs


def _issuer(raw: Mapping[str, Any]) -> IssuerSpec:
    ref = raw.get("issuerRef")
    return IssuerSpec(
        type=raw["type"],
        secret_name=raw.get("secretName"),
        issuer_ref=IssuerRef(ref["name"], ref.get("kind", "Issuer"), ref.get("group", "cert-manager.io"))
        if ref
        else None,
    )


def _tls(raw: Mapping[str, Any]) -> TLSSpec:
    return TLSSpec(
        mode=raw["mode"],
        client_auth=raw["clientAuth"],
        replication=raw["replication"],
        cluster_bus=raw["clusterBus"],
        protocols=tuple(raw["protocols"]),
        ciphers=raw.get("ciphers"),
        ciphersuites=raw.get("ciphersuites"),
        issuer=_issuer(raw["issuer"]),
        certificates=_certificates(raw["certificates"]),
        rotation_strategy=raw["rotation"]["strategy"],
        clients=tuple(c["name"] for c in raw["clients"]),
        acls=tuple((c["name"], c["acl"]) for c in raw["clients"] if c.get("acl")),
    )


# `replicas` defaults by mode (the CRD cannot: a schema default is one value for every mode).
DEFAULT_REPLICAS = {"standalone": 1, "replication": 3}


def parse_spec(raw: Mapping[str, Any] | None) -> ClusterSpec:
    """Default and validate a raw `spec`; raise SpecError with a reason and a one-sentence message."""
    schema = s.spec_schema()
    data = s.apply_defaults(schema, dict(raw or {}))
    persistence = data["persistence"]
    spec = ClusterSpec(
        image=data["image"],
        image_pull_policy=data["imagePullPolicy"],
        mode=data["mode"],
        replicas=int(data["replicas"] if "replicas" in data else DEFAULT_REPLICAS.get(data["mode"], 3)),
        shards=int(data["shards"]),
        replicas_per_shard=int(data["replicasPerShard"]),
        io_threads=int(data["ioThreads"]) if "ioThreads" in data else None,
        resources=data["resources"],
        topology_spread=tuple(data["topologySpreadConstraints"]) if "topologySpreadConstraints" in data else None,
        persistence=PersistenceSpec(
            enabled=persistence["enabled"],
            size=persistence["size"],
            storage_class_name=persistence.get("storageClassName"),
        ),
        auth_enabled=data["auth"]["enabled"],
        tls=_tls(data["tls"]),
        failover=FailoverSpec(data["failover"]["enabled"], _duration(data["failover"]["after"], "failover.after")),
        replication=ReplicationSpec(
            int(data["replication"]["minReplicasToWrite"]), int(data["replication"]["maxLagSeconds"])
        ),
    )
    _check_enums(spec)
    errors = s.value_errors(schema, data, "spec")
    if errors:
        raise SpecError("InvalidValue", f"{errors[0]}.")
    # The CRD's CEL rules, the same table (api/rules.py), so `render` refuses what the API server would.
    broken = rules.violations(data)
    if broken:
        raise SpecError(broken[0].reason, f"{broken[0].message}.")
    return spec


def _check_enums(spec: ClusterSpec) -> None:
    """The schema's enums, for `render` (the API server checks them before the operator sees a value)."""
    pairs = [
        ("mode", spec.mode, s.MODES),
        ("tls.mode", spec.tls.mode, s.TLS_MODES),
        ("tls.clientAuth", spec.tls.client_auth, s.CLIENT_AUTH),
        ("tls.issuer.type", spec.tls.issuer.type, s.ISSUER_TYPES),
        ("tls.certificates.keyAlgorithm", spec.tls.certificates.key_algorithm, s.KEY_ALGORITHMS),
        ("tls.rotation.strategy", spec.tls.rotation_strategy, s.ROTATION_STRATEGIES),
    ]
    for path, value, allowed in pairs:
        if value not in allowed:
            raise SpecError("InvalidValue", f"spec.{path} must be one of {', '.join(allowed)}, not {value!r}.")
    for proto in spec.tls.protocols:
        if proto not in s.TLS_PROTOCOLS:
            raise SpecError("InvalidValue", f"spec.tls.protocols: {proto!r} is not TLSv1.2 or TLSv1.3.")
    if spec.replicas < 1:
        raise SpecError("InvalidTopology", "replicas must be at least 1.")


def _check_name(name: str) -> None:
    """The CRD's rules on metadata.name, for `render`: every derived name must fit Kubernetes' limits."""
    if len(name) > s.CLUSTER_NAME_MAX or re.fullmatch(s.CLUSTER_NAME, name) is None:
        raise SpecError(
            "InvalidName",
            f"metadata.name {name!r} must be a DNS label of at most {s.CLUSTER_NAME_MAX} characters that starts "
            "with a letter.",
        )


# A certificate's CN holds at most 64 characters; a client's ACL user is named as its CN.
MAX_USER_NAME = 64


def _check_users(name: str, namespace: str, spec: ClusterSpec) -> None:
    """A client with an ACL user: `<client>@<cluster>.<namespace>` must fit a certificate's CN whole (it is the
    user's name, and a cut one could name another client's user)."""
    for client, _ in spec.tls.acls:
        user = names.ClusterNames(name, namespace).acl_user(client)
        if len(user) > MAX_USER_NAME:
            raise SpecError(
                "InvalidValue",
                f"spec.tls.clients: the ACL user of client {client!r} would be named {user} ({len(user)} "
                f"characters), longer than a certificate's CN may be ({MAX_USER_NAME}): give the client or the "
                "cluster a shorter name.",
            )


def parse_cluster(body: Mapping[str, Any], cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> ValkeyCluster:
    """A whole ValkeyCluster body -> ValkeyCluster (raises SpecError)."""
    meta = body.get("metadata", {})
    _check_name(str(meta["name"]))
    spec = parse_spec(body.get("spec"))
    _check_users(str(meta["name"]), meta.get("namespace") or "default", spec)
    return ValkeyCluster(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        spec=spec,
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        annotations=dict(meta.get("annotations") or {}),
        cluster_domain=cluster_domain,
    )
