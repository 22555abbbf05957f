"""Minting: a private CA per cluster, and server and client certificates signed by it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from valkey_operator.pki.keys import PrivateKey, generate_key, key_to_pem, load_key

# Leaf and CA certificates start a little in the past: nodes whose clocks lag still accept them
# (Valkey 9.1 refuses a not-yet-valid certificate).
BACKDATE = timedelta(minutes=5)
ORGANIZATION = "valkey-tls-operator"
_PEM = Encoding.PEM


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM. The key never leaves Secrets."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> PrivateKey:
        return load_key(self.key_pem)


@dataclass(frozen=True)
class LeafRequest:
    """What a leaf certificate must say."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = True
    client: bool = True
    duration: timedelta = timedelta(days=90)
    key_algorithm: str = "ECDSA-P256"
    organization: tuple[str, ...] = field(default=(ORGANIZATION,))
    exact_name: bool = False  # the CN is an identity (an ACL user's name): a certificate with another is re-issued


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    # Ed25519 signs without a separate digest; everything else uses SHA-256.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name: str, organization: tuple[str, ...]) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organization]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]))
    return x509.Name(attrs)


def mint_ca(common_name: str, now: datetime, duration: timedelta, key_algorithm: str = "ECDSA-P256") -> KeyPair:
    """A self-signed CA that may sign leaves only (path length 0)."""
    key = generate_key(key_algorithm)
    name = _name(common_name, (ORGANIZATION,))
    pub = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + duration)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, _hash_for(key))
    )
    return KeyPair(cert.public_bytes(_PEM), key_to_pem(key))


def issue_leaf(ca: KeyPair, request: LeafRequest, now: datetime) -> KeyPair:
    """A leaf certificate for `request`, signed by `ca`, never outliving it."""
    ca_cert, ca_key = ca.certificate, ca.key
    key = generate_key(request.key_algorithm)
    pub = key.public_key()
    not_after = min(now + request.duration, ca_cert.not_valid_after_utc)
    usages = []
    if request.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if request.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in request.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in request.ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(request.common_name, request.organization))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange (TLS 1.2 RSA suites) needs keyEncipherment; EC and Ed25519 do not.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, _hash_for(ca_key))
    return KeyPair(cert.public_bytes(_PEM), key_to_pem(key))
