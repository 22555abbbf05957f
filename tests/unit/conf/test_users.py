"""The clients' ACL users: names, how they log in, the file pods read, the directives: table tests."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.unit.conftest import example
from valkey_operator.api.spec import SpecError, parse_cluster
from valkey_operator.conf.scripts import render_start_script
from valkey_operator.conf.users import (
    certificate_logins,
    kept_rules,
    maps_certificates,
    needs_password,
    rules_digest,
    users,
)
from valkey_operator.conf.valkey_conf import render_valkey_conf

APP = [{"name": "app", "acl": "~app:* +@read +@write"}, {"name": "plain"}]


@pytest.mark.parametrize(
    ("image", "client_auth", "cert_only", "maps"),
    [
        ("valkey/valkey:9.1", "required", True, True),
        ("valkey/valkey:9.0.3", "required", True, True),
        # optional: a client without a certificate needs a way in, so the user has a password too.
        ("valkey/valkey:9.1", "optional", False, True),
        # none: no certificate is asked for, nothing to map.
        ("valkey/valkey:9.1", "none", False, False),
        ("valkey/valkey:8.1", "required", False, False),
        ("valkey/valkey:latest", "required", False, False),  # unknown version: the baseline's rules
    ],
)
def test_how_a_clients_user_logs_in(image: str, client_auth: str, cert_only: bool, maps: bool) -> None:
    c = example(image=image, tls={"clientAuth": client_auth, "clients": APP})
    assert (certificate_logins(c), maps_certificates(c), needs_password(c)) == (cert_only, maps, not cert_only)
    conf = render_valkey_conf(c)
    assert ("tls-auth-clients-user CN" in conf) is maps


def test_a_user_is_named_as_the_certificate_and_starts_from_nothing() -> None:
    nine = example(image="valkey/valkey:9.1", tls={"clients": APP})
    (app,) = users(nine, {})
    # Named as the client, its cluster and namespace: unique across clusters that share a CA.
    assert (app.name, app.password) == ("app@cache.default", None)
    assert app.line == "user app@cache.default reset on ~app:* +@read +@write"  # no password, and not nopass
    eight = example(image="valkey/valkey:8.1", tls={"clients": APP})
    (app8,) = users(eight, {"app": "s3cret"})
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert app8.line == f"user app@cache.default reset on #{digest} ~app:* +@read +@write"
    assert "s3cret" not in app8.line
    assert rules_digest([app8]) != rules_digest([app])
    # Given a password on 9.x (decide keeps one through an upgrade from 8.x): it has it.
    (kept,) = users(nine, {"app": "s3cret"})
    assert kept.password == "s3cret"


def test_clusters_without_users_render_as_before() -> None:
    """No client with `acl`: no directive, no include, no volume (existing clusters do not roll)."""
    plain = example(image="valkey/valkey:9.1", tls={"clients": [{"name": "plain"}]})
    assert "tls-auth-clients-user" not in render_valkey_conf(plain)
    assert "users.conf" not in render_start_script(plain)
    with_users = example(image="valkey/valkey:9.1", tls={"clients": APP})
    assert 'if [ -f "/acl/users.conf" ]; then echo "include /acl/users.conf"' in render_start_script(with_users)


@pytest.mark.parametrize(
    "rules",
    [
        *("~a on", "~a >pw", "nopass", "~a  +get", "reset ~a", "(~a +get)", "~a #abc", "~a\n", "resetpass"),
        # A quote or backslash would open a quoted string in the users file; an unknown category makes a pod
        # refuse the file when it starts.
        *("+@read\tx", '~app"x', "~app'x", "~a\\b", "+@nosuch", "-@Read"),
    ],
)
def test_rules_that_are_the_operators_or_break_the_file_are_refused(rules: str) -> None:
    with pytest.raises(SpecError):
        example(tls={"clients": [{"name": "app", "acl": rules}]})


def test_a_user_name_longer_than_a_certificate_cn_is_refused() -> None:
    meta = {"name": "c" * 30, "namespace": "n" * 20}
    body: dict[str, Any] = {"metadata": meta, "spec": {"tls": {"clients": [{"name": "a" * 13, "acl": "~a"}]}}}
    with pytest.raises(SpecError, match="longer than a certificate's CN"):
        parse_cluster(body)
    body["spec"]["tls"]["clients"][0]["name"] = "a" * 12  # 12 + 1 + 30 + 1 + 20 = 64: fits
    assert parse_cluster(body).spec.tls.acls == (("a" * 12, "~a"),)


def test_the_rules_a_file_holds_are_found_under_the_name_before_the_rename() -> None:
    """A users file written by the previous version names the user `<cluster>-<client>`: its rules are what
    the pods hold, until the new name is given."""
    cluster = example(tls={"clients": [{"name": "app", "acl": "+get"}, {"name": "web", "acl": "+set"}]})
    text = "user cache-app reset on #ab ~a:* +get\nuser web@cache.default reset on +set\nuser other reset on +x\n"
    assert kept_rules(cluster, text) == {"app@cache.default": "~a:* +get", "web@cache.default": "+set"}
