"""Bad certificate input on a real API server: a precise condition and Event, nothing running touched,
and recovery without restarting the operator once the Secret is fixed."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from tests.integration.conftest import (
    apply,
    condition,
    events_once_posted,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    passes,
    wait_until,
    written_of,
)
from valkey_operator.api.spec import parse_cluster
from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.plan import server_requirements

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def secret(namespace: str, name: str, data: dict[str, bytes]) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))


def leaf_for(namespace: str, ca: KeyPair) -> KeyPair:
    """A server certificate covering every name the example needs in `namespace`."""
    req = server_requirements(parse_cluster(example_body(namespace)))
    return issue_leaf(ca, LeafRequest(common_name="cache", dns_names=req.dns_names), NOW)


def external_body(namespace: str) -> dict[str, Any]:
    body = example_body(namespace)
    body["spec"]["tls"] = {"issuer": {"type": "External", "secretName": "my-certs"}}
    return body


def good_external(namespace: str) -> dict[str, bytes]:
    ca = mint_ca("external CA", NOW, timedelta(days=365))
    leaf = leaf_for(namespace, ca)
    return {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem}


WATCHED = (("secret", "cache-tls"), ("statefulset", "cache"), ("secret", "cache-connection"))


def snapshot(namespace: str) -> dict[str, str]:
    return written_of(namespace, WATCHED)


def refused(namespace: str, reason: str) -> dict[str, Any]:
    body = get_vkc(namespace)
    cond = condition(body, "CertificatesReady")
    assert cond.get("status") == "False", cond
    assert cond.get("reason") == reason, cond
    return body


def mismatched_key(namespace: str) -> dict[str, bytes]:
    data = good_external(namespace)
    ca = mint_ca("other", NOW, timedelta(days=365))
    data["tls.key"] = leaf_for(namespace, ca).key_pem
    return data


def expired(namespace: str) -> dict[str, bytes]:
    ca = mint_ca("external CA", NOW - timedelta(days=400), timedelta(days=3650))
    leaf = issue_leaf(
        ca,
        LeafRequest(
            "cache", server_requirements(parse_cluster(example_body(namespace))).dns_names, duration=timedelta(days=30)
        ),
        NOW - timedelta(days=100),
    )
    return {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem}


def missing_names(namespace: str) -> dict[str, bytes]:
    ca = mint_ca("external CA", NOW, timedelta(days=365))
    leaf = issue_leaf(ca, LeafRequest("cache", ("cache.example.com",)), NOW)
    return {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem}


def malformed(_: str) -> dict[str, bytes]:
    return {"tls.crt": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "tls.key": b"x"}


CASES: list[tuple[str, Callable[[str], dict[str, bytes]], str]] = [
    ("mismatched key", mismatched_key, "PrivateKeyMismatch"),
    ("expired", expired, "CertificateExpired"),
    ("missing names", missing_names, "CertificateMissingNames"),
    ("malformed", malformed, "CertificateInvalid"),
]


def test_missing_external_secret_creates_nothing(operator: Any, namespace: str) -> None:
    apply(external_body(namespace))
    body = wait_until(lambda: refused(namespace, "ExternalSecretNotFound"), what="ExternalSecretNotFound")
    assert body["status"]["phase"] == "Pending"
    assert snapshot(namespace) == {}
    events = events_once_posted(namespace, "reason=ExternalSecretNotFound", "my-certs")
    assert "my-certs" in events
    # Creating the Secret recovers, with the operator still running.
    secret(namespace, "my-certs", good_external(namespace))
    wait_until(lambda: condition(get_vkc(namespace), "CertificatesReady").get("status") == "True", what="recovery")
    assert "secret/cache-tls" in snapshot(namespace)


@pytest.mark.parametrize(("label", "make", "reason"), CASES, ids=[c[0] for c in CASES])
def test_broken_external_secret_on_a_running_cluster_changes_nothing(
    operator: Any, namespace: str, label: str, make: Callable[[str], dict[str, bytes]], reason: str
) -> None:
    good = good_external(namespace)
    secret(namespace, "my-certs", good)
    apply(external_body(namespace))
    wait_until(lambda: condition(get_vkc(namespace), "CertificatesReady").get("status") == "True", what="ready")
    wait_until(lambda: len(kubectl_json("get", "pods", "-n", namespace)["items"]) == 3, what="pods")
    before = snapshot(namespace)
    assert len(before) == len(WATCHED), before.keys()  # every watched object is there to compare
    pods_before = {p["metadata"]["uid"] for p in kubectl_json("get", "pods", "-n", namespace)["items"]}
    secret(namespace, "my-certs", make(namespace))
    body = wait_until(lambda: refused(namespace, reason), what=reason)
    assert body["status"]["phase"] == "Degraded"
    assert condition(body, "Degraded")["status"] == "True"
    events = events_once_posted(namespace, f"reason={reason}", reason)
    assert reason in events
    assert "PRIVATE KEY" not in events
    # Two more passes later, still nothing touched.
    start = passes(operator, namespace)
    wait_until(lambda: passes(operator, namespace) >= start + 2, what="two more passes of this cluster")
    assert snapshot(namespace) == before
    assert {p["metadata"]["uid"] for p in kubectl_json("get", "pods", "-n", namespace)["items"]} == pods_before
    # Fixing the Secret recovers, without restarting the operator.
    secret(namespace, "my-certs", good_external(namespace))
    wait_until(lambda: condition(get_vkc(namespace), "CertificatesReady").get("status") == "True", what="recovery")


def test_ca_issuer_without_key_is_refused(operator: Any, namespace: str) -> None:
    ca = mint_ca("user CA", NOW, timedelta(days=365))
    secret(namespace, "my-ca", {"tls.crt": ca.cert_pem})
    body = example_body(namespace)
    body["spec"]["tls"]["issuer"] = {"type": "CA", "secretName": "my-ca"}
    apply(body)
    wait_until(lambda: refused(namespace, "CAPrivateKeyMissing"), what="CAPrivateKeyMissing")
    assert snapshot(namespace) == {}
    secret(namespace, "my-ca", {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem})
    wait_until(lambda: condition(get_vkc(namespace), "CertificatesReady").get("status") == "True", what="recovery")
    issued = base64.b64decode(kubectl_json("get", "secret", "cache-tls", "-n", namespace)["data"]["tls.crt"])
    from valkey_operator.pki.validate import issued_by

    assert issued_by(issued, ca.cert_pem)
