"""What the handlers share: the adapters and the clock, built once, replaceable by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from valkey_operator import names, valkey_admin
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import Clock, SystemClock
from valkey_operator.conf.layout import POD_LAYOUT, Layout
from valkey_operator.k8s.client import Kube
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material
from valkey_operator.reconcile import PodTLS, Reconciler


def switchover(
    cluster: ValkeyCluster,
    material: Material,
    password: str | None,
    pod: str,
    target: str,
    layout: Layout = POD_LAYOUT,
) -> None:
    """FAILOVER from `pod` to `target` over TLS, verifying the pod's DNS name, then wait for the swap."""
    n = cluster.names
    with valkey_admin.connect(n.pod_fqdn(pod), layout.port, _creds(material, password)) as conn:
        valkey_admin.switchover(conn, n.pod_fqdn(target), layout.port)
        if not valkey_admin.wait_role(conn, "slave"):
            raise RuntimeError(f"{pod} did not hand the primary role to {target}")


def _creds(material: Material, password: str | None) -> valkey_admin.Credentials:
    return valkey_admin.Credentials(
        material.bundle, material.clients.get(CONNECTION_CLIENT) or material.server, password
    )


def served(
    cluster: ValkeyCluster, material: Material, password: str | None, pod: str, layout: Layout = POD_LAYOUT
) -> str:
    """The fingerprint `pod` serves, by a live handshake that verifies its DNS name."""
    return valkey_admin.served_fingerprint(cluster.names.pod_fqdn(pod), layout.port, _creds(material, password))


def hot_reload(
    cluster: ValkeyCluster, material: Material, password: str | None, pod: str, layout: Layout = POD_LAYOUT
) -> None:
    """CONFIG SET the certificate paths again on `pod`, so it re-reads the refreshed files."""
    with valkey_admin.connect(cluster.names.pod_fqdn(pod), layout.port, _creds(material, password)) as conn:
        valkey_admin.reload_tls(conn, layout.cert_file, layout.key_file, layout.ca_file)


@dataclass
class Runtime:
    clock: Clock = field(default_factory=SystemClock)
    timer_interval: float = float(os.environ.get("VALKEY_OPERATOR_TIMER_INTERVAL", "300"))
    rollout_interval: float = float(os.environ.get("VALKEY_OPERATOR_ROLLOUT_INTERVAL", "5"))
    watch_timeout: int = int(os.environ.get("VALKEY_OPERATOR_WATCH_TIMEOUT", "300"))
    cluster_domain: str = os.environ.get("VALKEY_OPERATOR_CLUSTER_DOMAIN", names.DEFAULT_CLUSTER_DOMAIN)
    _reconciler: Reconciler | None = None

    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            self._reconciler = Reconciler(
                Kube(), self.clock, switchover, self.cluster_domain, PodTLS(served, hot_reload)
            )
        return self._reconciler

    def reset(self, clock: Clock | None = None) -> None:
        """Tests: start over with a new clock (and fresh API credentials)."""
        self.clock = clock or SystemClock()
        self._reconciler = None


RUNTIME = Runtime()
