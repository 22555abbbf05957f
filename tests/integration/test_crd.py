"""The CRD on a real API server: schema docs, defaults, and CEL rules refusing bad resources."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.conftest import get_vkc, kubectl, kubectl_json
from valkey_operator.api.rules import RULES

pytestmark = pytest.mark.integration


def test_explain_shows_field_docs(crd: None) -> None:
    out = kubectl("explain", "valkeycluster.spec.tls").stdout
    assert "TLS for clients, replication and the cluster bus." in out
    assert "clientAuth" in out
    out = kubectl("explain", "valkeycluster.spec.tls.certificates.renewBefore").stdout
    assert "Re-issue a leaf certificate when less than this is left" in out


def test_empty_spec_gets_every_default(crd: None, namespace: str) -> None:
    doc = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "empty", "namespace": namespace},
        "spec": {},
    }
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(doc))
    spec = get_vkc(namespace, "empty")["spec"]
    assert spec["mode"] == "replication"
    # replicas follows the mode (3 here): no schema default, status.replicas shows the count in force.
    assert "replicas" not in spec
    assert spec["image"] == "valkey/valkey:9.1"
    assert spec["tls"]["mode"] == "required"
    assert spec["tls"]["clientAuth"] == "required"
    assert spec["tls"]["replication"] is True
    assert spec["tls"]["protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert spec["tls"]["issuer"]["type"] == "SelfSigned"
    certs = spec["tls"]["certificates"]
    assert (certs["duration"], certs["renewBefore"], certs["warnBefore"], certs["caDuration"]) == (
        "2160h",
        "1440h",
        "1080h",
        "87600h",
    )
    assert certs["keyAlgorithm"] == "ECDSA-P256"
    assert spec["tls"]["rotation"]["strategy"] == "RollingRestart"
    assert spec["auth"]["enabled"] is True
    assert spec["persistence"]["enabled"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # Every cross-field rule's counterexample (api/rules.py): the API server's CEL refuses it with the
        # message the operator's Python check gives (tests/unit/api/test_rules.py), so the two agree.
        *[(dict(r.counterexample), r.message) for r in RULES if r.ok],
        ({"tls": {"certificates": {"duration": "90 days"}}}, "should match"),
        ({"tls": {"clientAuth": "sometimes"}}, "Unsupported value"),
    ],
)
def test_cel_and_schema_refuse_invalid_resources(crd: None, namespace: str, spec: dict[str, Any], message: str) -> None:
    doc = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": spec,
    }
    out = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert kubectl("get", "valkeycluster", "bad", "-n", namespace, check=False).returncode != 0


def test_mode_is_immutable_and_shards_may_go_down_as_well_as_up(crd: None, namespace: str) -> None:
    doc = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "imm", "namespace": namespace},
        "spec": {"mode": "cluster", "shards": 4},
    }
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(doc))
    out = kubectl(
        "patch",
        "valkeycluster",
        "imm",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"mode":"replication"}}',
        check=False,
    )
    assert out.returncode != 0
    assert "mode is immutable" in out.stderr
    # Fewer shards are drained by slot migration on Valkey 9.x; on 8.x the operator refuses with a condition
    # (the CRD cannot read the image's version). Below 3 stays refused here.
    kubectl("patch", "valkeycluster", "imm", "-n", namespace, "--type=merge", "-p", '{"spec":{"shards":3}}')
    kubectl("patch", "valkeycluster", "imm", "-n", namespace, "--type=merge", "-p", '{"spec":{"shards":5}}')
    out = kubectl(
        "patch", "valkeycluster", "imm", "-n", namespace, "--type=merge", "-p", '{"spec":{"shards":2}}', check=False
    )
    assert out.returncode != 0
    assert "shards must be at least 3" in out.stderr


def test_standalone_without_replicas_is_accepted(crd: None, namespace: str) -> None:
    """`replicas` defaults by mode: a user who wrote only `mode: standalone` is not told to fix it."""
    doc = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "solo", "namespace": namespace},
        "spec": {"mode": "standalone"},
    }
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(doc))
    assert "replicas" not in kubectl_json("get", "valkeycluster", "solo", "-n", namespace)["spec"]


def test_a_clients_acl_rules_and_the_status_that_confirms_them_are_kept(crd: None, namespace: str) -> None:
    """spec.tls.clients[].acl passes the schema; status.acl (the users and, per pod, the digest its ACL LIST
    is compared with) survives the API server's pruning: without it every pass would give the users again."""
    doc = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "users", "namespace": namespace},
        "spec": {"tls": {"clients": [{"name": "app", "acl": "~app:* %R~ro:* &news:* +@read +@write -flushall"}]}},
    }
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(doc))
    assert get_vkc(namespace, "users")["spec"]["tls"]["clients"][0]["acl"].startswith("~app:*")
    acl = {"digest": "0123456789abcdef", "users": ["app@users.x"], "pods": {"users-0": "fedcba9876543210"}}
    patch = yaml.safe_dump({"status": {"acl": acl}})
    # The object as the patch stored it (pruned): a GET afterwards could already show the next pass of the
    # operator another test runs, which watches every namespace and writes its own status.acl.
    stored = kubectl_json(
        "patch", "valkeycluster", "users", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )
    assert stored["status"]["acl"] == acl
    bad = {**doc, "metadata": {"name": "bad", "namespace": namespace}}
    bad["spec"] = {"tls": {"clients": [{"name": "app", "acl": "~app:* >secret"}]}}
    refused = kubectl("create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0
    assert "acl" in refused.stderr, refused.stderr
