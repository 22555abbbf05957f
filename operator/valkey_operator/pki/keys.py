"""Private keys for every algorithm in the contract, and their PEM form."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

PrivateKey = CertificateIssuerPrivateKeyTypes


def generate_key(algorithm: str) -> PrivateKey:
    """A new private key: ECDSA-P256, ECDSA-P384, RSA-2048/3072/4096 or Ed25519."""
    match algorithm:
        case "ECDSA-P256":
            return ec.generate_private_key(ec.SECP256R1())
        case "ECDSA-P384":
            return ec.generate_private_key(ec.SECP384R1())
        case "RSA-2048" | "RSA-3072" | "RSA-4096":
            return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.split("-")[1]))
        case "Ed25519":
            return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key algorithm {algorithm!r}")


def key_algorithm(key: object) -> str | None:
    """The contract's name for a private or public key's algorithm, or None if it has none."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA-P256", "secp384r1": "ECDSA-P384"}.get(key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}" if key.key_size in (2048, 3072, 4096) else None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    return None


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the form Valkey's tls-key-file and every client read."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> PrivateKey:
    """Load a PEM private key of a supported type; ValueError otherwise."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def public_bytes(key: object) -> bytes:
    """DER SubjectPublicKeyInfo of a private or public key, for comparing a key with a certificate."""
    pub: Any = key.public_key() if hasattr(key, "public_key") else key
    der: bytes = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der
