"""Rotation on a real API server: by annotation and by a clock that makes renewal due.

Certificates are re-issued, Secrets updated, the pod template revision bumped, and the operator rolls
the pods through the real StatefulSet controller; conditions and metrics follow.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.conftest import (
    apply,
    condition,
    events_once_posted,
    example_body,
    get_vkc,
    handled_annotations,
    kubectl,
    kubectl_json,
    wait_until,
)

pytestmark = pytest.mark.integration


def server_cert(namespace: str) -> bytes:
    return base64.b64decode(kubectl_json("get", "secret", "cache-tls", "-n", namespace)["data"]["tls.crt"])


def template_revision(namespace: str) -> str:
    sts = kubectl_json("get", "statefulset", "cache", "-n", namespace)
    return str(sts["spec"]["template"]["metadata"]["annotations"]["valkeyops.dev/tls-revision"])


def pods_at_update_revision(namespace: str) -> bool:
    sts = kubectl_json("get", "statefulset", "cache", "-n", namespace)
    update = sts["status"].get("updateRevision")
    pods = kubectl_json("get", "pods", "-n", namespace)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return len(live) == 3 and all(p["metadata"]["labels"]["controller-revision-hash"] == update for p in live)


def ready_for_pods(namespace: str) -> dict[str, Any]:
    body = get_vkc(namespace)
    assert body.get("status", {}).get("certificates", {}).get("server"), body.get("status")
    return body


def rotations(namespace: str, reason: str, certificate: str = "server") -> float:
    from valkey_operator import metrics

    labels = {"namespace": namespace, "cluster": "cache", "certificate": certificate, "reason": reason}
    return metrics.REGISTRY.get_sample_value("valkey_operator_certificate_rotations_total", labels) or 0.0


def test_annotation_rotates_certificates_and_rolls_pods(operator: Any, namespace: str) -> None:
    apply(example_body(namespace))
    wait_until(lambda: ready_for_pods(namespace), what="provisioning")
    wait_until(lambda: pods_at_update_revision(namespace), what="pods created")
    old_cert, old_rev = server_cert(namespace), template_revision(namespace)
    old_update = kubectl_json("get", "statefulset", "cache", "-n", namespace)["status"]["updateRevision"]
    kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "valkeyops.dev/rotate-certificates=one")
    wait_until(lambda: server_cert(namespace) != old_cert, what="a new server certificate")
    assert int(template_revision(namespace)) == int(old_rev) + 1
    wait_until(
        lambda: kubectl_json("get", "statefulset", "cache", "-n", namespace)["status"]["updateRevision"] != old_update,
        what="the StatefulSet controller to see the new template",
    )
    wait_until(lambda: pods_at_update_revision(namespace), timeout=90, what="every pod on the new revision")
    assert rotations(namespace, "manual") == 1
    assert rotations(namespace, "manual", "client/app") == 1
    events = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=cache").stdout
    assert "CertificateRotated" in events
    # The same annotation value again is already handled: nothing more is issued.
    settled = server_cert(namespace)
    body = get_vkc(namespace)
    assert body["status"]["certificates"]["server"]["revision"] == int(old_rev) + 1
    kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "unrelated=touch")
    # Seen and handled by a pass (a changed resourceVersion alone is the test's own annotate).
    wait_until(lambda: handled_annotations(namespace).get("unrelated") == "touch", what="the pass that saw it")
    assert server_cert(namespace) == settled


def test_clock_makes_renewal_due_and_expiry_warns(operator: Any, namespace: str, clock: Any) -> None:
    from valkey_operator import metrics

    apply(example_body(namespace))
    body = wait_until(lambda: ready_for_pods(namespace), what="provisioning")
    old_cert, old_rev = server_cert(namespace), template_revision(namespace)
    labels = {"namespace": namespace, "cluster": "cache", "certificate": "server"}
    old_expiry = metrics.REGISTRY.get_sample_value("valkey_operator_certificate_expiration_timestamp_seconds", labels)
    assert old_expiry is not None
    before = rotations(namespace, "scheduled")
    try:
        # 50 days on: past renewalTime (30 days), and 40 days left is under warnBefore (45 days).
        clock.advance(timedelta(days=50))
        wait_until(lambda: server_cert(namespace) != old_cert, what="a scheduled re-issue")
        # The pass counts the rotation after it has applied the Secrets, so the count may trail the Secret.
        wait_until(lambda: rotations(namespace, "scheduled") >= before + 1, what="the rotation counted")
        assert rotations(namespace, "scheduled") == before + 1
        assert int(template_revision(namespace)) == int(old_rev) + 1
        new_expiry = metrics.REGISTRY.get_sample_value(
            "valkey_operator_certificate_expiration_timestamp_seconds", labels
        )
        assert new_expiry is not None
        assert new_expiry > old_expiry + 40 * 86400
        status = wait_until(
            lambda: (
                get_vkc(namespace)["status"]["certificates"]["server"]["notAfter"]
                != body["status"]["certificates"]["server"]["notAfter"]
            ),
            what="status to show the new expiry",
        )
        assert status
    finally:
        clock.advance(timedelta(days=-50))


def test_expiring_soon_condition_follows_the_clock(operator: Any, namespace: str, clock: Any) -> None:
    # renewBefore shorter than warnBefore: the warning shows before the operator renews.
    body = example_body(namespace)
    body["spec"]["tls"]["certificates"] = {"duration": "2160h", "renewBefore": "240h", "warnBefore": "1080h"}
    apply(body)
    wait_until(lambda: ready_for_pods(namespace), what="provisioning")
    try:
        clock.advance(timedelta(days=50))  # 40 days left < 45 days warnBefore, > 10 days renewBefore
        got = wait_until(
            lambda: (
                condition(get_vkc(namespace), "CertificateExpiringSoon").get("status") == "True" and get_vkc(namespace)
            ),
            what="CertificateExpiringSoon",
        )
        assert "server" in condition(got, "CertificateExpiringSoon")["message"]
        events = events_once_posted(namespace, "reason=CertificateExpiringSoon", "CertificateExpiringSoon")
        assert "CertificateExpiringSoon" in events
    finally:
        clock.advance(timedelta(days=-50))
    wait_until(
        lambda: condition(get_vkc(namespace), "CertificateExpiringSoon").get("status") == "False",
        what="the warning to clear",
    )
