"""Minting: every key algorithm, usages, SANs, backdating, never outliving the CA."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.conftest import NOW
from valkey_operator.api.schema import KEY_ALGORITHMS
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.issue import BACKDATE, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.keys import public_bytes


@pytest.mark.parametrize("algorithm", KEY_ALGORITHMS)
def test_every_algorithm_mints_a_ca_and_a_leaf_whose_keys_match(algorithm: str) -> None:
    ca = mint_ca("ca", NOW, timedelta(days=3650), algorithm)
    leaf = issue_leaf(ca, LeafRequest("leaf", ("a.example",), key_algorithm=algorithm), NOW)
    for pair in (ca, leaf):
        assert public_bytes(pair.key) == public_bytes(pair.certificate.public_key())
        assert describe_pem(pair.cert_pem).key_algorithm == algorithm
    leaf.certificate.verify_directly_issued_by(ca.certificate)


def test_ca_is_a_ca_that_signs_leaves_only() -> None:
    ca = mint_ca("ca", NOW, timedelta(days=10))
    bc = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert bc.path_length == 0
    assert ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_server_leaf_has_server_and_client_auth_client_leaf_client_only() -> None:
    ca = mint_ca("ca", NOW, timedelta(days=10))
    server = issue_leaf(ca, LeafRequest("s", ("s.example",)), NOW).certificate
    client = issue_leaf(ca, LeafRequest("c", server=False, client=True), NOW).certificate
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_leaf_is_backdated_and_never_outlives_its_ca() -> None:
    ca = mint_ca("ca", NOW, timedelta(days=10))
    leaf = describe_pem(issue_leaf(ca, LeafRequest("l", duration=timedelta(days=90)), NOW).cert_pem)
    assert leaf.not_before == NOW - BACKDATE
    assert leaf.not_after == describe_pem(ca.cert_pem).not_after


def test_sans_carry_dns_names_and_ip_addresses() -> None:
    ca = mint_ca("ca", NOW, timedelta(days=10))
    leaf = issue_leaf(ca, LeafRequest("l", ("a.example", "localhost"), ("127.0.0.1", "::1")), NOW)
    info = describe_pem(leaf.cert_pem)
    assert info.dns_names == ("a.example", "localhost")
    assert info.ip_addresses == ("127.0.0.1", "::1")


def test_rsa_leaves_allow_key_encipherment_ec_leaves_do_not() -> None:
    for algorithm, expected in (("RSA-2048", True), ("ECDSA-P256", False)):
        ca = mint_ca("ca", NOW, timedelta(days=10), "ECDSA-P256")
        leaf = issue_leaf(ca, LeafRequest("l", key_algorithm=algorithm), NOW).certificate
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment is expected


def test_serials_are_random_and_distinct() -> None:
    ca = mint_ca("ca", NOW, timedelta(days=10))
    serials = {issue_leaf(ca, LeafRequest("l"), NOW).certificate.serial_number for _ in range(20)}
    assert len(serials) == 20
