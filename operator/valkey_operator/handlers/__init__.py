"""kopf registration only: every event of a ValkeyCluster runs the same reconcile pass.

`registry(config)` registers the handlers with the intervals of that config; the Reconciler travels in
kopf's memo (built by the composition root, `valkey-operator run`, or by a test).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any, cast

import kopf

from valkey_operator import metrics, names
from valkey_operator.clock import Clock
from valkey_operator.config import OperatorConfig
from valkey_operator.decide import needs_fast_look
from valkey_operator.handlers.passes import Passes
from valkey_operator.reconcile import Outcome, Reconciler

log = logging.getLogger(__name__)
_RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# kopf's bookkeeping keys stay apart from the user-facing valkeyops.dev/ annotations, which must keep
# triggering handlers (valkeyops.dev/rotate-certificates is one).
KOPF_PREFIX = f"kopf.{names.GROUP}"
NOT_YET = "not yet"
WATCH_RETRY = 5.0  # seconds: a watch-started pass that failed is tried again this soon


# Kinds the operator creates for each cluster, watched so that a pod's loss, a restart or a hand edit
# starts a pass at once instead of at the next timer (kopf filters them by the owner's labels).
# Issuer CertManager: a Certificate's status moves when cert-manager issues (kopf serves it once its CRD exists).
OWNED_RESOURCES = (
    "pods",
    "statefulsets.apps",
    "services",
    "configmaps",
    "poddisruptionbudgets.policy",
    "certificates.cert-manager.io",
)
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


def memo(reconciler: Reconciler, clock: Clock) -> kopf.Memo:
    """The operator-level memo (the pass, the clock the timers' filters read, and the per-cluster pass
    runner); kopf gives each ValkeyCluster a shallow copy of it, so they share one runner."""
    return kopf.Memo(reconciler=reconciler, clock=clock, passes=Passes[Outcome | None]())


class _QuietNotYet(logging.Filter):
    """'Not yet' is a reschedule, not a failure: kopf would log it as an error and post an Error Event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"failed temporarily: {NOT_YET}" not in record.getMessage()


def _timed_pass(handler: str, namespace: str, name: str, memo: kopf.Memo) -> Outcome | None:
    """One pass (the caller holds the cluster's slot), measured, its Events posted; None: the resource is
    gone."""
    started = time.perf_counter()
    try:
        outcome: Outcome | None = memo.reconciler.reconcile(namespace, name)
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(handler, type(exc).__name__).inc()
        raise
    finally:
        took = time.perf_counter() - started
        metrics.RECONCILE_DURATION.labels(handler).observe(took)
    log.info("reconciled %s/%s (%s) in %.3f s", namespace, name, handler, took)
    if outcome is not None:
        for event in outcome.events:
            kopf.event(kopf.Body(cast(kopf.RawBody, dict(outcome.body))), type=event.type, reason=event.reason,
                       message=event.message)  # fmt: skip
    return outcome


def _one_pass(handler: str, namespace: str, name: str, memo: kopf.Memo) -> Outcome | None:
    """A kopf handler's pass: waits for a running pass of the cluster; None when that one covered it."""
    result: Outcome | None = memo.passes.run((namespace, name), lambda: _timed_pass(handler, namespace, name, memo))
    return result


def _delay(outcome: Outcome | None, next_look: float) -> float | None:
    """How soon to look again: a pass asked for it, or the clock makes work before `next_look`."""
    if outcome is None:
        return None
    if outcome.retry_after is not None:
        return outcome.retry_after
    if outcome.wake_in is not None and outcome.wake_in < next_look:
        return max(outcome.wake_in, 1.0)
    return None


def _pass(handler: str, body: kopf.Body, memo: kopf.Memo, next_look: float) -> None:
    """A kopf handler's pass; `next_look` is when this handler would run again anyway (its interval)."""
    meta = body.get("metadata", {})
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    delay = _delay(_one_pass(handler, namespace, name, memo), next_look)
    if delay is not None:
        log.info("%s/%s: looking again in %.1f s", namespace, name, delay)
        # kopf retries a timer only while its filter holds (the fast timer stops once the phase is Ready,
        # though the pass still wants a look: a cut-off old primary that may come back as a second one),
        # so the runner's own timer looks again too; passes of one cluster never overlap.
        memo.passes.later((namespace, name), delay, lambda: _watched_pass(namespace, name, memo))
        raise kopf.TemporaryError(f"{NOT_YET}: looking again in {delay:.1f} s", delay=delay)


def _watched_pass(namespace: str, name: str, memo: kopf.Memo) -> None:
    """A pass started by an owned object's change (never waiting for a running pass: that one runs again);
    its own "look again soon" is a timer of the runner."""
    key = (namespace, name)

    def run() -> None:
        try:
            delay = _delay(_timed_pass("watch", namespace, name, memo), float("inf"))
        except Exception:
            log.exception("%s/%s: a pass failed; trying again in %.0f s", namespace, name, WATCH_RETRY)
            delay = WATCH_RETRY
        if delay is not None:
            memo.passes.later(key, delay, lambda: _watched_pass(namespace, name, memo))

    memo.passes.request(key, run)


def registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler, registered with this config's intervals."""
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and the last-handled spec live in annotations, not in status (the schema owns status).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
        # Timers need a finalizer on each ValkeyCluster to stop cleanly; name it ours. Owned objects are
        # still removed by the garbage collector through their owner references.
        settings.persistence.finalizer = f"{names.GROUP}/finalizer"
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = config.watch_timeout
        logging.getLogger("kopf.objects").addFilter(_QuietNotYet())

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod, its service account; elsewhere the kubeconfig that KUBECONFIG names at login time."""
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info

    @kopf.on.resume(*_RESOURCE, registry=reg)
    @kopf.on.create(*_RESOURCE, registry=reg)
    @kopf.on.update(*_RESOURCE, registry=reg)
    def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # No wake-up delay from a change handler: kopf would not run it again for a newer spec while it
        # waits. The fast timer below takes over what the clock brings soon.
        _pass("reconcile", body, memo, 0.0)

    @kopf.timer(*_RESOURCE, registry=reg, interval=config.timer_interval, initial_delay=config.timer_interval, idle=5)
    def recheck(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """Certificates age without any event: re-check them (and repair drift) on a timer."""
        _pass("timer", body, memo, config.timer_interval)

    def converging(status: kopf.Status, memo: kopf.Memo, **_: Any) -> bool:
        # Pod readiness and the clock change no ValkeyCluster field, so no event would report them: poll
        # while pods start or roll, and while a renewal or a CA rotation's next phase is near.
        horizon = timedelta(seconds=config.timer_interval)
        return needs_fast_look(status, memo["clock"].now(), horizon)

    @kopf.timer(*_RESOURCE, registry=reg, interval=config.rollout_interval, when=converging)
    def advance_rollout(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """While pods start or roll, take the next step (and report readiness) every few seconds instead of
        waiting for the slow timer."""
        _pass("rollout", body, memo, config.rollout_interval)

    def has_primary(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
        mode = spec.get("mode", "replication")
        return (
            bool(status.get("primary")) if mode == "replication" else mode == "cluster" and bool(status.get("shards"))
        )

    @kopf.timer(*_RESOURCE, registry=reg, interval=config.role_check_interval, when=has_primary)
    def check_primary(
        name: str, namespace: str | None, spec: kopf.Spec, status: kopf.Status, memo: kopf.Memo, **_: Any
    ) -> None:
        """A FAILOVER run by hand (or by an operator killed right after its own, or Valkey's own in a sharded
        cluster) changes no Kubernetes object: ask the recorded primary (cluster: whether the primaries
        still serve the recorded slots), and run a pass when that no longer holds."""
        if not namespace:
            return
        if spec.get("mode", "replication") == "cluster":
            holds = memo.reconciler.shards_hold(namespace, name, list(status.get("shards") or []))
        else:
            holds = memo.reconciler.primary_holds(namespace, name, status["primary"])
        if not holds:
            _watched_pass(namespace, name, memo)

    for resource in OWNED_RESOURCES:

        @kopf.on.event(resource, registry=reg, labels={MANAGED_BY_LABEL: names.MANAGER, INSTANCE_LABEL: kopf.PRESENT})
        def owned_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
            """A pod deleted, restarted or turned unready, an owned object deleted or edited by hand: look
            now (failover reacts within seconds; drift is repaired at once)."""
            if namespace:
                _watched_pass(namespace, labels[INSTANCE_LABEL], memo)

    @kopf.on.delete(*_RESOURCE, registry=reg, optional=True)
    def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """Owned objects go with the owner (ownerReferences); only our metrics and the pass runner's slot
        need forgetting."""
        meta = body.get("metadata", {})
        metrics.forget(meta.get("namespace", ""), meta.get("name", ""))
        memo.passes.forget((meta.get("namespace", ""), meta.get("name", "")))
        memo.reconciler.forget(meta.get("namespace", ""), meta.get("name", ""))

    return reg
