"""The pure parts of a pass's edges: the status patch, an error's description, the batches of its writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from valkey_operator.reconcile import changed


def test_the_status_patch_names_only_what_changed_and_removes_what_went() -> None:
    before = {
        "phase": "Ready",
        "certificates": {"server": {"serial": "1"}, "caRotation": {"phase": "Retiring"}},
        "primary": "cache-0",
    }
    after = {"phase": "Ready", "certificates": {"server": {"serial": "1"}}, "primary": "cache-1"}
    # A merge patch leaves an unnamed key alone: the finished CA rotation must be removed by name.
    assert changed(before, after) == {"certificates": {"caRotation": None}, "primary": "cache-1"}
    assert changed(after, after) == {}


def test_fields_a_pass_does_not_report_stay() -> None:
    # A refused pass reports no certificates: the last known ones stay.
    assert changed({"phase": "Ready", "certificates": {"server": {}}}, {"phase": "Degraded"}) == {"phase": "Degraded"}


class _Roles:
    """Stands in for Valkey's INFO replication (real servers answer it in tests/acceptance)."""

    def __init__(self, role: str | None) -> None:
        self.role = role
        self.asked: list[str] = []
        self.timeouts: list[float] = []

    def replication(self, host: str, creds: object, timeout: float = 3.0) -> object:
        from valkey_operator.snapshot import Replication
        from valkey_operator.valkey_admin import PodError

        self.asked.append(host)
        self.timeouts.append(timeout)
        if self.role is None:
            raise PodError(f"{host}: no answer")
        return Replication(self.role)


def test_the_role_check_asks_the_recorded_primary_with_the_last_credentials_and_nothing_else() -> None:
    from valkey_operator.clock import ManualClock
    from valkey_operator.reconcile import Reconciler

    for role, holds in (("master", True), ("slave", False), (None, False)):
        admin = _Roles(role)
        rec = Reconciler(None, admin, ManualClock())  # type: ignore[arg-type]
        assert rec.primary_holds("ns", "cache", "cache-1") is False  # no pass yet: unknown, run one
        assert admin.asked == []
        rec._credentials[("ns", "cache")] = None
        assert rec.primary_holds("ns", "cache", "cache-1") is holds
        assert admin.asked == ["cache-1.cache-headless.ns.svc"]
        assert admin.timeouts == [2.0]  # a short probe: a cut-off primary is found within seconds
        # A silent primary is not asked again by the pass the check starts (once, and only just after).
        assert rec._just_silent("ns", "cache") == (() if role else ("cache-1",))
        assert rec._just_silent("ns", "cache") == ()
        rec.forget("ns", "cache")
        assert rec.primary_holds("ns", "cache", "cache-1") is False


def test_the_role_check_asks_about_the_roles_the_last_pass_recorded_and_nothing_without_them() -> None:
    import pytest

    from valkey_operator.clock import ManualClock
    from valkey_operator.reconcile import Reconciler, recorded_roles

    shards = [{"primary": "cache-0", "slots": "0-8191"}, {"primary": "cache-1", "slots": "8192-16383"}]
    table: list[tuple[str, dict[str, Any], object]] = [
        ("replication", {"primary": "cache-1", "shards": shards}, "cache-1"),
        ("replication", {"primary": ""}, None),  # nothing recorded yet
        ("replication", {}, None),
        ("cluster", {"primary": "cache-1", "shards": shards}, tuple(shards)),
        ("cluster", {"shards": []}, None),  # not formed yet
        ("standalone", {"primary": "cache-0"}, None),
    ]
    for mode, status, want in table:
        assert recorded_roles(mode, status) == want, (mode, status)

    admin = _Roles("master")
    rec = Reconciler(None, admin, ManualClock())  # type: ignore[arg-type]
    assert rec.role_holds("ns", "cache") is None  # no pass has recorded a role: nothing asked
    assert admin.asked == []
    rec._credentials[("ns", "cache")] = None
    rec._roles[("ns", "cache")] = "cache-1"
    assert rec.role_holds("ns", "cache") is True
    assert admin.asked == ["cache-1.cache-headless.ns.svc"]
    asked: list[tuple[str, tuple[object, ...]]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rec, "shards_hold", lambda ns, name, recorded: cast(object, asked.append((name, recorded))) or False)
        rec._roles[("ns", "cache")] = tuple(shards)
        assert rec.role_holds("ns", "cache") is False
    assert asked == [("cache", tuple(shards))]
    rec.forget("ns", "cache")
    assert rec.role_holds("ns", "cache") is None


class _BrokenKube:
    """A Kubernetes API that fails in a way no decision foresaw (a stand-in: the real API server does not
    fail on demand); the message carries key material, which must not travel on."""

    def list(self, *args: object) -> list[object]:
        key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
        raise RuntimeError(f"boom\n{key}")


def test_a_pass_that_raises_ends_as_a_condition_and_one_event_not_only_a_traceback() -> None:
    from tests.unit.conftest import example_body
    from valkey_operator.clock import ManualClock
    from valkey_operator.reconcile import Reconciler

    rec = Reconciler(_BrokenKube(), _Roles("master"), ManualClock())  # type: ignore[arg-type]
    body = {**example_body(), "status": {"phase": "Ready", "conditions": [
        {"type": "Ready", "status": "True", "reason": "AllPodsReady", "message": "3/3 pods ready."}]}}  # fmt: skip
    out = rec.decide_and_act(body)
    conds = {c["type"]: c for c in out.status["conditions"]}
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "ReconcileError")
    assert conds["Degraded"]["message"] == "The pass failed: RuntimeError: boom"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("Unknown", "ReconcileError")
    assert "3/3 pods ready." in conds["Ready"]["message"]
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "ReconcileError")]
    assert "PRIVATE KEY" not in repr(out)
    assert out.retry_after == 15.0
    # The same failure again: no second Event.
    again = rec.decide_and_act({**body, "status": {**body["status"], **out.status}})
    assert again.events == []


def test_a_spec_the_parser_did_not_foresee_ends_as_a_condition_not_a_traceback_loop() -> None:
    # The API server's schema refuses such a body; this is the net under the parser should one get past it.
    from tests.unit.conftest import example_body
    from valkey_operator.clock import ManualClock
    from valkey_operator.reconcile import Reconciler

    rec = Reconciler(_BrokenKube(), _Roles("master"), ManualClock())  # type: ignore[arg-type]
    body = example_body()
    body["spec"]["replicas"] = [3]
    out = rec.decide_and_act(body)
    conds = {c["type"]: c for c in out.status["conditions"]}
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "ReconcileError")
    assert conds["Degraded"]["message"].startswith("The pass failed: TypeError")
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "ReconcileError")]
    assert out.actions == ()  # nothing was read or written: the kube stand-in raises on any call


def test_an_error_description_never_carries_a_pem_block() -> None:
    from valkey_operator.reconcile import describe_error

    pem = "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----"
    assert describe_error(ValueError(f"bad {pem} here")) == "The pass failed: ValueError: bad [PEM removed] here"
    assert "abc" not in describe_error(ValueError("-----BEGIN CERTIFICATE-----\nabc"))


def test_a_refused_api_request_is_described_by_what_its_status_names_never_its_message() -> None:
    """The code, reason, object and fields; not the free text, which an admission webhook may fill with
    the object's values (a password, a URI holding it)."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import api_exception as untyped_api_exception

    from valkey_operator.reconcile import describe_error

    # kubernetes ships py.typed but leaves api_exception unannotated (no-untyped-call under --strict).
    api_exception = cast(Callable[[ApiException], Exception], untyped_api_exception)

    raw = ApiException(status=422, reason="Unprocessable Entity")
    status: dict[str, Any] = {
        "kind": "Status",
        "code": 422,
        "reason": "Invalid",
        "message": 'secrets "cache-connection" is forbidden: uri rediss://default:s3cretPW@cache is not allowed',
        "details": {"name": "cache-connection", "kind": "secrets", "causes": [{"message": "s3cretPW"}]},
    }
    raw.body = json.dumps(status)
    said = describe_error(api_exception(raw))
    assert said == "The pass failed: UnprocessibleEntityError: 422 Invalid: secrets/cache-connection"
    assert "s3cretPW" not in said
    status["details"]["causes"] = [{"field": "data[bad key]", "message": "s3cretPW"}, {"field": "type"}]
    raw.body = json.dumps(status)
    assert describe_error(api_exception(raw)).endswith("secrets/cache-connection (fields data[bad key], type)")
    # Not a Status, or not readable at all (nested past the recursion limit): the first line, the bare code.
    for body in ("-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----", "[" * 200_000, "null", b"\xff"):
        raw.body = cast(str, body)  # b"\xff" too: a body left undecoded, typed str | None by the client
        assert describe_error(api_exception(raw)) == "The pass failed: UnprocessibleEntityError: 422"


def _apply(kind: str, name: str) -> Any:
    from valkey_operator.actions import Apply

    return Apply({"kind": kind, "metadata": {"name": name}})


def test_applies_run_together_but_secrets_and_a_statefulset_keep_their_order() -> None:
    from valkey_operator.actions import DeletePod, Relabel
    from valkey_operator.reconcile import batches

    secrets = [_apply("Secret", "ca"), _apply("Secret", "tls")]
    first = [_apply("ConfigMap", "config"), _apply("Service", "svc"), _apply("Service", "svc-ro")]
    roll = [_apply("StatefulSet", "sts"), _apply("PodDisruptionBudget", "pdb")]
    relabel, delete = Relabel("cache-0", "primary"), DeletePod("cache-1", "uid")
    got = batches([*secrets, *first, *roll, relabel, delete, _apply("Certificate", "c"), _apply("Secret", "users")])
    assert [[str(a) for a in batch] for batch in got] == [
        ["apply Secret/ca"],  # a CA before what it signs
        ["apply Secret/tls"],
        [str(a) for a in first],
        [str(a) for a in roll],  # the StatefulSet after the Secrets and ConfigMap; the PDB beside it
        [str(relabel)],
        [str(delete)],
        ["apply Certificate/c"],
        ["apply Secret/users"],
    ]
    assert batches([]) == []
