"""Which pods get the clients' ACL users and which hold them: table tests over what pods report."""

from __future__ import annotations

from valkey_operator.access import held_after, lines_digest, plan
from valkey_operator.actions import SetUsers
from valkey_operator.conf.users import User, rules_digest
from valkey_operator.snapshot import PodReport, PodView, Replication

APP = User("cache-app", "app", "~app:* +@read", None)
LINE = "user cache-app on ~app:* resetchannels -@all +@read"
PODS = ["cache-0", "cache-1", "cache-2"]


def view(pod: str, ready: bool = True, terminating: bool = False) -> PodView:
    return PodView(pod, f"uid-{pod}", ready, terminating, True, None, "")


def each(lines: dict[str, str]) -> dict[str, dict[str, str] | None]:
    return {p: dict(lines) for p in PODS}


def reports(lines: dict[str, dict[str, str] | None]) -> dict[str, PodReport]:
    return {p: PodReport(Replication("master"), acl=acl) for p, acl in lines.items()}


def recorded(
    pods: dict[str, str], users: list[str] | None = None, wanted: list[User] | None = None
) -> dict[str, object]:
    return {"digest": rules_digest(wanted or [APP]), "users": users or ["cache-app"], "pods": pods}


def test_new_users_are_given_to_every_pod_and_nothing_is_held_yet() -> None:
    out = plan([APP], [view(p) for p in PODS], reports(each({})), {})
    assert out.actions == tuple(SetUsers(p, (("cache-app", APP.setuser),), (), rules_digest([APP])) for p in PODS)
    assert out.pending == tuple(PODS)
    assert out.status == {"digest": rules_digest([APP]), "users": ["cache-app"], "pods": None}


def test_a_pod_holds_the_users_when_its_lines_are_the_ones_it_reported_when_given_them() -> None:
    seen = lines_digest({"cache-app": LINE}, ["cache-app"])
    out = plan([APP], [view(p) for p in PODS], reports(each({"cache-app": LINE})),
               recorded(dict.fromkeys(PODS, seen)))  # fmt: skip
    assert (out.actions, out.pending) == ((), ())
    assert out.status is not None
    assert out.status["pods"] == dict.fromkeys(PODS, seen)
    # cache-1 restarted on a file the kubelet had not refreshed: its line differs, so it is given them again.
    stale = reports({**each({"cache-app": LINE}), "cache-1": {"cache-app": "user cache-app on ~old"}})
    out = plan([APP], [view(p) for p in PODS], stale, recorded(dict.fromkeys(PODS, seen)))
    assert [a.pod for a in out.actions] == ["cache-1"]
    assert out.pending == ("cache-1",)
    # New rules: what the pods held no longer counts.
    wider = User("cache-app", "app", "~app:* ~shared:* +@read", None)
    out = plan([wider], [view(p) for p in PODS], reports(each({"cache-app": LINE})),
               recorded(dict.fromkeys(PODS, seen)))  # fmt: skip
    assert [a.pod for a in out.actions] == PODS


def test_users_no_longer_asked_for_are_deleted_and_others_never_touched() -> None:
    """The spec dropped app's rules: the operator deletes cache-app (it made it), never `admin` (a user
    someone made by hand), and forgets it once no pod has it."""
    both = {"cache-app": LINE, "admin": "user admin on nopass ~* +@all"}
    out = plan([], [view(p) for p in PODS], reports(each(both)), recorded({}))
    assert out.actions == tuple(SetUsers(p, (), ("cache-app",), "") for p in PODS)
    assert out.status == {"digest": None, "users": ["cache-app"], "pods": None}
    gone = plan([], [view(p) for p in PODS], reports(each({"admin": "user admin"})), recorded({}))
    assert gone.actions == ()
    assert gone.status == {"digest": None, "users": None, "pods": None}
    # Nothing made, nothing asked: no status at all.
    assert plan([], [view(p) for p in PODS], reports(dict.fromkeys(PODS, None)), {}).status is None


def test_pods_that_cannot_be_asked_wait_and_a_terminating_one_is_left_alone() -> None:
    out = plan([APP], [view("cache-0"), view("cache-1", terminating=True), view("cache-2", ready=False)],
               reports({"cache-0": None, "cache-1": {}, "cache-2": {}}), {})  # fmt: skip
    assert [a.pod for a in out.actions] == ["cache-2"]  # running, not ready yet: given them before it serves
    assert out.pending == ("cache-0",)  # ready and not answering


def test_what_a_given_pod_reported_is_what_it_is_held_to() -> None:
    given = (SetUsers("cache-0", (("cache-app", APP.setuser),), (), "d"),)
    assert held_after({"cache-0": {"cache-app": LINE}}, given) == {
        "cache-0": lines_digest({"cache-app": LINE}, ["cache-app"])
    }
    assert held_after({}, given) == {}  # it did not answer: nothing recorded, asked again


def test_a_dropped_user_stays_recorded_while_a_pod_that_may_hold_it_cannot_be_asked() -> None:
    """The spec drops app's rules while cache-2 does not answer: cache-0 and cache-1 delete the user, and
    it stays in status.acl.users until cache-2 is asked too (else it would keep the user for ever)."""
    lines = {"cache-0": {"cache-app": LINE}, "cache-1": {"cache-app": LINE}, "cache-2": None}
    out = plan([], [view(p) for p in PODS], reports(lines), recorded({}))
    assert [a.pod for a in out.actions] == ["cache-0", "cache-1"]
    after = {"cache-0": {}, "cache-1": {}, "cache-2": None}
    out = plan([], [view(p) for p in PODS], reports(after), {"users": ["cache-app"]})
    assert out.status == {"digest": None, "users": ["cache-app"], "pods": None}
    back = plan(
        [], [view(p) for p in PODS], reports({**after, "cache-2": {"cache-app": LINE}}), {"users": ["cache-app"]}
    )
    assert [(a.pod, a.remove) for a in back.actions] == [("cache-2", ("cache-app",))]


def test_the_users_secret_is_read_like_every_secret_the_cluster_owns() -> None:
    """Secrets are read by name: a users Secret left out would be applied on every pass (a sharded cluster
    then never goes quiet enough to form) and would miss the check that it is the cluster's own."""
    from tests.unit.conftest import example
    from valkey_operator.snapshot import secret_names

    with_users = example(tls={"clients": [{"name": "app", "acl": "~app:*"}]})
    assert "cache-users" in secret_names(with_users)
    assert "cache-users" not in secret_names(example())
