"""Conditions and phase from an observation: table-driven; lastTransitionTime only moves on a flip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from valkey_operator.api.status import Condition, Observation, conditions, merge_conditions, phase

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def obs(**kw: object) -> Observation:
    base: dict[str, object] = {
        "desired": 3,
        "ready": 3,
        "updated": 3,
        "outdated": 0,
    }
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observation", "expected_phase"),
    [
        (obs(), "Ready"),
        (obs(ready=1), "Provisioning"),
        (obs(updated=1, outdated=2), "Rotating"),
        (obs(ready=0, updated=0), "Provisioning"),
        (obs(cert_problem=("CertificateExpired", "m")), "Degraded"),
        (obs(cert_problem=("ExternalSecretNotFound", "m"), exists=False), "Pending"),
        (obs(exists=False), "Pending"),
        (obs(spec_error=("InvalidTopology", "m")), "Failed"),
    ],
)
def test_phase(observation: Observation, expected_phase: str) -> None:
    assert phase(observation) == expected_phase


def by_type(conds: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conds}


def test_every_contract_condition_is_reported_in_order() -> None:
    assert [c.type for c in conditions(obs())] == [
        "Ready",
        "CertificatesReady",
        "CertificateExpiringSoon",
        "Rotating",
        "Degraded",
    ]


def test_expiring_names_the_certificate_and_when() -> None:
    c = by_type(conditions(obs(expiring=("server",), soonest_expiry=T0)))["CertificateExpiringSoon"]
    assert c.status is True
    assert "server" in c.message
    assert T0.isoformat() in c.message


def test_certificate_problem_sets_certificates_ready_false_with_its_reason() -> None:
    c = by_type(conditions(obs(cert_problem=("PrivateKeyMismatch", "The key does not match."))))
    assert (c["CertificatesReady"].status, c["CertificatesReady"].reason) == (False, "PrivateKeyMismatch")
    assert c["Degraded"].status is True


def test_rotating_message_counts_pods() -> None:
    c = by_type(conditions(obs(updated=1, outdated=2)))["Rotating"]
    assert c.status is True
    assert "1 of 3" in c.message


def test_ready_pods_on_an_older_revision_are_said_to_be_rolling_not_unready() -> None:
    ready = by_type(conditions(obs(updated=1, outdated=2)))["Ready"]
    assert (ready.status, ready.reason) == (False, "RolloutInProgress")
    assert "1 of 3 pods serve the current revision" in ready.message
    starting = by_type(conditions(obs(ready=2, updated=1, outdated=2)))["Ready"]
    assert starting.reason == "PodsNotReady"


def test_last_transition_time_moves_only_on_a_flip() -> None:
    first = merge_conditions([], conditions(obs()), T0, 1)
    later = T0 + timedelta(hours=1)
    same = merge_conditions(first, conditions(obs()), later, 2)
    assert [c["lastTransitionTime"] for c in same] == [c["lastTransitionTime"] for c in first]
    assert all(c["observedGeneration"] == 2 for c in same)
    flipped = merge_conditions(first, conditions(obs(ready=1)), later, 2)
    ready = next(c for c in flipped if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["lastTransitionTime"] == "2026-01-01T01:00:00Z"
