"""The contract's Prometheus metrics, and the one function that sets them from a reconcile's outcome."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from valkey_operator.report import CertTimes, Metrics

REGISTRY = CollectorRegistry(auto_describe=True)
_CERT = ["namespace", "cluster", "certificate"]

EXPIRATION = Gauge(
    "valkey_operator_certificate_expiration_timestamp_seconds",
    "When the certificate expires (notAfter), as a Unix timestamp.",
    _CERT,
    registry=REGISTRY,
)
NOT_BEFORE = Gauge(
    "valkey_operator_certificate_not_before_timestamp_seconds",
    "When the certificate became valid (notBefore), as a Unix timestamp.",
    _CERT,
    registry=REGISTRY,
)
RENEWAL = Gauge(
    "valkey_operator_certificate_renewal_timestamp_seconds",
    "When the operator will re-issue the certificate, as a Unix timestamp.",
    _CERT,
    registry=REGISTRY,
)
WARNING = Gauge(
    "valkey_operator_certificate_warning_timestamp_seconds",
    "When the certificate passes its cluster's warnBefore (notAfter - warnBefore), as a Unix timestamp.",
    _CERT,
    registry=REGISTRY,
)
READY = Gauge(
    "valkey_operator_certificate_ready_status",
    "1 when the certificate is valid and in use, else 0.",
    _CERT,
    registry=REGISTRY,
)
ROTATIONS = Counter(
    "valkey_operator_certificate_rotations_total",
    "Certificates re-issued, by reason (scheduled, manual, invalid, ca).",
    [*_CERT, "reason"],
    registry=REGISTRY,
)
FAILOVERS = Counter(
    "valkey_operator_failovers_total",
    "Primary role moves, by reason: primary-lost (a replica promoted), switchover (a planned handover).",
    ["namespace", "cluster", "reason"],
    registry=REGISTRY,
)
CLUSTER_READY = Gauge(
    "valkey_operator_cluster_ready",
    "1 when every pod serves the current configuration and certificates, else 0.",
    ["namespace", "cluster"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "valkey_operator_reconcile_duration_seconds",
    "Time spent in one reconcile pass.",
    ["handler"],
    registry=REGISTRY,
)
PASS_DELAY = Histogram(
    "valkey_operator_pass_delay_seconds",
    "How long after its due time a pass started (the queue's wait: the promised rhythm under load).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "valkey_operator_reconcile_errors_total",
    "Reconcile passes that failed, by reason.",
    ["handler", "reason"],
    registry=REGISTRY,
)


__all__ = ["CertTimes", "record"]


def record_certificates(namespace: str, cluster: str, certs: Mapping[str, CertTimes]) -> None:
    for label, t in certs.items():
        labels = (namespace, cluster, label)
        EXPIRATION.labels(*labels).set(t.not_after.timestamp())
        NOT_BEFORE.labels(*labels).set(t.not_before.timestamp())
        if t.renewal is not None:
            RENEWAL.labels(*labels).set(t.renewal.timestamp())
        if t.warning is not None:
            WARNING.labels(*labels).set(t.warning.timestamp())
        READY.labels(*labels).set(1 if t.ready else 0)


def record_not_ready(namespace: str, cluster: str, labels: list[str]) -> None:
    for label in labels:
        READY.labels(namespace, cluster, label).set(0)


def record_rotation(namespace: str, cluster: str, certificate: str, reason: str) -> None:
    ROTATIONS.labels(namespace, cluster, certificate, reason).inc()


def record_cluster_ready(namespace: str, cluster: str, ready: bool) -> None:
    CLUSTER_READY.labels(namespace, cluster).set(1 if ready else 0)


def record(namespace: str, cluster: str, values: Metrics) -> None:
    """Everything one pass decided to report."""
    record_certificates(namespace, cluster, values.certificates)
    record_not_ready(namespace, cluster, list(values.not_ready))
    for r in values.rotations:
        record_rotation(namespace, cluster, r.certificate, r.reason)
    record_cluster_ready(namespace, cluster, values.cluster_ready)
    for reason in values.failovers:
        FAILOVERS.labels(namespace, cluster, reason).inc()


def forget(namespace: str, cluster: str) -> None:
    """Drop every series of a deleted cluster, so dashboards do not show ghosts."""
    for metric in (EXPIRATION, NOT_BEFORE, RENEWAL, WARNING, READY, ROTATIONS, CLUSTER_READY, FAILOVERS):
        for labels in list(metric._metrics):
            if labels[:2] == (namespace, cluster):
                metric.remove(*labels)
