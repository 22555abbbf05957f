"""The operator's settings, read once at startup into a frozen value (tests build their own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from valkey_operator import names

ENV_TIMER_INTERVAL = "VALKEY_OPERATOR_TIMER_INTERVAL"
ENV_ROLLOUT_INTERVAL = "VALKEY_OPERATOR_ROLLOUT_INTERVAL"
ENV_WATCH_TIMEOUT = "VALKEY_OPERATOR_WATCH_TIMEOUT"
ENV_ROLE_CHECK_INTERVAL = "VALKEY_OPERATOR_ROLE_CHECK_INTERVAL"
ENV_CLUSTER_DOMAIN = "VALKEY_OPERATOR_CLUSTER_DOMAIN"
ENV_WORKERS = "VALKEY_OPERATOR_WORKERS"


@dataclass(frozen=True)
class OperatorConfig:
    timer_interval: float = 300.0  # the slow re-check of every cluster (certificates age without events)
    rollout_interval: float = 5.0  # while pods start or roll: the next step this often
    watch_timeout: int = 300  # kopf's server-side watch timeout
    # Replication: how often the recorded primary is asked whether it still is one (a FAILOVER run by hand,
    # or a primary cut off from the network, changes no Kubernetes object, so no event reports it). One TLS
    # round trip, no API call; together with its 2 s timeout, it bounds how long status can trail a cut.
    role_check_interval: float = 5.0
    cluster_domain: str = names.DEFAULT_CLUSTER_DOMAIN
    # Passes run at once across the fleet (threads): each mostly waits on the API server or a pod, so more
    # than the cores; passes of one cluster never overlap whatever the number.
    workers: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorConfig:
        """The settings the chart passes as environment variables; unset ones keep their defaults."""
        d = cls()
        return cls(
            timer_interval=float(env.get(ENV_TIMER_INTERVAL, d.timer_interval)),
            rollout_interval=float(env.get(ENV_ROLLOUT_INTERVAL, d.rollout_interval)),
            watch_timeout=int(env.get(ENV_WATCH_TIMEOUT, d.watch_timeout)),
            role_check_interval=float(env.get(ENV_ROLE_CHECK_INTERVAL, d.role_check_interval)),
            cluster_domain=env.get(ENV_CLUSTER_DOMAIN, d.cluster_domain),
            workers=max(1, int(env.get(ENV_WORKERS, d.workers))),
        )
