"""Typed spec: parsing, and the Python checks refusing what the CEL rules refuse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.unit.conftest import example, example_body
from valkey_operator.api.spec import SpecError, parse_cluster, parse_spec


def test_example_parses() -> None:
    cluster = example()
    assert (cluster.name, cluster.namespace) == ("cache", "default")
    assert cluster.spec.pod_count == 3
    assert cluster.spec.tls.clients == ("app",)
    assert cluster.spec.tls.certificates.duration == timedelta(days=90)
    assert cluster.spec.tls.certificates.renew_before == timedelta(days=60)


def test_pod_count_per_mode() -> None:
    assert parse_spec({"mode": "standalone", "replicas": 1}).pod_count == 1
    # replicas defaults by mode: `mode: standalone` alone is valid (it was refused: the default was 3).
    assert parse_spec({"mode": "standalone"}).replicas == 1
    assert parse_spec({}).replicas == 3
    assert parse_spec({"mode": "cluster", "shards": 4, "replicasPerShard": 2}).pod_count == 12
    assert parse_spec({"replicas": 5}).pod_count == 5


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"mode": "cluster", "shards": 2}, "InvalidTopology"),
        ({"mode": "standalone", "replicas": 3}, "InvalidTopology"),
        ({"mode": "sharded"}, "InvalidValue"),
        ({"tls": {"clientAuth": "sometimes"}}, "InvalidValue"),
        ({"tls": {"protocols": ["TLSv1.1"]}}, "InvalidValue"),
        ({"tls": {"certificates": {"keyAlgorithm": "DSA"}}}, "InvalidValue"),
        ({"tls": {"certificates": {"duration": "90 days"}}}, "InvalidDuration"),
        (
            {"tls": {"certificates": {"duration": "100h", "renewBefore": "100h", "warnBefore": "10h"}}},
            "InvalidDuration",
        ),
        (
            {"tls": {"certificates": {"duration": "100h", "renewBefore": "10h", "warnBefore": "200h"}}},
            "InvalidDuration",
        ),
        ({"tls": {"certificates": {"duration": "90000h"}}}, "InvalidDuration"),
        ({"tls": {"certificates": {"extraIPAddresses": ["not-an-ip"]}}}, "InvalidIPAddress"),
        ({"tls": {"issuer": {"type": "CA"}}}, "IssuerSecretMissing"),
        ({"tls": {"issuer": {"type": "CertManager"}}}, "IssuerRefMissing"),
        (
            {"tls": {"issuer": {"type": "External", "secretName": "x"}, "clients": [{"name": "a"}]}},
            "ClientsWithExternalIssuer",
        ),
        ({"failover": {"after": "500ms"}}, "InvalidDuration"),
        ({"failover": {"after": "11m"}}, "InvalidDuration"),
        ({"replication": {"minReplicasToWrite": 3}}, "InvalidReplication"),
        ({"replicas": 2, "replication": {"minReplicasToWrite": 2}}, "InvalidReplication"),
        ({"mode": "standalone", "replication": {"minReplicasToWrite": 1}}, "InvalidReplication"),
        (
            {"mode": "cluster", "replicasPerShard": 1, "replication": {"minReplicasToWrite": 2}},
            "InvalidReplication",
        ),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(spec)
    assert exc.value.reason == reason
    assert exc.value.message.endswith(".")


def test_failover_and_write_safety_settings_parse() -> None:
    spec = parse_spec({"failover": {"enabled": False, "after": "1m30s"}, "replication": {"minReplicasToWrite": 2}})
    assert (spec.failover.enabled, spec.failover.after.total_seconds()) == (False, 90.0)
    assert (spec.replication.min_replicas_to_write, spec.replication.max_lag_seconds) == (2, 10)
    assert parse_spec({}).failover.after.total_seconds() == 5.0


def test_parse_cluster_reads_identity_and_annotations() -> None:
    body = example_body()
    body["metadata"].update(uid="u-1", generation=4, annotations={"valkeyops.dev/rotate-certificates": "now"})
    cluster = parse_cluster(body)
    assert (cluster.uid, cluster.generation) == ("u-1", 4)
    assert cluster.annotations["valkeyops.dev/rotate-certificates"] == "now"


def test_namespace_defaults_to_default() -> None:
    body = example_body()
    del body["metadata"]["namespace"]
    assert parse_cluster(body).namespace == "default"


def test_a_value_ending_in_a_newline_is_refused_as_the_api_server_refuses_it() -> None:
    """Go's `$` (the API server's) ends the text; Python's would also match before a final newline."""
    with pytest.raises(SpecError, match="should match"):
        parse_spec({"image": "valkey/valkey:9.1\n"})
    assert parse_spec({"image": "valkey/valkey:9.1"}).image == "valkey/valkey:9.1"
