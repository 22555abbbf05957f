"""Issuer CertManager against cert-manager's real controller (built from its Go module, e2e/cert_manager.py)
on the real control plane, with a CA ClusterIssuer: issuance, a renewal cert-manager is asked for, what
cert-manager says when it cannot issue, and the first phase of a CA change behind the issuer. (Pods never
run here: no node. The roll under a writer and the whole CA change are e2e/test_cert_manager.py's.)

The first test runs before cert-manager is installed in the session (the `cert_manager` fixture installs it
at its first use, in the tests after it)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from tests.integration.conftest import (
    apply,
    condition,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    passes,
    wait_until,
)
from valkey_operator import names
from valkey_operator.api.spec import parse_cluster
from valkey_operator.pki.inspect import split_pem
from valkey_operator.pki.issue import KeyPair, mint_ca
from valkey_operator.pki.plan import server_requirements
from valkey_operator.pki.validate import issued_by, validate_leaf

pytestmark = pytest.mark.integration

CM_NS = "cert-manager"


@pytest.fixture(autouse=True)
def real_time(clock: Any) -> Iterator[list[timedelta]]:
    """The operator's clock follows the real one here, as cert-manager's does: the certificates it issues
    begin at the real now (the session's clock is a ManualClock other tests move). A test may put the
    operator ahead by the offset it sets in the list yielded."""
    stop = threading.Event()
    offset = [timedelta(0)]

    def tick() -> None:
        while not stop.is_set():
            clock.set(datetime.now(UTC) + offset[0])
            stop.wait(0.2)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield offset
    stop.set()
    thread.join(timeout=5)


def secret_bytes(namespace: str, name: str, key: str) -> bytes:
    return base64.b64decode(kubectl_json("get", "secret", name, "-n", namespace)["data"][key])


def certificates_ready(namespace: str) -> dict[str, Any]:
    return condition(get_vkc(namespace), "CertificatesReady")


def issued(namespace: str) -> dict[str, Any]:
    """CertificatesReady once it is True (what it says until then, on a timeout)."""
    cond = certificates_ready(namespace)
    assert cond.get("status") == "True", cond
    return cond


def ca_issuer(name: str, ca: KeyPair) -> None:
    """A CA ClusterIssuer whose CA lives in cert-manager's namespace, as cert-manager documents it."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": CM_NS},
        "data": {"tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)},
    }
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": {"ca": {"secretName": name}},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret, issuer]}))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cm_body(namespace: str, issuer: str, **ref: str) -> dict[str, Any]:
    body = example_body(namespace)
    body["spec"]["tls"]["issuer"] = {
        "type": "CertManager",
        "issuerRef": {"name": issuer, "kind": "ClusterIssuer", **ref},
    }
    return body


def renew(namespace: str, certificate: str) -> None:
    """What `cmctl renew` does: the Issuing condition set on the Certificate's status."""
    patch = [
        {
            "op": "add",
            "path": "/status/conditions/-",
            "value": {
                "type": "Issuing",
                "status": "True",
                "reason": "ManuallyTriggered",
                "message": "Certificate re-issuance manually triggered",
                "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
    ]
    kubectl(
        "patch",
        "certificate",
        certificate,
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps(patch),
    )


def certificates(namespace: str) -> list[dict[str, Any]]:
    return list(kubectl_json("get", "certificates", "-n", namespace)["items"])


def template_revision(namespace: str) -> str:
    sts = kubectl_json("get", "statefulset", "cache", "-n", namespace)
    return str(sts["spec"]["template"]["metadata"]["annotations"]["valkeyops.dev/tls-revision"])


def test_a_without_cert_manager_nothing_is_created(operator: Any, namespace: str) -> None:
    assert kubectl("get", "crd", "certificates.cert-manager.io", check=False).returncode != 0, (
        "cert-manager's CRDs are installed already: this test must run before the cert_manager fixture"
    )
    apply(cm_body(namespace, "company-ca"))
    cond = wait_until(
        lambda: (
            certificates_ready(namespace).get("reason") == "CertManagerNotInstalled" and certificates_ready(namespace)
        ),
        what="CertManagerNotInstalled",
    )
    assert cond["status"] == "False"
    assert "install cert-manager" in cond["message"]
    assert condition(get_vkc(namespace), "Ready")["status"] == "False"
    for kind in ("statefulsets", "secrets", "configmaps"):
        items = kubectl_json("get", kind, "-n", namespace, "-l", "app.kubernetes.io/instance=cache")["items"]
        assert items == [], (kind, [i["metadata"]["name"] for i in items])


def test_certificates_come_from_the_issuer_and_a_renewal_rolls(
    cert_manager: None, operator: Any, namespace: str
) -> None:
    issuer = f"ca-{uuid.uuid4().hex[:6]}"
    ca = mint_ca("company CA", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365))
    ca_issuer(issuer, ca)
    body = cm_body(namespace, issuer)
    apply(body)
    wait_until(lambda: issued(namespace), timeout=90, what="CertificatesReady")
    server = secret_bytes(namespace, "cache-tls", "tls.crt")
    assert issued_by(server, ca.cert_pem)
    cluster = parse_cluster(body)
    key = secret_bytes(namespace, "cache-tls", "tls.key")
    now = datetime.now(UTC)
    assert validate_leaf(server, key, ca.cert_pem, server_requirements(cluster), now) == []
    assert secret_bytes(namespace, "cache-tls", "ca.crt").strip() == ca.cert_pem.strip()
    # What cert-manager issued is what the pods get; the Certificates are the cluster's own.
    assert secret_bytes(namespace, "cache-issued-server", "tls.crt") == server
    for cert in kubectl_json("get", "certificates", "-n", namespace)["items"]:
        assert cert["metadata"]["ownerReferences"][0]["name"] == "cache", cert["metadata"]
    assert issued_by(secret_bytes(namespace, "cache-client-app", "tls.crt"), ca.cert_pem)
    assert issued_by(secret_bytes(namespace, "cache-connection", "tls.crt"), ca.cert_pem)
    status = get_vkc(namespace)["status"]
    assert status["certificates"]["server"]["notAfter"]
    # A renewal asked of cert-manager: a new certificate, copied in, a new revision for the pods.
    revision = template_revision(namespace)
    renew(namespace, "cache-server")
    wait_until(
        lambda: secret_bytes(namespace, "cache-tls", "tls.crt") != server, timeout=90, what="the renewed certificate"
    )
    wait_until(lambda: template_revision(namespace) != revision, what="a new revision for the pods")
    renewed = secret_bytes(namespace, "cache-tls", "tls.crt")
    assert renewed == secret_bytes(namespace, "cache-issued-server", "tls.crt")
    assert issued_by(renewed, ca.cert_pem)
    # valkeyops.dev/rotate-certificates: the operator asks cert-manager for every certificate (its status
    # patch, as cmctl renew), once; what cert-manager issues is copied in.
    client = secret_bytes(namespace, "cache-client-app", "tls.crt")
    kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "valkeyops.dev/rotate-certificates=one")
    wait_until(
        lambda: (
            secret_bytes(namespace, "cache-tls", "tls.crt") != renewed
            and secret_bytes(namespace, "cache-client-app", "tls.crt") != client
        ),
        timeout=90,
        what="every certificate issued again",
    )
    handled = kubectl_json("get", "secret", "cache-tls", "-n", namespace)["metadata"]["annotations"]
    assert handled["valkeyops.dev/handled-rotate-certificates"] == "one"
    revisions = {c["metadata"]["name"]: c["status"]["revision"] for c in certificates(namespace)}
    seen = passes(operator, namespace)
    wait_until(lambda: passes(operator, namespace) >= seen + 2, what="two more passes")  # none asks again
    assert {c["metadata"]["name"]: c["status"]["revision"] for c in certificates(namespace)} == revisions
    # A client removed from the spec: its Certificate goes (cert-manager would renew it for ever).
    body["spec"]["tls"]["clients"] = []
    apply(body)
    wait_until(
        lambda: sorted(c["metadata"]["name"] for c in certificates(namespace)) == ["cache-connection", "cache-server"],
        what="the removed client's Certificate deleted",
    )


@pytest.mark.parametrize(
    ("ref", "prepare", "reason", "said"),
    [
        ({"name": "nowhere"}, None, "IssuerNotFound", "ClusterIssuer nowhere"),
        # A CA issuer whose CA Secret does not exist: cert-manager says it is not ready, and why.
        ({"name": "no-ca-secret"}, "no-ca-secret", "IssuerNotReady", "no-ca-secret"),
        # An issuer of a group no controller here serves: cert-manager never issues. It is at work first
        # (CertificateIssuing, the copies kept, not Degraded), then stuck: its own words say so.
        ({"name": "x", "group": "issuers.example.com"}, None, "CertificateNotReady", "Certificate cache-server"),
    ],
)
def test_what_cert_manager_cannot_do_is_said_and_changes_nothing(
    cert_manager: None,
    operator: Any,
    namespace: str,
    real_time: list[timedelta],
    ref: dict[str, str],
    prepare: str | None,
    reason: str,
    said: str,
) -> None:
    issuer = f"ca-{uuid.uuid4().hex[:6]}"
    ca_issuer(issuer, mint_ca("company CA", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365)))
    apply(cm_body(namespace, issuer))
    wait_until(lambda: issued(namespace), timeout=90, what="CertificatesReady")
    server, sts = (
        secret_bytes(namespace, "cache-tls", "tls.crt"),
        kubectl_json("get", "statefulset", "cache", "-n", namespace),
    )
    if prepare:
        kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "ClusterIssuer",
                    "metadata": {"name": prepare},
                    "spec": {"ca": {"secretName": prepare}},
                }
            ),
        )
    apply(cm_body(namespace, ref["name"], **{k: v for k, v in ref.items() if k != "name"}))
    if reason == "CertificateNotReady":
        issuing = wait_until(
            lambda: certificates_ready(namespace).get("reason") == "CertificateIssuing" and get_vkc(namespace),
            timeout=60,
            what="CertificateIssuing",
        )
        assert condition(issuing, "Degraded")["status"] == "False", condition(issuing, "Degraded")
        assert secret_bytes(namespace, "cache-tls", "tls.crt") == server
        real_time[0] = timedelta(minutes=11)  # the operator's clock past STUCK_AFTER
    cond = wait_until(
        lambda: certificates_ready(namespace).get("reason") == reason and certificates_ready(namespace),
        timeout=60,
        what=reason,
    )
    assert cond["status"] == "False"
    assert said in cond["message"], cond["message"]
    assert condition(get_vkc(namespace), "Ready")["status"] == "False"
    assert condition(get_vkc(namespace), "Degraded")["reason"] == reason
    # Nothing that runs changed: the pods' Secret and template are as they were.
    assert secret_bytes(namespace, "cache-tls", "tls.crt") == server
    now = kubectl_json("get", "statefulset", "cache", "-n", namespace)
    assert now["spec"]["template"] == sts["spec"]["template"]


def test_a_ca_change_behind_the_issuer_is_trusted_before_it_is_used(
    cert_manager: None, operator: Any, namespace: str
) -> None:
    """The ClusterIssuer's CA replaced and cert-manager asked to re-issue the server's certificate: the new
    CA joins the bundle of every Secret while the pods keep the old CA's certificate (Trusting), and the
    operator asks cert-manager to re-issue the certificates the old CA signed. The next phases wait for the
    pods to run the bundle, which only a node shows (e2e)."""
    issuer = f"ca-{uuid.uuid4().hex[:6]}"
    old = mint_ca("company CA 1", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365))
    ca_issuer(issuer, old)
    apply(cm_body(namespace, issuer))
    wait_until(lambda: issued(namespace), timeout=90, what="CertificatesReady")
    server = secret_bytes(namespace, "cache-tls", "tls.crt")
    new = mint_ca("company CA 2", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365))
    ca_issuer(issuer, new)
    renew(namespace, "cache-server")  # the operator asks for the others: they chain to the old CA

    def trusting() -> bool:
        bundle = split_pem(secret_bytes(namespace, "cache-tls", "ca.crt"))
        return [b.strip() for b in bundle] == [old.cert_pem.strip(), new.cert_pem.strip()]

    wait_until(trusting, timeout=90, what="both CAs in the bundle")
    assert issued_by(secret_bytes(namespace, "cache-issued-server", "tls.crt"), new.cert_pem)
    assert secret_bytes(namespace, "cache-tls", "tls.crt") == server  # still the old CA's
    annotations = kubectl_json("get", "secret", "cache-tls", "-n", namespace)["metadata"]["annotations"]
    assert annotations["valkeyops.dev/ca-rotation-phase"] == "Trusting"
    client_bundle = split_pem(secret_bytes(namespace, "cache-client-app", "ca.crt"))
    assert [b.strip() for b in client_bundle] == [old.cert_pem.strip(), new.cert_pem.strip()]
    for secret in ("cache-issued-client-app", "cache-issued-connection"):
        wait_until(
            cast(Callable[[], bool], lambda s=secret: issued_by(secret_bytes(namespace, s, "tls.crt"), new.cert_pem)),
            timeout=60,
            what=f"{secret} re-issued from the new CA",
        )
    reasons = kubectl_json("get", "events", "-n", namespace)["items"]
    assert any(e["reason"] == "CertificateReissueRequested" for e in reasons)


def test_a_secret_cert_manager_would_overwrite_is_left_alone_and_named(
    cert_manager: None, operator: Any, namespace: str
) -> None:
    """A Secret with the name an issued Secret would have, that cert-manager did not write for this cluster's
    Certificate (another cluster's, a user's): no Certificate is created (cert-manager would overwrite it),
    and the condition names it."""
    issuer = f"ca-{uuid.uuid4().hex[:6]}"
    ca_issuer(issuer, mint_ca("company CA", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365)))
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cache-issued-server", "namespace": namespace}}
    kubectl("apply", "-f", "-", stdin=json.dumps({**theirs, "data": {"keep": _b64(b"theirs")}}))
    apply(cm_body(namespace, issuer))
    degraded = wait_until(
        lambda: (
            condition(get_vkc(namespace), "Degraded").get("reason") == "ObjectNotOwned"
            and condition(get_vkc(namespace), "Degraded")
        ),
        timeout=60,
        what="ObjectNotOwned",
    )
    assert degraded["message"].startswith("Secret cache-issued-server: already in namespace"), degraded["message"]
    assert kubectl_json("get", "certificates", "-n", namespace)["items"] == []
    assert secret_bytes(namespace, "cache-issued-server", "keep") == b"theirs"


class CountingKube:
    """The real Kube, counting the calls that reach the API server, by method."""

    def __init__(self) -> None:
        from valkey_operator.k8s.client import Kube

        self.kube = Kube()
        self.calls: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self.kube, attr)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{attr} {' '.join(str(a) for a in args[:4] if isinstance(a, str))}")
            return method(*args, **kwargs)

        return counted


def test_a_settled_pass_reads_from_memory_but_for_the_issuer(cert_manager: None, operator: Any, namespace: str) -> None:
    """Issuer CertManager: the Certificates, and the Secrets cert-manager writes for them (labelled through
    their secretTemplate as cert-manager's, for this cluster by valkeyops.dev/cluster: never as the operator's
    own, nor by app.kubernetes.io/instance), come from the
    operator's watches; only the user's issuer is asked for. A SelfSigned cluster beside it reads nothing at
    all, although cert-manager's CRDs are served."""
    from valkey_operator.k8s.cache import CachedKube
    from valkey_operator.reconcile import Reconciler
    from valkey_operator.valkey_admin import ValkeyAdmin

    issuer = f"ca-{uuid.uuid4().hex[:6]}"
    ca_issuer(issuer, mint_ca("company CA", datetime.now(UTC) - timedelta(minutes=5), timedelta(days=365)))
    apply(cm_body(namespace, issuer))
    apply(example_body(namespace, name="plain"))
    wait_until(lambda: issued(namespace), timeout=90, what="CertificatesReady")
    wait_until(lambda: get_vkc(namespace, "plain").get("status", {}).get("certificates"), what="plain's certificates")
    issued_secrets = [f"cache-issued-{role}" for role in ("server", "client-app", "connection")]
    for secret in issued_secrets:
        labels = kubectl_json("get", "secret", secret, "-n", namespace)["metadata"].get("labels") or {}
        assert names.issued_labels("cache").items() <= labels.items(), labels  # cert-manager adds its own
        assert names.INSTANCE_LABEL not in labels, labels  # GitOps tools track by it: these have no owner
    owned = kubectl_json("get", "secrets", "-n", namespace, "-l", names.OWNED_SELECTOR)["items"]
    assert not {s["metadata"]["name"] for s in owned} & set(issued_secrets), "read as the operator's own"
    counting = CountingKube()
    reconciler = Reconciler(CachedKube(counting, operator.reconciler.kube.cache), ValkeyAdmin(), operator.clock)

    def reads(name: str) -> list[str]:
        reconciler.reconcile(namespace, name)  # the first also fills this Kube's discovery: not counted
        counting.calls.clear()
        reconciler.reconcile(namespace, name)
        return sorted(c for c in counting.calls if c.split()[0] in ("get", "list", "listing"))

    issuer_get = [f"get {names.CERT_MANAGER_API} ClusterIssuer  {issuer}"]
    wait_until(lambda: reads("cache") == issuer_get, timeout=30, what=f"only the issuer read ({counting.calls})")
    wait_until(lambda: reads("plain") == [], timeout=30, what=f"nothing read ({counting.calls})")
