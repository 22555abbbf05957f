"""kopf registration only: every event of a ValkeyCluster runs the same reconcile pass.

`registry(config)` registers the handlers with the intervals of that config; the Reconciler travels in
kopf's memo (built by the composition root, `valkey-operator run`, or by a test).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import kopf

from valkey_operator import metrics, names
from valkey_operator.clock import Clock
from valkey_operator.config import OperatorConfig
from valkey_operator.decide import needs_fast_look
from valkey_operator.reconcile import Reconciler

log = logging.getLogger(__name__)
_RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# kopf's bookkeeping keys stay apart from the user-facing valkeyops.dev/ annotations, which must keep
# triggering handlers (valkeyops.dev/rotate-certificates is one).
KOPF_PREFIX = f"kopf.{names.GROUP}"
NOT_YET = "not yet"


def memo(reconciler: Reconciler, clock: Clock) -> kopf.Memo:
    """The operator-level memo (the pass, and the clock the timers' filters read); kopf gives each
    ValkeyCluster a shallow copy of it."""
    return kopf.Memo(reconciler=reconciler, clock=clock)


class _QuietNotYet(logging.Filter):
    """'Not yet' is a reschedule, not a failure: kopf would log it as an error and post an Error Event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"failed temporarily: {NOT_YET}" not in record.getMessage()


def _pass(handler: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, next_look: float) -> None:
    """One pass; `next_look` is when this handler would run again anyway (its timer's interval)."""
    meta = body.get("metadata", {})
    # One pass at a time per ValkeyCluster: the memo is kopf's per-object copy, gone with the object.
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    with lock:
        started = time.perf_counter()
        try:
            outcome = memo.reconciler.reconcile(body)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(handler, type(exc).__name__).inc()
            raise
        finally:
            took = time.perf_counter() - started
            metrics.RECONCILE_DURATION.labels(handler).observe(took)
    log.info("reconciled %s/%s (%s) in %.3f s", meta.get("namespace"), meta.get("name"), handler, took)
    if outcome.status:
        patch.status.update(outcome.status)
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    delay = outcome.retry_after
    if delay is None and outcome.wake_in is not None and outcome.wake_in < next_look:
        # The clock makes work (a renewal falls due) before this handler would look again: wake up then.
        delay = max(outcome.wake_in, 1.0)
    if delay is not None:
        log.info("%s/%s: looking again in %.1f s", meta.get("namespace"), meta.get("name"), delay)
        raise kopf.TemporaryError(f"{NOT_YET}: looking again in {delay:.1f} s", delay=delay)


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
    def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        # No wake-up delay from a change handler: kopf would not run it again for a newer spec while it
        # waits. The fast timer below takes over what the clock brings soon.
        _pass("reconcile", body, patch, memo, 0.0)

    @kopf.timer(*_RESOURCE, registry=reg, interval=config.timer_interval, initial_delay=config.timer_interval, idle=5)
    def recheck(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        """Certificates age without any event: re-check them (and repair drift) on a timer."""
        _pass("timer", body, patch, memo, config.timer_interval)

    def converging(status: kopf.Status, memo: kopf.Memo, **_: Any) -> bool:
        # Pod readiness and the clock change no ValkeyCluster field, so no event would report them: poll
        # while pods start or roll, and while a renewal or a CA rotation's next phase is near.
        horizon = timedelta(seconds=config.timer_interval)
        return needs_fast_look(status, memo["clock"].now(), horizon)

    @kopf.timer(*_RESOURCE, registry=reg, interval=config.rollout_interval, when=converging)
    def advance_rollout(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        """While pods start or roll, take the next step (and report readiness) every few seconds instead of
        waiting for the slow timer."""
        _pass("rollout", body, patch, memo, config.rollout_interval)

    @kopf.on.delete(*_RESOURCE, registry=reg, optional=True)
    def forget(body: kopf.Body, **_: Any) -> None:
        """Owned objects go with the owner (ownerReferences); only our metrics need forgetting."""
        meta = body.get("metadata", {})
        metrics.forget(meta.get("namespace", ""), meta.get("name", ""))

    return reg
