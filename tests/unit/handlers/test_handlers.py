"""The handlers' glue: the pass the scheduler runs, and when it asks for the next one."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, cast

from valkey_operator.clock import ManualClock
from valkey_operator.config import OperatorConfig
from valkey_operator.handlers import Pacer, registry
from valkey_operator.handlers.scheduler import Next
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
    # Fast looks promise nothing (pod events bring the same news): they queue with admissions and news.
    assert [pacer(KEY, "watch", 0.0) for _ in range(4)] == [Next(d) for d in (5.0, 10.0, 20.0, 5.0)]


def test_a_settled_cluster_waits_for_the_jittered_slow_timer_and_the_gone_one_for_nothing() -> None:
    pacer = _pacer(_out(after={"phase": "Ready"}), _out(retry_after=0.5, after={"phase": "Ready"}), None)
    slow = pacer(KEY, "reconcile", 0.0)
    assert slow is not None
    assert 255.0 <= slow.delay <= 300.0
    assert not slow.prompt  # the slow timer promises nothing: it waits behind a backlog
    # A cut-off old primary that may come back: asked for, taken as is, and promised.
    assert pacer(KEY, "timer", 0.0) == Next(0.5, prompt=True)
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
        return lambda *args, **kw: self.calls.append((name, (*args, kw) if kw else args))


def test_an_event_of_a_secret_cert_manager_wrote_asks_for_a_pass_of_the_cluster_it_names() -> None:
    """The Secrets watch's handler, as kopf calls it: cert-manager's Secret names its cluster by its own
    label (no instance label), and a renewal there starts a pass of that cluster."""
    import asyncio

    import kopf

    from valkey_operator import names
    from valkey_operator.handlers import DEBOUNCE

    reg = registry(OperatorConfig())
    (handler,) = [h for h in reg._watching.get_all_handlers() if h.selector and h.selector.any_name == "secrets"]
    scheduler, cache = _Calls(), _Calls()
    memo = kopf.Memo(scheduler=scheduler, cache=cache, sweeps=None, news=lambda kind, type, body: True)
    labels = {**names.issued_labels("cache"), names.INSTANCE_LABEL: "someone-elses"}  # a policy's stamp
    body = {"metadata": {"name": "cache-client-app", "resourceVersion": "7", "labels": labels}}
    asyncio.run(
        cast(
            Coroutine[Any, Any, object],
            handler.fn(  # type: ignore[call-arg]
                namespace="ns", labels=labels, type="MODIFIED", body=cast(kopf.Body, body), memo=memo
            ),
        )
    )
    assert scheduler.calls == [("request", (("ns", "cache"), "watch", DEBOUNCE))]
    assert cache.calls == [("observed", ("Secret", "ns", "cache-client-app", "7"))]


class _Holds:
    """Stands in for the Reconciler's role check (real servers answer it in tests/acceptance and e2e)."""

    def __init__(self, holds: bool | None) -> None:
        self.holds = holds
        self.asked: list[tuple[str, str]] = []

    def role_holds(self, namespace: str, name: str) -> bool | None:
        self.asked.append((namespace, name))
        return self.holds


def test_a_role_check_asks_for_a_pass_only_when_the_recorded_roles_no_longer_hold() -> None:
    from valkey_operator.handlers import RoleCheck

    for holds, passes in ((True, []), (False, [("request", (KEY, "role-check", {"prompt": True}))])):
        scheduler = _Calls()
        check = RoleCheck(_Holds(holds), scheduler, interval=5.0)  # type: ignore[arg-type]
        nexts = [check(KEY, "timer", 0.0) for _ in range(50)]
        assert scheduler.calls == passes * 50
        assert all(n is not None and 4.5 <= n <= 5.5 for n in nexts)  # jittered: a fleet spreads out
        assert len(set(nexts)) > 1
    # No roles recorded (standalone, or not formed yet): no pass, and no next check until a pass records some.
    scheduler = _Calls()
    assert RoleCheck(_Holds(None), scheduler, interval=5.0)(KEY, "timer", 0.0) is None  # type: ignore[arg-type]
    assert scheduler.calls == []


class _RecordingReconciler(_Holds):
    """A pass that records a primary (or not) and a role check that says whether it still holds."""

    def __init__(self, holds: bool | None) -> None:
        super().__init__(holds)
        self.forgotten: list[tuple[str, str]] = []

    def reconcile(self, namespace: str, name: str) -> Outcome:
        return _out()

    def has_roles(self, namespace: str, name: str) -> bool:
        return self.holds is not None

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))


def test_a_pass_that_records_roles_arms_the_role_check_and_a_failed_check_asks_for_a_pass() -> None:
    """memo()'s wiring: the pacer, both schedulers and the role check, as the handlers use them (the
    schedulers are not started: each step is run by hand)."""
    from valkey_operator.handlers import memo

    for holds in (None, True, False):
        reconciler = _RecordingReconciler(holds)
        m = memo(reconciler, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), OperatorConfig())  # type: ignore[arg-type]
        assert m.scheduler.admit(KEY)
        assert m.checks.admit(KEY)
        m.pacer(KEY, "reconcile", 0.0)
        assert m.checks.pending() == (0 if holds is None else 1)  # armed once roles are recorded
        assert m.scheduler.pending() == 0
        if holds is not None:
            m.role_check(KEY, "roles recorded", 0.0)
            assert m.scheduler.pending() == (0 if holds else 1)  # a failover nobody told Kubernetes about


def test_a_pause_forgets_every_cluster_and_what_their_passes_left() -> None:
    from valkey_operator import metrics
    from valkey_operator.handlers import memo

    reconciler = _RecordingReconciler(True)
    m = memo(reconciler, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), OperatorConfig())  # type: ignore[arg-type]
    m.scheduler.admit(KEY)
    m.checks.admit(KEY)
    m.scheduler.request(KEY, "reconcile")
    m.checks.request(KEY, "roles recorded")
    metrics.record_cluster_ready(*KEY, True)
    ready = {"namespace": "ns", "cluster": "cache"}
    assert metrics.REGISTRY.get_sample_value("valkey_operator_cluster_ready", ready) == 1
    m.pauses._on_pause()
    assert len(m.scheduler) == 0
    assert len(m.checks) == 0
    assert reconciler.forgotten == [KEY]
    assert (
        metrics.REGISTRY.get_sample_value("valkey_operator_cluster_ready", ready) is None
    )  # a paused replica reports none
    assert not m.cache.covers("Pod")  # the indexes freeze: reads go to the API server until re-listed
    m.scheduler.admit(KEY)
    m.checks.admit(KEY)
    m.scheduler.admit(("other", "cache"))
    m.pauses.watch_ended("Pod", "ns")  # a pods watch: nothing
    assert len(m.scheduler) == 2
    m.pauses.watch_ended("ValkeyCluster", "ns")  # the operator stops, or a namespace goes
    assert len(m.scheduler) == 1
    assert len(m.checks) == 0
    m.pauses.watch_ended("ValkeyCluster", None)  # a cluster-wide watch
    assert len(m.scheduler) == 0


def _cluster_handler() -> Any:

    reg = registry(OperatorConfig())
    (handler,) = [h for h in reg._watching.get_all_handlers() if h.selector and h.selector.any_name == "valkeyclusters"]
    return handler


def test_a_clusters_first_event_admits_it_and_its_deletion_forgets_it() -> None:
    """The ValkeyCluster watch's handler, as kopf calls it: the first event (a creation, or the listing at
    start or after a pause) admits the cluster for passes and role checks and arms its namespace's sweep;
    its later events (its own status patches echoed) admit nothing again; a deletionTimestamp or DELETED
    forgets it, but only the object deleted: one created again under the same name stays."""
    import asyncio

    import kopf

    from valkey_operator.handlers.scheduler import Scheduler

    handler = _cluster_handler()
    scheduler, checks = Scheduler(lambda *_: None), Scheduler(lambda *_: None)  # not started: nothing runs
    cache, sweeps, pacer = _Calls(), _Calls(), _Calls()
    memo = kopf.Memo(scheduler=scheduler, checks=checks, cache=cache, sweeps=sweeps, pacer=pacer)

    def seen(type: str | None, rv: str, uid: str = "u1", **meta: Any) -> None:
        body = {"metadata": {"name": "cache", "namespace": "ns", "resourceVersion": rv, "uid": uid, **meta}}
        asyncio.run(handler.fn(namespace="ns", name="cache", type=type, body=body, memo=memo))

    seen(None, "1")  # the listing
    assert len(scheduler) == 1
    assert scheduler.pending() == 1
    assert len(checks) == 1
    assert checks.pending() == 0  # no roles recorded yet
    assert ("resumed", ()) in cache.calls
    assert ("relisted", ("Pod", "ns")) in sweeps.calls
    armed = len(sweeps.calls)
    seen("MODIFIED", "2")  # its own status patch, echoed: no second admission, no sweep
    assert len(sweeps.calls) == armed
    assert ("observed", ("ValkeyCluster", "ns", "cache", "2")) in cache.calls
    assert cache.calls.count(("resumed", ())) == 1  # at admission only: an event kopf hands over paused ends no pause
    seen("MODIFIED", "3", deletionTimestamp="2026-01-01T00:00:00Z")  # a foreground deletion lingers
    assert len(scheduler) == 0
    assert len(checks) == 0
    assert pacer.calls == [("gone", (("ns", "cache"),))]
    seen("MODIFIED", "4", deletionTimestamp="2026-01-01T00:00:00Z")  # still deleting: not admitted again
    assert len(scheduler) == 0
    seen("ADDED", "6", uid="u2")  # created again under the same name; kopf hands the old DELETED over after
    seen("DELETED", "5")
    assert len(scheduler) == 1
    assert len(checks) == 1
    seen("DELETED", "7", uid="u2")
    assert len(scheduler) == 0
    assert len(checks) == 0
