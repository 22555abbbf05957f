"""kopf registration only: every event of a ValkeyCluster or of an object it owns asks the scheduler for
the same reconcile pass.

`registry(config)` registers the handlers with the intervals of that config; the Reconciler travels in
kopf's memo (built by the composition root, `valkey-operator run`, or by a test).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import kopf

from valkey_operator import metrics, names, pacing
from valkey_operator.clock import Clock
from valkey_operator.config import OperatorConfig
from valkey_operator.decide import needs_fast_look
from valkey_operator.handlers import kopf_fixes, kopf_logs, kopf_streams
from valkey_operator.handlers.kopf_diffbase import LeanDiffBase
from valkey_operator.handlers.pauses import Pauses
from valkey_operator.handlers.scheduler import Next, Scheduler
from valkey_operator.handlers.sweeps import Sweeps
from valkey_operator.k8s.cache import INDEXED, Cache, CachedKube, IndexKey, News, index_entries, resource_version
from valkey_operator.reconcile import Outcome, Reconciler

log = logging.getLogger(__name__)
_RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
# kopf's bookkeeping keys stay apart from the user-facing valkeyops.dev/ annotations, which must keep
# triggering handlers (valkeyops.dev/rotate-certificates is one).
KOPF_PREFIX = f"kopf.{names.GROUP}"


INSTANCE_LABEL = names.INSTANCE_LABEL
OWNED_LABELS: dict[str, Any] = {names.MANAGED_BY_LABEL: names.MANAGER, INSTANCE_LABEL: kopf.PRESENT}


def _issued_or_owned(value: str | None, **_: Any) -> bool:
    return value in (names.MANAGER, names.ISSUED_BY_CERT_MANAGER)


# Secrets: the operator's own, and those cert-manager writes for a cluster's Certificates (names.SECRETS_SELECTOR;
# those name their cluster by names.CLUSTER_LABEL).
SECRET_LABELS: dict[str, Any] = {names.MANAGED_BY_LABEL: _issued_or_owned}


def _labels(kind: str) -> dict[str, Any]:
    """kopf's own filter of a watched kind's objects (the API server filters by the same labels first)."""
    return SECRET_LABELS if kind == "Secret" else OWNED_LABELS


# The owned kinds a pass reads from kopf's indexes. Certificates' CRD may come after the operator: kopf
# watches it once it is served, and a pass asks the API server by name for any Certificate the index lacks.
INDEXED_RESOURCES = (
    ("pods", "Pod"),
    ("statefulsets.apps", "StatefulSet"),
    ("services", "Service"),
    ("configmaps", "ConfigMap"),
    ("poddisruptionbudgets.policy", "PodDisruptionBudget"),
    ("secrets", "Secret"),
    ("certificates.cert-manager.io", "Certificate"),
)
# Every kind the operator creates for each cluster is watched, so that a pod's loss, a restart or a hand
# edit starts a pass at once instead of at the next timer (filtered by the owner's labels). Issuer
# CertManager: a Certificate's status moves when cert-manager issues (kopf serves it once its CRD exists).
OWNED_RESOURCES = tuple(resource for resource, _ in INDEXED_RESOURCES)


DEBOUNCE = 0.25  # seconds: the owned-object events of one burst (a pass's own applies echoed) cost one pass
STOP_WAIT = 10.0  # seconds: on SIGTERM, how long the passes under way may take to finish


class Pacer:
    """The scheduler's pass: one reconcile, measured, its Events posted, and when the next one is due (the
    fast look's backoff step is kept per cluster)."""

    def __init__(self, reconciler: Reconciler, clock: Clock, config: OperatorConfig) -> None:
        self.reconciler = reconciler
        self.clock = clock
        self.config = config
        self.steps: dict[tuple[str, str], float] = {}
        self._random = random.Random()  # noqa: S311 - jitter, not a secret
        # After a pass that recorded roles: a role check within one interval, unless one is due sooner.
        self.arm_role_check: Callable[[tuple[str, str]], None] | None = None

    def __call__(self, key: tuple[str, str], reason: str, late: float) -> Next | None:
        outcome = _timed_pass(reason, key[0], key[1], self.reconciler, late)
        if outcome is None:
            self.steps.pop(key, None)
            return None  # gone
        if self.arm_role_check is not None and self.reconciler.has_roles(*key):
            self.arm_role_check(key)
        horizon = timedelta(seconds=self.config.timer_interval)
        pace = pacing.next_pass(
            retry_after=outcome.retry_after,
            wake_in=outcome.wake_in,
            fast=needs_fast_look(outcome.after, self.clock.now(), horizon),
            quiet=not outcome.actions and not outcome.status,
            step=self.steps.get(key, 0.0),
            pods_running=outcome.pods_running,
            fast_interval=self.config.rollout_interval,
            slow_interval=self.config.timer_interval,
            jitter=self._random.random(),
        )
        self.steps[key] = pace.step
        return Next(pace.delay, pace.prompt)

    def gone(self, key: tuple[str, str]) -> None:
        """The cluster was withdrawn (deleted, or this replica paused; after its pass when one ran): what its
        passes left behind (metric series, the pods' credentials and roles, the backoff step) goes."""
        self.steps.pop(key, None)
        metrics.forget(*key)
        self.reconciler.forget(*key)


class RoleCheck:
    """The role-check scheduler's run: whether the roles the last pass recorded still hold (a FAILOVER run
    by hand, or by an operator killed right after its own, or Valkey's own in a sharded cluster, changes no
    Kubernetes object), and a pass when they do not; the next check is due within one jittered interval.
    A cluster whose last pass recorded no roles is checked no more (the next pass that records some asks
    for a check again: Pacer)."""

    def __init__(self, reconciler: Reconciler, passes: Scheduler, interval: float) -> None:
        self.reconciler = reconciler
        self.passes = passes
        self.interval = interval
        self._random = random.Random()  # noqa: S311 - jitter, not a secret

    def next_in(self) -> float:
        """One interval, jittered by 10 % either way: a fleet admitted at once does not check at once."""
        return self.interval * (0.9 + 0.2 * self._random.random())

    def __call__(self, key: tuple[str, str], reason: str, late: float) -> float | None:
        holds = self.reconciler.role_holds(*key)
        if holds is None:
            return None
        if not holds:
            self.passes.request(key, "role-check", prompt=True)  # ahead of any backlog: roles moved
        return self.next_in()


def memo(
    reconciler: Reconciler, clock: Clock, config: OperatorConfig | None = None, cached: CachedKube | None = None
) -> kopf.Memo:
    """The operator-level memo (the pass, the clock, the schedulers every handler puts requests in: passes
    and role checks, this replica's pauses, and the cache the reconciler reads through `cached`, which
    kopf's indexes fill, with its sweeps after a re-list); kopf gives each ValkeyCluster a shallow copy of
    it, so they share them."""
    config = config or OperatorConfig()
    pacer = Pacer(reconciler, clock, config)
    news = News()
    cache = cached.cache if cached is not None else Cache()

    def on_pause() -> None:
        """Every cluster is forgotten, with what its passes left (metric series, credentials): a paused
        replica reports none; a pass under way has its own forgotten when it ends (`gone`)."""
        checks.forget_all()
        for key in scheduler.forget_all():
            pacer.gone(key)
        cache.pause()

    def on_watch_end(namespace: str | None) -> None:
        scheduler.forget_namespace(namespace)
        checks.forget_namespace(namespace)

    pauses = Pauses(on_pause, on_watch_end)
    scheduler = Scheduler(pacer, config.workers, gone=pacer.gone, paused=pauses.paused)
    role_check = RoleCheck(reconciler, scheduler, config.role_check_interval)
    checks = Scheduler(role_check, config.workers, paused=pauses.paused, name="valkey-role-check")
    pacer.arm_role_check = lambda key: checks.request(key, "roles recorded", role_check.next_in())
    return kopf.Memo(
        reconciler=reconciler,
        clock=clock,
        scheduler=scheduler,
        checks=checks,
        role_check=role_check,
        pauses=pauses,
        pacer=pacer,
        cache=cache,
        news=news,
        sweeps=Sweeps(functools.partial(_sweep, cached, news, scheduler)) if cached is not None else None,
    )


def _sweep(cached: CachedKube, news: News, scheduler: Scheduler, kind: str, namespace: str) -> None:
    """One kind's sweep in one namespace (handlers.sweeps): ghosts hidden, their news forgotten, and a pass
    for each cluster that had one (nothing else reports an object deleted while the watch was away)."""
    found, hid = cached.sweep(kind, namespace)
    news.keep(kind, namespace, found)
    for cluster in hid:
        scheduler.request((namespace, cluster), "sweep")


def _timed_pass(reason: str, namespace: str, name: str, reconciler: Reconciler, late: float) -> Outcome | None:
    """One pass, measured, its Events posted; None: the resource is gone."""
    started = time.perf_counter()
    metrics.PASS_DELAY.observe(late)
    try:
        outcome: Outcome | None = reconciler.reconcile(namespace, name)
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(reason, type(exc).__name__).inc()
        raise
    finally:
        took = time.perf_counter() - started
        metrics.RECONCILE_DURATION.labels(reason).observe(took)
    log.info("reconciled %s/%s (%s) in %.3f s, %.3f s after due", namespace, name, reason, took, late)
    if outcome is not None:
        for event in outcome.events:
            kopf.event(kopf.Body(cast(kopf.RawBody, dict(outcome.body))), type=event.type, reason=event.reason,
                       message=event.message)  # fmt: skip
    return outcome


def _key(body: kopf.Body) -> tuple[str, str]:
    meta = body.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def _register_indexes(reg: kopf.OperatorRegistry) -> None:
    """kopf's indexes the passes read (k8s.cache): filled before any ValkeyCluster handler runs."""
    for resource, kind in INDEXED_RESOURCES:

        @kopf.index(resource, registry=reg, id=INDEXED[kind], labels=_labels(kind))
        async def owned_index(body: kopf.Body, _kind: str = kind, **_: Any) -> dict[IndexKey, Any]:
            """The object as passes read it, by its name and by its cluster."""
            return index_entries(_kind, body)

    @kopf.index(*_RESOURCE, registry=reg, id=INDEXED[names.KIND])
    async def clusters_index(body: kopf.Body, **_: Any) -> dict[IndexKey, Any]:
        return index_entries(names.KIND, body)


def _register_watches(reg: kopf.OperatorRegistry) -> None:
    """The owned objects' events: each asks for a pass of its cluster."""
    for resource in OWNED_RESOURCES:

        @kopf.on.event(resource, registry=reg, labels=_labels(dict(INDEXED_RESOURCES)[resource]))
        async def owned_changed(
            namespace: str | None,
            labels: kopf.Labels,
            type: str | None,  # kopf's name
            body: kopf.Body,
            memo: kopf.Memo,
            _kind: str = dict(INDEXED_RESOURCES)[resource],
            **_: Any,
        ) -> None:
            """A pod deleted, restarted or turned unready, an owned object deleted or edited by hand: look
            within DEBOUNCE (failover reacts within a second; drift is repaired at once; the echoes of one
            pass's own writes cost one pass). An event that changes nothing passes read is no news. An
            object kopf re-listed (no event type) arms its kind's sweep in the namespace, and the
            ValkeyClusters' (whose own re-list no handler sees; watches re-list together after a pause)."""
            if not namespace:
                return
            memo.cache.observed(_kind, namespace, body["metadata"]["name"], resource_version(body))
            if type is None and memo.sweeps is not None:
                memo.sweeps.relisted(_kind, namespace)
                memo.sweeps.relisted(names.KIND, namespace)
            cluster = names.cluster_of(labels)
            if cluster and memo.news(_kind, type, body):
                memo.scheduler.request((namespace, cluster), "watch", DEBOUNCE)


def _register_cluster_handlers(reg: kopf.OperatorRegistry) -> None:
    """Which ValkeyClusters get passes and role checks, and a pass for each change of one."""

    @kopf.on.event(*_RESOURCE, registry=reg)
    async def cluster_seen(
        namespace: str | None, name: str | None, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        """The watch shows a ValkeyCluster (its index entry is stored by now): the record of a status patch
        it shows goes. Its first event (its creation, or the listing at the operator's start or after a
        pause) admits it: a pass now, and role checks once a pass has recorded roles.
        Its namespace is swept once the admissions settle: a namespace emptied while a watch was away
        re-lists nothing, and a cluster created again with the same name would read the old one's ghosts.
        Its deletion (from its deletionTimestamp on) forgets it, its metric series and the pass's memory
        of it (owned objects go with it through their owner references)."""
        if not namespace or not name:
            return
        key, meta = (namespace, name), body.get("metadata", {})
        uid = str(meta.get("uid") or "")
        if type == "DELETED" or meta.get("deletionTimestamp"):
            # Deleting (a foreground deletion lingers while the garbage collector removes its objects: a
            # pass then would create them again) or gone: only this object's entries go, not those of one
            # created again under the same name whose first event kopf handed over first.
            memo.scheduler.forget(key, uid)
            memo.checks.forget(key, uid)
            memo.pacer.gone(key)
            return
        memo.cache.observed(names.KIND, namespace, name, resource_version(body))
        memo.checks.admit(key, uid)  # its checks start after a pass recorded roles (Pacer)
        if not memo.scheduler.admit(key, uid):
            return
        # The first admission after a pause (every cluster was forgotten): kopf's indexes re-list without
        # holding the handlers back, so reads distrust them a while. Before the pass is asked for.
        memo.cache.resumed()
        memo.scheduler.request(key, "reconcile")
        if memo.sweeps is not None:  # a burst of admissions in a namespace costs one sweep of it
            for kind in INDEXED:
                memo.sweeps.relisted(kind, namespace)

    @kopf.on.update(*_RESOURCE, registry=reg)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """A changed spec, or an annotation such as valkeyops.dev/rotate-certificates: a pass now."""
        memo.scheduler.request(_key(body), "reconcile")


def registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler, registered with this config's intervals."""
    reg = kopf.OperatorRegistry()
    kopf_fixes.install()  # a deleted namespace must never stop the whole operator; one made at start is served
    kopf_streams.install()  # kopf holds watched objects without their managedFields
    kopf_logs.install()  # no line per watch event that a handler took in

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        # Progress and the last-handled spec live in annotations, not in status (the schema owns status).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
        settings.persistence.diffbase_storage = LeanDiffBase(prefix=KOPF_PREFIX)  # built for ValkeyClusters only
        # No handler needs a finalizer (owned objects go through their owner references; a deletion's
        # event forgets the rest). Earlier builds put this one on each ValkeyCluster for a kopf timer: named,
        # kopf removes it at the cluster's next event.
        settings.persistence.finalizer = f"{names.GROUP}/finalizer"
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = config.watch_timeout
        # The API server filters the owned kinds' watches: other pods, Services and ConfigMaps in the
        # namespace never reach the operator (kopf's `labels=` filter would drop them only after).
        for resource, kind in INDEXED_RESOURCES:
            settings.watching.label_selectors[resource] = names.watch_selector(kind)
        memo.cache.attach(kwargs)  # kopf's indexes, by name: filled before any ValkeyCluster handler runs
        # Before any watch starts (kopf's started flag): what kopf serves reaches the passes through them.
        kopf_streams.on_pauses(settings, memo.pauses.receive)
        kopf_streams.on_watch_end(settings, memo.pauses.watch_ended)
        memo.scheduler.start()
        memo.checks.start()

    @kopf.on.cleanup(registry=reg)
    def stop_passes(memo: kopf.Memo, **_: Any) -> None:
        """No pass starts once the operator is asked to stop: the queue is dropped, and the passes under
        way get up to STOP_WAIT s to finish (a pod's grace period is 30 s)."""
        if memo.sweeps is not None:
            memo.sweeps.cancel()
        memo.checks.stop()
        memo.scheduler.stop(wait=STOP_WAIT)

    @kopf.on.cleanup(registry=reg)
    async def stop_following_pauses(memo: kopf.Memo, **_: Any) -> None:
        await memo.pauses.stop()

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod, its service account; elsewhere the kubeconfig that KUBECONFIG names at login time."""
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info

    _register_cluster_handlers(reg)

    _register_watches(reg)
    _register_indexes(reg)

    return reg
