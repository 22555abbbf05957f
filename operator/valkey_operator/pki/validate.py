"""Validation of certificate material as Valkey (OpenSSL) would judge it, and stricter.

Each check is small and named; a list of Problems (reason + one-sentence message) comes back,
empty when the material is fit to serve. Messages name certificates by subject, never keys.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from valkey_operator.pki.inspect import CertInfo, describe, load_certificates
from valkey_operator.pki.keys import load_key, public_bytes

MAX_CHAIN = 5


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Requirements:
    """What a leaf must cover and allow."""

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = True
    client: bool = True


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: exact, or a wildcard standing for exactly one left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        return name.split(".", 1)[1] == pattern[2:]
    return False


def _window(info: CertInfo, now: datetime, what: str) -> list[Problem]:
    if now < info.not_before:
        return [
            Problem(
                "CertificateNotYetValid",
                f"The {what} certificate ({info.subject}) is not valid before {info.not_before.isoformat()}: "
                "check its notBefore and the clocks.",
            )
        ]
    if now >= info.not_after:
        return [
            Problem(
                "CertificateExpired",
                f"The {what} certificate ({info.subject}) expired at {info.not_after.isoformat()}: "
                "supply a renewed one.",
            )
        ]
    return []


def _key_matches(cert: x509.Certificate, key_pem: bytes | None, what: str) -> list[Problem]:
    if key_pem is None:
        return [Problem("PrivateKeyMissing", f"The {what} Secret has no tls.key: add the private key.")]
    try:
        key = load_key(key_pem)
    except (ValueError, TypeError):
        return [Problem("PrivateKeyInvalid", f"The {what} tls.key is not a readable unencrypted PEM private key.")]
    if public_bytes(key) != public_bytes(cert.public_key()):
        return [
            Problem(
                "PrivateKeyMismatch",
                f"The {what} tls.key does not belong to its certificate: put the matching key and certificate "
                "in the Secret.",
            )
        ]
    return []


# OpenSSL's default security level (2, as Debian ships it) refuses RSA keys below 2048 bits, curves below
# 224 bits and SHA-1 or MD5 signatures: Valkey would fail to load the certificate, or peers to verify it.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
WEAK_HASHES = ("sha1", "md5")


def _strength(cert: x509.Certificate, what: str) -> list[Problem]:
    """A key or signature OpenSSL refuses at its default security level, named as such."""
    subject = describe(cert).subject
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        size = f"RSA-{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        size = f"EC {key.curve.name}"
    else:
        size = ""
    if size:
        return [
            Problem(
                "WeakKey",
                f"The {what} certificate ({subject}) has a {size} key, which OpenSSL refuses (at least RSA-"
                f"{MIN_RSA_BITS} or a {MIN_EC_BITS}-bit curve): re-issue it with a stronger key.",
            )
        ]
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        return [
            Problem(
                "WeakSignature",
                f"The {what} certificate ({subject}) is signed with {algorithm.name.upper()}, which OpenSSL "
                "refuses: re-issue it signed with SHA-256 or stronger.",
            )
        ]
    return []


def _usages(info: CertInfo, req: Requirements, what: str) -> list[Problem]:
    missing = [
        u
        for u, need, has in (("serverAuth", req.server, info.server_auth), ("clientAuth", req.client, info.client_auth))
        if need and not has
    ]
    if info.is_ca:
        return [Problem("WrongKeyUsage", f"The {what} certificate is a CA certificate, not a leaf.")]
    if missing:
        return [
            Problem(
                "WrongKeyUsage",
                f"The {what} certificate lacks extended key usage {', '.join(missing)}: Valkey also uses the "
                "server certificate as a client for replication and the cluster bus.",
            )
        ]
    return []


def _names(info: CertInfo, req: Requirements, what: str) -> list[Problem]:
    missing = [n for n in req.dns_names if not any(name_matches(p, n) for p in info.dns_names)]
    have_ips = {ipaddress.ip_address(a) for a in info.ip_addresses}
    missing += [a for a in req.ip_addresses if ipaddress.ip_address(a) not in have_ips]
    if not missing:
        return []
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return [
        Problem(
            "CertificateMissingNames",
            f"The {what} certificate does not cover {shown}: add them to its subjectAltName.",
        )
    ]


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether the first certificate of `cert_pem` is signed by the first of `ca_pem`."""
    try:
        return _issued_by(load_certificates(cert_pem)[0], load_certificates(ca_pem)[0])
    except ValueError:
        return False


def _chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: Sequence[x509.Certificate],
    now: datetime,
    what: str,
) -> list[Problem]:
    current = leaf
    for _ in range(MAX_CHAIN):
        anchor = next((ca for ca in trust if _issued_by(current, ca)), None)
        if anchor is not None:
            return _ca_fit(anchor, now, "trusted CA")
        parent = next((c for c in intermediates if c is not current and _issued_by(current, c)), None)
        if parent is None:
            break
        problems = _ca_fit(parent, now, "intermediate CA")
        if problems:
            return problems
        current = parent
    return [
        Problem(
            "CertificateNotTrusted",
            f"The {what} certificate ({describe(leaf).subject}) does not chain to the CA in ca.crt: "
            "supply the CA that signed it.",
        )
    ]


def _ca_fit(cert: x509.Certificate, now: datetime, what: str) -> list[Problem]:
    info = describe(cert)
    if not info.is_ca:
        return [Problem("CANotACA", f"The {what} ({info.subject}) is not a CA certificate (basicConstraints).")]
    # A trust anchor's own signature is not checked by OpenSSL; its key is (it signs the leaves).
    weak = [p for p in _strength(cert, what) if p.reason == "WeakKey" or not _issued_by(cert, cert)]
    return weak or _window(info, now, what)


def validate_ca(cert_pem: bytes | None, key_pem: bytes | None, now: datetime, *, need_key: bool) -> list[Problem]:
    """A CA Secret: parses, is a CA, in its window, and (when it will sign) has the matching key."""
    if not cert_pem:
        return [Problem("CACertificateMissing", "The CA Secret has no tls.crt: add the CA certificate.")]
    try:
        cert = load_certificates(cert_pem)[0]
    except ValueError:
        return [Problem("CACertificateInvalid", "The CA Secret's tls.crt is not a PEM certificate.")]
    problems = _ca_fit(cert, now, "CA")
    if need_key and not problems:
        if key_pem is None:
            return [Problem("CAPrivateKeyMissing", "The CA Secret has no tls.key: the operator needs it to sign.")]
        problems = _key_matches(cert, key_pem, "CA")
    return problems


def validate_bundle(bundle_pem: bytes, now: datetime) -> list[Problem]:
    """A trust bundle: every entry is a CA and none has expired (Valkey 9.1 refuses expired CAs)."""
    try:
        certs = load_certificates(bundle_pem)
    except ValueError:
        return [Problem("CABundleInvalid", "ca.crt is not a PEM bundle of CA certificates.")]
    return [p for c in certs for p in _ca_fit(c, now, "CA in ca.crt")]


def validate_leaf(
    cert_pem: bytes | None,
    key_pem: bytes | None,
    trust_pem: bytes | None,
    req: Requirements,
    now: datetime,
    what: str = "server",
) -> list[Problem]:
    """A leaf: parses, key matches, in its window, right usages, covers every name, chains to `trust_pem`.

    Without `trust_pem` the chain in `cert_pem` must end in a self-signed root, which then is the anchor.
    """
    if not cert_pem:
        return [Problem("CertificateMissing", f"The {what} Secret has no tls.crt: add the certificate.")]
    try:
        chain = load_certificates(cert_pem)
    except ValueError:
        return [Problem("CertificateInvalid", f"The {what} tls.crt is not a PEM certificate.")]
    leaf, rest = chain[0], chain[1:]
    info = describe(leaf)
    checks: list[Callable[[], list[Problem]]] = [
        lambda: _key_matches(leaf, key_pem, what),
        lambda: _strength(leaf, what),
        lambda: _window(info, now, what),
        lambda: _usages(info, req, what),
        lambda: _names(info, req, what),
    ]
    for check in checks:
        problems = check()
        if problems:
            return problems
    if trust_pem:
        try:
            trust = load_certificates(trust_pem)
        except ValueError:
            return [Problem("CABundleInvalid", f"The {what} ca.crt is not a PEM bundle of CA certificates.")]
    else:
        trust = [c for c in rest if _issued_by(c, c)]
        if not trust:
            return [
                Problem(
                    "CABundleMissing",
                    f"The {what} Secret has no ca.crt and tls.crt carries no root CA: add ca.crt so that "
                    "Valkey can verify its peers.",
                )
            ]
    return _chain(leaf, rest, trust, now, what)
