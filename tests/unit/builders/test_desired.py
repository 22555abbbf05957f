"""Desired objects: the contract's list, labels and owners, a hardened pod, mounts, connection Secret."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import CONTRACT_OBJECTS, NOW, check_golden, example_body
from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster, parse_cluster
from valkey_operator.builders.configmap import config_files, config_hash
from valkey_operator.builders.desired import Inputs, desired_objects
from valkey_operator.builders.statefulset import pod_template, statefulset
from valkey_operator.conf.layout import POD_LAYOUT
from valkey_operator.pki.plan import Observed, plan

GOLDEN = Path(__file__).parent / "golden"


def cluster(**spec: Any) -> ValkeyCluster:
    body = example_body(**spec)
    body["metadata"]["uid"] = "0000-uid"
    return parse_cluster(body)


def objects(c: ValkeyCluster | None = None) -> list[dict[str, Any]]:
    c = c or cluster()
    material = plan(c, Observed(), NOW).material
    assert material is not None
    return desired_objects(c, Inputs(material, "s3cret-password", layout=POD_LAYOUT))


def by_name(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_exactly_the_contract_objects() -> None:
    assert list(by_name(objects())) == CONTRACT_OBJECTS


def test_every_object_is_labelled_and_owned() -> None:
    for obj in objects():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "valkey"
        assert labels["app.kubernetes.io/instance"] == "cache"
        assert labels["app.kubernetes.io/managed-by"] == "valkey-tls-operator"
        assert labels["app.kubernetes.io/component"] in {"server", "ca", "tls", "config", "client"}
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "valkeyops.dev/v1alpha1",
            "kind": "ValkeyCluster",
            "name": "cache",
            "uid": "0000-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_pod_is_hardened_and_annotated() -> None:
    sts = by_name(objects())[("StatefulSet", "cache")]
    template = sts["spec"]["template"]
    assert template["metadata"]["annotations"]["valkeyops.dev/tls-revision"] == "1"
    assert len(template["metadata"]["annotations"]["valkeyops.dev/config-hash"]) == 16
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["exec"]["command"] == ["sh", "/etc/valkey/probe.sh", "readiness"]
    assert container["livenessProbe"]["exec"]["command"] == ["sh", "/etc/valkey/probe.sh", "liveness"]
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_secrets_are_mounted_as_directories_never_with_subpath() -> None:
    sts = by_name(objects())[("StatefulSet", "cache")]
    assert "subPath" not in yaml.safe_dump(sts)
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["tls"] == "/tls"
    assert mounts["config"] == "/etc/valkey"


def test_hot_reload_keeps_the_revision_off_the_template() -> None:
    c = cluster(tls={"rotation": {"strategy": "HotReload"}})
    annotations = statefulset(c, POD_LAYOUT, 7, "h")["spec"]["template"]["metadata"]["annotations"]
    assert "valkeyops.dev/tls-revision" not in annotations


def test_connection_secret_has_everything_an_application_needs() -> None:
    secret = by_name(objects())[("Secret", "cache-connection")]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["uri"] == "rediss://default:s3cret-password@cache.default.svc:6379"
    assert (data["host"], data["port"], data["tls"]) == ("cache.default.svc", "6379", "true")
    assert "BEGIN CERTIFICATE" in data["ca.crt"]
    assert "BEGIN CERTIFICATE" in data["tls.crt"]
    assert "PRIVATE KEY" in data["tls.key"]


def test_connection_secret_has_no_client_certificate_without_client_auth() -> None:
    secret = by_name(objects(cluster(tls={"clientAuth": "none"})))[("Secret", "cache-connection")]
    assert "tls.crt" not in secret["data"]


def test_no_key_material_outside_secret_data() -> None:
    for obj in objects():
        text = yaml.safe_dump({k: v for k, v in obj.items() if k != "data"} if obj["kind"] == "Secret" else obj)
        assert "PRIVATE KEY" not in text
        assert "s3cret-password" not in text


def test_services_select_by_role_in_replication_mode() -> None:
    objs = by_name(objects())
    assert objs[("Service", "cache")]["spec"]["selector"]["valkeyops.dev/role"] == "primary"
    assert objs[("Service", "cache-ro")]["spec"]["selector"]["valkeyops.dev/role"] == "replica"
    headless = objs[("Service", "cache-headless")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True


def test_cluster_mode_has_no_read_only_service_and_opens_the_bus() -> None:
    objs = by_name(objects(cluster(mode="cluster")))
    assert ("Service", "cache-ro") not in objs
    assert "valkeyops.dev/role" not in objs[("Service", "cache")]["spec"]["selector"]
    ports = {p["name"] for p in objs[("Service", "cache-headless")]["spec"]["ports"]}
    assert ports == {"valkey", "bus"}
    assert objs[("StatefulSet", "cache")]["spec"]["replicas"] == 6


def test_persistence_uses_claim_templates() -> None:
    sts = statefulset(cluster(persistence={"enabled": True, "size": "5Gi"}), POD_LAYOUT, 1, "h")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert "data" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}


def test_config_hash_changes_with_the_config_only() -> None:
    a = config_hash(config_files(cluster(), POD_LAYOUT))
    assert a == config_hash(config_files(cluster(), POD_LAYOUT))
    assert a != config_hash(config_files(cluster(tls={"clientAuth": "optional"}), POD_LAYOUT))


@pytest.mark.parametrize("name", ["statefulset.yaml"])
def test_golden_statefulset(name: str) -> None:
    text = yaml.safe_dump(statefulset(cluster(), POD_LAYOUT, 1, "0123456789abcdef"), sort_keys=False)
    check_golden(GOLDEN / name, text)


def _pod_spec(**spec: Any) -> dict[str, Any]:
    return dict(pod_template(parse_cluster(example_body(**spec)), POD_LAYOUT, 1, "x")["spec"])


def test_pods_prefer_different_nodes_unless_the_spec_says_otherwise() -> None:
    default = _pod_spec()["topologySpreadConstraints"]
    assert default == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": names.selector_labels("cache")},
        }
    ]
    zone = {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    mine = _pod_spec(topologySpreadConstraints=[zone])["topologySpreadConstraints"]
    assert mine == [{"labelSelector": default[0]["labelSelector"], **zone}]
    assert "topologySpreadConstraints" not in _pod_spec(topologySpreadConstraints=[])


@pytest.mark.parametrize(("mode", "replicas"), [("standalone", 1), ("replication", 3), ("cluster", 6)])
def test_the_snapshot_expects_exactly_the_listed_kinds_the_builders_make(mode: str, replicas: int) -> None:
    # gather looks up each expected name the label LISTs did not find (someone else's object shows only so):
    # the list must be the builders' own, in every mode.
    from valkey_operator.snapshot import LISTED_KINDS, expected_objects

    c = cluster(mode=mode, replicas=replicas)
    listed = {kind for _, kind in LISTED_KINDS}
    made = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects(c) if o["kind"] in listed}
    assert set(expected_objects(c)) == made


def test_the_connection_secret_says_when_a_cluster_client_is_needed() -> None:
    for mode, replicas, flag in (("replication", 3, b"false"), ("cluster", 6, b"true")):
        conn = by_name(objects(cluster(mode=mode, replicas=replicas)))[("Secret", "cache-connection")]
        data = {k: base64.b64decode(v) for k, v in conn["data"].items()}
        assert data["cluster"] == flag


@pytest.mark.parametrize(("mode", "replicas", "waits"), [("standalone", 1, False), ("replication", 3, True),
                                                          ("cluster", 6, True)])  # fmt: skip
def test_a_primary_being_deleted_waits_for_its_handover_where_there_are_replicas(
    mode: str, replicas: int, waits: bool
) -> None:
    sts = by_name(objects(cluster(mode=mode, replicas=replicas)))[("StatefulSet", "cache")]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert ("preStop" in container.get("lifecycle", {})) is waits
