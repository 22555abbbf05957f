"""Reads from the watches: the objects the operator owns and the ValkeyClusters, as kopf's indexes hold
them, with the operator's own writes laid over them until the watch reports them.

kopf fills one index per kind (handlers.registry registers them) before any pass runs, from watches the
API server filters by the project's labels; `CachedKube` answers a pass's reads from them and sends every
other call to the API server. A name a cluster expects but the index lacks (created by someone else,
without the labels, or not yet created) is still asked for by name: the ownership check needs the truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from valkey_operator import names

Object = dict[str, Any]
INSTANCE = "app.kubernetes.io/instance"
OVERLAY_TTL = 30.0  # seconds: a write the watch never reported is forgotten after this
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
            "status": {k: status[k] for k in ("phase", "podIP", "conditions") if k in status},
        }
    return out


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


def _behind(seen: str | None, wrote: _Wrote) -> bool:
    """Whether the index still shows the object from before the write. resourceVersions are compared as
    numbers when both are (etcd's revisions; Kubernetes calls them opaque, so otherwise only equality
    counts): a change by someone else after the write then counts too, not only the write's own echo."""
    after = _rv(wrote.after)
    if seen and after and seen.isdigit() and after.isdigit():
        return int(seen) < int(after)
    return seen == wrote.before and seen != after


@dataclass
class _Wrote:
    before: str | None  # the resourceVersion the write was made over (None: absent)
    after: Object | None  # the object the API server returned (None: deleted)
    at: float


class Cache:
    """kopf's indexes for the cached kinds (attached at startup) and the operator's writes not yet seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._indexes: dict[str, Index] = {}
        self._wrote: dict[tuple[str, str, str], _Wrote] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def attach(self, indices: Mapping[str, Any]) -> None:
        """kopf's indexes, by handler name (passed to the startup handler before they are filled)."""
        self._indexes = {kind: indices[name] for kind, name in INDEXED.items() if name in indices}

    def covers(self, kind: str) -> bool:
        return kind in self._indexes

    def _store(self, kind: str, key: IndexKey) -> list[Object]:
        index = self._indexes[kind]
        for _ in range(3):  # kopf changes a store in its own thread: a read that raced it is done again
            try:
                return list(index[key]) if key in index else []
            except (KeyError, RuntimeError):
                continue
        return []

    def _laid_over(self, kind: str, ns: str, name: str, seen: Object | None) -> Object | None:
        """The object as the pass should read it: the index's, unless it still shows the state this operator
        wrote over (then what the write returned)."""
        key = (kind, ns, name)
        with self._lock:
            wrote = self._wrote.get(key)
            if wrote is None:
                return seen
            if self._clock() - wrote.at < OVERLAY_TTL and _behind(_rv(seen), wrote):
                return wrote.after
            del self._wrote[key]  # the watch caught up (or someone changed it since): the index is the truth
            return seen

    def get(self, kind: str, ns: str, name: str) -> Object | None:
        found = self._store(kind, ("name", ns, name))
        return self._laid_over(kind, ns, name, found[0] if found else None)

    def list(self, kind: str, ns: str, instance: str) -> list[Object]:
        seen = {str(o["metadata"]["name"]): o for o in self._store(kind, ("by", ns, instance))}
        with self._lock:
            written = [n for (k, wns, n), w in self._wrote.items() if k == kind and wns == ns and n not in seen]
        out = []
        for name in sorted({*seen, *written}):
            obj = self._laid_over(kind, ns, name, seen.get(name))
            if obj is not None and (obj.get("metadata") or {}).get("labels", {}).get(INSTANCE) == instance:
                out.append(obj)
        return out

    def wrote(self, kind: str, ns: str, name: str, before: Object | None, after: Mapping[str, Any] | None) -> None:
        """The operator wrote `after` (None: deleted it) over `before` as the pass read it."""
        if kind not in self._indexes:
            return
        obj = slim(kind, after) if after is not None else None
        with self._lock:
            self._wrote[(kind, ns, name)] = _Wrote(_rv(before), obj, self._clock())

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
    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None: ...
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
    is laid over the cache until the watch reports it."""

    def __init__(self, kube: API, cache: Cache) -> None:
        self.kube = kube
        self.cache = cache

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache.covers(kind):
            found = self.cache.get(kind, namespace, name)
            if found is not None or kind == names.KIND:
                return found
        return self.kube.get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        instance = selector.get(INSTANCE)
        if self.cache.covers(kind) and instance and dict(selector) == names.owned_selector(instance):
            return self.cache.list(kind, namespace, instance)
        return self.kube.list(api_version, kind, namespace, selector)

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        kind, meta = str(manifest["kind"]), manifest["metadata"]
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        before = self.cache.get(kind, ns, name) if self.cache.covers(kind) else None
        out = self.kube.apply(manifest)
        self.cache.wrote(kind, ns, name, before, out)
        return out

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
        before = self.cache.get(kind, namespace, name) if self.cache.covers(kind) else None
        self.kube.delete(api_version, kind, namespace, name, uid)
        if before is not None and kind == "Pod":
            # A pod goes through Terminating: until the watch says so, it is read as terminating, never as
            # a ready pod a rollout could count on.
            meta = {**before["metadata"], "deletionTimestamp": "deleting", "resourceVersion": ""}
            after = {**before, "metadata": meta}
            self.cache.wrote(kind, namespace, name, before, after)
        elif before is not None:
            self.cache.wrote(kind, namespace, name, before, None)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        self.delete("v1", "Pod", namespace, name, uid)

    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        before = self.cache.get("Pod", namespace, name) if self.cache.covers("Pod") else None
        out = self.kube.label_pod(namespace, name, labels)
        self.cache.wrote("Pod", namespace, name, before, out)
        return out

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        before = self.cache.get(kind, namespace, name) if self.cache.covers(kind) else None
        out = self.kube.patch_status(api_version, kind, namespace, name, patch)
        self.cache.wrote(kind, namespace, name, before, out)
        return out

    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool:
        return self.kube.serves(api_version, kind, rediscover)

    def reissue_certificate(
        self, namespace: str, name: str, index: int | None, condition: Mapping[str, Any], resource_version: str
    ) -> None:
        self.kube.reissue_certificate(namespace, name, index, condition, resource_version)
