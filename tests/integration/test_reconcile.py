"""The operator against a real API server: every contract object, status, idempotence, garbage collection,
a refused write."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tests.integration.conftest import (
    ROOT,
    apply,
    condition,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    passes,
    wait_until,
    written_of,
)

pytestmark = pytest.mark.integration

OWNED = [
    ("secret", "cache-ca"),
    ("secret", "cache-tls"),
    ("secret", "cache-client-app"),
    ("secret", "cache-auth"),
    ("secret", "cache-connection"),
    ("configmap", "cache-config"),
    ("service", "cache"),
    ("service", "cache-headless"),
    ("service", "cache-ro"),
    ("statefulset", "cache"),
    ("poddisruptionbudget", "cache"),
]


def provisioned(namespace: str) -> dict[str, Any]:
    body = get_vkc(namespace)
    assert body.get("status", {}).get("phase") in {"Provisioning", "Rotating", "Ready"}, body.get("status")
    return body


@pytest.fixture
def default_namespace(control_plane: Any) -> Iterator[str]:
    """The example names namespace `default`: apply it there, exactly as a user would, and clean up."""
    yield "default"
    kubectl("delete", "valkeycluster", "cache", "-n", "default", "--ignore-not-found")


def test_example_creates_every_owned_object_with_owner_references(operator: Any, default_namespace: str) -> None:
    namespace = default_namespace
    kubectl("apply", "-f", str(ROOT / "examples" / "valkeycluster.yaml"))
    body = wait_until(lambda: provisioned(namespace), what="status")
    uid = body["metadata"]["uid"]
    for kind, name in OWNED:
        obj = kubectl_json("get", kind, name, "-n", namespace)
        refs = obj["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == uid
        assert refs[0]["controller"] is True
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "valkey-tls-operator"
        assert labels["app.kubernetes.io/instance"] == "cache"
    status = body["status"]
    assert status["tls"] == {"mode": "required", "clientAuth": "required"}
    assert status["readyDisplay"] == "0/3"
    assert status["endpoints"]["primary"] == f"rediss://cache.{namespace}.svc:6379"
    assert status["connectionSecret"] == "cache-connection"
    server = status["certificates"]["server"]
    assert f"cache-0.cache-headless.{namespace}.svc" in server["dnsNames"]
    assert server["revision"] == 1
    assert condition(body, "CertificatesReady")["status"] == "True"
    assert condition(body, "CertificateExpiringSoon")["status"] == "False"
    assert condition(body, "Ready")["status"] == "False"  # no node runs the pods here
    # The printer columns, with real values.
    table = kubectl("get", "valkeyclusters", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODE", "READY", "TLS", "CERT-EXPIRES", "STATUS", "AGE"]
    row = table[1].split()
    assert row[:4] == ["cache", "replication", "0/3", "required"]
    assert row[4].startswith("20")  # the server certificate's notAfter, a timestamp
    assert row[5] == "Provisioning"
    wide = kubectl("get", "vkc", "-n", namespace, "-o", "custom-columns=E:.status.certificates.server.notAfter")
    assert wide.stdout.splitlines()[1].startswith("20")
    # The StatefulSet controller made the pods (they stay Pending without a node).
    wait_until(lambda: len(kubectl_json("get", "pods", "-n", namespace)["items"]) == 3, what="pods")


def test_a_second_reconcile_changes_nothing(operator: Any, namespace: str) -> None:
    apply(example_body(namespace))
    wait_until(lambda: provisioned(namespace), what="status")
    # Pods are created once; let the not-ready-outdated replacement settle first.
    wait_until(lambda: get_vkc(namespace)["status"]["phase"] == "Provisioning", what="rollout to settle")
    before = written_of(namespace, OWNED)
    assert len(before) == len(OWNED), before.keys()  # every owned object is there to compare

    start = passes(operator, namespace)
    wait_until(lambda: passes(operator, namespace) >= start + 3, what="three more passes of this cluster")
    assert written_of(namespace, OWNED) == before


def test_deleting_the_cluster_garbage_collects_everything(operator: Any, namespace: str) -> None:
    body = example_body(namespace)
    body["metadata"]["finalizers"] = ["valkeyops.dev/finalizer"]  # as earlier builds left each cluster
    apply(body)
    wait_until(lambda: provisioned(namespace), what="status")
    # No handler needs a finalizer now: kopf removes the old one, and adds none.
    wait_until(lambda: not get_vkc(namespace)["metadata"].get("finalizers"), what="the old finalizer to go")
    kubectl("delete", "valkeycluster", "cache", "-n", namespace, "--timeout=60s")

    def gone() -> bool:
        return all(kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0 for kind, name in OWNED)

    wait_until(gone, timeout=90, what="the garbage collector")


def _refuse_secret(namespace: str, secret: str, policy: str) -> None:
    """An admission policy that refuses to create one Secret of the namespace: the API server fails that
    write as it would for a quota, a webhook or an outage, and lets every other one through."""
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "ValidatingAdmissionPolicy",
                        "metadata": {"name": policy},
                        "spec": {
                            "failurePolicy": "Fail",
                            "matchConstraints": {
                                "resourceRules": [
                                    {
                                        "apiGroups": [""],
                                        "apiVersions": ["v1"],
                                        "operations": ["CREATE", "UPDATE"],
                                        "resources": ["secrets"],
                                    }
                                ]
                            },
                            "validations": [
                                {"expression": f"object.metadata.name != '{secret}'", "message": "refused by test"}
                            ],
                        },
                    },
                    {
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "ValidatingAdmissionPolicyBinding",
                        "metadata": {"name": policy},
                        "spec": {
                            "policyName": policy,
                            "validationActions": ["Deny"],
                            "matchResources": {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                            },
                        },
                    },
                ],
            }
        ),
    )

    wait_until(lambda: "refused by test" in (_refusal(namespace, secret) or ""), what="the policy to take effect")


def _refusal(namespace: str, secret: str) -> str | None:
    """What the API server says to creating the Secret (a dry run): None if it would be created."""
    probe = kubectl("create", "secret", "generic", secret, "-n", namespace, "--dry-run=server", check=False)
    return None if probe.returncode == 0 else probe.stderr


@pytest.fixture
def admission_policy(unwatched_namespace: str) -> Iterator[str]:
    """The name of the test's admission policy and binding, deleted however the test ends (cluster-scoped:
    the namespace's deletion would leave them)."""
    policy = f"refuse-{unwatched_namespace}"
    yield policy
    kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy, "--ignore-not-found")


def _secret_names(namespace: str) -> set[str]:
    items = kubectl_json("get", "secrets", "-n", namespace)["items"]
    return {s["metadata"]["name"] for s in items}


@pytest.mark.parametrize(
    ("refused", "before"),
    [
        ("cache-ca", set()),  # the first: nothing is written, not the password either
        ("cache-auth", {"cache-ca", "cache-tls", "cache-client-app"}),  # the connection Secret publishes it
    ],
)
def test_a_secret_whose_write_fails_stops_the_pass_before_everything_after_it(
    control_plane: Any, crd: None, unwatched_namespace: str, admission_policy: str, refused: str, before: set[str]
) -> None:
    """A pass writes a cluster's Secrets one after another (a CA before what it signs, the password before
    the connection Secret that publishes it). When the API server refuses one, the Secrets before it are
    written and nothing after it: no leaf of a CA that was not kept, no published password that was not,
    no ConfigMap, no StatefulSet; the condition names the object and the API server's reason. Once it is
    allowed, the next pass writes them all: the leaves signed by the CA written, the connection Secret's
    password the one kept."""
    from cryptography import x509

    from valkey_operator.clock import SystemClock
    from valkey_operator.k8s.cache import Cache, CachedKube
    from valkey_operator.k8s.client import Kube
    from valkey_operator.reconcile import Outcome, Reconciler
    from valkey_operator.valkey_admin import ValkeyAdmin

    namespace = unwatched_namespace
    reconciler = Reconciler(CachedKube(Kube(), Cache()), ValkeyAdmin(), SystemClock())
    _refuse_secret(namespace, refused, admission_policy)
    apply(example_body(namespace))
    outcome = cast(Outcome, reconciler.reconcile(namespace, "cache"))
    assert _secret_names(namespace) == before
    for kind, name in [("configmap", "cache-config"), ("statefulset", "cache")]:
        assert kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0, name
    degraded = [c for c in outcome.status["conditions"] if c["type"] == "Degraded"]
    assert degraded[0]["status"] == "True", degraded
    assert degraded[0]["message"].endswith(f"422 Invalid: secrets/{refused}"), degraded
    assert "refused by test" not in degraded[0]["message"], degraded  # admission's free text: it may quote values

    kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", admission_policy)

    wait_until(lambda: _refusal(namespace, refused) is None, what="the admission policy to go")
    reconciler.reconcile(namespace, "cache")
    assert {name for kind, name in OWNED if kind == "secret"} <= _secret_names(namespace)
    ca = x509.load_pem_x509_certificate(secret_bytes(namespace, "cache-ca", "tls.crt"))
    for leaf in ("cache-tls", "cache-client-app"):
        cert = x509.load_pem_x509_certificate(secret_bytes(namespace, leaf, "tls.crt"))
        cert.verify_directly_issued_by(ca)
    password = secret_bytes(namespace, "cache-auth", "password")
    assert secret_bytes(namespace, "cache-connection", "password") == password
    assert kubectl_json("get", "statefulset", "cache", "-n", namespace)["metadata"]["name"] == "cache"


def secret_bytes(namespace: str, name: str, key: str) -> bytes:
    return base64.b64decode(kubectl_json("get", "secret", name, "-n", namespace)["data"][key])
