"""The contract's metrics exist with the contract's names and labels, and a deleted cluster is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from valkey_operator import metrics

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 4, 1, tzinfo=UTC)


def exposition() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_certificate_series_carry_namespace_cluster_certificate() -> None:
    metrics.record_certificates("apps", "m1", {"server": metrics.CertTimes(T0, T1, T0, True, T0)})
    labels = {"namespace": "apps", "cluster": "m1", "certificate": "server"}

    def value(name: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, labels)

    assert value("valkey_operator_certificate_expiration_timestamp_seconds") == T1.timestamp()
    assert value("valkey_operator_certificate_not_before_timestamp_seconds") == T0.timestamp()
    assert value("valkey_operator_certificate_renewal_timestamp_seconds") == T0.timestamp()
    assert value("valkey_operator_certificate_ready_status") == 1.0
    # The alert's own threshold: notAfter - this cluster's warnBefore.
    assert value("valkey_operator_certificate_warning_timestamp_seconds") == T0.timestamp()


def test_rotations_and_cluster_ready_and_reconcile_metrics_are_named_as_the_contract_says() -> None:
    metrics.record_rotation("apps", "m2", "client/app", "manual")
    metrics.record_cluster_ready("apps", "m2", True)
    metrics.RECONCILE_DURATION.labels("reconcile").observe(0.1)
    metrics.RECONCILE_ERRORS.labels("reconcile", "ApiException").inc()
    text = exposition()
    assert (
        'valkey_operator_certificate_rotations_total{certificate="client/app",cluster="m2",namespace="apps",'
        'reason="manual"} 1.0' in text
    )
    assert 'valkey_operator_cluster_ready{cluster="m2",namespace="apps"} 1.0' in text
    assert 'valkey_operator_reconcile_duration_seconds_count{handler="reconcile"}' in text
    assert 'valkey_operator_reconcile_errors_total{handler="reconcile",reason="ApiException"}' in text


def test_forget_drops_only_that_clusters_series() -> None:
    metrics.record_cluster_ready("apps", "gone", True)
    metrics.record_cluster_ready("apps", "kept", True)
    metrics.forget("apps", "gone")
    text = exposition()
    assert 'cluster="gone"' not in text
    assert 'valkey_operator_cluster_ready{cluster="kept",namespace="apps"} 1.0' in text


def test_a_time_not_known_now_keeps_its_last_value_and_one_never_known_has_no_series() -> None:
    labels = {"namespace": "apps", "cluster": "m3", "certificate": "server"}
    metrics.record_certificates("apps", "m3", {"server": metrics.CertTimes(T0, T1, T0, True)})
    metrics.record_certificates("apps", "m3", {"server": metrics.CertTimes(T0, T1, None, False)})
    assert metrics.REGISTRY.get_sample_value("valkey_operator_certificate_renewal_timestamp_seconds", labels) == (
        T0.timestamp()
    )
    assert metrics.REGISTRY.get_sample_value("valkey_operator_certificate_ready_status", labels) == 0.0
    assert metrics.REGISTRY.get_sample_value("valkey_operator_certificate_warning_timestamp_seconds", labels) is None


def test_a_certificate_not_ready_has_a_ready_series_of_0_alone() -> None:
    metrics.record_not_ready("apps", "m4", ["client/app"])
    text = exposition()
    assert (
        'valkey_operator_certificate_ready_status{certificate="client/app",cluster="m4",namespace="apps"} 0.0' in text
    )
    assert 'valkey_operator_certificate_expiration_timestamp_seconds{certificate="client/app",cluster="m4"' not in text


# The contract's help texts, as the prometheus_client Gauges gave them before the values moved.
GAUGE_HELP = {
    "valkey_operator_certificate_expiration_timestamp_seconds": "When the certificate expires (notAfter), as a Unix "
    "timestamp.",
    "valkey_operator_certificate_not_before_timestamp_seconds": "When the certificate became valid (notBefore), as a "
    "Unix timestamp.",
    "valkey_operator_certificate_renewal_timestamp_seconds": "When the operator will re-issue the certificate, as a "
    "Unix timestamp.",
    "valkey_operator_certificate_warning_timestamp_seconds": "When the certificate passes its cluster's warnBefore "
    "(notAfter - warnBefore), as a Unix timestamp.",
    "valkey_operator_certificate_ready_status": "1 when the certificate is valid and in use, else 0.",
    "valkey_operator_cluster_ready": "1 when every pod serves the current configuration and certificates, else 0.",
}


def test_the_per_cluster_gauges_are_exposed_as_gauges_with_their_help() -> None:
    text = exposition()
    for name, help_text in GAUGE_HELP.items():
        assert f"# TYPE {name} gauge\n" in text
        assert f"# HELP {name} {help_text}\n" in text
    assert {family.name for family in metrics.GAUGES.describe()} == set(GAUGE_HELP)


def test_forget_drops_the_certificate_series_too() -> None:
    metrics.record_certificates("apps", "gone2", {"server": metrics.CertTimes(T0, T1, T0, True, T0)})
    metrics.record_rotation("apps", "gone2", "server", "manual")
    metrics.forget("apps", "gone2")
    assert 'cluster="gone2"' not in exposition()
