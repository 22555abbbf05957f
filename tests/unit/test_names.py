"""Names, labels, DNS names."""

from __future__ import annotations

from valkey_operator import names
from valkey_operator.names import ClusterNames


def test_object_names_follow_the_contract() -> None:
    n = ClusterNames("cache", "apps")
    assert (n.ca_secret, n.tls_secret, n.client_secret("app"), n.auth_secret, n.connection_secret) == (
        "cache-ca",
        "cache-tls",
        "cache-client-app",
        "cache-auth",
        "cache-connection",
    )
    assert (n.config_map, n.service, n.ro_service, n.headless_service, n.statefulset, n.pdb) == (
        "cache-config",
        "cache",
        "cache-ro",
        "cache-headless",
        "cache",
        "cache",
    )


def test_server_names_cover_services_pods_and_localhost_once_each() -> None:
    n = ClusterNames("cache", "apps")
    got = n.server_dns_names(2, ("extra.example",))
    for name in (
        "cache",
        "cache.apps",
        "cache.apps.svc",
        "cache.apps.svc.cluster.local",
        "cache-ro.apps.svc",
        "cache-headless.apps.svc",
        "cache-0.cache-headless.apps.svc",
        "cache-1.cache-headless.apps.svc.cluster.local",
        "localhost",
        "extra.example",
    ):
        assert name in got
    assert len(got) == len(set(got))
    assert "cache-2.cache-headless.apps.svc" not in got


def test_labels() -> None:
    assert names.labels("cache", "tls") == {
        "app.kubernetes.io/name": "valkey",
        "app.kubernetes.io/instance": "cache",
        "app.kubernetes.io/managed-by": "valkey-tls-operator",
        "app.kubernetes.io/component": "tls",
    }
    assert names.selector_labels("cache").items() <= names.labels("cache", "server").items()
