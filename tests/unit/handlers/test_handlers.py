"""The handlers' glue: the pass the scheduler runs, and when it asks for the next one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from valkey_operator.clock import ManualClock
from valkey_operator.config import OperatorConfig
from valkey_operator.handlers import Pacer
from valkey_operator.reconcile import Outcome

KEY = ("ns", "cache")


class _Reconciler:
    """Stands in for the Reconciler: the pass itself is not run here, its outcomes are given in turn."""

    def __init__(self, *outcomes: Outcome | None) -> None:
        self.outcomes = list(outcomes)

    def reconcile(self, namespace: str, name: str) -> Outcome | None:
        return self.outcomes.pop(0)


def _pacer(*outcomes: Outcome | None) -> Pacer:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    return Pacer(_Reconciler(*outcomes), clock, OperatorConfig(timer_interval=300, rollout_interval=5))  # type: ignore[arg-type]


def _out(**kw: Any) -> Outcome:
    return Outcome(body={}, status=kw.pop("status", {}), **kw)


def test_pods_starting_are_looked_at_fast_and_quiet_looks_back_off() -> None:
    provisioning = {"phase": "Provisioning"}
    pacer = _pacer(
        _out(status=provisioning, after=provisioning),  # the first pass wrote status: fast
        _out(after=provisioning),  # quiet: 10 s
        _out(after=provisioning),  # quiet: 20 s
        _out(after=provisioning, actions=("x",)),  # it acted: fast again
    )
    assert [pacer(KEY, "watch", 0.0) for _ in range(4)] == [5.0, 10.0, 20.0, 5.0]


def test_a_settled_cluster_waits_for_the_jittered_slow_timer_and_the_gone_one_for_nothing() -> None:
    pacer = _pacer(_out(after={"phase": "Ready"}), _out(retry_after=0.5, after={"phase": "Ready"}), None)
    delay = pacer(KEY, "reconcile", 0.0)
    assert delay is not None
    assert 255.0 <= delay <= 300.0
    assert pacer(KEY, "timer", 0.0) == 0.5  # a cut-off old primary that may come back: asked for, taken as is
    assert pacer(KEY, "timer", 0.0) is None
    assert KEY not in pacer.steps


def test_the_secrets_watch_takes_the_operators_secrets_and_those_cert_manager_writes_for_a_cluster() -> None:
    from valkey_operator import names
    from valkey_operator.handlers import OWNED_LABELS, _labels

    accepts = _labels("Secret")[names.MANAGED_BY_LABEL]
    assert [accepts(v) for v in (names.MANAGER, names.ISSUED_BY_CERT_MANAGER, "cert-manager", None)] == [
        True,
        True,
        False,
        False,
    ]
    assert names.INSTANCE_LABEL not in _labels("Secret")  # cert-manager's name their cluster otherwise
    assert names.cluster_of(names.issued_labels("cache")) == "cache"
    assert names.cluster_of(names.owned_selector("cache")) == "cache"
    assert names.cluster_of({}) is None
    assert _labels("ConfigMap") is OWNED_LABELS
    assert names.watch_selector("Secret") == names.SECRETS_SELECTOR
    assert names.watch_selector("Pod") == names.OWNED_SELECTOR


class _Calls:
    """Records the calls made to it (a scheduler's or a cache's, as the watch handler makes them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


def test_an_event_of_a_secret_cert_manager_wrote_asks_for_a_pass_of_the_cluster_it_names() -> None:
    """The Secrets watch's handler, as kopf calls it: cert-manager's Secret names its cluster by its own
    label (no instance label), and a renewal there starts a pass of that cluster."""
    import asyncio

    import kopf

    from valkey_operator import names
    from valkey_operator.handlers import DEBOUNCE, registry

    reg = registry(OperatorConfig())
    (handler,) = [h for h in reg._watching.get_all_handlers() if h.selector and h.selector.any_name == "secrets"]
    scheduler, cache = _Calls(), _Calls()
    memo = kopf.Memo(scheduler=scheduler, cache=cache, sweeps=None, news=lambda kind, type, body: True)
    labels = {**names.issued_labels("cache"), names.INSTANCE_LABEL: "someone-elses"}  # a policy's stamp
    body = {"metadata": {"name": "cache-client-app", "resourceVersion": "7", "labels": labels}}
    asyncio.run(handler.fn(namespace="ns", labels=labels, type="MODIFIED", body=body, memo=memo))  # type: ignore[call-arg]
    assert scheduler.calls == [("request", (("ns", "cache"), "watch", DEBOUNCE))]
    assert cache.calls == [("observed", ("Secret", "ns", "cache-client-app", "7"))]
