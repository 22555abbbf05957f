"""What the handlers share: the adapters and the clock, built once, replaceable by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from valkey_operator import names, valkey_admin
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import Clock, SystemClock
from valkey_operator.conf.layout import POD_LAYOUT
from valkey_operator.k8s.client import Kube
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material
from valkey_operator.reconcile import Reconciler


def switchover(
    cluster: ValkeyCluster, material: Material, password: str | None, pod: str, target: str, port: int = POD_LAYOUT.port
) -> None:
    """FAILOVER from `pod` to `target` over TLS, verifying the pod's DNS name, then wait for the swap."""
    n = cluster.names
    client = material.clients.get(CONNECTION_CLIENT) or material.server
    creds = valkey_admin.Credentials(material.bundle, client, password)
    with valkey_admin.connect(n.pod_fqdn(pod), port, creds) as conn:
        valkey_admin.switchover(conn, n.pod_fqdn(target), port)
        if not valkey_admin.wait_role(conn, "slave"):
            raise RuntimeError(f"{pod} did not hand the primary role to {target}")


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
            self._reconciler = Reconciler(Kube(), self.clock, switchover, self.cluster_domain)
        return self._reconciler

    def reset(self, clock: Clock | None = None) -> None:
        """Tests: start over with a new clock (and fresh API credentials)."""
        self.clock = clock or SystemClock()
        self._reconciler = None


RUNTIME = Runtime()
