"""Reads from the watches: the objects the operator owns and the ValkeyClusters, as kopf's indexes hold
them, with the operator's own writes laid over them until the watch reports them.

kopf fills one index per kind (handlers.registry registers them) before any pass runs, from watches the
API server filters by the project's labels; `CachedKube` answers a pass's reads from them and sends every
other call to the API server. A name a cluster expects but the index lacks (created by someone else,
without the labels, or not yet created) is still asked for by name: the ownership check needs the truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from valkey_operator import names
from valkey_operator.snapshot import LISTED_KINDS

log = logging.getLogger(__name__)
Object = dict[str, Any]
INSTANCE = names.INSTANCE_LABEL
OVERLAY_TTL = 30.0  # seconds: a write the watch has not shown by then sends reads of it to the API server
OVERLAY_LIMIT = 600.0  # seconds: ... until the watch shows it, or this long at most
RESUME_DISTRUST = 60.0  # seconds: after kopf resumes this replica, reads go to the API server this long
# kind -> the kopf index's name (the handler's name in handlers.registry)
INDEXED: Mapping[str, str] = {
    "Pod": "pods_index",
    "StatefulSet": "statefulsets_index",
    "Service": "services_index",
    "ConfigMap": "configmaps_index",
    "PodDisruptionBudget": "pdbs_index",
    "Secret": "secrets_index",
    names.KIND: "clusters_index",
}
_API_VERSIONS = {kind: api_version for api_version, kind in LISTED_KINDS} | {names.KIND: names.API_VERSION}
# Index keys: by cluster ("by", ns, instance) for a label LIST, by name ("name", ns, name) for a GET.
IndexKey = tuple[str, str, str]


class Index(Protocol):
    """What kopf.Index offers (read-only): key -> iterable store of values."""

    def __contains__(self, key: object) -> bool: ...
    def __getitem__(self, key: Any) -> Iterable[Any]: ...


def slim(kind: str, body: Mapping[str, Any]) -> Object:
    """What a pass reads of an object (kept in memory for each one): without managedFields, the
    last-applied annotation, and a pod's spec (pods are read for their metadata and status only)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        meta["annotations"] = {
            k: v for k, v in annotations.items() if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
    out: Object = {k: v for k, v in body.items() if k != "metadata"}
    out["metadata"] = meta
    if kind == "Pod":
        status = body.get("status") or {}
        out = {
            "apiVersion": body.get("apiVersion", "v1"),
            "kind": "Pod",
            "metadata": meta,
            "status": {
                **{k: status[k] for k in ("phase", "podIP") if k in status},
                # Decisions read a condition's type and status only: a kubelet's or scheduler's new message
                # or probe time is no news.
                "conditions": [
                    {"type": c.get("type"), "status": c.get("status")} for c in status.get("conditions") or []
                ],
            },
        }
    return out


class PodNews:
    """Which pod events can change a decision: those that change what passes read of a pod (its slim
    form). A pending pod's new scheduling message or a probe's time is no news, and costs no pass."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Object] = {}  # one per pod of the watched clusters

    def __call__(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._seen.pop(key, None)
            return True
        now = _without_rv(slim("Pod", body))
        if self._seen.get(key) == now:
            return False
        self._seen[key] = now
        return True


def _without_rv(obj: Object) -> Object:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def index_entries(kind: str, body: Mapping[str, Any]) -> dict[IndexKey, Object]:
    """A kopf index function's value for one object: the slim object under its name and, for an owned
    object, under its cluster."""
    meta = body.get("metadata") or {}
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    obj = slim(kind, body)
    out: dict[IndexKey, Object] = {("name", ns, name): obj}
    instance = (meta.get("labels") or {}).get(INSTANCE)
    if kind != names.KIND and instance:
        out[("by", ns, str(instance))] = obj
    return out


def _rv(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


def _instance(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else ((obj.get("metadata") or {}).get("labels") or {}).get(INSTANCE)


def _newest(objs: list[Object]) -> Object | None:
    """One name, several objects: an object deleted and created again while kopf's watch was away (kopf
    drops an index entry only on a DELETED event) leaves the old one beside the new; the newest counts."""
    if len(objs) < 2:
        return objs[0] if objs else None
    rvs = [_rv(o) or "" for o in objs]
    if all(rv.isdigit() for rv in rvs):
        return max(objs, key=lambda o: int(_rv(o) or 0))
    return objs[-1]


class StaleError(Exception):
    """The cache cannot answer for this object: ask the API server."""


@dataclass
class _Wrote:
    before: str | None  # the resourceVersion the write was made over (None: absent)
    after: Object | None  # the object the API server returned (None: deleted)
    at: float
    instance: str | None  # the cluster it belongs to (its instance label)


def _behind(seen: str | None, wrote: _Wrote) -> bool:
    """Whether the index still shows the object from before the write. resourceVersions are compared as
    numbers when both are (etcd's revisions; Kubernetes calls them opaque, so otherwise only equality
    counts): a change by someone else after the write then counts too, not only the write's own echo."""
    after = _rv(wrote.after)
    if seen and after and seen.isdigit() and after.isdigit():
        return int(seen) < int(after)
    return seen == wrote.before and seen != after


class Cache:
    """kopf's indexes for the cached kinds (attached at startup) and the operator's writes not yet seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._indexes: dict[str, Index] = {}
        self._wrote: dict[tuple[str, str, str], _Wrote] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._paused = False
        self._distrust_until = 0.0

    def attach(self, indices: Mapping[str, Any]) -> None:
        """kopf's indexes, by handler name (passed to the startup handler before they are filled)."""
        self._indexes = {kind: indices[name] for kind, name in INDEXED.items() if name in indices}

    def covers(self, kind: str) -> bool:
        return kind in self._indexes and not self._paused and self._clock() >= self._distrust_until

    def pause(self) -> None:
        """kopf paused this replica (another peer leads): its watches stopped, the indexes freeze."""
        self._paused = True

    def resumed(self) -> None:
        """kopf serves again: its watches re-list, but do not hold the handlers back this time, so for a
        while every read goes to the API server (a frozen index could hold hours-old roles and labels)."""
        if self._paused:
            self._paused = False
            self._distrust_until = self._clock() + RESUME_DISTRUST

    def _store(self, kind: str, key: IndexKey) -> list[Object]:
        index = self._indexes[kind]
        for _ in range(3):  # kopf changes a store in its own thread: a read that raced it is done again
            try:
                return list(index[key]) if key in index else []
            except (KeyError, RuntimeError):
                continue
        raise StaleError(f"{kind} {key}: the index kept changing during the read")

    def _laid_over(self, kind: str, ns: str, name: str, seen: Object | None) -> Object | None:
        """The object as the pass should read it: the index's, unless it still shows the state this operator
        wrote over (then what the write returned). A watch that has not shown the write for OVERLAY_TTL
        lags: StaleError."""
        key = (kind, ns, name)
        with self._lock:
            wrote = self._wrote.get(key)
            if wrote is None:
                return seen
            if _behind(_rv(seen), wrote):
                age = self._clock() - wrote.at
                if age < OVERLAY_TTL:
                    return wrote.after
                if age > OVERLAY_LIMIT:
                    del self._wrote[key]
                # The watch lags behind the operator's own write: the API server answers, until it catches up.
                raise StaleError(f"{kind} {ns}/{name}: the watch has not shown the operator's write yet")
            del self._wrote[key]  # the watch caught up (or someone changed it since): the index is the truth
            return seen

    def get(self, kind: str, ns: str, name: str) -> Object | None:
        return self._laid_over(kind, ns, name, _newest(self._store(kind, ("name", ns, name))))

    def list(self, kind: str, ns: str, instance: str) -> list[Object]:
        found = {str(o["metadata"]["name"]) for o in self._store(kind, ("by", ns, instance))}
        with self._lock:
            found |= {n for (k, wns, n), w in self._wrote.items() if (k, wns, w.instance) == (kind, ns, instance)}
        # Each name is read as a GET would read it (its own index entry, its own write): an object whose
        # label changed, or another cluster's write, never stands in for it.
        objs = (self.get(kind, ns, name) for name in sorted(found))
        return [o for o in objs if o is not None and _instance(o) == instance]

    def wrote(self, kind: str, ns: str, name: str, before: Object | None, after: Mapping[str, Any] | None) -> None:
        """The operator wrote `after` (None: deleted it) over `before` as the pass read it."""
        if kind not in self._indexes:
            return
        obj = slim(kind, after) if after is not None else None
        with self._lock:
            self._wrote[(kind, ns, name)] = _Wrote(_rv(before), obj, self._clock(), _instance(obj or before))

    def pending_writes(self) -> int:
        with self._lock:
            return len(self._wrote)


class API(Protocol):
    """The calls CachedKube passes on (k8s.client.Kube)."""

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list(
        self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[dict[str, Any]]: ...
    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> dict[str, Any] | None: ...
    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]: ...
    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool: ...
    def reissue_certificate(
        self, namespace: str, name: str, index: int | None, condition: Mapping[str, Any], resource_version: str
    ) -> None: ...


class CachedKube:
    """The pass's Kubernetes adapter with reads from the cache: a LIST of a cached kind by the owner's
    labels and a GET of an object the index holds cost no request; every write goes to the API server and
    is laid over the cache until the watch reports it. What the cache cannot answer (StaleError) is asked."""

    def __init__(self, kube: API, cache: Cache) -> None:
        self.kube = kube
        self.cache = cache

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache.covers(kind):
            try:
                found = self.cache.get(kind, namespace, name)
            except StaleError as exc:
                log.info("%s: asking the API server", exc)
            else:
                if found is not None:
                    return found
        return self.kube.get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        instance = selector.get(INSTANCE)
        if self.cache.covers(kind) and instance and dict(selector) == names.owned_selector(instance):
            try:
                return self.cache.list(kind, namespace, instance)
            except StaleError as exc:
                log.info("%s: asking the API server", exc)
        return self.kube.list(api_version, kind, namespace, selector)

    def _before(self, kind: str, namespace: str, name: str) -> Object | None:
        """The object as the pass read it, for the record of a write over it."""
        if not self.cache.covers(kind):
            return None
        try:
            return self.cache.get(kind, namespace, name)
        except StaleError:
            return self.kube.get(_API_VERSIONS.get(kind, "v1"), kind, namespace, name)

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        kind, meta = str(manifest["kind"]), manifest["metadata"]
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        before = self._before(kind, ns, name)
        out = self.kube.apply(manifest)
        self.cache.wrote(kind, ns, name, before, out)
        return out

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        before = self._before(kind, namespace, name)
        out = self.kube.delete(api_version, kind, namespace, name, uid)
        # A pod goes through Terminating: the API server returns it with its deletionTimestamp, and until
        # the watch says so it is read as that, never as a ready pod a rollout could count on.
        terminating = (
            out is not None and out.get("kind") == kind and (out.get("metadata") or {}).get("deletionTimestamp")
        )
        self.cache.wrote(kind, namespace, name, before, out if terminating else None)
        return out

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        self.delete("v1", "Pod", namespace, name, uid)

    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        before = self._before("Pod", namespace, name)
        out = self.kube.label_pod(namespace, name, labels)
        self.cache.wrote("Pod", namespace, name, before, out)
        return out

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        before = self._before(kind, namespace, name)
        out = self.kube.patch_status(api_version, kind, namespace, name, patch)
        self.cache.wrote(kind, namespace, name, before, out)
        return out

    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool:
        return self.kube.serves(api_version, kind, rediscover)

    def reissue_certificate(
        self, namespace: str, name: str, index: int | None, condition: Mapping[str, Any], resource_version: str
    ) -> None:
        self.kube.reissue_certificate(namespace, name, index, condition, resource_version)
