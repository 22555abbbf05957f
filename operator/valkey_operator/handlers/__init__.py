"""kopf registration only: every event of a ValkeyCluster runs the same reconcile pass."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import kopf

from valkey_operator import metrics, names
from valkey_operator.handlers.runtime import RUNTIME

log = logging.getLogger(__name__)
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# kopf's bookkeeping keys stay apart from the user-facing valkeyops.dev/ annotations, which must keep
# triggering handlers (valkeyops.dev/rotate-certificates is one).
KOPF_PREFIX = f"kopf.{names.GROUP}"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and the last-handled spec live in annotations, not in status (the schema owns status).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    # Timers need a finalizer on each ValkeyCluster to stop cleanly; name it ours. Owned objects are
    # still removed by the garbage collector through their owner references.
    settings.persistence.finalizer = f"{names.GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = RUNTIME.watch_timeout


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, its service account; elsewhere the kubeconfig that KUBECONFIG names at login time."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    return info


def _pass(handler: str, body: kopf.Body, patch: kopf.Patch) -> None:
    meta = body.get("metadata", {})
    with _locks[meta.get("uid", "")]:
        started = time.perf_counter()
        try:
            outcome = RUNTIME.reconciler().reconcile(body)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(handler, type(exc).__name__).inc()
            raise
        finally:
            took = time.perf_counter() - started
            metrics.RECONCILE_DURATION.labels(handler).observe(took)
    log.info("reconciled %s/%s (%s) in %.3f s", meta.get("namespace"), meta.get("name"), handler, took)
    patch.status.update(outcome.status)
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.on.resume(*_RESOURCE)
@kopf.on.create(*_RESOURCE)
@kopf.on.update(*_RESOURCE)
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    _pass("reconcile", body, patch)


@kopf.timer(*_RESOURCE, interval=RUNTIME.timer_interval, initial_delay=RUNTIME.timer_interval, idle=5)
def recheck(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Certificates age without any event: re-check them (and repair drift) on a timer."""
    _pass("timer", body, patch)


def _converging(status: kopf.Status, **_: Any) -> bool:
    # Pod readiness changes no ValkeyCluster field, so no event would report it: poll while it matters.
    return bool(status.get("phase") in ("Provisioning", "Rotating"))


@kopf.timer(*_RESOURCE, interval=RUNTIME.rollout_interval, when=_converging)
def advance_rollout(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """While pods start or roll, take the next step (and report readiness) every few seconds instead of
    waiting for the slow timer."""
    _pass("rollout", body, patch)


@kopf.on.delete(*_RESOURCE, optional=True)
def forget(body: kopf.Body, **_: Any) -> None:
    """Owned objects go with the owner (ownerReferences); only our metrics need forgetting."""
    meta = body.get("metadata", {})
    metrics.forget(meta.get("namespace", ""), meta.get("name", ""))
