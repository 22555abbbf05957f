"""The contract's Prometheus metrics, and the one function that sets them from a reconcile's outcome."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from valkey_operator.report import CertTimes, Metrics

REGISTRY = CollectorRegistry(auto_describe=True)
_CERT = ["namespace", "cluster", "certificate"]

# The per-cluster gauges: one value each, kept compactly by _ClusterGauges and exposed on each scrape. A
# prometheus_client child per series costs about 600 bytes (an object, a lock, a value); at 1,000 clusters
# with a few certificates each that was about 11 MiB of the operator's memory (bench --census).
# A certificate's values come in this order: notAfter, notBefore, renewal, warning, ready.
_CERT_GAUGES = (
    (
        "valkey_operator_certificate_expiration_timestamp_seconds",
        "When the certificate expires (notAfter), as a Unix timestamp.",
    ),
    (
        "valkey_operator_certificate_not_before_timestamp_seconds",
        "When the certificate became valid (notBefore), as a Unix timestamp.",
    ),
    (
        "valkey_operator_certificate_renewal_timestamp_seconds",
        "When the operator will re-issue the certificate, as a Unix timestamp.",
    ),
    (
        "valkey_operator_certificate_warning_timestamp_seconds",
        "When the certificate passes its cluster's warnBefore (notAfter - warnBefore), as a Unix timestamp.",
    ),
    ("valkey_operator_certificate_ready_status", "1 when the certificate is valid and in use, else 0."),
)
_CLUSTER_READY = (
    "valkey_operator_cluster_ready",
    "1 when every pod serves the current configuration and certificates, else 0.",
)


class _ClusterGauges(Collector):
    """Each cluster's certificate gauges and its cluster_ready gauge, as plain values by cluster: a series
    exists once its value was set, keeps its last value until set again, and goes with forget()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # passes set values from their threads; a scrape reads from its own
        self._certs: dict[tuple[str, str], dict[str, list[float | None]]] = {}
        self._ready: dict[tuple[str, str], float] = {}

    def set_certificate(self, namespace: str, cluster: str, certificate: str, values: Sequence[float | None]) -> None:
        """A certificate's values, in _CERT_GAUGES' order; None keeps the last one given."""
        with self._lock:
            slots = self._certs.setdefault((namespace, cluster), {}).setdefault(certificate, [None] * len(values))
            for i, value in enumerate(values):
                if value is not None:
                    slots[i] = value

    def set_cluster_ready(self, namespace: str, cluster: str, value: float) -> None:
        with self._lock:
            self._ready[(namespace, cluster)] = value

    def forget(self, namespace: str, cluster: str) -> None:
        with self._lock:
            self._certs.pop((namespace, cluster), None)
            self._ready.pop((namespace, cluster), None)

    def describe(self) -> Iterator[Metric]:
        for name, doc in _CERT_GAUGES:
            yield GaugeMetricFamily(name, doc, labels=_CERT)
        yield GaugeMetricFamily(*_CLUSTER_READY, labels=["namespace", "cluster"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            certs = [(key, label, list(slots)) for key, per in self._certs.items() for label, slots in per.items()]
            ready = list(self._ready.items())
        families = [GaugeMetricFamily(name, doc, labels=_CERT) for name, doc in _CERT_GAUGES]
        for (namespace, cluster), label, slots in certs:
            for family, value in zip(families, slots, strict=True):
                if value is not None:
                    family.add_metric([namespace, cluster, label], value)
        yield from families
        cluster_ready = GaugeMetricFamily(*_CLUSTER_READY, labels=["namespace", "cluster"])
        for (namespace, cluster), value in ready:
            cluster_ready.add_metric([namespace, cluster], value)
        yield cluster_ready


GAUGES = _ClusterGauges()
REGISTRY.register(GAUGES)
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
        renewal, warning = (d.timestamp() if d is not None else None for d in (t.renewal, t.warning))
        values = (t.not_after.timestamp(), t.not_before.timestamp(), renewal, warning, 1 if t.ready else 0)
        GAUGES.set_certificate(namespace, cluster, label, values)


def record_not_ready(namespace: str, cluster: str, labels: list[str]) -> None:
    for label in labels:
        GAUGES.set_certificate(namespace, cluster, label, (None, None, None, None, 0))


def record_rotation(namespace: str, cluster: str, certificate: str, reason: str) -> None:
    ROTATIONS.labels(namespace, cluster, certificate, reason).inc()


def record_cluster_ready(namespace: str, cluster: str, ready: bool) -> None:
    GAUGES.set_cluster_ready(namespace, cluster, 1 if ready else 0)


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
    GAUGES.forget(namespace, cluster)
    for metric in (ROTATIONS, FAILOVERS):
        for labels in list(metric._metrics):
            if labels[:2] == (namespace, cluster):
                metric.remove(*labels)
