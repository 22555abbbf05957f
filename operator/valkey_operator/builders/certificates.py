"""Issuer CertManager: the cert-manager `Certificate` objects a ValkeyCluster owns, one per certificate the
operator would otherwise issue itself, asking for what it would issue (names, lifetime, key, usages)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.common import Manifest, metadata
from valkey_operator.pki import certmanager
from valkey_operator.pki.plan import wanted_certificates


def private_key(algorithm: str) -> dict[str, Any]:
    """cert-manager's privateKey for spec.tls.certificates.keyAlgorithm; a new key at every issue."""
    family, _, size = algorithm.partition("-")
    key: dict[str, Any] = {"algorithm": family, "rotationPolicy": "Always", "encoding": "PKCS8"}
    if family == "ECDSA":
        key["size"] = int(size.removeprefix("P"))
    elif family == "RSA":
        key["size"] = int(size)
    return key


def go_duration(value: timedelta) -> str:
    """A duration as cert-manager reads it (Go's time.ParseDuration)."""
    return f"{int(value.total_seconds())}s"


def certificate_manifests(cluster: ValkeyCluster) -> list[Manifest]:
    if cluster.spec.tls.issuer.type != "CertManager":
        return []
    ref = cluster.spec.tls.issuer.issuer_ref
    assert ref is not None  # the API requires it with type CertManager
    certs = cluster.spec.tls.certificates
    out = []
    for want in wanted_certificates(cluster):
        server = want.role == certmanager.SERVER
        usages = ["digital signature", *(["key encipherment"] if certs.key_algorithm.startswith("RSA") else [])]
        usages += ["server auth", "client auth"] if server else ["client auth"]
        spec: dict[str, Any] = {
            "secretName": want.secret,
            "duration": go_duration(certs.duration),
            "renewBefore": go_duration(certs.renew_before),
            "privateKey": private_key(certs.key_algorithm),
            "usages": usages,
            "issuerRef": {"name": ref.name, "kind": ref.kind, "group": ref.group},
            "revisionHistoryLimit": 2,
            # The Secret cert-manager writes is labelled as cert-manager's, for this cluster: the operator's
            # Secrets watch holds it (a pass reads it from memory, and its change starts a pass), while the
            # operator's own label stays off it (it outlives the cluster, and is never the operator's).
            "secretTemplate": {"labels": names.issued_labels(cluster.name)},
        }
        if server:  # its names are its DNS names (a CN of up to 64 bytes could not hold a long service name)
            spec["dnsNames"] = list(want.requirements.dns_names)
            if want.requirements.ip_addresses:
                spec["ipAddresses"] = list(want.requirements.ip_addresses)
        else:  # cert-manager refuses a CN over 64 bytes; the operator's own issuer cuts it there too
            spec["commonName"] = want.common_name[:64]
        component = names.COMPONENT_TLS if server else names.COMPONENT_CLIENT
        out.append(
            {
                "apiVersion": names.CERT_MANAGER_API,
                "kind": "Certificate",
                "metadata": metadata(cluster, want.certificate, component),
                "spec": spec,
            }
        )
    return out
