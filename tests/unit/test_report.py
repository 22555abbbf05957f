"""What a pass reports about certificates: the status block, and the times the metrics export."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.conftest import NOW, example
from valkey_operator.pki.plan import Observed, plan
from valkey_operator.report import certificates


def test_each_certificate_warns_at_its_own_clusters_warn_before() -> None:
    for warn in ("1080h", "240h"):
        cluster = example(tls={"certificates": {"warnBefore": warn}})
        material = plan(cluster, Observed(), NOW).material
        assert material is not None
        report = certificates(cluster, material, NOW)
        for label, times in report.times.items():
            assert times.warning == times.not_after - cluster.spec.tls.certificates.warn_before, label
        assert set(report.times) == {"ca", "server", "client/app", "client/connection"}


def test_expiring_lists_certificates_inside_their_warning_window() -> None:
    cluster = example()
    material = plan(cluster, Observed(), NOW).material
    assert material is not None
    assert certificates(cluster, material, NOW).expiring == ()
    late = NOW + timedelta(days=50)  # 40 days left of 90, under the 45-day warnBefore
    assert "server" in certificates(cluster, material, late).expiring
    assert certificates(cluster, material, NOW).status["server"]["revision"] == 1
