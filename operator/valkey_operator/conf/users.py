"""ACL users for application clients (spec.tls.clients[].acl): their names, rules and how they log in.

A client with `acl` gets an ACL user named as its certificate's CN, `<client>@<cluster>.<namespace>`: unique
across namespaces (a CA shared between clusters signs certificates that each name their own cluster, and
the `@` keeps them apart from every server and connection certificate's CN, none of which has one). On Valkey 9.0 or
later with `clientAuth: required`, `tls-auth-clients-user CN` logs the certificate in as that user and the
user has no password at all (not `nopass`: `AUTH <user> <anything>` is refused), so only the certificate
opens it. Otherwise (8.x, or a client certificate that is optional or not asked for) the user gets a
generated password, kept in the client's Secret, and only its SHA-256 reaches the pods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.conf.version import effective_version, supports

USERS_KEY = "users.conf"


@dataclass(frozen=True)
class User:
    name: str  # <client>@<cluster>.<namespace>: the client certificate's CN
    client: str
    rules: str  # spec.tls.clients[].acl, validated by the CRD's pattern
    password: str | None  # None: the certificate alone logs it in

    @property
    def setuser(self) -> tuple[str, ...]:
        """The ACL SETUSER arguments after the name: from nothing (`reset`), on, the password's hash if any,
        then the rules."""
        secret = (f"#{hashlib.sha256(self.password.encode()).hexdigest()}",) if self.password else ()
        return ("reset", "on", *secret, *self.rules.split(" "))

    @property
    def line(self) -> str:
        """The `user` directive a pod reads when it starts (the same arguments as ACL SETUSER)."""
        return " ".join(("user", self.name, *self.setuser))


def user_name(cluster: ValkeyCluster, client: str) -> str:
    return cluster.names.acl_user(client)


def certificate_logins(cluster: ValkeyCluster) -> bool:
    """Whether the certificate alone logs a client in: Valkey 9.0 or later (tls-auth-clients-user) and every
    client must present a certificate (with `optional`, a password-less user would still be safe, since no
    AUTH opens it, but an application without a certificate would have no way in: it gets a password)."""
    tls = cluster.spec.tls
    version = effective_version(cluster.spec.image)
    return tls.enabled and tls.client_auth == "required" and supports(version, "tls-auth-clients-user")


def maps_certificates(cluster: ValkeyCluster) -> bool:
    """Whether the pods map a client certificate's CN to the user of that name (tls-auth-clients-user CN):
    when some client has a user, on Valkey 9.0 or later, with client certificates asked for."""
    tls = cluster.spec.tls
    version = effective_version(cluster.spec.image)
    return bool(tls.acls) and tls.enabled and tls.client_auth != "none" and supports(version, "tls-auth-clients-user")


def needs_password(cluster: ValkeyCluster) -> bool:
    return bool(cluster.spec.tls.acls) and not certificate_logins(cluster)


def users(cluster: ValkeyCluster, passwords: Mapping[str, str]) -> tuple[User, ...]:
    """The users the spec asks for, in its order; `passwords` by client (one for each unless certificates log
    in). Where certificates log in, a user given a password still has it (decide keeps one from before an
    upgrade from 8.x until every pod maps certificates: an application that logs in with it goes on working
    on old and new pods alike)."""
    cert_only = certificate_logins(cluster)
    return tuple(
        User(user_name(cluster, client), client, rules, passwords.get(client) if cert_only else passwords[client])
        for client, rules in cluster.spec.tls.acls
    )


def users_file(given: Sequence[User]) -> str:
    return "".join(f"{u.line}\n" for u in given)


def file_rules(text: str) -> dict[str, str]:
    """The rules a users file holds, by user name (the inverse of `users_file`, password hash left out)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split(" ")
        if len(words) < 4 or words[0] != "user" or words[2:4] != ["reset", "on"]:
            continue
        out[words[1]] = " ".join(w for w in words[4:] if not w.startswith("#"))
    return out


def kept_rules(cluster: ValkeyCluster, text: str) -> dict[str, str]:
    """The rules the users file holds for each of the spec's users, by user name: under the user's name, or
    under the name the previous version gave it (`<cluster>-<client>`), which a file written before the
    rename holds."""
    held = file_rules(text)
    out: dict[str, str] = {}
    for client, _ in cluster.spec.tls.acls:
        name, old = user_name(cluster, client), f"{cluster.name}-{client}"
        if name in held or old in held:
            out[name] = held[name] if name in held else held[old]
    return out


def rules_digest(given: Sequence[User]) -> str:
    """What the pods must hold, in one value (the users' lines: a password only as its hash)."""
    return hashlib.sha256(users_file(given).encode()).hexdigest()[:16]
