"""Reads from the watches: the objects the operator owns and the ValkeyClusters, as kopf's indexes hold
them, with the operator's own writes laid over them until the watch reports them.

kopf fills one index per kind (handlers.registry registers them) before any pass runs, from watches the
API server filters by the project's labels; `CachedKube` answers a pass's reads from them and sends every
other call to the API server. A name a cluster expects but the index lacks (created by someone else,
without the labels, or not yet created) is still asked for by name: the ownership check needs the truth.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from valkey_operator import names
from valkey_operator.k8s.fanout import Fanout, shared
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
    "Certificate": "certificates_index",  # cert-manager's, when its CRD is served (issuer CertManager)
    names.KIND: "clusters_index",
}
_API_VERSIONS = {kind: api_version for api_version, kind in LISTED_KINDS} | {
    names.KIND: names.API_VERSION,
    "Certificate": names.CERT_MANAGER_API,
}
# Index keys: by cluster ("by", ns, instance) for a label LIST, by name ("name", ns, name) for a GET.
IndexKey = tuple[str, str, str]


class Index(Protocol):
    """What kopf.Index offers (read-only): key -> iterable store of values."""

    def __contains__(self, key: object) -> bool: ...
    def __getitem__(self, key: Any) -> Iterable[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


# Kinds whose status no pass reads (the disruption and endpoints controllers rewrite it).
_STATUS_UNREAD = frozenset({"Service", "PodDisruptionBudget"})


def slim(kind: str, body: Mapping[str, Any]) -> Object:
    """What a pass reads of an object (kept in memory for each one): without managedFields (but for the
    time of the operator's own entry on a Certificate: when it last applied its spec), the last-applied
    annotation, a pod's spec (pods are read for their metadata and status only), the status of a Service
    or PodDisruptionBudget, and of a StatefulSet's status all but its observedGeneration."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    if kind == "Certificate":
        fields = (body.get("metadata") or {}).get("managedFields") or []
        meta["managedFields"] = [
            {"manager": f.get("manager"), "operation": f.get("operation"), "time": f.get("time")}
            for f in fields
            if f.get("manager") == names.MANAGER
        ]
    annotations = meta.get("annotations")
    if annotations and "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        meta["annotations"] = {
            k: v for k, v in annotations.items() if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
    out: Object = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    out["metadata"] = meta
    status = body.get("status")
    if kind == "StatefulSet" and status:
        # Passes read whether the controller saw the current template; its counts move with every pod.
        out["status"] = {k: status[k] for k in ("observedGeneration",) if k in status}
    elif kind not in _STATUS_UNREAD and status is not None:
        out["status"] = status
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


class News:
    """Which events of owned objects can change a decision: those that change what passes read of the
    object (its slim form). A pending pod's new scheduling message, a probe's time, a StatefulSet's pod
    counts or a PodDisruptionBudget's status is no news, and costs no pass."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], bytes] = {}  # (kind, namespace, name) -> its slim form's digest

    def __call__(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._seen.pop(key, None)
            return True
        now = hashlib.blake2b(
            json.dumps(_without_rv(slim(kind, body)), sort_keys=True).encode(), digest_size=16
        ).digest()
        if self._seen.get(key) == now:
            return False
        self._seen[key] = now
        return True

    def keep(self, kind: str, namespace: str, alive: Iterable[str]) -> None:
        """The namespace's objects of `kind`, as a LIST found them: the memory of others goes (deleted while
        the watch was away, no DELETED event came)."""
        found = set(alive)
        # A copy first: kopf's thread adds entries meanwhile (a copy of a dict is one step for it).
        for key in [k for k in list(self._seen) if k[:2] == (kind, namespace) and k[2] not in found]:
            self._seen.pop(key, None)


class Packed:
    """One index entry as kopf keeps it: the slim object as compressed JSON (a fifth of the memory of the
    decoded dicts; each read decodes a fresh copy, which no pass can change under the index), with its
    name and resourceVersion at hand for picking one without decoding."""

    __slots__ = ("data", "instance", "name", "rv", "uid")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.name = str(meta.get("name") or "")
        self.instance = names.cluster_of((obj.get("metadata") or {}).get("labels") or {}) or ""
        self.uid = str(meta.get("uid") or "")
        self.rv = str(meta.get("resourceVersion") or "")
        self.data = zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1)

    def unpack(self) -> Object:
        out: Object = json.loads(zlib.decompress(self.data))
        return out


def _without_rv(obj: Object) -> Object:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def index_entries(kind: str, body: Mapping[str, Any]) -> dict[IndexKey, Packed]:
    """A kopf index function's value for one object: the slim object, packed, under its name and, for an
    owned object, under its cluster."""
    meta = body.get("metadata") or {}
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    obj = Packed(slim(kind, body))
    out: dict[IndexKey, Packed] = {("name", ns, name): obj}
    instance = (meta.get("labels") or {}).get(INSTANCE)
    if kind != names.KIND and instance:
        out[("by", ns, str(instance))] = obj
    return out


def resource_version(obj: Mapping[str, Any] | None) -> str | None:
    """An object's resourceVersion; None for no object, or one without it."""
    rv = None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


def _instance(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else ((obj.get("metadata") or {}).get("labels") or {}).get(INSTANCE)


def _managed_by(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(names.MANAGED_BY_LABEL)


def _pick(objs: list[Packed]) -> Packed | None:
    """One name, several objects: an object deleted and created again while kopf's watch was away (kopf
    drops an index entry only on a DELETED event) leaves the old one beside the new; the newest counts."""
    if len(objs) < 2:
        return objs[0] if objs else None
    if all(o.rv.isdigit() for o in objs):
        return max(objs, key=lambda o: int(o.rv))
    return objs[-1]


def _newest(objs: list[Packed]) -> Object | None:
    picked = _pick(objs)
    return picked.unpack() if picked is not None else None


def _newest_rv(objs: list[Packed]) -> str | None:
    """The resourceVersion of the entry `_newest` picks, without decoding it."""
    picked = _pick(objs)
    return picked.rv if picked is not None else None


def ghosts(held: Iterable[Packed], listed: Mapping[str, str], list_rv: str) -> frozenset[str]:
    """The uids of the entries a LIST (taken at `list_rv`, uid -> name) shows gone: deleted while kopf's
    watch was away (after a re-list kopf never drops the entries of objects that vanished in the gap). An
    entry newer than the LIST (created after it) is no ghost; nor is any, when resourceVersions are not
    numbers (Kubernetes calls them opaque; etcd's are)."""
    if not list_rv.isdigit():
        return frozenset()
    bound = int(list_rv)
    return frozenset(o.uid for o in held if o.uid and o.uid not in listed and o.rv.isdigit() and int(o.rv) <= bound)


class StaleError(Exception):
    """The cache cannot answer for this object: ask the API server."""


@dataclass
class _Wrote:
    before: str | None  # the resourceVersion the write was made over (None: absent, or without one)
    after: Packed | None  # the object the API server returned, packed as the index keeps it (None: deleted)
    at: float
    instance: str | None  # the cluster it belongs to (its instance label)


def _behind(seen: str | None, wrote: _Wrote) -> bool:
    """Whether the index still shows the object from before the write. resourceVersions are compared as
    numbers when both are (etcd's revisions; Kubernetes calls them opaque, so otherwise only equality
    counts): a change by someone else after the write then counts too, not only the write's own echo."""
    after = wrote.after.rv if wrote.after is not None else None
    if seen and after and seen.isdigit() and after.isdigit():
        return int(seen) < int(after)
    return seen == wrote.before and seen != after


class Cache:
    """kopf's indexes for the cached kinds (attached at startup) and the operator's writes not yet seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._indexes: dict[str, Index] = {}
        self._wrote: dict[tuple[str, str, str], _Wrote] = {}
        self._wrote_by: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, instance) -> names in _wrote
        self._lock = threading.Lock()
        self._clock = clock
        self._paused = False
        self._distrust_until = 0.0
        self._ghosts: dict[tuple[str, str], frozenset[str]] = {}  # (kind, namespace) -> uids a LIST found gone

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

    def _store(self, kind: str, key: IndexKey) -> list[Packed]:
        index = self._indexes[kind]
        hidden = self._ghosts.get((kind, key[1]), frozenset())
        for _ in range(3):  # kopf changes a store in its own thread: a read that raced it is done again
            try:
                return [o for o in index[key] if o.uid not in hidden] if key in index else []
            except (KeyError, RuntimeError):
                continue
        raise StaleError(f"{kind} {key}: the index kept changing during the read")

    def _held(self, kind: str, ns: str) -> list[Packed]:
        """Every entry the index holds of the kind in the namespace."""
        index = self._indexes[kind]
        for _ in range(3):
            try:
                keys = [k for k in list(index) if k[0] == "name" and k[1] == ns]
                return [o for k in keys if k in index for o in index[k]]
            except (KeyError, RuntimeError):
                continue
        raise StaleError(f"{kind} in {ns}: the index kept changing during the sweep")

    def swept(self, kind: str, ns: str, listed: Mapping[str, str], list_rv: str) -> set[str]:
        """A LIST of the kind's owned objects in the namespace (uid -> name, taken at `list_rv`): entries it
        shows gone are read as absent from now on (until the next sweep). The clusters whose entries it
        newly hides (a ValkeyCluster's own name for the ValkeyClusters)."""
        if kind not in self._indexes:
            return set()
        held = self._held(kind, ns)
        found = ghosts(held, listed, list_rv)
        new = found - self._ghosts.get((kind, ns), frozenset())  # an earlier sweep's asked for its passes
        self._ghosts[(kind, ns)] = found
        return {(o.name if kind == names.KIND else o.instance) for o in held if o.uid in new} - {""}

    def get(self, kind: str, ns: str, name: str) -> Object | None:
        """The object as the pass should read it: the index's, unless it still shows the state this operator
        wrote over (then what the write returned). A watch that has not shown the write for OVERLAY_TTL
        lags: StaleError. The record is taken before the index is read: kopf stores an entry before the
        event that drops the record (`observed`), so a record gone meanwhile means the index shows the
        write."""
        key = (kind, ns, name)
        with self._lock:
            wrote = self._wrote.get(key)
        found = self._store(kind, ("name", ns, name))
        if wrote is None:
            return _newest(found)
        if _behind(_newest_rv(found), wrote):
            age = self._clock() - wrote.at
            if age < OVERLAY_TTL:
                return wrote.after.unpack() if wrote.after is not None else None
            if age > OVERLAY_LIMIT:
                self._forget_if(key, wrote)
            # The watch lags behind the operator's own write: the API server answers, until it catches up.
            raise StaleError(f"{kind} {ns}/{name}: the watch has not shown the operator's write yet")
        self._forget_if(key, wrote)  # the watch caught up (or someone changed it since): the index is the truth
        return _newest(found)

    def list(self, kind: str, ns: str, instance: str) -> list[Object]:
        with self._lock:  # the writes first, then the index (as `get` does)
            found = set(self._wrote_by.get((kind, ns, instance), set()))
        found |= {o.name for o in self._store(kind, ("by", ns, instance))}
        # Each name is read as a GET would read it (its own index entry, its own write): an object whose
        # label changed, or another cluster's write, never stands in for it.
        # Only the operator's own objects: the Secrets watch also holds those cert-manager writes for a cluster.
        objs = (self.get(kind, ns, name) for name in sorted(found))
        return [o for o in objs if o is not None and _instance(o) == instance and _managed_by(o) == names.MANAGER]

    def wrote(self, kind: str, ns: str, name: str, before: Object | None, after: Mapping[str, Any] | None) -> None:
        """The operator wrote `after` (None: deleted it) over `before` as the pass read it."""
        if kind not in self._indexes:
            return
        slimmed = slim(kind, after) if after is not None else None
        obj = Packed(slimmed) if slimmed is not None else None
        key = (kind, ns, name)
        with self._lock:
            self._forget(key)
            wrote = _Wrote(resource_version(before), obj, self._clock(), _instance(slimmed or before))
            self._wrote[key] = wrote
            if wrote.instance:
                self._wrote_by.setdefault((kind, ns, wrote.instance), set()).add(name)
        # The watch may have shown the write already (its event came before this record): no event is left
        # to drop the record then, and it would hold the object until the next read.
        try:
            if not _behind(_newest_rv(self._store(kind, ("name", ns, name))), wrote):
                self._forget_if(key, wrote)
        except StaleError:
            pass

    def observed(self, kind: str, ns: str, name: str, seen: str | None) -> None:
        """The watch showed the object at resourceVersion `seen`: a write it shows (or a later change) is no
        longer laid over the index, and its record goes now (not at the object's next read, which for a
        settled cluster comes a slow timer later: each record holds the object)."""
        with self._lock:
            wrote = self._wrote.get((kind, ns, name))
            if wrote is not None and seen is not None and not _behind(seen, wrote):
                self._forget((kind, ns, name))

    def _forget_if(self, key: tuple[str, str, str], wrote: _Wrote) -> None:
        """Drop this record, unless a later write replaced it meanwhile."""
        with self._lock:
            if self._wrote.get(key) is wrote:
                self._forget(key)

    def _forget(self, key: tuple[str, str, str]) -> None:
        """Drop one write's record (the lock held)."""
        wrote = self._wrote.pop(key, None)
        if wrote is not None and wrote.instance:
            by = (key[0], key[1], wrote.instance)
            names_ = self._wrote_by.get(by)
            if names_ is not None:
                names_.discard(key[2])
                if not names_:
                    del self._wrote_by[by]

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
    def listing(self, api_version: str, kind: str, namespace: str, selector: str) -> tuple[dict[str, str], str]: ...
    def reissue_certificate(
        self, namespace: str, name: str, index: int | None, condition: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]: ...


class CachedKube:
    """The pass's Kubernetes adapter with reads from the cache: a LIST of a cached kind by the owner's
    labels and a GET of an object the index holds cost no request; every write goes to the API server and
    is laid over the cache until the watch reports it. What the cache cannot answer (StaleError) is asked."""

    def __init__(self, kube: API, cache: Cache, fanout: Fanout | None = None) -> None:
        self.kube = kube
        self.cache = cache
        self.fanout = fanout or shared()

    def _cached(self, kind: str, namespace: str, name: str) -> Object | None:
        """The object from the cache; None: the API server must answer (not held, or the index lags)."""
        if not self.cache.covers(kind):
            return None
        try:
            return self.cache.get(kind, namespace, name)
        except StaleError as exc:
            log.info("%s: asking the API server", exc)
            return None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._cached(kind, namespace, name)
        return found if found is not None else self.kube.get(api_version, kind, namespace, name)

    def get_many(self, wanted: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any] | None]:
        """Several GETs (apiVersion, kind, namespace, name): from the cache, and what it cannot answer from
        the API server at once."""
        out = [self._cached(kind, ns, name) for _, kind, ns, name in wanted]
        asked = [i for i, found in enumerate(out) if found is None]
        for i, found in zip(
            asked, self.fanout([functools.partial(self.kube.get, *wanted[i]) for i in asked]), strict=True
        ):
            out[i] = found
        return out

    def apply_many(self, manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Several independent applies at once (each laid over the cache as `apply` does)."""
        return self.fanout([functools.partial(self.apply, manifest) for manifest in manifests])

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

    def sweep(self, kind: str, namespace: str) -> tuple[tuple[str, ...], set[str]]:
        """After kopf re-listed a kind: one LIST of its owned objects (of every ValkeyCluster) in the
        namespace, so that entries of objects deleted while the watch was away read as gone. The names it
        found, and the clusters whose entries it hid (each wants a pass: nothing else reports the loss)."""
        api_version = _API_VERSIONS.get(kind, "v1")
        # Certificates only once a pass found them served (no discovery asked here: it would unsettle every
        # pass's): cert-manager's CRD may be gone, or never there.
        if kind == "Certificate" and not self.kube.serves(api_version, kind, rediscover=False):
            return (), set()
        selector = "" if kind == names.KIND else names.watch_selector(kind)
        listed, list_rv = self.kube.listing(api_version, kind, namespace, selector)
        hid = self.cache.swept(kind, namespace, listed, list_rv)
        if hid:
            log.info("%s in %s: deleted while the watch was away, read as gone (%s)", kind, namespace, sorted(hid))
        return tuple(sorted(listed.values())), hid

    def reissue_certificate(
        self, namespace: str, name: str, index: int | None, condition: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        before = self._before("Certificate", namespace, name)
        out = self.kube.reissue_certificate(namespace, name, index, condition, resource_version)
        self.cache.wrote("Certificate", namespace, name, before, out)
        return out
