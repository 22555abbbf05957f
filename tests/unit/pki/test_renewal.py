"""Renewal decisions: pure functions of the certificate, the policy and the clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.conftest import NOW
from valkey_operator.pki import renewal
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.issue import LeafRequest, issue_leaf, mint_ca

CA = mint_ca("ca", NOW - timedelta(days=1), timedelta(days=3650))
LEAF = describe_pem(issue_leaf(CA, LeafRequest("l", ("a.example",), duration=timedelta(days=90)), NOW).cert_pem)
POLICY = renewal.RenewalPolicy(renew_before=timedelta(days=60), key_algorithm="ECDSA-P256", dns_names=("a.example",))


def test_renewal_time_is_not_after_minus_renew_before() -> None:
    assert renewal.renewal_time(LEAF, timedelta(days=60)) == LEAF.not_after - timedelta(days=60)


def test_short_lived_certificates_renew_at_two_thirds() -> None:
    lifetime = LEAF.not_after - LEAF.not_before
    assert renewal.renewal_time(LEAF, timedelta(days=365)) == LEAF.not_before + lifetime * 2 / 3


@pytest.mark.parametrize(
    ("days", "policy", "expected"),
    [
        (0, POLICY, None),
        (29, POLICY, None),
        (31, POLICY, renewal.SCHEDULED),
        (200, POLICY, renewal.SCHEDULED),
        (0, renewal.RenewalPolicy(timedelta(days=60), "RSA-2048", ("a.example",)), renewal.INVALID),
        (0, renewal.RenewalPolicy(timedelta(days=60), "ECDSA-P256", ("a.example", "b.example")), renewal.INVALID),
        (0, renewal.RenewalPolicy(timedelta(days=60), "ECDSA-P256", (), ("10.0.0.1",)), renewal.INVALID),
        (0, renewal.RenewalPolicy(timedelta(days=60), "ECDSA-P256", (), (), "CN=someone else"), renewal.CA),
        # A CN that is an identity (an ACL user's name): another one is re-issued, the same one kept.
        (0, renewal.RenewalPolicy(timedelta(days=60), "ECDSA-P256", common_name="app@cache.shop"), renewal.INVALID),
        (0, renewal.RenewalPolicy(timedelta(days=60), "ECDSA-P256", common_name="l"), None),
    ],
)
def test_renewal_reason(days: int, policy: renewal.RenewalPolicy, expected: str | None) -> None:
    assert renewal.renewal_reason(LEAF, NOW + timedelta(days=days), policy) == expected


@pytest.mark.parametrize(("days", "expected"), [(0, False), (44, False), (46, True), (100, True)])
def test_expiring_soon(days: int, expected: bool) -> None:
    assert renewal.expiring_soon(LEAF, NOW + timedelta(days=days), timedelta(days=45)) is expected
