"""decide() over hand-built snapshots: given what a pass saw, exactly these writes, Events and status.

A `World` is the test's bookkeeping of what the API server and the pods would hold after the decided writes
(applied manifests stored as they are, pods made from the StatefulSet's template, pods' reports): plain
data that the next snapshot is built from, so several passes read like the runbook.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.unit.conftest import NOW, example_body
from valkey_operator import names
from valkey_operator.actions import (
    Action,
    Apply,
    ClusterFailover,
    DeleteCertificate,
    DeletePod,
    Promote,
    Relabel,
    Reload,
    Repoint,
    SetUsers,
    Switchover,
)
from valkey_operator.api.spec import SpecError, ValkeyCluster, parse_cluster
from valkey_operator.clock import iso
from valkey_operator.decide import Decision, decide, decide_invalid, needs_fast_look
from valkey_operator.pki.certmanager import STUCK_AFTER
from valkey_operator.pki.inspect import describe_pem, split_pem
from valkey_operator.pki.issue import LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.validate import issued_by
from valkey_operator.reconcile import changed, with_users_held
from valkey_operator.snapshot import (
    ROLE_MASTER,
    ROLE_SLAVE,
    CertManagerRead,
    ClusterNode,
    ClusterView,
    PodReport,
    Replication,
    Snapshot,
    secret_data,
    secret_names,
)

FQDN = "{}.cache-headless.default.svc"


def cluster(annotations: dict[str, str] | None = None, **spec: Any) -> ValkeyCluster:
    body = example_body(**spec)
    body["metadata"].update(uid="uid-cache", generation=1, annotations=annotations or {})
    return parse_cluster(body)


@dataclass
class World:
    """What the API server and the pods hold, as the next pass will read it."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, PodReport] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    primary: str | None = None  # who Valkey says is the primary (pods boot as replicas: none at first)
    follows: dict[str, str] = field(default_factory=dict)  # replica -> the pod it replicates from
    data: int = 0  # the primary's replication offset: what was written
    synced: dict[str, int] = field(default_factory=dict)  # replica -> the offset it holds
    served: dict[str, str] = field(default_factory=dict)  # pod -> fingerprint it presents
    acl: dict[str, dict[str, str]] = field(default_factory=dict)  # pod -> its ACL LIST lines, once asked
    serving: dict[str, bytes] = field(default_factory=dict)  # pod -> the certificate it presents (in memory)
    loaded: dict[str, bytes] = field(default_factory=dict)  # pod -> the trust bundle it loaded (in memory)
    uid: int = 0
    release: tuple[int, int, int] | None = None  # the Valkey release every pod says it runs (INFO server)
    commands: frozenset[str] = frozenset(("get", "set", "acl", "acl|whoami", "config", "config|get"))

    def snapshot(self) -> Snapshot:
        return Snapshot(copy.deepcopy(self.objects), None, dict(self.reports), copy.deepcopy(self.status))

    def store(self, manifest: Any) -> None:
        obj = copy.deepcopy(dict(manifest))
        key = (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] == "StatefulSet":
            old = self.objects.get(key)
            generation = (old["metadata"]["generation"] + 1) if old else 1
            obj["metadata"]["generation"] = generation
            obj["status"] = {"observedGeneration": generation}
        self.objects[key] = obj

    def template(self) -> tuple[str, dict[str, Any]]:
        sts = self.objects[("StatefulSet", "cache")]
        meta = sts["spec"]["template"]["metadata"]
        return meta["annotations"][names.ANN_TEMPLATE_HASH], meta

    def start_pod(self, name: str, ready: bool = True) -> None:
        """The StatefulSet controller and the kubelet: a pod on the current template, running. It starts
        empty, as a replica of the primary its ConfigMap names (of itself when it is the one named)."""
        self.uid += 1
        if self.primary == name:
            self.primary = None
        cm = self.objects[("ConfigMap", "cache-config")]["data"]
        self.follows[name] = cm.get("primary") or name
        self.synced[name] = 0
        _, meta = self.template()
        self.objects[("Pod", name)] = {
            "metadata": {
                "name": name,
                "uid": f"pod-uid-{self.uid}",
                "labels": dict(meta["labels"]),
                "annotations": dict(meta["annotations"]),
            },
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.9",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        self.load(name)

    def load(self, pod: str) -> None:
        """What a start or a reload reads from the (already refreshed) files."""
        tls = self.secret("cache-tls")
        self.served[pod] = self.server_fingerprint()
        self.serving[pod], self.loaded[pod] = tls.data["tls.crt"], tls.data["ca.crt"]

    def server_fingerprint(self) -> str:
        tls = secret_data(self.objects[("Secret", "cache-tls")])
        assert tls is not None
        return describe_pem(tls.data["tls.crt"]).fingerprint_sha256

    def report(self) -> None:
        """What each running pod says over TLS."""
        self.reports = {}
        for (kind, name), _ in self.objects.items():
            if kind != "Pod":
                continue
            if name == self.primary:
                rep = Replication(ROLE_MASTER, offset=self.data, release=self.release)
            else:
                source = self.follows.get(name, self.primary or name)
                linked = source == self.primary
                if linked:
                    self.synced[name] = self.data
                offset = self.synced.get(name, 0)
                rep = Replication(ROLE_SLAVE, FQDN.format(source), link_up=linked, offset=offset, release=self.release)
            self.reports[name] = PodReport(rep, self.served.get(name), acl=self.acl.get(name), commands=self.commands)

    def carry_out(self, decision: Decision) -> None:
        """The writes of a pass, as the API server and Valkey would take them."""
        applied: dict[str, dict[str, str]] = {}
        for action in decision.actions:
            if isinstance(action, Apply):
                self.store(action.manifest)
            elif isinstance(action, Relabel):
                self.objects[("Pod", action.pod)]["metadata"]["labels"][names.ROLE_LABEL] = action.role
            elif isinstance(action, DeleteCertificate):
                del self.objects[("Certificate", action.certificate)]
            elif isinstance(action, DeletePod):
                del self.objects[("Pod", action.pod)]
                self.start_pod(action.pod)  # back at once on the current template
            elif isinstance(action, Switchover):
                for pod in self.pods():
                    if pod not in (action.pod, action.target):
                        self.follows[pod] = action.pod  # the third pod keeps following the old primary
                self.primary = action.target
                self.follows.pop(action.target, None)
                self.follows[action.pod] = action.target
            elif isinstance(action, Promote):
                self.primary = action.pod
                self.data = max(self.data, self.synced.get(action.pod, 0))
                self.follows.pop(action.pod, None)
            elif isinstance(action, Repoint):
                self.follows[action.pod] = action.primary.split(".")[0]
            elif isinstance(action, Reload):
                self.load(action.pod)
            elif isinstance(action, SetUsers):  # as Valkey lists them: `reset` is not kept
                lines = {name: " ".join(("user", name, *args[1:])) for name, args in action.users}
                self.acl[action.pod] = {**{k: v for k, v in self.acl.get(action.pod, {}).items()
                                           if k not in action.remove}, **lines}  # fmt: skip
                applied[action.pod] = self.acl[action.pod]
        # The status patch the handler sends (with what each SetUsers left, as the reconciler records it),
        # applied as the API server applies a JSON merge patch.
        decision = with_users_held(decision, applied)
        merge(self.status, changed(self.status, decision.status))
        self.report()

    def objects_data(self, secret: str, key: str = "users.conf") -> bytes:
        data = secret_data(self.objects[("Secret", secret)])
        assert data is not None
        return data.data[key]

    def pods(self) -> list[str]:
        return sorted(name for kind, name in self.objects if kind == "Pod")

    def secret(self, name: str) -> Any:
        return secret_data(self.objects[("Secret", name)])


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def pass_(world: World, c: ValkeyCluster, now: datetime = NOW) -> Decision:
    decision = decide(c, world.snapshot(), now)
    world.carry_out(decision)
    return decision


def running(c: ValkeyCluster) -> World:
    """A cluster after its first passes: objects applied, three ready pods, roles labelled, status Ready."""
    world = World()
    pass_(world, c)
    for pod in c.names.pods(c.spec.pod_count):
        world.start_pod(pod)
    world.report()
    pass_(world, c)
    pass_(world, c)
    return world


def kinds(actions: tuple[Action, ...]) -> list[str]:
    return [str(a) for a in actions]


def condition(d: Decision, kind: str) -> dict[str, Any]:
    return next(c for c in d.status["conditions"] if c["type"] == kind)


def test_first_pass_applies_every_object_in_order_and_touches_no_pod() -> None:
    d = decide(cluster(), Snapshot(), NOW)
    assert kinds(d.actions) == [
        "apply Secret/cache-ca",
        "apply Secret/cache-tls",
        "apply Secret/cache-client-app",
        "apply Secret/cache-auth",
        "apply Secret/cache-connection",
        "apply ConfigMap/cache-config",
        "apply Service/cache",
        "apply Service/cache-headless",
        "apply Service/cache-ro",
        "apply StatefulSet/cache",
        "apply PodDisruptionBudget/cache",
    ]
    # The StatefulSet is being created: the pods are awaited, so the fast timer runs.
    assert d.status["phase"] == "Provisioning"
    assert d.events == ()
    assert d.retry_after is None


def test_an_object_someone_else_made_with_a_derived_name_stops_the_pass_and_names_it() -> None:
    taken = Snapshot(foreign=(("Secret", "cache-tls"), ("Service", "cache-ro")))
    d = decide(cluster(), taken, NOW)
    assert d.actions == ()
    assert (condition(d, "Degraded")["reason"], condition(d, "Ready")["status"]) == ("ObjectNotOwned", "False")
    assert condition(d, "Degraded")["message"].startswith("Secret cache-tls, Service cache-ro: already in namespace")
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ObjectNotOwned")]


def test_status_tls_says_what_clients_meet() -> None:
    assert decide(cluster(), Snapshot(), NOW).status["tls"] == {"mode": "required", "clientAuth": "required"}
    # Without TLS no client presents a certificate, whatever clientAuth would be with TLS on.
    off = decide(cluster(tls={"mode": "disabled"}), Snapshot(), NOW).status["tls"]
    assert off == {"mode": "disabled", "clientAuth": "none"}


def test_cluster_mode_is_ready_only_when_formed_and_every_slot_is_served() -> None:
    c = cluster(mode="cluster", shards=3, replicasPerShard=1)
    world = World()
    pass_(world, c)
    pods6 = c.names.pods(c.spec.pod_count)
    for pod in pods6:
        world.start_pod(pod)
    ranges = {"cache-0": ((0, 5461),), "cache-1": ((5462, 10922),), "cache-2": ((10923, 16383),)}

    def nodes(me: str, slots: Mapping[str, tuple[tuple[int, int], ...]]) -> tuple[ClusterNode, ...]:
        return tuple(
            ClusterNode(f"id-{p}", frozenset({"master", *({"myself"} if p == me else set())}), None, slots.get(p, ()))
            for p in pods6
        )

    def verdicts(d: Decision) -> tuple[tuple[str, str], ...]:
        return tuple((condition(d, k)["status"], condition(d, k)["reason"]) for k in ("ClusterFormed", "SlotsAssigned"))

    # Lone nodes: not formed, no slot served; never Ready.
    world.reports = {
        p: PodReport(cluster=ClusterView(f"id-{p}", "fail", nodes(p, {})[pods6.index(p) :][:1])) for p in pods6
    }
    d = pass_(world, c)
    assert (condition(d, "Ready")["status"], condition(d, "Ready")["reason"]) == ("False", "ClusterNotFormed")
    assert d.status["phase"] == "Provisioning"
    assert verdicts(d) == (("False", "NodesNotMet"), ("False", "SlotsUncovered"))
    # Met, but shard 2's slots not served: still not Ready, and the message says how many are.
    world.reports = {
        p: PodReport(cluster=ClusterView(f"id-{p}", "ok", nodes(p, {**ranges, "cache-2": ()}))) for p in pods6
    }
    d = pass_(world, c)
    assert condition(d, "Ready")["status"] == "False"
    assert verdicts(d) == (("True", "Formed"), ("False", "SlotsUncovered"))
    assert "10923 of 16384 slots" in condition(d, "SlotsAssigned")["message"]
    # Formed, every slot served: Ready.
    world.reports = {p: PodReport(cluster=ClusterView(f"id-{p}", "ok", nodes(p, ranges))) for p in pods6}
    d = pass_(world, c)
    assert (condition(d, "Ready")["status"], d.status["phase"]) == ("True", "Ready")
    assert verdicts(d) == (("True", "Formed"), ("True", "AllSlotsServed"))
    world.reports.pop("cache-0")  # a node that does not answer is not known to be ok
    d = pass_(world, c)
    assert condition(d, "Ready")["status"] == "False"
    assert verdicts(d)[0] == ("False", "NodesNotAnswering")


def test_other_modes_report_no_cluster_conditions() -> None:
    d = decide(cluster(), Snapshot(), NOW)
    assert [c["type"] for c in d.status["conditions"]] == [
        "Ready", "CertificatesReady", "CertificateExpiringSoon", "Rotating", "Degraded",
    ]  # fmt: skip


def test_steady_state_writes_nothing_at_all() -> None:
    c = cluster()
    world = running(c)
    before = world.snapshot()
    d = decide(c, before, NOW)
    assert d.actions == ()
    assert d.events == ()
    assert {k: v for k, v in d.status.items() if before.status.get(k) != v} == {}
    assert d.status["phase"] == "Ready"
    assert condition(d, "Ready")["status"] == "True"
    assert d.status["primary"] == "cache-0"


def test_pods_become_ready_within_the_pass_that_sees_them() -> None:
    c = cluster()
    world = World()
    pass_(world, c)
    world.start_pod("cache-0")
    world.start_pod("cache-1", ready=False)
    world.start_pod("cache-2")
    world.report()
    d = pass_(world, c)
    assert d.status["readyReplicas"] == 2
    assert d.status["phase"] == "Provisioning"
    assert condition(d, "Ready")["status"] == "False"


def roll_to_the_end(world: World, c: ValkeyCluster, now: datetime) -> list[str]:
    """Passes until nothing is left to do; the pod writes in order."""
    steps: list[str] = []
    for _ in range(20):  # bounded: three pods, a switchover, a few waits
        d = pass_(world, c, now)
        steps += [s for s in kinds(d.actions) if not s.startswith("apply")]
        if not d.actions and d.status["phase"] == "Ready":
            return steps
    raise AssertionError(f"the rollout did not finish: {steps}")


def test_scheduled_reissue_rolls_replicas_first_then_switches_over_then_the_old_primary() -> None:
    c = cluster()
    world = running(c)
    due = datetime.fromisoformat(world.status["certificates"]["server"]["renewalTime"].replace("Z", "+00:00"))
    d = pass_(world, c, due + timedelta(minutes=1))
    assert "apply Secret/cache-tls" in kinds(d.actions)
    assert "apply StatefulSet/cache" in kinds(d.actions)
    # The pass that changes the template deletes no pod (it could come back on the old template) but
    # already says Rotating, so the fast timer takes the next step (it used to wait for the slow timer).
    assert not [a for a in d.actions if isinstance(a, DeletePod)]
    assert d.status["phase"] == "Rotating"
    assert ("Normal", "CertificateRotated") in [(e.type, e.reason) for e in d.events]
    assert "reason scheduled" in d.events[0].message
    steps = roll_to_the_end(world, c, due + timedelta(minutes=1))
    assert steps == [
        "delete pod cache-2",
        "label cache-2 replica",  # a new pod has no role until the operator gives it one
        "delete pod cache-1",
        "label cache-1 replica",
        "switchover cache-0 -> cache-1",
        # Valkey reports the new primary: labels follow it, and the third pod follows it too before the old
        # primary restarts (it used to keep following cache-0, which took it down with cache-0).
        "label cache-1 primary",
        "label cache-0 replica",
        "repoint cache-2 -> cache-1.cache-headless.default.svc",
        # Only in a later pass, once every replica follows the new primary.
        "delete pod cache-0",
        "label cache-0 replica",
    ]
    assert world.status["primary"] == "cache-1"
    assert world.objects[("ConfigMap", "cache-config")]["data"]["primary"] == "cache-1"


def test_a_switchover_in_flight_is_awaited_without_sleeping() -> None:
    c = cluster()
    world = running(c)
    world.reports["cache-0"] = PodReport(Replication(ROLE_MASTER, failover_state="waiting-for-sync"))
    d = decide(c, world.snapshot(), NOW)
    assert d.actions == ()
    assert d.retry_after is not None
    assert d.retry_after <= 1


def test_manual_reissue_is_reason_manual_and_happens_once() -> None:
    c = cluster(annotations={names.ANN_ROTATE_CERTIFICATES: "r1"})
    world = running(cluster())
    old = world.server_fingerprint()
    d = pass_(world, c)
    assert world.server_fingerprint() != old
    assert any("reason manual" in e.message for e in d.events)
    roll_to_the_end(world, c, NOW)
    assert not [e for e in pass_(world, c).events if e.reason == "CertificateRotated"]


def bundle(world: World) -> list[bytes]:
    return split_pem(world.secret("cache-tls").data["ca.crt"])


def trusted(cert: bytes, bundle_pem: bytes) -> bool:
    return any(issued_by(cert, ca) for ca in split_pem(bundle_pem))


@pytest.mark.parametrize("strategy", ["RollingRestart", "HotReload"])
def test_ca_rotation_in_three_phases_never_breaks_a_probe_a_replica_or_a_client(strategy: str) -> None:
    """The CA rotation that lost writes: the kubelet refreshed the files with a new-CA certificate while the
    running server trusted only the old CA, so the liveness probe failed and the primary restarted empty.
    Here every pass is checked against what the pods hold in memory and what their files say."""
    spec = {"rotation": {"strategy": strategy}, "certificates": {"caRotationOverlap": "1h"}}
    world = running(cluster(tls=spec))
    c = cluster(annotations={names.ANN_ROTATE_CA: "c1"}, tls=spec)
    old_ca = world.secret("cache-ca").data["tls.crt"]
    old_client_bundle = world.secret("cache-connection").data["ca.crt"]  # an application loaded it before
    phases: list[str] = []
    restarts = {"": 0, "Trusting": 0, "Reissuing": 0, "Retiring": 0}
    now = NOW
    for _ in range(60):  # bounded: three phases, three rolls of three pods, an overlap
        d = pass_(world, c, now)
        files_cert, files_bundle = world.secret("cache-tls").data["tls.crt"], world.secret("cache-tls").data["ca.crt"]
        for pod in world.pods():
            served, loaded = world.serving[pod], world.loaded[pod]
            # The probe presents the files' certificate to the running server, and verifies the server with
            # the files' bundle; replicas verify each other with what they loaded.
            assert trusted(files_cert, loaded), f"{pod}'s probe would fail ({phases})"
            assert trusted(served, files_bundle), f"{pod} serves what its own files do not trust ({phases})"
            assert all(trusted(served, world.loaded[other]) for other in world.pods()), phases
        phase = (world.status["certificates"].get("caRotation") or {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        restarts[phases[-1] if phases else ""] += sum(isinstance(a, DeletePod) for a in d.actions)
        if phases in ([], ["Trusting"]):
            # Until the overlap is over, a client with the old ca.crt verifies every server.
            assert all(trusted(world.serving[p], old_client_bundle) for p in world.pods()), phases
        if phases and phase is None and d.status["phase"] == "Ready":
            break
        now += timedelta(minutes=5)
    assert phases == ["Trusting", "Reissuing", "Retiring"]
    assert [b.strip() for b in bundle(world)] != [old_ca.strip()]
    assert len(bundle(world)) == 1
    assert not trusted(world.secret("cache-tls").data["tls.crt"], old_ca)
    # The rotation's bookkeeping is gone from the CA Secret too, not only from status.
    assert names.ANN_CA_ROTATION_PHASE not in world.secret("cache-ca").annotations
    assert "caRotation" not in world.status["certificates"]
    assert now - NOW >= timedelta(hours=2)  # the overlap was kept, before and after the leaves moved
    # Each trust change restarts every pod once; under HotReload the new leaves reload in place.
    assert restarts == {
        "": 0,
        "Trusting": 3,
        "Reissuing": 3 if strategy == "RollingRestart" else 0,
        "Retiring": 3,
    }


def test_the_primary_is_what_the_pods_report_not_the_configmap() -> None:
    """A FAILOVER run by hand (or an operator killed right after its own): labels, ConfigMap and status
    follow the pods."""
    c = cluster()
    world = running(c)
    world.primary = "cache-2"
    world.follows = {"cache-0": "cache-2", "cache-1": "cache-2"}
    world.report()
    d = pass_(world, c)
    assert kinds(d.actions) == [
        "label cache-2 primary",
        "label cache-0 replica",
        "apply ConfigMap/cache-config",
    ]
    assert d.status["primary"] == "cache-2"
    assert ("Normal", "PrimaryMoved") in [(e.type, e.reason) for e in d.events]


def test_ready_is_false_while_no_pod_serves_as_primary() -> None:
    c = cluster()
    world = running(c)
    world.reports = {p: PodReport(Replication(ROLE_SLAVE, FQDN.format("cache-9"))) for p in world.pods()}
    d = decide(c, world.snapshot(), NOW)
    assert condition(d, "Ready")["status"] == "False"
    assert d.status["phase"] != "Ready"


def test_status_reports_what_pods_serve_while_a_tls_change_rolls() -> None:
    c = cluster(tls={"mode": "preferred"})
    world = running(c)
    assert world.status["tls"]["mode"] == "preferred"
    back = cluster(tls={"mode": "required"})
    d = pass_(world, back)
    assert d.status["phase"] == "Rotating"
    assert d.status["tls"]["mode"] == "preferred"  # a pod still accepts plaintext
    roll_to_the_end(world, back, NOW)
    assert world.status["tls"]["mode"] == "required"


def test_bad_input_changes_nothing_and_warns_once() -> None:
    c = cluster(tls={"issuer": {"type": "External", "secretName": "mine"}, "clients": []})
    first = decide(c, Snapshot(), NOW)
    assert first.actions == ()
    assert condition(first, "CertificatesReady")["status"] == "False"
    assert condition(first, "CertificatesReady")["reason"] == "ExternalSecretNotFound"
    assert [e.reason for e in first.events] == ["ExternalSecretNotFound"]
    again = decide(c, Snapshot(status=dict(first.status)), NOW)
    assert again.actions == ()
    assert again.events == ()


def test_a_spec_error_keeps_all_five_conditions() -> None:
    world = running(cluster())
    error = SpecError("InvalidTopology", "replicas must be 1 in standalone mode.")
    d = decide_invalid(world.status, 2, error, NOW + timedelta(minutes=1))
    by_type = {c["type"]: c for c in d.status["conditions"]}
    assert list(by_type) == ["Ready", "CertificatesReady", "CertificateExpiringSoon", "Rotating", "Degraded"]
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "InvalidTopology")
    assert (by_type["Degraded"]["status"], by_type["Degraded"]["reason"]) == ("True", "InvalidTopology")
    # What was last observed of the certificates stays, with its transition time.
    before = {c["type"]: c for c in world.status["conditions"]}
    assert by_type["CertificatesReady"] == {**before["CertificatesReady"], "observedGeneration": 2}
    assert d.status["phase"] == "Failed"
    assert [e.reason for e in d.events] == ["InvalidTopology"]
    assert decide_invalid(d.status, 2, error, NOW).events == ()
    fresh = {c["type"]: c["status"] for c in decide_invalid({}, 1, error, NOW).status["conditions"]}
    assert fresh["CertificatesReady"] == "Unknown"


def test_the_next_renewal_is_when_the_pass_wants_to_look_again() -> None:
    """A renewal due before the slow timer is not left to it (the e2e runs the default 300 s timer)."""
    c = cluster()
    world = running(c)
    d = decide(c, world.snapshot(), NOW)
    renewal = world.status["certificates"]["server"]["renewalTime"]
    assert d.next_due is not None
    assert d.next_due.strftime("%Y-%m-%dT%H:%M:%SZ") == renewal
    # During a CA rotation's overlap, its end is the next thing the clock brings.
    spec = {"certificates": {"caRotationOverlap": "30m"}}
    world = running(cluster(tls=spec))
    rotating = cluster(annotations={names.ANN_ROTATE_CA: "c1"}, tls=spec)
    pass_(world, rotating)
    assert decide(rotating, world.snapshot(), NOW).next_due == NOW + timedelta(minutes=30)


def test_the_fast_timer_runs_while_work_is_near() -> None:
    hour = timedelta(hours=1)
    soon = {"phase": "Ready", "certificates": {"server": {"renewalTime": "2026-06-01T12:04:00Z"}}}
    later = {"phase": "Ready", "certificates": {"server": {"renewalTime": "2026-07-01T12:00:00Z"}}}
    assert needs_fast_look({"phase": "Rotating"}, NOW, hour)
    assert needs_fast_look({"phase": "Provisioning"}, NOW, hour)
    assert needs_fast_look({"phase": "Ready", "certificates": {"caRotation": {"phase": "Trusting"}}}, NOW, hour)
    assert needs_fast_look(soon, NOW, hour)  # a renewal the slow timer would see too late
    assert not needs_fast_look(later, NOW, hour)
    assert not needs_fast_look({"phase": "Ready"}, NOW, hour)
    assert not needs_fast_look({}, NOW, hour)

    # cert-manager at work: looked at often; a failed or stuck issuance at the slow timer's pace (cert-manager
    # turns CertificateIssuing into CertificateNotReady after STUCK_AFTER).
    def certificates(reason: str, since: datetime = NOW) -> dict[str, Any]:
        cond = {"type": "CertificatesReady", "status": "False", "reason": reason, "lastTransitionTime": iso(since)}
        return {"phase": "Ready", "conditions": [cond]}

    assert needs_fast_look(certificates("CertificateIssuing"), NOW, hour)
    assert not needs_fast_look(certificates("CertificateIssuing", NOW - timedelta(minutes=11)), NOW, hour)
    assert not needs_fast_look(certificates("CertificateNotReady"), NOW, hour)


def _formed_shards(world: World, c: ValkeyCluster, start: bool = True) -> None:
    from tests.unit.test_sharding import FORMED

    for pod in c.names.pods(c.spec.pod_count) if start else ():
        world.start_pod(pod)
    role = {p: ROLE_MASTER if p in ("cache-0", "cache-1", "cache-2") else "slave" for p in FORMED}
    world.reports = {p: PodReport(Replication(role[p], link_up=role[p] == "slave"), cluster=FORMED[p]) for p in FORMED}


def _formed_world(c: ValkeyCluster) -> World:
    """A sharded cluster after its first passes, its pods reporting the formed cluster."""
    world = World()
    pass_(world, c)
    _formed_shards(world, c)
    pass_(world, c)
    _formed_shards(world, c, start=False)  # a pass's own reports know nothing of the cluster
    return world


def test_a_sharded_roll_waits_while_a_running_pod_is_silent_or_a_shard_is_not_served() -> None:
    """A silent pod may be a primary the roll does not know of; a pod not ready because its shard's primary
    is gone may hold the shard's only copy. Neither is the moment to restart anything."""
    c = cluster(mode="cluster", shards=3, replicasPerShard=1)
    world = World()
    pass_(world, c)
    _formed_shards(world, c)
    pass_(world, c)
    changed_spec = cluster(mode="cluster", shards=3, replicasPerShard=1, resources={"limits": {"memory": "1Gi"}})
    pass_(world, changed_spec)  # the template changes: no pod restarts in that pass
    _formed_shards(world, c, start=False)
    assert "delete pod cache-5" in kinds(decide(changed_spec, world.snapshot(), NOW).actions)
    silent = world.reports.pop("cache-1")
    held = decide(changed_spec, world.snapshot(), NOW)
    assert not [a for a in held.actions if isinstance(a, (DeletePod, ClusterFailover))], kinds(held.actions)
    world.reports["cache-1"] = silent
    from tests.unit.test_sharding import SLOTS, seen_by_all

    unserved = seen_by_all(
        {p: f"id{i}" for i, p in enumerate(c.names.pods(6))},
        {p: r for p, r in SLOTS.items() if p != "cache-2"},
        {"cache-3": "id0", "cache-4": "id1", "cache-5": "id2"},
    )
    for p, v in unserved.items():
        world.reports[p] = dataclasses.replace(world.reports[p], cluster=v)
    held = decide(changed_spec, world.snapshot(), NOW)
    assert not [a for a in held.actions if isinstance(a, (DeletePod, ClusterFailover))], kinds(held.actions)


def test_a_sharded_scale_down_keeps_every_pod_while_a_running_pod_is_silent() -> None:
    c = cluster(mode="cluster", shards=3, replicasPerShard=1)
    world = World()
    pass_(world, c)
    _formed_shards(world, c)
    pass_(world, c)
    world.reports.pop("cache-4")
    fewer = decide(cluster(mode="cluster", shards=3, replicasPerShard=0), world.snapshot(), NOW)
    replicas = [
        a.manifest["spec"]["replicas"]
        for a in fewer.actions
        if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"
    ]
    assert replicas in ([], [6]), replicas


def test_a_crash_looping_shard_pod_is_replaced_by_the_roll_that_carries_its_fix() -> None:
    """cache-4's server crash-loops on a bad setting (not ready, no answer); the fixed spec must reach it: it
    holds nothing, and the other five serve every slot."""
    c = cluster(mode="cluster", shards=3, replicasPerShard=1)
    world = World()
    pass_(world, c)
    _formed_shards(world, c)
    pass_(world, c)
    fixed = cluster(mode="cluster", shards=3, replicasPerShard=1, resources={"limits": {"memory": "1Gi"}})
    pass_(world, fixed)
    _formed_shards(world, c, start=False)
    world.reports.pop("cache-4")
    world.objects[("Pod", "cache-4")]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert "delete pod cache-4" in kinds(decide(fixed, world.snapshot(), NOW).actions)
    # Ready but silent (cut off, perhaps a primary): nothing restarts.
    world.objects[("Pod", "cache-4")]["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert not [a for a in decide(fixed, world.snapshot(), NOW).actions if isinstance(a, DeletePod)]


def test_a_shards_change_while_slots_move_for_another_count_is_held_until_the_migration_is_over() -> None:
    """Slots move between the three shards (a growth's rebalance, say) and the user asks for 5 meanwhile. A
    running migration cannot be redirected: a condition says so and the count is held at 3 (the StatefulSet
    keeps its size) while the rest of the pass goes on; once no node migrates, 5 is taken up."""
    from tests.unit.test_sharding import SLOTS, seen_by_all
    from valkey_operator.snapshot import SlotMigration

    nine: dict[str, Any] = {"image": "valkey/valkey:9.1.2"}
    c = cluster(mode="cluster", shards=3, replicasPerShard=1, **nine)
    world = World()
    pass_(world, c)
    _formed_shards(world, c)
    pass_(world, c)
    world.status["reshardingTo"] = 3
    ids = {p: f"id{i}" for i, p in enumerate(c.names.pods(6))}
    job = SlotMigration("EXPORT", "4096-5461", "id0", "id1", "snapshotting")
    busy = {p: dataclasses.replace(v, migrations=(job,)) for p, v in seen_by_all(ids, SLOTS, {}).items()}
    for p, v in busy.items():
        world.reports[p] = dataclasses.replace(world.reports[p], cluster=v)
    five = cluster(mode="cluster", shards=5, replicasPerShard=1, **nine)
    d = decide(five, world.snapshot(), NOW)
    assert sts_sizes(d) == []  # held: no pod added while slots move for three shards
    assert condition(d, "Ready")["reason"] == "ShardsChangeDuringMigration"
    assert condition(d, "Degraded")["reason"] == "ShardsChangeDuringMigration"
    assert "so that 3 shards serve them" in condition(d, "Ready")["message"]
    assert ("Warning", "ShardsChangeDuringMigration") in [(e.type, e.reason) for e in d.events]
    assert d.status["phase"] == "Degraded"
    assert d.retry_after is not None  # form looks again while slots move
    assert d.retry_after <= 1.0
    # The migration is over: the change is taken up (the StatefulSet grows to five shards of two).
    for p, v in seen_by_all(ids, SLOTS, {}).items():
        world.reports[p] = dataclasses.replace(world.reports[p], cluster=v)
    d = decide(five, world.snapshot(), NOW)
    assert condition(d, "Ready")["reason"] != "ShardsChangeDuringMigration"
    assert d.status.get("reshardingTo") is None
    assert sts_sizes(d) == [10]


def test_hot_reload_of_a_sharded_node_is_confirmed_on_its_bus_port_too() -> None:
    """A node whose client port serves the current certificate but whose cluster bus still presents the old
    one (the handshake on the bus port says so) is not done: it is asked to reload again, and the rollout
    is not complete; once both listeners serve it, nothing is asked."""
    c = cluster(mode="cluster", shards=3, replicasPerShard=1, tls={"rotation": {"strategy": "HotReload"}})
    world = _formed_world(c)
    fp = world.server_fingerprint()
    for p, r in world.reports.items():
        world.reports[p] = dataclasses.replace(r, served=fp, served_bus=fp if p != "cache-4" else "0" * 64)
    d = decide(c, world.snapshot(), NOW)
    assert [a for a in d.actions if isinstance(a, Reload)] == [Reload("cache-4")], kinds(d.actions)
    assert condition(d, "Ready")["status"] == "False"
    world.reports["cache-4"] = dataclasses.replace(world.reports["cache-4"], served_bus=fp)
    d = decide(c, world.snapshot(), NOW)
    assert not [a for a in d.actions if isinstance(a, Reload)], kinds(d.actions)


def test_a_shards_change_on_valkey_8_is_refused_and_nothing_that_runs_changes() -> None:
    """Valkey 8.x has no atomic slot migration: `shards: 4` on a formed 8.1 cluster is refused with a
    condition and one Warning, the StatefulSet keeps its six pods, and no slot, role or pod is touched."""
    eight: dict[str, Any] = {"image": "valkey/valkey:8.1"}
    c = cluster(mode="cluster", shards=3, replicasPerShard=1, **eight)
    world = _formed_world(c)
    four = cluster(mode="cluster", shards=4, replicasPerShard=1, **eight)
    d = decide(four, world.snapshot(), NOW)
    assert sts_sizes(d) == []  # the StatefulSet keeps its size (it is not even written)
    assert not [a for a in d.actions if isinstance(a, (DeletePod, ClusterFailover))], kinds(d.actions)
    assert not [k for k in kinds(d.actions) if k.startswith("cluster ")], kinds(d.actions)
    assert condition(d, "Ready")["reason"] == "ShardsChangeNotSupported"
    assert "9.0" in condition(d, "Ready")["message"]
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ShardsChangeNotSupported")]
    assert d.status["phase"] == "Degraded"
    # Set back, the refusal is gone.
    assert condition(decide(c, world.snapshot(), NOW), "Ready")["reason"] != "ShardsChangeNotSupported"


def sts_sizes(d: Decision) -> list[int]:
    return [
        a.manifest["spec"]["replicas"]
        for a in d.actions
        if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"
    ]


def test_acl_rules_naming_a_command_the_pods_do_not_know_are_held_and_said() -> None:
    """A new cluster's users wait for a pod to check them against (its file is empty until then); a later
    change to a command no pod knows is held: the file and the pods keep the rules they hold, Ready says
    which command, and correcting it applies it live."""
    nine: dict[str, Any] = {"image": "valkey/valkey:9.1.2"}
    good = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* +get"}]})
    world = World()
    pass_(world, good)  # no pod yet: the Secret exists (the pods mount it), empty
    assert world.objects_data("cache-users") == b""
    for pod in good.names.pods(good.spec.pod_count):
        world.start_pod(pod)
    world.acl = {p: {} for p in world.pods()}
    world.release = (9, 1, 2)
    world.report()
    for _ in range(3):
        pass_(world, good)
    assert world.objects_data("cache-users") == b"user app@cache.default reset on ~app:* +get\n"
    assert condition(pass_(world, good), "Ready")["status"] == "True"
    bad = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* +get +nosuch"}]})
    d = pass_(world, bad)
    assert not [a for a in d.actions if isinstance(a, SetUsers)]
    assert world.objects_data("cache-users") == b"user app@cache.default reset on ~app:* +get\n"
    ready = condition(d, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidAclRules")
    assert "client 'app': +nosuch (unknown to cache-0, which runs Valkey 9.1.2)" in ready["message"]
    assert ("Warning", "InvalidAclRules") in [(e.type, e.reason) for e in d.events]
    fixed = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* +get +set"}]})
    d = pass_(world, fixed)
    assert len([a for a in d.actions if isinstance(a, SetUsers)]) == 3
    assert b"+set" in world.objects_data("cache-users")
    assert condition(pass_(world, fixed), "Ready")["status"] == "True"


def test_users_dropped_from_the_spec_leave_the_pods_and_their_file() -> None:
    """The last client loses its rules: each pod deletes the user (ACL DELUSER), the users Secret is emptied
    (the operator deletes no Secret; it goes with the cluster) and, once no pod has the user, no longer
    read."""
    nine: dict[str, Any] = {"image": "valkey/valkey:9.1.2", "tls": {"clients": [{"name": "app", "acl": "~app:* +get"}]}}
    world = running(cluster(**nine))
    world.release = (9, 1, 2)
    world.acl = {p: {} for p in world.pods()}
    world.report()
    for _ in range(8):  # given, then the users' volume rolls the pods (bounded)
        pass_(world, cluster(**nine))
        for pod in [p for p in world.pods() if ("Pod", p) in world.objects and p not in world.acl]:
            world.acl[pod] = {}
    assert b"app@cache.default" in world.objects_data("cache-users")
    plain = cluster(image="valkey/valkey:9.1.2")
    d = pass_(world, plain)
    removed = [a for a in d.actions if isinstance(a, SetUsers)]
    assert [(a.users, a.remove) for a in removed] == [((), ("app@cache.default",))] * 3
    assert world.objects_data("cache-users") == b""
    pass_(world, plain)
    assert not world.status["acl"].get("users")
    assert "cache-users" not in secret_names(plain, world.status)
    assert all("app@cache.default" not in lines for lines in world.acl.values())


def test_a_password_kept_through_an_upgrade_to_9_goes_once_every_pod_maps_certificates() -> None:
    """8.1 gives `app` a password; on the way to 9.1 it stays (an 8.1 pod cannot map the certificate, and an
    application may still log in with it), and once every pod says it runs 9.x it goes: from the client
    Secret and from the users' lines (no AUTH opens the user after that)."""
    rules: dict[str, Any] = {"tls": {"clients": [{"name": "app", "acl": "~app:* +@read"}]}}
    world = running(cluster(image="valkey/valkey:8.1.6", **rules))
    world.release = (8, 1, 6)
    world.acl = {p: {} for p in world.pods()}
    world.report()
    pass_(world, cluster(image="valkey/valkey:8.1.6", **rules))

    def client() -> dict[str, bytes]:
        secret = secret_data(world.objects[("Secret", "cache-client-app")])
        assert secret is not None
        return dict(secret.data)

    password = client()["password"]
    assert password
    assert b"#" in world.objects_data("cache-users")
    nine = cluster(image="valkey/valkey:9.1.2", **rules)
    world.report()
    pass_(world, nine)
    assert client()["password"] == password  # the pods still run 8.1
    roll_to_the_end(world, nine, NOW)
    assert client()["password"] == password  # every pod on the new template, and each says it runs 8.1
    world.release = (9, 1, 2)
    world.report()
    d = pass_(world, nine)
    assert "password" not in client()
    assert b"#" not in world.objects_data("cache-users")
    given = [a for a in d.actions if isinstance(a, SetUsers)]
    assert given
    assert all(not any(arg.startswith("#") for arg in args) for a in given for _, args in a.users)


def test_rules_no_pod_could_be_checked_against_keep_ready_false() -> None:
    """Pods ready, but one of them said nothing about its commands (COMMAND LIST failed, or it was not
    reached): the new rules are not given yet, and Ready says so instead of AllPodsReady."""
    nine: dict[str, Any] = {"image": "valkey/valkey:9.1.2"}
    c = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* +get"}]})
    world = running(cluster(**nine))
    world.acl = {p: {} for p in world.pods()}
    world.report()
    roll_to_the_end(world, c, NOW)
    wider = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* +get +set"}]})
    world.report()
    world.reports["cache-1"] = replace(world.reports["cache-1"], commands=None)
    d = decide(wider, world.snapshot(), NOW)
    assert not [a for a in d.actions if isinstance(a, SetUsers)]
    ready = condition(d, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AclUsersPending"), ready
    assert "app" in ready["message"]
    world.carry_out(d)
    d = pass_(world, wider)  # every pod answers again: the rules are checked and given
    assert len([a for a in d.actions if isinstance(a, SetUsers)]) == 3


def test_a_password_stays_until_every_pod_runs_the_config_that_maps_certificates() -> None:
    """9.1 pods with `clientAuth: optional` give `app` a password (a client may come without a certificate).
    Made `required`, the certificate alone logs in, but a pod still on the old template runs a config
    without `tls-auth-clients-user`, where the password is the only way in: it stays until every pod
    rolled onto the new config, then goes."""

    def spec(auth: str) -> ValkeyCluster:
        return cluster(
            image="valkey/valkey:9.1.2", tls={"clientAuth": auth, "clients": [{"name": "app", "acl": "+get"}]}
        )

    world = running(spec("optional"))
    world.release = (9, 1, 2)
    world.acl = {p: {} for p in world.pods()}
    world.report()
    roll_to_the_end(world, spec("optional"), NOW)
    secret = world.secret("cache-client-app")
    assert secret.data["password"]
    required = spec("required")
    pass_(world, required)  # the new template is applied; no pod runs it yet
    assert world.secret("cache-client-app").data["password"] == secret.data["password"]
    pass_(world, required)  # the StatefulSet holds the new config; one pod rolled, two run the old one
    assert world.secret("cache-client-app").data["password"] == secret.data["password"]
    roll_to_the_end(world, required, NOW)
    assert "password" not in world.secret("cache-client-app").data
    assert b"#" not in world.objects_data("cache-users")


def test_clients_acl_users_are_given_live_and_ready_waits_for_every_pod_to_hold_them() -> None:
    """A running 9.1 cluster; `app` gets ACL rules. The pass writes the users Secret, the client Secret's
    username (no password: the certificate logs in), mounts the users (one roll) and gives each pod the
    users by ACL SETUSER; Ready waits until each pod's ACL LIST is what it reported when given them. A rules
    change afterwards is live: the template stays, each pod is given the new rules."""
    nine: dict[str, Any] = {"image": "valkey/valkey:9.1.2"}
    world = running(cluster(**nine))
    before = world.template()[0]
    rules: dict[str, Any] = {"tls": {"clients": [{"name": "app", "acl": "~app:* +@read +@write"}]}}
    c = cluster(**nine, **rules)
    world.acl = {p: {} for p in world.pods()}  # what gather reads once users are asked for: none yet
    world.report()
    d = pass_(world, c)
    secret = secret_data(world.objects[("Secret", "cache-client-app")])
    assert secret is not None
    assert (secret.data["username"], "password" in secret.data) == (b"app@cache.default", False)
    assert secret.data["uri"] == b"rediss://cache.default.svc:6379"  # no user: the certificate logs it in
    users_file = secret_data(world.objects[("Secret", "cache-users")])
    assert users_file is not None
    assert users_file.data["users.conf"] == b"user app@cache.default reset on ~app:* +@read +@write\n"
    given = [a for a in d.actions if isinstance(a, SetUsers)]
    assert [a.pod for a in given] == ["cache-0", "cache-1", "cache-2"]
    assert condition(d, "Ready")["status"] == "False"
    assert d.status["acl"]["users"] == ["app@cache.default"]
    # Recorded as held right after (the reconciler's part): the next pass confirms every pod by its lines.
    assert sorted(world.status["acl"]["pods"]) == ["cache-0", "cache-1", "cache-2"]
    assert world.template()[0] != before  # the users' volume: one roll, this once
    for _ in range(8):  # the roll (bounded)
        d = pass_(world, c)
        for pod in [p for p in world.pods() if ("Pod", p) in world.objects and p not in world.acl]:
            world.acl[pod] = {}  # a replaced pod reports no users until given them
    assert not [a for a in d.actions if isinstance(a, SetUsers)], kinds(d.actions)
    assert condition(d, "Ready")["status"] == "True", condition(d, "Ready")
    # A rules change: live, no roll.
    template = world.template()[0]
    wider = cluster(**nine, tls={"clients": [{"name": "app", "acl": "~app:* ~shared:* +@read +@write"}]})
    d = pass_(world, wider)
    assert world.template()[0] == template
    assert len([a for a in d.actions if isinstance(a, SetUsers)]) == 3
    assert ("Normal", "AclUsersChanged") in [(e.type, e.reason) for e in d.events]
    d = pass_(world, wider)
    assert not [a for a in d.actions if isinstance(a, SetUsers)]
    assert condition(d, "Ready")["status"] == "True"
    assert all("~shared:*" in lines["app@cache.default"] for lines in world.acl.values())


@dataclass
class CertManagerWorld(World):
    """A World where cert-manager's CA issuer answers: `issue()` is its controller catching up with every
    Certificate the operator applied (Ready for its generation, the Secret written), `fail()` a failed
    issuance of one."""

    ca: Any = None

    def snapshot(self) -> Snapshot:
        issued = {k[1]: v for k, v in self.objects.items() if k[0] == "IssuedSecret"}
        objects = {k: v for k, v in self.objects.items() if k[0] != "IssuedSecret"}
        read = CertManagerRead(True, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True, issued)
        return replace(super().snapshot(), objects=copy.deepcopy(objects), cert_manager=read)

    def issue(self, now: datetime = NOW) -> None:
        for (kind, name), cert in list(self.objects.items()):
            if kind != "Certificate" or (cert.get("status") or {}).get("issued") == cert["spec"]:
                continue
            spec = cert["spec"]
            server = "dnsNames" in spec
            request = LeafRequest(
                common_name=spec.get("commonName") or spec["dnsNames"][0],
                dns_names=tuple(spec.get("dnsNames") or ()),
                server=server,
                client=True,
            )
            pair = issue_leaf(self.ca, request, now)
            data = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": self.ca.cert_pem}
            self.objects[("IssuedSecret", spec["secretName"])] = {
                "metadata": {"name": spec["secretName"], "annotations": {"cert-manager.io/certificate-name": name}},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            }
            cert["status"] = {"conditions": [{"type": "Ready", "status": "True"}], "issued": copy.deepcopy(spec)}

    def fail(self, certificate: str, message: str) -> None:
        failed = {"type": "Issuing", "status": "False", "reason": "Failed", "message": message}
        self.objects[("Certificate", certificate)]["status"] = {
            "conditions": [{"type": "Ready", "status": "False", "reason": "Failed", "message": message}, failed],
            "lastFailureTime": "2026-06-01T12:00:00Z",
        }


def test_cert_manager_at_work_is_said_and_not_degraded_and_a_failure_is() -> None:
    """A first issue and a scale-up wait for cert-manager without Degraded or a Warning; a client whose
    Certificate fails keeps what it has while the rest goes on, and that is Degraded, with one Warning."""
    c = cluster(tls={"issuer": {"type": "CertManager", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}})
    world = CertManagerWorld(ca=mint_ca("company CA", NOW - timedelta(days=1), timedelta(days=3650)))
    d = pass_(world, c)
    assert kinds(d.actions) == [f"apply Certificate/cache-{n}" for n in ("server", "client-app", "connection")]
    assert condition(d, "CertificatesReady")["reason"] == "CertificateIssuing"
    assert (condition(d, "Degraded")["status"], d.status["phase"], d.events) == ("False", "Pending", ())
    assert needs_fast_look(d.status, NOW, timedelta(hours=1))
    # No pod runs yet, so looks back off to the slow timer: the clock wakes the pass when the issuance
    # would count as stuck (nothing else reports it).
    since = datetime.fromisoformat(condition(d, "CertificatesReady")["lastTransitionTime"].replace("Z", "+00:00"))
    assert d.next_due == since + STUCK_AFTER
    world.issue()
    pass_(world, c)
    for pod in c.names.pods(3):
        world.start_pod(pod)
    world.report()
    pass_(world, c)
    d = pass_(world, c)
    assert (d.status["phase"], condition(d, "CertificatesReady")["status"]) == ("Ready", "True")
    served = world.secret("cache-tls").data["tls.crt"]
    # A scale-up: the server's Certificate gets the new pod's names; the StatefulSet waits for them.
    bigger = cluster(
        replicas=4, tls={"issuer": {"type": "CertManager", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}
    )
    d = pass_(world, bigger)
    assert kinds(d.actions) == ["apply Certificate/cache-server"]
    assert condition(d, "CertificatesReady")["reason"] == "CertificateIssuing"
    assert (condition(d, "Degraded")["status"], d.events) == ("False", ())
    assert world.objects[("StatefulSet", "cache")]["spec"]["replicas"] == 3
    world.issue()
    d = pass_(world, bigger)
    assert world.objects[("StatefulSet", "cache")]["spec"]["replicas"] == 4
    assert world.secret("cache-tls").data["tls.crt"] != served
    assert condition(d, "CertificatesReady")["status"] == "True"
    # The client's issuance fails: its Secret keeps the certificate it has, the server's goes on; Degraded.
    client = world.secret("cache-client-app").data["tls.crt"]
    world.fail("cache-client-app", "the issuer refused the common name")
    d = pass_(world, bigger)
    assert world.secret("cache-client-app").data["tls.crt"] == client
    assert (condition(d, "CertificatesReady")["reason"], condition(d, "Degraded")["reason"]) == (
        "CertificateNotReady",
        "CertificateNotReady",
    )
    assert "the issuer refused the common name" in condition(d, "Degraded")["message"]
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "CertificateNotReady")]
    assert pass_(world, bigger).events == ()  # said once


CM_ISSUER = {"type": "CertManager", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}


def issued_world() -> tuple[dict[str, Any], CertManagerWorld]:
    """The example with issuer CertManager after its first passes, cert-manager having issued everything."""
    c = cluster(tls={"issuer": CM_ISSUER})
    world = CertManagerWorld(ca=mint_ca("company CA", NOW - timedelta(days=1), timedelta(days=3650)))
    pass_(world, c)
    world.issue()
    pass_(world, c)
    return CM_ISSUER, world


def test_certificates_no_one_asks_for_any_more_are_deleted() -> None:
    """A client removed, mTLS turned off, another issuer: its Certificates go, so cert-manager stops
    renewing them; the others stay as they are."""
    issuer, world = issued_world()
    assert sorted(n for k, n in world.objects if k == "Certificate") == [
        "cache-client-app",
        "cache-connection",
        "cache-server",
    ]
    d = pass_(world, cluster(tls={"issuer": issuer, "clients": [], "clientAuth": "none"}))
    assert [a for a in kinds(d.actions) if "Certificate" in a] == [
        "delete Certificate/cache-client-app",
        "delete Certificate/cache-connection",
    ]
    d = pass_(world, cluster())  # the operator's own issuer again
    assert [a for a in kinds(d.actions) if "Certificate" in a] == ["delete Certificate/cache-server"]
    assert not [n for k, n in world.objects if k == "Certificate"]


def test_a_client_cert_manager_has_not_issued_yet_waits_with_its_user_and_the_rest_goes_on() -> None:
    """A client with an ACL user added to a running cluster: until cert-manager issues its certificate, no
    Secret and no user for it (a password made now would be made again every pass); the cluster goes on."""
    issuer, world = issued_world()
    clients = [{"name": "app"}, {"name": "reports", "acl": "~reports:* +get"}]
    more = cluster(auth={"enabled": True}, tls={"issuer": issuer, "clients": clients, "clientAuth": "optional"})
    for i in range(3):
        d = pass_(world, more)
        assert ("Secret", "cache-client-reports") not in world.objects
        if i:
            assert kinds(d.actions) == [], kinds(d.actions)  # nothing written again (no password made anew)
        else:  # the rest goes on: the config the users file needs, and the pods' template
            assert "apply StatefulSet/cache" in kinds(d.actions)
        assert not any("reports" in a for a in kinds(d.actions) if not a.startswith("apply Certificate"))
        assert condition(d, "CertificatesReady")["reason"] == "CertificateIssuing"
    world.issue()
    pass_(world, more)
    assert world.secret("cache-client-reports").data["tls.crt"]
