"""Kubernetes I/O: server-side apply with one field manager, reads, pod deletion, status patches."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError, api_exception

from valkey_operator import names

log = logging.getLogger(__name__)
T = TypeVar("T")
FIELD_MANAGER = names.MANAGER
REDISCOVER_EVERY = 15.0  # seconds between discovery refreshes for a kind the API server did not serve

# Every API call the operator makes, as RBAC rules: the chart's rules are checked against these, and the
# real authorizer proves them sufficient in the e2e tests. Each verb names the code that needs it.
NAMESPACED_PERMISSIONS: list[dict[str, Any]] = [
    # kopf: list+watch to follow ValkeyClusters; patch for its finalizer and annotations. Reconciler: get
    # (each pass reads the resource afresh) and patch of our status.
    {"apiGroups": [names.GROUP], "resources": [names.PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [names.GROUP], "resources": [f"{names.PLURAL}/status"], "verbs": ["patch"]},
    # kopf's indexes (k8s.cache) list and watch the owned kinds, Secrets included, filtered by the API
    # server with the project's labels (list, watch): a pass reads them from memory, and a pod's loss or a
    # hand edit starts a pass at once. RBAC cannot grant by label, so this allows reading every Secret of
    # the watched namespaces; only the operator's own ever reach it. reconcile.gather: Kube.get of the
    # user's CA or External Secret by name, and of an expected object the index lacks (get: someone
    # else's object with our name); Kube.list when no index serves (list); Kube.apply, server-side apply
    # that may create (create, patch).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {
        "apiGroups": ["policy"],
        "resources": ["poddisruptionbudgets"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    # Kube.list (list), Kube.label_pod (patch), Kube.delete_pod (delete), kopf's watch (watch).
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch", "delete"]},
    # kopf.event.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # Issuer CertManager, reconcile._read_cert_manager: the cluster's Certificates by label (list) and each
    # expected one by name (get: someone else's shows only so); Kube.apply creates and changes them (create,
    # patch); kopf watches them, so that an issue starts a pass (watch). The namespaced Issuer the spec
    # names, read for its Ready condition (get). cert-manager's own Secrets are read by name (the Secret rule).
    # Kube.delete: the cluster's Certificates no client, mTLS or issuer asks for any more (delete).
    {
        "apiGroups": ["cert-manager.io"],
        "resources": ["certificates"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # Issuing set on a Certificate (valkeyops.dev/rotate-certificates, a CA change behind the issuer).
    {"apiGroups": ["cert-manager.io"], "resources": ["certificates/status"], "verbs": ["patch"]},
    {"apiGroups": ["cert-manager.io"], "resources": ["issuers"], "verbs": ["get"]},
    # kopf peering (leader election) when watching namespaces; ensure_peering creates its object (create).
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "create", "patch"]},
]
CLUSTER_PERMISSIONS: list[dict[str, Any]] = [
    # kopf watches CRDs to learn when the ValkeyCluster resource appears or changes.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    # Issuer CertManager, reconcile._read_cert_manager: the ClusterIssuer the spec names (get).
    {"apiGroups": ["cert-manager.io"], "resources": ["clusterissuers"], "verbs": ["get"]},
    # kopf peering (leader election) when watching every namespace; ensure_peering creates its object.
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
]
# Watching a list of namespaces, kopf follows the Namespace objects (found by the real authorizer: 403).
NAMESPACE_OBSERVER_PERMISSIONS: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


CONNECTION_POOL = 32
# Seconds: (connect and TLS handshake, each read) for every request of this client. The kubernetes client
# passes no timeout by default, and urllib3 then waits forever: a request to an API server that stopped
# answering (a half-open connection, a frozen process) would hold its pass, and so its cluster, for good.
# urllib3 tries a GET up to four times (its default retries; a write once after it was sent), so a hung GET
# ends within two minutes, a hung write within 30 s, and the pass fails and is tried again, as after any
# failed request. A write the API server finishes after this client gave up is applied again, unchanged.
REQUEST_TIMEOUT = (10.0, 30.0)
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


def load_config() -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else the current kubeconfig."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    # Connections kept for the calls under way at once: the passes (config.workers, 8) and their fan-out
    # (k8s.fanout, 16), the sweeps and the role checks; the default (five per core) would open and drop
    # connections once more run at once.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, CONNECTION_POOL)
    return k8s.ApiClient(configuration)


def with_conflict_retry(action: Callable[[], T], attempts: int = 5) -> T:
    """Run `action`, retrying a 409 Conflict a bounded number of times (someone else wrote first)."""
    for attempt in range(attempts):
        try:
            return action()
        except (ConflictError, ApiException) as exc:
            status = getattr(exc, "status", None)
            if status != 409 or attempt == attempts - 1:
                raise
            log.info("conflict, retrying (%d/%d)", attempt + 1, attempts)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def bound_requests(api_client: k8s.ApiClient, timeout: tuple[float, float]) -> None:
    """Every request of `api_client` that names no timeout of its own gets `timeout` (connect, read), the
    dynamic client's discovery included; once per client (a second call changes the bound)."""
    rest: Any = api_client.rest_client
    request: Callable[..., Any] = getattr(rest, "_unbounded_request", rest.request)

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or timeout, **kwargs)

    rest._unbounded_request = request
    rest.request = bounded


class Kube:
    """A thin adapter over the dynamic client; every method is one API call, and no request waits longer
    than `timeout` (REQUEST_TIMEOUT) to connect or for each read."""

    def __init__(self, api_client: k8s.ApiClient | None = None, timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        self.api_client = api_client or load_config()
        bound_requests(self.api_client, timeout)  # before the dynamic client: it asks for /version at once
        self.dynamic = DynamicClient(self.api_client)
        self._resources: dict[tuple[str, str], Any] = {}
        self._rediscovered = -REDISCOVER_EVERY
        # Passes run in kopf's thread pool: the dynamic client's discovery cache is not safe to rebuild in
        # one thread while another reads it (a KeyError 'resources' from its parser, seen in CI).
        self._discovery = threading.Lock()

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        found = self._resources.get(key)  # one read: forget_discovery may clear the dict in another thread
        if found is None:
            with self._discovery:
                found = self._resources.get(key)
                if found is None:
                    found = self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return found

    def forget_discovery(self) -> None:
        """Ask the API server afresh which kinds it serves (after a CRD was created)."""
        with self._discovery:
            self._resources.clear()
            self.dynamic.resources.invalidate_cache()

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of the whole desired object: creates, updates, and repairs drift."""
        res = self._resource(manifest["apiVersion"], manifest["kind"])
        meta = manifest["metadata"]
        out = with_conflict_retry(
            lambda: res.server_side_apply(
                body=dict(manifest),
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                serialize=False,  # the JSON decoded once below, not into the dynamic client's wrappers
            )
        )
        return json.loads(out.data)  # type: ignore[no-any-return]

    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool:
        """The API server serves `kind` (discovery; asked afresh when not and `rediscover`, at most every
        15 s, since a CRD created after the operator started is only found so). Without `rediscover`, only
        what an earlier call found: no discovery request at all."""
        if not rediscover:
            return (api_version, kind) in self._resources
        for fresh in (False, True):
            if fresh:
                if time.monotonic() - self._rediscovered < REDISCOVER_EVERY:
                    return False
                self._rediscovered = time.monotonic()
                self.forget_discovery()
            try:
                self._resource(api_version, kind)
                return True
            except ResourceNotFoundError:
                continue
        return False

    def get_many(self, wanted: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any] | None]:
        """Several GETs (apiVersion, kind, namespace, name), one after another."""
        return [self.get(*one) for one in wanted]

    def apply_many(self, manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Several applies, one after another."""
        return [self.apply(manifest) for manifest in manifests]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object by name; None when there is none. A pass's GETs are mostly of expected names not made
        yet: asked beside the dynamic client, whose error path formats a traceback for every 404 (11,000 in a
        1,000-cluster sync), and decoded once, not into its wrappers."""
        path = self._resource(api_version, kind).path(name=name, namespace=namespace)
        request = self.api_client.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(*request)
        body = response.read()  # the whole body, so that the connection goes back to the pool
        if response.status == 404:
            return None
        if not 200 <= response.status <= 299:
            try:
                self.api_client.response_deserialize(response, {})  # raises the client's ApiException
            except ApiException as exc:
                raise api_exception(exc) from None  # the dynamic client's error types, as other calls raise
        return json.loads(body)  # type: ignore[no-any-return]

    def list(self, api_version: str, kind: str, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        items = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        return [i.to_dict() for i in items.items]

    def listing(self, api_version: str, kind: str, namespace: str, selector: str) -> tuple[dict[str, str], str]:
        """Which objects a label selector (a selector string) finds in a namespace, uid -> name, and the
        LIST's resourceVersion (the moment it shows)."""
        # Metadata only (PartialObjectMetadataList): neither Secrets' data nor pods' specs travel.
        raw = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector, header_params={"Accept": METADATA_ONLY}, serialize=False
        )
        found = json.loads(raw.data)
        items = {str(i["metadata"]["uid"]): str(i["metadata"]["name"]) for i in found.get("items") or []}
        return items, str((found.get("metadata") or {}).get("resourceVersion") or "")

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete one pod, only if it is still the one we decided about (uid precondition)."""
        self.delete("v1", "Pod", namespace, name, uid)

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """Delete one object, only if it is still the one decided about (uid precondition; gone is done).
        What the API server returns: the object still terminating (a pod), a Status, or None (gone)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            out = self._resource(api_version, kind).delete(name=name, namespace=namespace, body=body)
        except NotFoundError:
            return None
        return out.to_dict() if out is not None else None

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of an object's status subresource; the object as written."""
        out = self._resource(api_version, kind).status.patch(
            body={"status": dict(patch)},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )
        return out.to_dict()  # type: ignore[no-any-return]

    def reissue_certificate(
        self,
        namespace: str,
        name: str,
        index: int | None,
        condition: Mapping[str, Any],
        resource_version: str,
    ) -> dict[str, Any]:
        """Set a cert-manager Certificate's Issuing condition (what `cmctl renew` does): a JSON patch of its
        status that replaces the Issuing condition at `index` or appends one, and holds only on the object
        as read, at `resource_version` (cert-manager changed it since: the patch fails, the pass is retried
        and decides again). The Certificate as written."""
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}]
        if index is None:
            ops.append({"op": "add", "path": "/status/conditions/-", "value": dict(condition)})
        else:
            ops.append({"op": "replace", "path": f"/status/conditions/{index}", "value": dict(condition)})
        out = self._resource(names.CERT_MANAGER_API, "Certificate").status.patch(
            body=ops, name=name, namespace=namespace, content_type="application/json-patch+json"
        )
        return out.to_dict()  # type: ignore[no-any-return]

    def label_pod(self, namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        out = self._resource("v1", "Pod").patch(
            body={"metadata": {"labels": dict(labels)}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )
        return out.to_dict()  # type: ignore[no-any-return]


def ensure_peering(kube: Kube, name: str, namespaces: list[str], timeout: float = 120.0) -> None:
    """Create the kopf peering object(s) leader election needs, if missing: a ClusterKopfPeering when
    watching every namespace, else a KopfPeering in each. Waits (bounded, saying so) while the kopf.dev
    CRDs are not served yet; raises when they never are."""
    objects = (
        [{"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}]
        if not namespaces
        else [
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name, "namespace": ns}}
            for ns in namespaces
        ]
    )
    deadline = time.monotonic() + timeout
    for obj in objects:
        while True:
            try:
                kube.apply(obj)
                break
            except (ApiException, ResourceNotFoundError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{obj['kind']} {name}: the kopf.dev peering CRDs are not served") from exc
                log.info("waiting for the kopf.dev peering CRDs to create %s %s: %s", obj["kind"], name, exc)
                kube.forget_discovery()  # a CRD created since is only found by asking again
                time.sleep(2)
