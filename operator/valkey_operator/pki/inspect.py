"""The public facts of a certificate (what status, metrics and decisions need), from PEM."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from valkey_operator.pki.keys import key_algorithm

DESCRIBED = 256  # bundles remembered: the passes under way at once, a few certificates each
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class CertInfo:
    """Everything about a certificate that may be shown; no key material."""

    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    is_ca: bool
    server_auth: bool
    client_auth: bool
    key_algorithm: str | None
    common_name: str | None = None  # the subject's CN, when it has one


def split_pem(bundle: bytes) -> list[bytes]:
    """Every CERTIFICATE block of a PEM bundle, in order."""
    return [m.group(0) + b"\n" for m in _PEM_BLOCK.finditer(bundle)]


def load_certificates(bundle: bytes) -> list[x509.Certificate]:
    """Parse every certificate of a PEM bundle; ValueError when there is none or one is broken."""
    blocks = split_pem(bundle)
    if not blocks:
        raise ValueError("no PEM certificate found")
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def describe(cert: x509.Certificate) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        server_auth = ExtendedKeyUsageOID.SERVER_AUTH in eku
        client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    except x509.ExtensionNotFound:
        # No EKU extension means any usage (RFC 5280 4.2.1.12), which is how OpenSSL treats it.
        server_auth = client_auth = True
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns,
        ip_addresses=ips,
        is_ca=is_ca,
        server_auth=server_auth,
        client_auth=client_auth,
        key_algorithm=key_algorithm(cert.public_key()),
        common_name=_common_name(cert),
    )


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


@functools.lru_cache(maxsize=DESCRIBED)
def describe_pem(pem: bytes) -> CertInfo:
    """Facts of the first certificate in a PEM bundle (the leaf, when a chain follows it). Remembered for
    the last DESCRIBED bundles: a pass asks for the same few certificates several times (its plan, its
    decisions, its report), and parsing one is most of the cost (CertInfo is immutable)."""
    return describe(load_certificates(pem)[0])
