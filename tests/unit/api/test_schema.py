"""The CRD schema: described everywhere, defaults as the contract says, structural defaulting."""

from __future__ import annotations

from typing import Any

from valkey_operator.api.schema import apply_defaults, crd, spec_schema


def walk(schema: dict[str, Any], path: str = "spec") -> list[str]:
    """Paths of every schema node without a description."""
    missing = [] if schema.get("description") else [path]
    for key, sub in schema.get("properties", {}).items():
        missing += walk(sub, f"{path}.{key}")
    if "items" in schema:
        missing += walk(schema["items"], f"{path}[]")
    return missing


def test_every_spec_field_is_described() -> None:
    assert walk(spec_schema()) == []


def test_every_status_field_is_described() -> None:
    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert walk(status, "status") == []


def test_empty_spec_defaults_to_the_contract() -> None:
    spec = apply_defaults(spec_schema(), {})
    assert spec["image"] == "valkey/valkey:9.1"
    assert (spec["mode"], spec["shards"], spec["replicasPerShard"]) == ("replication", 3, 1)
    assert "replicas" not in spec  # it follows the mode (3 or 1): parse_spec fills it in
    assert spec["auth"] == {"enabled": True}
    assert spec["persistence"] == {"enabled": False, "size": "1Gi"}
    tls = spec["tls"]
    assert (tls["mode"], tls["clientAuth"], tls["replication"], tls["clusterBus"]) == (
        "required",
        "required",
        True,
        True,
    )
    assert tls["protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert tls["issuer"] == {"type": "SelfSigned"}
    assert tls["certificates"] == {
        "keyAlgorithm": "ECDSA-P256",
        "duration": "2160h",
        "renewBefore": "1440h",
        "warnBefore": "1080h",
        "caDuration": "87600h",
        "caRotationOverlap": "24h",
        "extraDNSNames": [],
        "extraIPAddresses": [],
    }
    assert tls["rotation"] == {"strategy": "RollingRestart"}
    assert tls["clients"] == []


def test_given_values_are_kept_and_nested_defaults_still_fill() -> None:
    spec = apply_defaults(
        spec_schema(), {"replicas": 5, "tls": {"mode": "preferred", "certificates": {"duration": "100h"}}}
    )
    assert spec["replicas"] == 5
    assert spec["tls"]["mode"] == "preferred"
    assert spec["tls"]["clientAuth"] == "required"
    assert spec["tls"]["certificates"]["duration"] == "100h"
    assert spec["tls"]["certificates"]["renewBefore"] == "1440h"


def test_defaults_are_not_shared_between_calls() -> None:
    a = apply_defaults(spec_schema(), {})
    a["tls"]["protocols"].append("x")
    assert apply_defaults(spec_schema(), {})["tls"]["protocols"] == ["TLSv1.2", "TLSv1.3"]


def test_crd_names_columns_and_status_subresource() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == "valkeyclusters.valkeyops.dev"
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "ValkeyCluster",
        "valkeyclusters",
        ["vkc"],
        ["valkey"],
    )
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Mode",
        "Ready",
        "TLS",
        "Cert-Expires",
        "Status",
        "Age",
    ]
