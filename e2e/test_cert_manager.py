"""Issuer CertManager on the real node, against cert-manager's real controller (e2e/cert_manager.py, run on
the host against the same API server) with a CA ClusterIssuer: the example (replication, 3 pods, mTLS) with
its certificates from cert-manager, Ready; a renewal asked of cert-manager as `cmctl renew` asks it rolls the
pods under the steady writer, and every acknowledged write is read back; then the issuer's CA is replaced
and the server's certificate renewed (the operator asks cert-manager for the others): both CAs are trusted
first, then the new certificates are served, then the old CA leaves the bundle.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from e2e import cert_manager
from e2e.conftest import (
    NAME,
    NS,
    ROOT,
    Creds,
    kubectl,
    pod_fqdn,
    pods,
    read_creds,
    secret,
    served_fingerprint,
    vkc,
    wait_for,
)
from e2e.faults import StatusWatch, under_writer
from e2e.node import Node
from valkey_operator.pki.inspect import describe_pem, split_pem
from valkey_operator.pki.issue import KeyPair, mint_ca
from valkey_operator.pki.validate import issued_by

ISSUER = "company-ca"
OVERLAP = "45s"  # each phase of the CA change lasts this long at least


def ca_issuer(node: Node, ca: KeyPair) -> None:
    """The CA ClusterIssuer, its CA in cert-manager's namespace (replaced in place for a CA change)."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": ISSUER, "namespace": cert_manager.CLUSTER_RESOURCES},
            "data": {k: base64.b64encode(v).decode() for k, v in (("tls.crt", ca.cert_pem), ("tls.key", ca.key_pem))},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": ISSUER},
            "spec": {"ca": {"secretName": ISSUER}},
        },
    ]
    kubectl(node, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def renew(node: Node, certificate: str) -> None:
    """What `cmctl renew` does: the Issuing condition set on the Certificate's status."""
    condition = {
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered",
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    patch = json.dumps([{"op": "add", "path": "/status/conditions/-", "value": condition}])
    kubectl(node, "patch", "certificate", certificate, "-n", NS, "--subresource=status", "--type=json", "-p", patch)


def serving(node: Node, creds: Creds) -> dict[str, str]:
    """The fingerprint each pod presents (a live handshake, its DNS name verified)."""
    return {
        p["metadata"]["name"]: served_fingerprint(creds, p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]))
        for p in pods(node)
    }


@pytest.fixture(scope="module")
def issued_cluster(
    node: Node, installed: None, valkey_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Creds, KeyPair]]:
    """cert-manager running, the CA ClusterIssuer, and the example with `issuer: CertManager`, Ready."""
    assert node.cluster.bins is not None
    log_path = tmp_path_factory.mktemp("cert-manager") / "controller.log"
    with (
        log_path.open("w") as log,
        cert_manager.running(str(node.cluster.bins / "kubectl"), node.cluster.kubeconfig, log),
    ):
        ca = mint_ca("company CA 1", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365))
        ca_issuer(node, ca)
        body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
        body["spec"]["image"], body["spec"]["imagePullPolicy"] = valkey_image, "Never"
        body["spec"]["tls"]["issuer"] = {"type": "CertManager", "issuerRef": {"name": ISSUER, "kind": "ClusterIssuer"}}
        body["spec"]["tls"]["certificates"]["caRotationOverlap"] = OVERLAP
        kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
        wait_for(
            lambda: vkc(node).get("status", {}).get("phase") == "Ready",
            "Ready with certificates from cert-manager",
            300,
        )
        try:
            yield read_creds(node, tmp_path_factory.mktemp("conn")), ca
        finally:
            if log_path.exists():
                print("\ncert-manager controller, last lines:\n" + "\n".join(log_path.read_text().splitlines()[-15:]))
            kubectl(node, "delete", "valkeycluster", NAME, "-n", NS, "--wait=true", "--timeout=170s", check=False)
            issued = [f"{NAME}-issued-{s}" for s in ("server", "client-app", "connection")]
            kubectl(node, "delete", "secret", *issued, "-n", NS, "--ignore-not-found", check=False)


def test_pods_serve_what_cert_manager_issued(node: Node, issued_cluster: tuple[Creds, KeyPair]) -> None:
    creds, ca = issued_cluster
    issued = secret(node, f"{NAME}-issued-server")["tls.crt"]
    assert issued_by(issued, ca.cert_pem)
    fingerprint = describe_pem(issued).fingerprint_sha256.replace(":", "").lower()
    assert set(serving(node, creds).values()) == {fingerprint}
    status = vkc(node)["status"]
    assert status["certificates"]["server"]["secretName"] == f"{NAME}-tls"
    assert {c["type"]: c["status"] for c in status["conditions"]}["CertificatesReady"] == "True"


def test_a_renewal_by_cert_manager_rolls_the_pods_under_load(
    node: Node, issued_cluster: tuple[Creds, KeyPair], operator_image: str
) -> None:
    creds, _ = issued_cluster
    before = secret(node, f"{NAME}-issued-server")["tls.crt"]

    def ask_cert_manager(watch: StatusWatch) -> None:
        renew(node, f"{NAME}-server")
        wait_for(lambda: secret(node, f"{NAME}-tls")["tls.crt"] != before, "the renewed certificate copied in", 120)

    report = under_writer(node, creds, operator_image, "cert-manager-renewal", ask_cert_manager)
    assert report["missing_count"] == 0, report
    renewed = secret(node, f"{NAME}-issued-server")["tls.crt"]
    assert renewed != before
    fingerprint = describe_pem(renewed).fingerprint_sha256.replace(":", "").lower()
    assert set(serving(node, creds).values()) == {fingerprint}


def test_a_ca_change_behind_the_issuer_overlaps_then_the_old_ca_leaves(
    node: Node, issued_cluster: tuple[Creds, KeyPair], tmp_path: Path
) -> None:
    _, old = issued_cluster
    new = mint_ca("company CA 2", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365))
    ca_issuer(node, new)
    # The server's certificate renewed by hand: the operator asks cert-manager for the others, which the old
    # CA signed (a status patch of each Certificate, under the chart's RBAC).
    renew(node, f"{NAME}-server")
    phases: dict[str, float] = {}
    bundles: dict[str, list[bytes]] = {}
    started = time.monotonic()

    def finished() -> bool:
        body = vkc(node)
        phase = (body["status"].get("certificates", {}).get("caRotation") or {}).get("phase")
        if phase and phase not in phases:
            phases[phase] = round(time.monotonic() - started, 1)
            bundles[phase] = [b.strip() for b in split_pem(secret(node, f"{NAME}-tls")["ca.crt"])]
            print(f"{phases[phase]:7.1f}s {phase}: {len(bundles[phase])} CA(s) in the bundle")
        return "Retiring" in phases and phase is None and body["status"].get("phase") == "Ready"

    wait_for(finished, "the CA change behind the issuer", 900)
    assert list(phases) == ["Trusting", "Reissuing", "Retiring"], phases
    assert bundles["Trusting"] == [old.cert_pem.strip(), new.cert_pem.strip()]  # both trusted first
    bundle = [b.strip() for b in split_pem(secret(node, f"{NAME}-tls")["ca.crt"])]
    assert bundle == [new.cert_pem.strip()]
    (tmp_path / "creds").mkdir()
    creds = read_creds(node, tmp_path / "creds")  # the connection Secret now: the new CA's certificate and bundle
    assert issued_by(secret(node, f"{NAME}-connection")["tls.crt"], new.cert_pem)
    for pod in pods(node):
        fqdn = pod_fqdn(pod["metadata"]["name"])
        assert "PONG" in creds.cli(pod["status"]["podIP"], fqdn, "PING")  # verified with the new CA alone
    served = secret(node, f"{NAME}-issued-server")["tls.crt"]
    assert issued_by(served, new.cert_pem)
    assert issued_by(secret(node, f"{NAME}-client-app")["tls.crt"], new.cert_pem)
    assert set(serving(node, creds).values()) == {describe_pem(served).fingerprint_sha256.replace(":", "").lower()}
    print(f"CA change phases at {phases} (overlap {OVERLAP})")
