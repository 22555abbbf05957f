"""Reads from kopf's indexes with the operator's own writes laid over them until the watch reports them.

kopf's Index is stood in for by a dict of lists (the same read interface); the real indexes are read by
every integration test's operator."""

from __future__ import annotations

from typing import Any, cast

import pytest

from valkey_operator import names
from valkey_operator.k8s.cache import (
    INDEXED,
    OVERLAY_TTL,
    RESUME_DISTRUST,
    Cache,
    CachedKube,
    News,
    Packed,
    ghosts,
    index_entries,
    resource_version,
    slim,
)

NS = "ns"
OWNED = names.owned_selector("cache")


def obj(kind: str, name: str, rv: str, instance: str = "cache", uid: str = "", **extra: Any) -> dict[str, Any]:
    labels = names.owned_selector(instance)
    meta = {"name": name, "namespace": NS, "uid": uid or f"uid-{name}", "resourceVersion": rv, "labels": labels}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **extra}


class FakeIndexes:
    """kopf's indexes as the watch fills them: kind -> key -> values."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[Any, list[Any]]] = {kind: {} for kind in INDEXED}

    def put(self, body: dict[str, Any]) -> None:
        self.drop(body["kind"], body["metadata"]["name"])
        for key, value in index_entries(body["kind"], body).items():
            self.by_kind[body["kind"]].setdefault(key, []).append(value)

    def drop(self, kind: str, name: str) -> None:
        for values in self.by_kind[kind].values():
            values[:] = [v for v in values if v.name != name]
        for key in [k for k, v in self.by_kind[kind].items() if not v]:
            del self.by_kind[kind][key]

    def named(self) -> dict[str, Any]:
        return {INDEXED[kind]: index for kind, index in self.by_kind.items()}


class API:
    """The API server's answers to what passes through (the writes return what the server would)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.rv = 100
        self.listed: tuple[dict[str, str], str] = ({}, "0")  # what a LIST by the owned selector finds

    def _next(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}

    def apply(self, manifest: Any) -> dict[str, Any]:
        self.calls.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        return self._next(manifest)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        return None

    def list(self, api_version: str, kind: str, namespace: str, selector: Any) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        return []

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        self.calls.append(("delete", kind, name))
        if kind != "Pod":
            return {"kind": "Status", "status": "Success"}
        pod = obj(kind, name, "0", instance=name.rsplit("-", 1)[0])  # the pod as deleted, still terminating
        pod["metadata"]["deletionTimestamp"] = "2026-11-27T12:00:00Z"
        return self._next(pod)

    def label_pod(self, namespace: str, name: str, labels: Any) -> dict[str, Any]:
        self.calls.append(("label", name))
        pod = obj("Pod", name, "0")
        pod["metadata"]["labels"].update(labels)
        return self._next(pod)

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self.calls.append(("status", name))
        return self._next({**obj(kind, name, "0"), "status": dict(patch)})

    def serves(self, api_version: str, kind: str, rediscover: bool = True) -> bool:
        return kind != "Certificate"  # no cert-manager here

    def listing(self, api_version: str, kind: str, namespace: str, selector: str) -> tuple[dict[str, str], str]:
        self.calls.append(("listing", kind, selector))
        return self.listed

    def reissue_certificate(self, namespace: str, name: str, *args: Any) -> dict[str, Any]:
        self.calls.append(("reissue", name))
        issuing = {"conditions": [{"type": "Issuing", "status": "True"}]}
        return self._next({**obj("Certificate", name, "0"), "status": issuing})


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def world() -> tuple[FakeIndexes, API, CachedKube, Clock]:
    indexes, api, clock = FakeIndexes(), API(), Clock()
    cache = Cache(clock)
    cache.attach(indexes.named())
    return indexes, api, CachedKube(api, cache), clock


def test_reads_of_indexed_kinds_cost_no_request_and_see_only_the_clusters_objects() -> None:
    indexes, api, kube, _ = world()
    indexes.put(obj("ConfigMap", "cache-config", "5"))
    indexes.put(obj("ConfigMap", "other-config", "6", instance="other"))
    indexes.put(obj("Secret", "cache-tls", "7", data={"tls.crt": "x"}))
    assert [o["metadata"]["name"] for o in kube.list("v1", "ConfigMap", NS, OWNED)] == ["cache-config"]
    assert kube.get("v1", "Secret", NS, "cache-tls") is not None
    assert api.calls == []


def test_a_name_the_index_lacks_is_asked_for_and_other_selectors_and_kinds_go_to_the_server() -> None:
    _, api, kube, _ = world()
    assert kube.get("v1", "Service", NS, "cache") is None  # maybe someone else's, without our labels
    kube.list("v1", "ConfigMap", NS, {"app": "x"})
    kube.list("policy/v1", "PodDisruptionBudget", NS, {"app": "x"})
    assert api.calls == [("get", "Service", "cache"), ("list", "ConfigMap"), ("list", "PodDisruptionBudget")]


def test_a_valkeycluster_the_index_lacks_is_asked_for() -> None:
    # Rare (the daemon admits a cluster only once the index holds it), and a pass that took it for gone
    # would schedule no other.
    indexes, api, kube, _ = world()
    indexes.put(obj(names.KIND, "cache", "5"))
    assert kube.get(names.API_VERSION, names.KIND, NS, "cache") is not None
    assert api.calls == []
    assert kube.get(names.API_VERSION, names.KIND, NS, "gone") is None
    assert api.calls == [("get", names.KIND, "gone")]


def test_a_write_is_read_back_until_the_watch_reports_it_then_the_index_wins() -> None:
    indexes, _, kube, _ = world()
    indexes.put(obj("ConfigMap", "cache-config", "5", data={"a": "old"}))
    kube.apply(obj("ConfigMap", "cache-config", "", data={"a": "new"}))
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"a": "new"}  # type: ignore[index]
    assert kube.list("v1", "ConfigMap", NS, OWNED)[0]["data"] == {"a": "new"}
    indexes.put(obj("ConfigMap", "cache-config", "101", data={"a": "new"}))  # the echo
    indexes.put(obj("ConfigMap", "cache-config", "150", data={"a": "hand edit"}))  # and a change since
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"a": "hand edit"}  # type: ignore[index]
    assert kube.cache.pending_writes() == 0


def test_a_created_object_is_listed_before_its_watch_event() -> None:
    indexes, _, kube, _ = world()
    kube.apply(obj("Service", "cache", ""))
    kube.apply(obj("Service", "other", "", instance="other"))
    assert [o["metadata"]["name"] for o in kube.list("v1", "Service", NS, OWNED)] == ["cache"]
    indexes.put(obj("Service", "cache", "101"))
    assert kube.cache.get("Service", NS, "cache")["metadata"]["resourceVersion"] == "101"  # type: ignore[index]


def test_a_deleted_pod_reads_as_terminating_until_the_watch_says_so() -> None:
    indexes, _, kube, _ = world()
    ready = {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
    indexes.put(obj("Pod", "cache-0", "5", status=ready))
    kube.delete_pod(NS, "cache-0", "uid")
    (seen,) = kube.list("v1", "Pod", NS, OWNED)
    assert seen["metadata"]["deletionTimestamp"]
    indexes.put(obj("Pod", "cache-0", "104", status=ready, spec={}))  # the watch: changed since
    (seen,) = kube.list("v1", "Pod", NS, OWNED)
    assert seen["metadata"]["resourceVersion"] == "104"


def test_a_watch_that_lags_behind_a_write_sends_reads_to_the_api_server_until_it_catches_up() -> None:
    indexes, api, kube, clock = world()
    indexes.put(obj("ConfigMap", "cache-config", "5", data={"a": "old"}))
    kube.apply(obj("ConfigMap", "cache-config", "", data={"a": "new"}))
    clock.t += OVERLAY_TTL + 1
    for _ in range(3):  # never the stale index: every read asks
        kube.get("v1", "ConfigMap", NS, "cache-config")
        kube.list("v1", "ConfigMap", NS, OWNED)
    assert api.calls[-6:] == [("get", "ConfigMap", "cache-config"), ("list", "ConfigMap")] * 3
    indexes.put(obj("ConfigMap", "cache-config", "101", data={"a": "new"}))
    calls = len(api.calls)
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"a": "new"}  # type: ignore[index]
    assert len(api.calls) == calls


def test_after_kopf_resumes_this_replica_reads_go_to_the_api_server_for_a_while() -> None:
    indexes, api, kube, clock = world()
    indexes.put(obj("ConfigMap", "cache-config", "5"))
    kube.cache.resumed()  # a plain start: no pause before
    kube.get("v1", "ConfigMap", NS, "cache-config")
    assert api.calls == []
    kube.cache.pause()
    kube.cache.resumed()
    kube.get("v1", "ConfigMap", NS, "cache-config")
    assert api.calls == [("get", "ConfigMap", "cache-config")]
    clock.t += RESUME_DISTRUST + 1
    kube.get("v1", "ConfigMap", NS, "cache-config")
    assert len(api.calls) == 1


def test_another_clusters_list_leaves_this_clusters_writes_alone() -> None:
    indexes, _, kube, _ = world()
    ready = {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
    indexes.put(obj("Pod", "b-1", "5", instance="b", status=ready))
    indexes.put(obj("Pod", "a-0", "6", instance="a", status=ready))
    kube.delete_pod(NS, "b-1", "uid")
    kube.list("v1", "Pod", NS, names.owned_selector("a"))
    (b1,) = kube.list("v1", "Pod", NS, names.owned_selector("b"))
    assert b1["metadata"]["deletionTimestamp"]


def test_a_pod_relabelled_then_deleted_reads_as_both() -> None:
    indexes, _, kube, _ = world()
    indexes.put(obj("Pod", "cache-0", "5"))
    kube.label_pod(NS, "cache-0", {names.ROLE_LABEL: "replica"})
    kube.delete_pod(NS, "cache-0", "uid")
    (pod,) = kube.list("v1", "Pod", NS, OWNED)
    assert pod["metadata"]["deletionTimestamp"]
    indexes.put(obj("Pod", "cache-0", "101"))  # the relabel's echo: older than the deletion
    (pod,) = kube.list("v1", "Pod", NS, OWNED)
    assert pod["metadata"]["deletionTimestamp"]


def test_an_object_created_again_while_the_watch_was_away_reads_as_the_newest() -> None:
    indexes, _, kube, _ = world()
    old, new = obj("Secret", "cache-tls", "5", data={"k": "old"}), obj("Secret", "cache-tls", "90", data={"k": "new"})
    for body in (new, old):  # kopf keeps both (keyed by uid) until a DELETED event that never came
        for key, value in index_entries("Secret", body).items():
            indexes.by_kind["Secret"].setdefault(key, []).append(value)
    assert kube.get("v1", "Secret", NS, "cache-tls")["data"] == {"k": "new"}  # type: ignore[index]


def test_status_patches_are_read_back_by_the_next_pass() -> None:
    indexes, _, kube, _ = world()
    api_version = f"{names.GROUP}/{names.VERSION}"
    indexes.put({**obj(names.KIND, "cache", "5"), "status": {"phase": "Provisioning"}})
    kube.patch_status(api_version, names.KIND, NS, "cache", {"phase": "Ready"})
    assert kube.get(api_version, names.KIND, NS, "cache")["status"] == {"phase": "Ready"}  # type: ignore[index]


def test_slim_keeps_what_passes_read() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "managedFields": [{}], "labels": {"a": "b"}},
        "spec": {"containers": [{}]},
        "status": {"phase": "Running", "podIP": "1.2.3.4", "conditions": [], "containerStatuses": [{}]},
    }
    assert slim("Pod", pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "status": {"phase": "Running", "podIP": "1.2.3.4", "conditions": []},
    }
    sts = {
        "kind": "StatefulSet",
        "metadata": {"name": "s", "managedFields": [{}]},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 2, "replicas": 3, "readyReplicas": 1},
    }
    assert slim("StatefulSet", sts) == {
        "kind": "StatefulSet",
        "metadata": {"name": "s"},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 2},
    }
    pdb = {"kind": "PodDisruptionBudget", "metadata": {"name": "p"}, "spec": {}, "status": {"expectedPods": 3}}
    assert slim("PodDisruptionBudget", pdb) == {"kind": "PodDisruptionBudget", "metadata": {"name": "p"}, "spec": {}}


def test_a_pod_event_that_changes_nothing_passes_read_is_no_news() -> None:
    news = News()

    def pod(rv: str, status: dict[str, Any]) -> dict[str, Any]:
        return obj("Pod", "cache-0", rv, status=status)

    unscheduled = {"type": "PodScheduled", "status": "False", "message": "0/0 nodes are available"}
    assert news("Pod", None, pod("5", {"phase": "Pending", "conditions": [unscheduled]}))
    later = {**unscheduled, "message": "0/1 nodes are available", "lastProbeTime": "t"}
    assert not news("Pod", "MODIFIED", pod("6", {"phase": "Pending", "conditions": [later]}))  # the scheduler's
    ready = pod("7", {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]})
    assert news("Pod", "MODIFIED", ready)
    relabelled = obj("Pod", "cache-0", "8", status=ready["status"])
    relabelled["metadata"]["labels"][names.ROLE_LABEL] = "primary"
    assert news("Pod", "MODIFIED", relabelled)
    assert news("Pod", "DELETED", relabelled)
    assert news("Pod", None, relabelled)  # the same pod seen again after its deletion: a new one


def test_a_controllers_status_that_passes_do_not_read_is_no_news() -> None:
    news = News()
    sts = obj("StatefulSet", "cache", "5", spec={"replicas": 3}, status={"observedGeneration": 1, "replicas": 0})
    assert news("StatefulSet", "ADDED", sts)
    assert not news("StatefulSet", "MODIFIED", {**sts, "status": {"observedGeneration": 1, "replicas": 3}})
    assert news("StatefulSet", "MODIFIED", {**sts, "status": {"observedGeneration": 2, "replicas": 3}})
    pdb = obj("PodDisruptionBudget", "cache", "6", spec={"maxUnavailable": 1}, status={"expectedPods": 0})
    assert news("PodDisruptionBudget", "ADDED", pdb)
    assert not news("PodDisruptionBudget", "MODIFIED", {**pdb, "status": {"expectedPods": 3}})
    assert news("PodDisruptionBudget", "MODIFIED", {**pdb, "spec": {"maxUnavailable": 2}})  # a hand edit
    # One name in two kinds: two objects.
    assert news("Service", "ADDED", obj("Service", "cache", "7"))


def test_a_pass_reads_its_own_copy_and_cannot_change_the_index() -> None:
    indexes, _, kube, _ = world()
    indexes.put(obj("ConfigMap", "cache-config", "5", data={"a": "1"}))
    kube.get("v1", "ConfigMap", NS, "cache-config")["data"]["a"] = "changed"  # type: ignore[index]
    kube.list("v1", "ConfigMap", NS, OWNED)[0]["data"]["b"] = "added"
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"a": "1"}  # type: ignore[index]


def _entry(uid: str, rv: str) -> Packed:
    return Packed({"metadata": {"name": f"n-{uid}", "uid": uid, "resourceVersion": rv}})


@pytest.mark.parametrize(
    ("held", "listed", "list_rv", "gone"),
    [
        pytest.param([("a", "5"), ("b", "6")], {"a": "n-a", "b": "n-b"}, "100", set(), id="all-listed"),
        pytest.param([("a", "5"), ("b", "6")], {"a": "n-a"}, "100", {"b"}, id="deleted-in-the-gap"),
        pytest.param([("a", "5"), ("c", "101")], {"a": "n-a"}, "100", set(), id="created-after-the-list"),
        pytest.param([("b", "100")], {}, "100", {"b"}, id="as-old-as-the-list"),
        pytest.param([("b", "6")], {}, "", set(), id="list-rv-unknown"),
        pytest.param([("b", "x6")], {}, "100", set(), id="opaque-rv"),
        pytest.param([("", "6")], {}, "100", set(), id="no-uid"),
    ],
)
def test_ghosts_are_entries_older_than_a_list_that_lacks_them(
    held: list[tuple[str, str]], listed: dict[str, str], list_rv: str, gone: set[str]
) -> None:
    assert ghosts([_entry(uid, rv) for uid, rv in held], listed, list_rv) == gone


def test_a_sweep_hides_what_the_api_server_no_longer_has_and_keeps_what_came_after_it() -> None:
    indexes, api, kube, _ = world()
    indexes.put(obj("Pod", "cache-0", "5"))
    indexes.put(obj("Pod", "cache-1", "6"))  # scaled down while the watch was away: no DELETED came
    indexes.put(obj("Pod", "other-0", "7", instance="other"))  # another cluster's, listed
    api.listed = ({"uid-cache-0": "cache-0", "uid-other-0": "other-0"}, "150")
    indexes.put(obj("Pod", "cache-2", "151"))  # created after the LIST
    assert kube.sweep("Pod", NS) == (("cache-0", "other-0"), {"cache"})  # names found, clusters with ghosts
    assert api.calls == [("listing", "Pod", names.OWNED_SELECTOR)]
    assert [p["metadata"]["name"] for p in kube.list("v1", "Pod", NS, OWNED)] == ["cache-0", "cache-2"]
    assert kube.sweep("Pod", NS)[1] == set()  # the same ghost again: its pass was asked for already
    assert kube.get("v1", "Pod", NS, "cache-1") is None  # asked for: the API server says gone
    assert api.calls[-1] == ("get", "Pod", "cache-1")
    back = {"uid-cache-0": "cache-0", "uid-cache-1": "cache-1", "uid-cache-2": "cache-2"}
    api.listed = (back, "160")  # a later sweep, where it is (a wrong LIST, or an index that lagged it)
    kube.sweep("Pod", NS)
    assert [p["metadata"]["name"] for p in kube.list("v1", "Pod", NS, OWNED)] == ["cache-0", "cache-1", "cache-2"]


def test_a_sweep_of_a_kind_the_cache_does_not_hold_hides_nothing() -> None:
    cache = Cache()
    assert cache.swept("Pod", NS, {}, "100") == set()
    _, api, kube, _ = world()
    assert kube.sweep("Certificate", NS) == ((), set())  # cert-manager's CRD is not served: no LIST
    assert api.calls == []


def test_news_forgets_objects_a_list_no_longer_finds() -> None:
    news = News()
    for name in ("cache-0", "cache-1"):
        assert news("Pod", None, obj("Pod", name, "5"))
    assert news("Secret", None, obj("Secret", "cache-1", "5"))
    news.keep("Pod", NS, ["cache-0"])
    assert not news("Pod", "MODIFIED", obj("Pod", "cache-0", "6"))  # remembered: no news
    assert news("Pod", "MODIFIED", obj("Pod", "cache-1", "6"))  # forgotten: news again
    assert not news("Secret", "MODIFIED", obj("Secret", "cache-1", "6"))  # another kind: kept


def test_a_reissued_certificate_reads_as_issuing_until_the_watch_shows_it() -> None:
    indexes, api, kube, _ = world()
    indexes.put({**obj("Certificate", "cache-server", "5"), "status": {"conditions": []}})
    kube.reissue_certificate(NS, "cache-server", None, {"type": "Issuing", "status": "True"}, "5")
    (cert,) = kube.list(names.CERT_MANAGER_API, "Certificate", NS, OWNED)
    assert cert["status"]["conditions"] == [{"type": "Issuing", "status": "True"}]
    assert api.calls == [("reissue", "cache-server")]


def test_a_certificate_keeps_when_the_operator_last_applied_it() -> None:
    fields = [
        {"manager": names.MANAGER, "operation": "Apply", "time": "2026-11-27T10:00:00Z", "fieldsV1": {"f:spec": {}}},
        {"manager": "cert-manager-certificates-issuing", "operation": "Update", "time": "2026-11-27T10:00:01Z"},
    ]
    cert = {"kind": "Certificate", "metadata": {"name": "c", "managedFields": fields}, "spec": {}}
    assert slim("Certificate", cert)["metadata"]["managedFields"] == [
        {"manager": names.MANAGER, "operation": "Apply", "time": "2026-11-27T10:00:00Z"}
    ]


def test_a_valkeycluster_deleted_while_the_watch_was_away_reads_as_gone() -> None:
    indexes, api, kube, _ = world()
    indexes.put(obj(names.KIND, "cache", "5"))
    api.listed = ({}, "150")
    assert kube.sweep(names.KIND, NS) == ((), {"cache"})
    assert api.calls == [("listing", names.KIND, "")]  # every ValkeyCluster: they carry no labels of ours
    assert kube.get(names.API_VERSION, names.KIND, NS, "cache") is None  # asked for: gone


def test_several_gets_read_the_cache_and_ask_the_api_server_for_the_rest_in_order() -> None:
    indexes, api, kube, _ = world()
    indexes.put(obj("Secret", "cache-tls", "5"))
    wanted = [("v1", "Secret", NS, "cache-ca"), ("v1", "Secret", NS, "cache-tls"), ("v1", "Service", NS, "cache")]
    found = kube.get_many(wanted)
    assert [o and o["metadata"]["name"] for o in found] == [None, "cache-tls", None]
    assert sorted(api.calls) == [("get", "Secret", "cache-ca"), ("get", "Service", "cache")]


def test_several_applies_are_each_read_back_until_the_watch_reports_them() -> None:
    _, api, kube, _ = world()
    kube.apply_many([obj("Service", "cache", ""), obj("Service", "cache-ro", "")])
    assert sorted(api.calls) == [("apply", "Service", "cache"), ("apply", "Service", "cache-ro")]
    assert [o["metadata"]["name"] for o in kube.list("v1", "Service", NS, OWNED)] == ["cache", "cache-ro"]


def test_a_secret_cert_manager_wrote_is_read_by_name_from_memory_but_never_listed_as_the_operators() -> None:
    indexes, api, kube, _ = world()
    issued = obj("Secret", "cache-issued-server", "5", data={"tls.crt": "x"})
    issued["metadata"]["labels"] = names.issued_labels("cache")
    indexes.put(issued)
    indexes.put(obj("Secret", "cache-tls", "6"))
    assert kube.get("v1", "Secret", NS, "cache-issued-server") is not None
    assert [s["metadata"]["name"] for s in kube.list("v1", "Secret", NS, OWNED)] == ["cache-tls"]
    assert api.calls == []
    api.listed = ({"uid-cache-issued-server": "cache-issued-server", "uid-cache-tls": "cache-tls"}, "150")
    assert kube.sweep("Secret", NS)[1] == set()  # the sweep lists what the watch holds: both labels
    assert api.calls == [("listing", "Secret", names.SECRETS_SELECTOR)]
    api.listed = ({"uid-cache-tls": "cache-tls"}, "150")  # deleted while the watch was away
    assert kube.sweep("Secret", NS)[1] == {"cache"}  # its cluster (named by its own label) gets a pass


def test_a_write_the_watch_shows_leaves_no_record_behind_without_waiting_for_a_read() -> None:
    indexes, api, kube, _ = world()
    indexes.put(obj("ConfigMap", "cache-config", "5"))
    written = kube.apply(obj("ConfigMap", "cache-config", "5", data={"k": "v"}))  # the server says rv 101
    kube.cache.observed("ConfigMap", NS, "cache-config", "5")  # the watch still shows the state before it
    assert kube.cache.pending_writes() == 1
    assert kube.get("v1", "ConfigMap", NS, "cache-config") == slim("ConfigMap", written)
    indexes.put(obj("ConfigMap", "cache-config", written["metadata"]["resourceVersion"], data={"k": "v"}))
    kube.cache.observed("ConfigMap", NS, "cache-config", written["metadata"]["resourceVersion"])
    assert kube.cache.pending_writes() == 0  # a settled cluster's next read may be a slow timer away
    assert cast(dict[str, Any], kube.get("v1", "ConfigMap", NS, "cache-config"))["data"] == {"k": "v"}
    assert [c[0] for c in api.calls] == ["apply"]


class _RacingIndex(dict):  # type: ignore[type-arg]
    """An index whose read returns what it held, and then (as kopf's thread may, before the pass goes on)
    takes the watch's next event: the entry updated, and the event's handler run."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.then: Any = None

    def __getitem__(self, key: Any) -> Any:
        held = list(super().__getitem__(key))
        self.take_event()
        return held

    def take_event(self) -> None:
        if self.then is not None:
            then, self.then = self.then, None
            then()


def _racing_world(kind: str, racing: _RacingIndex | None = None) -> tuple[FakeIndexes, _RacingIndex, CachedKube]:
    """world(), with the index of `kind` taking the watch's next event during a read."""
    indexes, racing = FakeIndexes(), racing if racing is not None else _RacingIndex()
    indexes.by_kind[kind] = racing
    cache = Cache(Clock())
    cache.attach(indexes.named())
    return indexes, racing, CachedKube(API(), cache)


def test_a_write_the_watch_shows_during_a_read_is_never_read_as_the_state_before_it() -> None:
    indexes, racing, kube = _racing_world("Secret")
    cache = kube.cache
    indexes.put(obj("Secret", "cache-tls", "5", data={"tls.crt": "OLD"}))
    written = kube.apply(obj("Secret", "cache-tls", "5", data={"tls.crt": "NEW"}))
    rv = written["metadata"]["resourceVersion"]

    def the_watch_shows_it() -> None:
        indexes.put(obj("Secret", "cache-tls", rv, data={"tls.crt": "NEW"}))
        cache.observed("Secret", NS, "cache-tls", rv)

    racing.then = the_watch_shows_it
    assert kube.get("v1", "Secret", NS, "cache-tls")["data"] == {"tls.crt": "NEW"}  # type: ignore[index]
    assert cache.pending_writes() == 0
    racing.then = None


def test_a_write_whose_event_came_before_its_record_leaves_no_record() -> None:
    indexes, _, kube, _ = world()

    class EchoFirst(API):
        def apply(self, manifest: Any) -> dict[str, Any]:
            out = super().apply(manifest)
            indexes.put(obj(manifest["kind"], manifest["metadata"]["name"], out["metadata"]["resourceVersion"]))
            kube.cache.observed(manifest["kind"], NS, manifest["metadata"]["name"], out["metadata"]["resourceVersion"])
            return out

    kube.kube = EchoFirst()
    kube.apply(obj("ConfigMap", "cache-config", ""))
    assert kube.cache.pending_writes() == 0


def test_a_write_landing_during_a_read_keeps_its_record() -> None:
    indexes, racing, kube = _racing_world("ConfigMap")
    cache = kube.cache
    indexes.put(obj("ConfigMap", "cache-config", "5", data={"v": "0"}))
    first = kube.apply(obj("ConfigMap", "cache-config", "5", data={"v": "1"}))
    indexes.put(obj("ConfigMap", "cache-config", first["metadata"]["resourceVersion"], data={"v": "1"}))  # shown
    # While a read holds the first write's record, another pass writes again: the index shows the first.
    racing.then = lambda: kube.apply(obj("ConfigMap", "cache-config", "0", data={"v": "2"}))
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"v": "1"}  # type: ignore[index]
    assert cache.pending_writes() == 1  # the second write's record stays...
    assert kube.get("v1", "ConfigMap", NS, "cache-config")["data"] == {"v": "2"}  # type: ignore[index]


class _RacingLookup(_RacingIndex):
    """A racing index whose membership test answers what it held, and then takes the watch's next event."""

    def __contains__(self, key: object) -> bool:
        held = super().__contains__(key)
        self.take_event()
        return held


def test_a_list_finds_an_object_whose_first_write_the_watch_shows_during_the_read() -> None:
    """A cluster's LIST takes the names it wrote before its index entries: the other order could read the
    index before the watch stored the new object, and the records after the watch's event dropped its
    record, and find it in neither."""
    indexes, racing, kube = _racing_world("ConfigMap", _RacingLookup())
    cache = kube.cache
    created = kube.apply(obj("ConfigMap", "cache-config", "", data={"v": "1"}))  # a first write: nothing before
    rv = created["metadata"]["resourceVersion"]

    def the_watch_shows_it() -> None:
        indexes.put(obj("ConfigMap", "cache-config", rv, data={"v": "1"}))
        cache.observed("ConfigMap", NS, "cache-config", rv)

    racing.then = the_watch_shows_it
    listed = kube.list("v1", "ConfigMap", NS, OWNED)
    assert racing.then is None  # the watch's event came during the LIST's read
    assert [(o["metadata"]["name"], o["data"]) for o in listed] == [("cache-config", {"v": "1"})]
    assert cache.pending_writes() == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        ({}, None),
        ({"metadata": None}, None),
        ({"metadata": {}}, None),
        ({"metadata": {"resourceVersion": ""}}, None),
        ({"metadata": {"resourceVersion": "42"}}, "42"),
        ({"metadata": {"resourceVersion": 42}}, "42"),
    ],
)
def test_resource_version_is_a_string_or_none(body: dict[str, Any] | None, expected: str | None) -> None:
    assert resource_version(body) == expected
