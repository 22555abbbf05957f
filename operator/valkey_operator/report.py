"""What a pass reports about certificates: the status block and the times the metrics export. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import iso
from valkey_operator.pki import renewal
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material, Rotation


@dataclass(frozen=True)
class CertTimes:
    not_before: datetime
    not_after: datetime
    renewal: datetime | None
    ready: bool
    warning: datetime | None = None  # notAfter - warnBefore: the alert's own threshold


@dataclass(frozen=True)
class Metrics:
    """The metric values one pass sets (metrics.record applies them)."""

    certificates: dict[str, CertTimes] = field(default_factory=dict)
    not_ready: tuple[str, ...] = ()  # certificate labels to mark not ready
    rotations: tuple[Rotation, ...] = ()
    cluster_ready: bool = False
    failovers: tuple[str, ...] = ()  # reasons of primary role moves started by the pass


@dataclass(frozen=True)
class CertReport:
    status: dict[str, Any]
    times: dict[str, CertTimes]
    expiring: tuple[str, ...]
    soonest: datetime | None


def _ca_secret(cluster: ValkeyCluster) -> str | None:
    """Where the CA comes from: the user's Secret, or (CertManager) the ca.crt of cert-manager's Secret."""
    if cluster.spec.tls.issuer.type == "CertManager":
        return cluster.names.issued_secret("")
    return cluster.spec.tls.issuer.secret_name


def certificates(cluster: ValkeyCluster, material: Material, now: datetime) -> CertReport:
    certs = cluster.spec.tls.certificates
    status: dict[str, Any] = {}
    times: dict[str, CertTimes] = {}
    expiring: list[str] = []

    def track(label: str, pem: bytes, renew: bool) -> Any:
        info = describe_pem(pem)
        when = renewal.renewal_time(info, certs.renew_before) if renew else None
        times[label] = CertTimes(
            info.not_before, info.not_after, when, now < info.not_after, info.not_after - certs.warn_before
        )
        if renewal.expiring_soon(info, now, certs.warn_before):
            expiring.append(label)
        return info, when

    ca_source = material.ca.cert_pem if material.ca else material.bundle
    if ca_source:
        ca, _ = track("ca", ca_source, False)
        status["ca"] = {
            "notBefore": iso(ca.not_before),
            "notAfter": iso(ca.not_after),
            "serial": ca.serial,
            "fingerprintSHA256": ca.fingerprint_sha256,
            "secretName": cluster.names.ca_secret if material.ca else _ca_secret(cluster),
        }
    server, when = track("server", material.server.cert_pem, cluster.spec.tls.issuer.type != "External")
    status["server"] = {
        "notBefore": iso(server.not_before),
        "notAfter": iso(server.not_after),
        "serial": server.serial,
        "fingerprintSHA256": server.fingerprint_sha256,
        "dnsNames": list(server.dns_names),
        "secretName": cluster.names.tls_secret,
        "revision": material.revision,
    }
    if when is not None:
        status["server"]["renewalTime"] = iso(when)
    phase = material.rotation.get(names.ANN_CA_ROTATION_PHASE)
    if phase:
        status["caRotation"] = {"phase": phase, "since": material.rotation.get(names.ANN_CA_ROTATION_SINCE, "")}
    status["clients"] = []
    for name, pair in material.clients.items():
        info, _ = track(f"client/{name}", pair.cert_pem, True)
        secret = cluster.names.connection_secret if name == CONNECTION_CLIENT else cluster.names.client_secret(name)
        status["clients"].append({"name": name, "notAfter": iso(info.not_after), "secretName": secret})
    soonest = min((t.not_after for t in times.values()), default=None)
    return CertReport(status, times, tuple(expiring), soonest)
