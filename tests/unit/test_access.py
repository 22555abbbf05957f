"""Which pods get the clients' ACL users and which hold them: table tests over what pods report."""

from __future__ import annotations

import pytest

from valkey_operator.access import (
    INVALID_ACL_RULES,
    Checked,
    checked,
    held_after,
    lines_digest,
    plan,
    unknown_commands,
)
from valkey_operator.actions import SetUsers
from valkey_operator.conf.users import User, file_rules, rules_digest, users_file
from valkey_operator.snapshot import PodReport, PodView, Replication

APP = User("app@cache.default", "app", "~app:* +@read", None)
USER = "app@cache.default"
LINE = "user app@cache.default on ~app:* resetchannels -@all +@read"
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
    return {"digest": rules_digest(wanted or [APP]), "users": users or [USER], "pods": pods}


def test_new_users_are_given_to_every_pod_and_nothing_is_held_yet() -> None:
    out = plan([APP], [view(p) for p in PODS], reports(each({})), {})
    assert out.actions == tuple(SetUsers(p, ((USER, APP.setuser),), (), rules_digest([APP])) for p in PODS)
    assert out.pending == tuple(PODS)
    assert out.status == {"digest": rules_digest([APP]), "users": [USER], "pods": None}


def test_a_pod_holds_the_users_when_its_lines_are_the_ones_it_reported_when_given_them() -> None:
    seen = lines_digest({USER: LINE}, [USER])
    out = plan([APP], [view(p) for p in PODS], reports(each({USER: LINE})),
               recorded(dict.fromkeys(PODS, seen)))  # fmt: skip
    assert (out.actions, out.pending) == ((), ())
    assert out.status is not None
    assert out.status["pods"] == dict.fromkeys(PODS, seen)
    # cache-1 restarted on a file the kubelet had not refreshed: its line differs, so it is given them again.
    stale = reports({**each({USER: LINE}), "cache-1": {USER: "user app@cache.default on ~old"}})
    out = plan([APP], [view(p) for p in PODS], stale, recorded(dict.fromkeys(PODS, seen)))
    assert [a.pod for a in out.actions] == ["cache-1"]
    assert out.pending == ("cache-1",)
    # New rules: what the pods held no longer counts.
    wider = User(USER, "app", "~app:* ~shared:* +@read", None)
    out = plan([wider], [view(p) for p in PODS], reports(each({USER: LINE})),
               recorded(dict.fromkeys(PODS, seen)))  # fmt: skip
    assert [a.pod for a in out.actions] == PODS


def test_users_no_longer_asked_for_are_deleted_and_others_never_touched() -> None:
    """The spec dropped app's rules: the operator deletes cache-app (it made it), never `admin` (a user
    someone made by hand), and forgets it once no pod has it."""
    both = {USER: LINE, "admin": "user admin on nopass ~* +@all"}
    out = plan([], [view(p) for p in PODS], reports(each(both)), recorded({}))
    assert out.actions == tuple(SetUsers(p, (), (USER,), "") for p in PODS)
    assert out.status == {"digest": None, "users": [USER], "pods": None}
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
    given = (SetUsers("cache-0", ((USER, APP.setuser),), (), "d"),)
    assert held_after({"cache-0": {USER: LINE}}, given) == {"cache-0": lines_digest({USER: LINE}, [USER])}
    assert held_after({}, given) == {}  # it did not answer: nothing recorded, asked again


def test_a_dropped_user_stays_recorded_while_a_pod_that_may_hold_it_cannot_be_asked() -> None:
    """The spec drops app's rules while cache-2 does not answer: cache-0 and cache-1 delete the user, and
    it stays in status.acl.users until cache-2 is asked too (else it would keep the user for ever)."""
    lines = {"cache-0": {USER: LINE}, "cache-1": {USER: LINE}, "cache-2": None}
    out = plan([], [view(p) for p in PODS], reports(lines), recorded({}))
    assert [a.pod for a in out.actions] == ["cache-0", "cache-1"]
    after: dict[str, dict[str, str] | None] = {"cache-0": {}, "cache-1": {}, "cache-2": None}
    out = plan([], [view(p) for p in PODS], reports(after), {"users": [USER]})
    assert out.status == {"digest": None, "users": [USER], "pods": None}
    back = plan([], [view(p) for p in PODS], reports({**after, "cache-2": {USER: LINE}}), {"users": [USER]})
    assert [(a.pod, a.remove) for a in back.actions] == [("cache-2", (USER,))]


def test_the_users_secret_is_read_like_every_secret_the_cluster_owns() -> None:
    """Secrets are read by name: a users Secret left out would be applied on every pass (a sharded cluster
    then never goes quiet enough to form) and would miss the check that it is the cluster's own."""
    from tests.unit.conftest import example
    from valkey_operator.snapshot import secret_names

    with_users = example(tls={"clients": [{"name": "app", "acl": "~app:*"}]})
    assert "cache-users" in secret_names(with_users)
    assert "cache-users" not in secret_names(example())


# What COMMAND LIST says, in part: `config` has subcommands, `get` and `select` have none.
KNOWN = frozenset(("get", "set", "select", "config", "config|get", "config|set", "acl", "acl|whoami"))


@pytest.mark.parametrize(
    ("rules", "unknown"),
    [
        ("~app:* +@read -@dangerous", []),  # categories: the CRD's enum checks them
        ("+get +SET -config|get +acl|whoami", []),  # names in any case, subcommands of their command
        ("+select|0", []),  # a command without subcommands: the first argument, only to allow
        ("-select|0 -get|x", ["-select|0", "-get|x"]),
        # As ACL SETUSER on a real 8.0 refuses them: an unknown name, an unknown subcommand, a first argument
        # of a subcommand, nothing after the bar.
        (
            "+nosuch -config|nosuch +get|x|y +config|get|x +config|",
            ["+nosuch", "-config|nosuch", "+get|x|y", "+config|get|x", "+config|"],
        ),
        ("+getex", ["+getex"]),  # a 6.2+ command this (partial) list lacks: refused like any unknown name
    ],
)
def test_unknown_commands(rules: str, unknown: list[str]) -> None:
    assert unknown_commands(rules, KNOWN) == unknown


def known(release: tuple[int, int, int], commands: frozenset[str] = KNOWN) -> PodReport:
    return PodReport(Replication("master", release=release), commands=commands)


TWO = ["cache-0", "cache-1"]


def test_rules_every_running_release_knows_are_given() -> None:
    assert checked([APP], {"cache-0": known((8, 1, 6)), "cache-1": known((9, 1, 2))}, {}, TWO) == Checked((APP,))


def test_rules_a_running_release_does_not_know_keep_what_the_file_holds_and_say_which() -> None:
    """`+nosuch` no release knows: the user keeps its file's rules (a pod restarting on the new ones would
    refuse the file), the error names the command and the pod and asks for the rules to be corrected."""
    bad = User(APP.name, "app", "~app:* +@read +nosuch", None)
    reports = {"cache-0": known((8, 1, 6)), "cache-1": known((9, 1, 2))}
    kept = file_rules(users_file([APP]))
    result = checked([bad], reports, kept, TWO, (9, 1))
    assert (result.given, result.withheld, result.waiting) == ((APP,), (), ())
    assert result.error is not None
    assert result.error.reason == INVALID_ACL_RULES
    assert "client 'app': +nosuch (unknown to cache-1, which runs Valkey 9.1.2)" in result.error.message
    assert "correct the rules" in result.error.message
    # A new client with unknown commands is not given at all (nothing to keep), the others are.
    other = User("other@cache.default", "other", "+nosuch", None)
    result = checked([APP, other], reports, kept, TWO, (9, 1))
    assert (result.given, result.withheld) == ((APP,), (other.name,))
    assert result.error is not None
    assert "'other'" in result.error.message


def test_a_command_the_release_being_rolled_out_knows_waits_for_the_roll() -> None:
    """Mid-upgrade to 9.1: `+newcmd` is a 9.1 command the 8.1 pod does not know. Not an error in the rules:
    the user keeps its file's rules until every pod runs the release spec.image names, and says why."""
    newer = User(APP.name, "app", "~app:* +@read +newcmd", None)
    reports = {"cache-0": known((8, 1, 6)), "cache-1": known((9, 1, 2), KNOWN | {"newcmd"})}
    result = checked([newer], reports, file_rules(users_file([APP])), TWO, (9, 1))
    assert (result.given, result.error) == ((APP,), None)
    assert result.waiting == (
        "client 'app', once every pod runs the release spec.image names: "
        "+newcmd (unknown to cache-0, which runs Valkey 8.1.6; cache-1 knows it)",
    )
    # Going back within the major version (spec.image says 8.1): the 9.1 pod leaves, the command with it.
    result = checked([newer], reports, file_rules(users_file([APP])), TWO, (8, 1))
    assert result.error is not None
    assert result.error.reason == INVALID_ACL_RULES
    # Once every pod runs 9.1, the rules are given.
    reports["cache-0"] = known((9, 1, 2), KNOWN | {"newcmd"})
    assert checked([newer], reports, {}, TWO, (9, 1)) == Checked((newer,))


def test_with_no_pod_to_ask_new_users_wait_and_are_left_out_of_the_file() -> None:
    """No pod answered (a new cluster, or every pod restarting): nothing is checked; a user the file does
    not hold waits (Ready says so), and one it holds keeps those rules."""
    result = checked([APP], {}, {}, TWO)
    assert (result.given, result.withheld, result.error) == ((), (APP.name,), None)
    assert result.waiting == ("client 'app' (not every pod has said which commands it knows)",)
    wider = User(APP.name, "app", "~app:* ~shared:* +@read +get", None)
    result = checked([wider], {}, file_rules(users_file([APP])), TWO)
    assert (result.given, len(result.waiting)) == ((APP,), 1)
    # Rules the file already holds are not waiting for anything.
    assert checked([APP], {}, file_rules(users_file([APP])), TWO) == Checked((APP,))


def test_rules_with_new_commands_wait_for_every_pod_but_narrower_ones_do_not() -> None:
    """cache-1 did not answer (restarting, perhaps on another release, or crash-looping on the file): rules
    that name a command the file's rules do not wait, even though cache-0 knows it. Rules that name no
    command the file's rules do not (a command taken away, a key pattern changed) go at once: a pod that
    could start on the old file starts on the new one, and a pod that could not is freed by it."""
    one = {"cache-0": known((9, 1, 2), KNOWN | {"newcmd"})}
    kept = file_rules(users_file([User(APP.name, "app", "~app:* +@read +get +newcmd", None)]))
    wider = User(APP.name, "app", "~app:* +@read +get +newcmd +set", None)
    assert checked([wider], one, kept, TWO).given[0].rules == kept[APP.name]
    no_commands = {**one, "cache-1": PodReport(Replication("slave"))}
    assert checked([wider], no_commands, kept, TWO).given[0].rules == kept[APP.name]
    narrower = User(APP.name, "app", "~other:* +@read +get", None)
    assert checked([narrower], one, kept, TWO) == Checked((narrower,))
    both = {"cache-0": known((9, 1, 2), KNOWN | {"newcmd"}), "cache-1": known((9, 1, 2), KNOWN | {"newcmd"})}
    assert checked([wider], both, kept, TWO) == Checked((wider,))


def test_the_files_rules_are_checked_too() -> None:
    """The file holds rules a pod does not know (written before the check existed): they are not given
    either, so a pod that restarts reads a file it can start on; the user is left as the pods hold it."""
    bad = User(APP.name, "app", "~app:* +nosuch", None)
    result = checked([bad], {"cache-0": known((9, 1, 2)), "cache-1": known((9, 1, 2))}, {APP.name: bad.rules}, TWO)
    assert (result.given, result.withheld) == ((), (APP.name,))
    assert result.error is not None
    assert result.error.reason == INVALID_ACL_RULES


def test_a_withheld_user_is_neither_given_nor_deleted() -> None:
    """The spec still names the user but its rules wait: the pods keep it as it is (a live client keeps
    working), status keeps it recorded, and other users are given as usual."""
    other = User("other@cache.default", "other", "+get", None)
    lines = {USER: LINE, other.name: "user other@cache.default on +get"}
    result = plan([other], [view(p) for p in PODS], reports(each(lines)), recorded({}, [USER], [APP]), [USER])
    assert all(a.remove == () for a in result.actions)
    assert result.status is not None
    assert result.status["users"] == sorted([USER, other.name])
    # Without the spec naming it, the same user is deleted.
    dropped = plan([other], [view(p) for p in PODS], reports(each(lines)), recorded({}, [USER], [APP]))
    assert all(a.remove == (USER,) for a in dropped.actions)


def test_file_rules_read_back_what_users_file_wrote() -> None:
    with_password = User("b@cache.default", "b", "~b:* +get", "s3cret")
    assert file_rules(users_file([APP, with_password])) == {APP.name: APP.rules, with_password.name: "~b:* +get"}
