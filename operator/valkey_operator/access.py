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
from valkey_operator.conf.version import Release, Version
from valkey_operator.snapshot import PodReport, PodView

INVALID_ACL_RULES = "InvalidAclRules"


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
    withheld: tuple[str, ...] = ()  # users of the spec given nothing: kept as they are on the pods, not in the file
    waiting: tuple[str, ...] = ()  # why some clients' rules are not given yet, one phrase each
    error: SpecError | None = None  # InvalidAclRules: commands no release the pods should run knows


def checked(
    wanted: Sequence[User],
    reports: Mapping[str, PodReport],
    kept: Mapping[str, str],
    pods: Sequence[str],
    target: Version | None = None,
) -> Checked:
    """The users the pods may be given, and in their file: rules whose commands every release the pods run
    knows (a pod refuses a users file it cannot read, and does not start).

    New rules are given once every pod (`pods`) said which commands it knows (a pod not asked may run
    another release), or at once when they name no command the rules the file holds (`kept`, by user name)
    do not: a pod that could start on the old file starts on the new one (a permission taken away, a key
    pattern changed, the way out of a crash loop the old rules caused). Otherwise the user keeps the rules
    its file holds, if they pass the same check; without such rules it is withheld: left on the pods as it
    is (a live client keeps working) and out of the file. A command that only the release `target` (the
    one spec.image names) knows, running on some pods, waits for the roll; any other unknown command is an
    error that names it and a pod that does not know it."""
    tables: dict[Release | None, tuple[str, frozenset[str]]] = {}
    for pod, report in sorted(reports.items()):
        if report.commands is not None:
            release = report.replication.release if report.replication else None
            tables.setdefault(release, (pod, report.commands))
    everyone = bool(pods) and all(p in reports and reports[p].commands is not None for p in pods)
    given: list[User] = []
    withheld: list[str] = []
    waiting: list[str] = []
    refused: list[str] = []
    for user in wanted:
        bad = _unknown(user.rules, tables)
        old = kept.get(user.name)
        if not bad and (everyone or (old is not None and _command_tokens(user.rules) <= _command_tokens(old))):
            given.append(user)
            continue
        later = {token: _knowing(token, tables, target) for token in bad}
        told = [f"{t} ({_on(*bad[t])}{_known_on(later[t])})" for t in sorted(bad)]
        if not bad:
            waiting.append(f"client {user.client!r} (not every pod has said which commands it knows)")
        elif all(later.values()):
            waiting.append(
                f"client {user.client!r}, once every pod runs the release spec.image names: {', '.join(told)}"
            )
        else:
            refused.append(f"client {user.client!r}: {', '.join(told)}")
        if old is not None and not _unknown(old, tables):
            given.append(replace(user, rules=old))
        else:
            withheld.append(user.name)
    error = None
    if refused:
        error = SpecError(
            INVALID_ACL_RULES,
            "spec.tls.clients[].acl names commands the servers do not know: " + "; ".join(refused) + ". The pods "
            "keep the rules their file holds (a user without rules that pass is left as it is on the pods and "
            "out of the file); correct the rules (COMMAND LIST on a pod shows the names it knows).",
        )
    return Checked(tuple(given), tuple(withheld), tuple(waiting), error)


def _command_tokens(rules: str) -> set[str]:
    """The tokens of `rules` that name commands (what a server may not know); the rest (key and channel
    patterns, categories, which the CRD checks) never stop a pod from starting."""
    return {t.lower() for t in rules.split(" ") if t[:1] in ("+", "-") and t[1:2] != "@"}


def _knowing(
    token: str, tables: Mapping[Release | None, tuple[str, frozenset[str]]], target: Version | None
) -> list[str]:
    """Pods that run the release line spec.image names (`target`; any release when it names none) and
    know the command `token` names."""
    return [
        pod
        for release, (pod, known) in tables.items()
        if release is not None and (target is None or release[:2] == target[:2]) and not unknown_commands(token, known)
    ]


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
    wanted: Sequence[User],
    views: Sequence[PodView],
    reports: Mapping[str, PodReport],
    recorded: Mapping[str, Any],
    withheld: Sequence[str] = (),
) -> Plan:
    """Which running pods get the users (and lose the ones no longer asked for), and status.acl. A withheld
    user (the spec still names it; its rules wait) is neither given nor deleted, and stays recorded."""
    names = [u.name for u in wanted]
    made = set(recorded.get("users") or [])
    kept_live = made & set(withheld)
    if not wanted and not made:
        return Plan()  # nothing made, nothing to give (a withheld user was never made)
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
        stale = sorted(n for n in report.acl if n in made and n not in names and n not in kept_live)
        left.update(stale)
        seen = lines_digest(report.acl, names)
        if not stale and (not names or (all(n in report.acl for n in names) and held.get(pod.name) == seen)):
            if names:
                confirmed[pod.name] = seen
            continue
        actions.append(SetUsers(pod.name, tuple((u.name, u.setuser) for u in wanted), tuple(stale), digest))
        if pod.ready:
            pending.append(pod.name)
    status = {
        "digest": digest or None,
        "users": sorted(set(names) | left | kept_live) or None,
        "pods": confirmed or None,
    }
    if not wanted and not left and not kept_live:
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
