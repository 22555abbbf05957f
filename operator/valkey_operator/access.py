"""The clients' ACL users on the pods: which pods must be given them (ACL SETUSER, live) and which hold them.

A pod holds the users when the `ACL LIST` lines it reports for them are the lines it reported right after
the operator gave it the current rules (status.acl.pods: a digest of those lines, per pod, for the rules'
digest). The operator never predicts how Valkey normalises rules; it compares a pod with itself. A pod
that restarted reads the users from their file: if the file was current, its lines are the same and
nothing is asked; if the kubelet had not projected the change yet, they differ and the pod is given the
rules again. Users the operator made that the spec no longer names are deleted (ACL DELUSER); users it did
not make are never touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from valkey_operator.actions import SetUsers
from valkey_operator.api.spec import SpecError
from valkey_operator.conf.users import User, rules_digest
from valkey_operator.conf.version import Release
from valkey_operator.snapshot import PodReport, PodView

INVALID_ACL_RULES = "InvalidAclRules"
ACL_RULES_AWAIT_ROLLOUT = "AclRulesAwaitRollout"  # known to a release some pods run, not to all yet


@dataclass(frozen=True)
class Plan:
    actions: tuple[SetUsers, ...] = ()
    status: dict[str, Any] | None = None  # status.acl: {digest, users, pods}; None when no user is made
    pending: tuple[str, ...] = ()  # ready pods that do not hold the current users yet


def unknown_commands(rules: str, known: frozenset[str]) -> list[str]:
    """The rules' command tokens (`+get`, `-config|set`) that name a command the server does not know, as
    ACL SETUSER (and a server reading the users file) would refuse them: a subcommand must be one of the
    command's own, unless the command has none (then it matches the first argument, as `+select|0`)."""
    out = []
    for token in rules.split(" "):
        if token[:1] not in ("+", "-") or token[1:2] == "@":
            continue
        name = token[1:].lower()
        command, bar, sub = name.partition("|")
        # `+select|0`: the first argument of a command without subcommands; only to allow (`-select|0` is refused).
        first_arg = (
            token[0] == "+" and bar and sub and "|" not in sub and not any(k.startswith(command + "|") for k in known)
        )
        if name in known or (first_arg and command in known):
            continue
        out.append(token)
    return out


@dataclass(frozen=True)
class Checked:
    given: tuple[User, ...]  # the users the pods get, and their file, with the rules they may hold now
    waiting: tuple[str, ...] = ()  # clients whose rules are not given yet (not every pod could be asked)
    error: SpecError | None = None


def checked(
    wanted: Sequence[User], reports: Mapping[str, PodReport], kept: Mapping[str, str], pods: Sequence[str]
) -> Checked:
    """The users the pods may be given, and in their file: rules whose commands every release the pods run
    knows (a pod refuses a users file it cannot read, and does not start). Checked only once every pod the
    cluster has (`pods`) said which commands it knows: a pod not asked may run another release. Until then,
    and for a user whose rules name a command some pod does not know, the user keeps the rules its file
    holds (`kept`, by user name), if they pass the same check; otherwise it is not given. The error names
    each command and a pod that does not know it, and says when a newer release running on another pod
    knows it (an upgrade under way: the rules are given once every pod runs it)."""
    tables: dict[Release | None, tuple[str, frozenset[str]]] = {}
    for pod, report in sorted(reports.items()):
        if report.commands is not None:
            release = report.replication.release if report.replication else None
            tables.setdefault(release, (pod, report.commands))
    everyone = bool(pods) and all(p in reports and reports[p].commands is not None for p in pods)
    given: list[User] = []
    waiting: list[str] = []
    refused: list[str] = []
    invalid = False
    for user in wanted:
        bad = _unknown(user.rules, tables)
        if everyone and not bad:
            given.append(user)
            continue
        if bad:
            told = []
            for token in sorted(bad):
                elsewhere = [pod for pod, known in tables.values() if not unknown_commands(token, known)]
                invalid = invalid or not elsewhere
                told.append(f"{token} ({_on(*bad[token])}{_known_on(elsewhere)})")
            refused.append(f"client {user.client!r}: {', '.join(told)}")
        old = kept.get(user.name)
        if old is not None and not _unknown(old, tables):
            given.append(replace(user, rules=old))
        if not bad and old != user.rules:
            waiting.append(user.client)
    if not refused:
        return Checked(tuple(given), tuple(waiting))
    tail = (
        "correct the rules (COMMAND LIST on a pod shows the names it knows)"
        if invalid
        else "they are given once every pod runs a release that knows them"
    )
    return Checked(
        tuple(given),
        tuple(waiting),
        SpecError(
            INVALID_ACL_RULES if invalid else ACL_RULES_AWAIT_ROLLOUT,
            "spec.tls.clients[].acl names commands not every server knows: " + "; ".join(refused) + ". The pods "
            f"keep the rules their file holds where those pass (a user without such rules is not given); {tail}.",
        ),
    )


def _unknown(
    rules: str, tables: Mapping[Release | None, tuple[str, frozenset[str]]]
) -> dict[str, tuple[Release | None, str]]:
    """Each token of `rules` some release does not know, with that release and a pod that runs it."""
    return {
        token: (release, pod)
        for release, (pod, known) in sorted(tables.items(), key=lambda kv: kv[0] or (0, 0, 0))
        for token in unknown_commands(rules, known)
    }


def _on(release: Release | None, pod: str) -> str:
    return f"unknown to {pod}, which runs Valkey {'.'.join(map(str, release))}" if release else f"unknown to {pod}"


def _known_on(pods: Sequence[str]) -> str:
    return f"; {', '.join(sorted(pods))} knows it" if pods else ""


def lines_digest(lines: Mapping[str, str], wanted: Sequence[str]) -> str:
    """One value for the `ACL LIST` lines of the wanted users (a user a pod lacks counts as absent)."""
    text = "\n".join(lines.get(name, "") for name in sorted(wanted))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(
    wanted: Sequence[User], views: Sequence[PodView], reports: Mapping[str, PodReport], recorded: Mapping[str, Any]
) -> Plan:
    """Which running pods get the users (and lose the ones no longer asked for), and status.acl."""
    names = [u.name for u in wanted]
    made = set(recorded.get("users") or [])
    if not wanted and not made:
        return Plan()
    digest = rules_digest(wanted) if wanted else ""
    held = dict(recorded.get("pods") or {}) if recorded.get("digest") == digest else {}
    actions: list[SetUsers] = []
    confirmed: dict[str, str] = {}
    pending: list[str] = []
    left: set[str] = set()  # users made before and no longer asked for, that some pod still has (or may)
    for pod in views:
        report = reports.get(pod.name)
        if pod.terminating or not pod.running or report is None or report.acl is None:
            if pod.ready and not pod.terminating:
                pending.append(pod.name)
            if not pod.terminating and pod.running:
                left.update(made - set(names))  # not asked: it may still have them, so they stay recorded
            continue
        stale = sorted(n for n in report.acl if n in made and n not in names)
        left.update(stale)
        seen = lines_digest(report.acl, names)
        if not stale and (not names or (all(n in report.acl for n in names) and held.get(pod.name) == seen)):
            if names:
                confirmed[pod.name] = seen
            continue
        actions.append(SetUsers(pod.name, tuple((u.name, u.setuser) for u in wanted), tuple(stale), digest))
        if pod.ready:
            pending.append(pod.name)
    status = {"digest": digest or None, "users": sorted(set(names) | left) or None, "pods": confirmed or None}
    if not wanted and not left:
        status = {"digest": None, "users": None, "pods": None}
    return Plan(tuple(actions), status, tuple(pending))


def held_after(applied: Mapping[str, Mapping[str, str]], actions: Sequence[SetUsers]) -> dict[str, str]:
    """status.acl.pods entries for the pods this pass gave the users: the digest of the lines each pod
    reported right after (what later passes compare the pod with)."""
    out: dict[str, str] = {}
    for action in actions:
        if action.pod in applied:
            out[action.pod] = lines_digest(applied[action.pod], [name for name, _ in action.users])
    return out
