"""Validation: one named reason per way a certificate can be unfit, table-driven."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.conftest import NOW
from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.validate import (
    Requirements,
    issued_by,
    name_matches,
    validate_bundle,
    validate_ca,
    validate_leaf,
)

CA = mint_ca("ca", NOW - timedelta(days=1), timedelta(days=3650))
OTHER_CA = mint_ca("other", NOW - timedelta(days=1), timedelta(days=3650))
NAMES = ("cache.apps.svc", "cache-0.cache-headless.apps.svc")
REQ = Requirements(dns_names=NAMES)
GOOD = issue_leaf(CA, LeafRequest("cache", NAMES), NOW)


def reasons(
    cert: bytes | None, key: bytes | None, trust: bytes | None = CA.cert_pem, req: Requirements = REQ, now: object = NOW
) -> list[str]:
    return [p.reason for p in validate_leaf(cert, key, trust, req, now)]  # type: ignore[arg-type]


def test_a_good_leaf_has_no_problem() -> None:
    assert reasons(GOOD.cert_pem, GOOD.key_pem) == []


@pytest.mark.parametrize(
    ("cert", "key", "expected"),
    [
        (None, GOOD.key_pem, "CertificateMissing"),
        (b"garbage", GOOD.key_pem, "CertificateInvalid"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", GOOD.key_pem, "CertificateInvalid"),
        (GOOD.cert_pem, None, "PrivateKeyMissing"),
        (GOOD.cert_pem, b"not a key", "PrivateKeyInvalid"),
        (GOOD.cert_pem, issue_leaf(CA, LeafRequest("x"), NOW).key_pem, "PrivateKeyMismatch"),
    ],
)
def test_material_problems(cert: bytes | None, key: bytes | None, expected: str) -> None:
    assert reasons(cert, key) == [expected]


def test_expired_and_not_yet_valid() -> None:
    assert reasons(GOOD.cert_pem, GOOD.key_pem, now=NOW + timedelta(days=91)) == ["CertificateExpired"]
    assert reasons(GOOD.cert_pem, GOOD.key_pem, now=NOW - timedelta(hours=1)) == ["CertificateNotYetValid"]


def test_missing_names_are_named_in_the_message() -> None:
    leaf = issue_leaf(CA, LeafRequest("cache", ("cache.apps.svc",)), NOW)
    problems = validate_leaf(leaf.cert_pem, leaf.key_pem, CA.cert_pem, REQ, NOW)
    assert [p.reason for p in problems] == ["CertificateMissingNames"]
    assert "cache-0.cache-headless.apps.svc" in problems[0].message


def test_missing_ip_address() -> None:
    req = Requirements(dns_names=NAMES, ip_addresses=("10.0.0.1",))
    assert reasons(GOOD.cert_pem, GOOD.key_pem, req=req) == ["CertificateMissingNames"]


def test_wrong_usage_and_ca_as_leaf() -> None:
    client_only = issue_leaf(CA, LeafRequest("c", NAMES, server=False), NOW)
    assert reasons(client_only.cert_pem, client_only.key_pem) == ["WrongKeyUsage"]
    assert reasons(CA.cert_pem, CA.key_pem, req=Requirements()) == ["WrongKeyUsage"]


def test_not_signed_by_the_ca() -> None:
    assert reasons(GOOD.cert_pem, GOOD.key_pem, trust=OTHER_CA.cert_pem) == ["CertificateNotTrusted"]


def test_a_bundle_with_several_cas_trusts_each() -> None:
    assert reasons(GOOD.cert_pem, GOOD.key_pem, trust=OTHER_CA.cert_pem + CA.cert_pem) == []


def test_chain_through_an_intermediate_in_tls_crt() -> None:
    root = mint_ca("root", NOW - timedelta(days=1), timedelta(days=3650))
    # An intermediate CA: a CA certificate signed by the root (built with the leaf machinery's issuer).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from valkey_operator.pki.keys import generate_key, key_to_pem

    ikey = generate_key("ECDSA-P256")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "intermediate")])
    icert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.certificate.subject)
        .public_key(ikey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    inter = KeyPair(icert.public_bytes(serialization.Encoding.PEM), key_to_pem(ikey))
    leaf = issue_leaf(inter, LeafRequest("cache", NAMES), NOW)
    chain = leaf.cert_pem + inter.cert_pem
    assert reasons(chain, leaf.key_pem, trust=root.cert_pem) == []
    # Without ca.crt, the chain must reach a self-signed root inside tls.crt.
    assert reasons(chain, leaf.key_pem, trust=None) == ["CABundleMissing"]
    assert reasons(chain + root.cert_pem, leaf.key_pem, trust=None) == []


def test_validate_ca() -> None:
    assert validate_ca(CA.cert_pem, CA.key_pem, NOW, need_key=True) == []
    assert [p.reason for p in validate_ca(CA.cert_pem, None, NOW, need_key=True)] == ["CAPrivateKeyMissing"]
    assert validate_ca(CA.cert_pem, None, NOW, need_key=False) == []
    assert [p.reason for p in validate_ca(None, None, NOW, need_key=True)] == ["CACertificateMissing"]
    assert [p.reason for p in validate_ca(b"junk", None, NOW, need_key=True)] == ["CACertificateInvalid"]
    assert [p.reason for p in validate_ca(GOOD.cert_pem, GOOD.key_pem, NOW, need_key=True)] == ["CANotACA"]
    wrong = validate_ca(CA.cert_pem, OTHER_CA.key_pem, NOW, need_key=True)
    assert [p.reason for p in wrong] == ["PrivateKeyMismatch"]


def test_validate_bundle_refuses_an_expired_ca() -> None:
    old = mint_ca("old", NOW - timedelta(days=30), timedelta(days=10))
    assert validate_bundle(CA.cert_pem, NOW) == []
    assert [p.reason for p in validate_bundle(CA.cert_pem + old.cert_pem, NOW)] == ["CertificateExpired"]
    assert [p.reason for p in validate_bundle(b"nothing", NOW)] == ["CABundleInvalid"]


def test_issued_by() -> None:
    assert issued_by(GOOD.cert_pem, CA.cert_pem)
    assert not issued_by(GOOD.cert_pem, OTHER_CA.cert_pem)
    assert not issued_by(b"junk", CA.cert_pem)


def test_messages_never_contain_key_material() -> None:
    for problem in validate_leaf(GOOD.cert_pem, OTHER_CA.key_pem, CA.cert_pem, REQ, NOW):
        assert "PRIVATE KEY" not in problem.message


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("a.example", "a.example", True),
        ("A.Example.", "a.example", True),
        ("*.example", "a.example", True),
        ("*.example", "a.b.example", False),
        ("*.example", "example", False),
        ("a.example", "b.example", False),
    ],
)
def test_name_matches(pattern: str, name: str, expected: bool) -> None:
    assert name_matches(pattern, name) is expected


label = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)


@given(st.lists(label, min_size=1, max_size=4))
def test_a_wildcard_covers_exactly_one_more_label(labels: list[str]) -> None:
    domain = ".".join(labels)
    assert name_matches(f"*.{domain}", f"x.{domain}")
    assert not name_matches(f"*.{domain}", f"x.y.{domain}")


def _by_hand(key: object, signer_key: object, issuer: str, algorithm: object, names: tuple[str, ...] = NAMES) -> bytes:
    """A leaf built with cryptography directly (the operator never issues such weak ones itself)."""
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert = (
        cx.CertificateBuilder()
        .subject_name(cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, "cache")]))
        .issuer_name(cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(cx.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(cx.SubjectAlternativeName([cx.DNSName(n) for n in names]), critical=False)
        .add_extension(
            cx.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(signer_key, algorithm)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_weak_keys_and_signatures_are_named_not_mistaken_for_untrusted() -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from valkey_operator.pki.keys import load_key

    def pem(key: object) -> bytes:
        return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = load_key(CA.key_pem)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the weak input)
    assert reasons(_by_hand(small, ca_key, "ca", hashes.SHA256()), pem(small)) == ["WeakKey"]
    # cryptography refuses to sign with SHA-1; OpenSSL's own tool still does (how such certificates arise).
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha1", "-days", "30", "-subj", "/CN=cache",
             "-keyout", f"{tmp}/k.pem", "-out", f"{tmp}/c.pem", "-addext", "subjectAltName=" + ",".join(
                 f"DNS:{n}" for n in NAMES), "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        sha1, key = Path(tmp, "c.pem").read_bytes(), Path(tmp, "k.pem").read_bytes()
    problems = validate_leaf(sha1, key, None, REQ, datetime.now(UTC))  # openssl dates it from today
    assert [p.reason for p in problems] == ["WeakSignature"]
    assert "SHA1" in problems[0].message
