"""The clients' ACL users on real servers, from the rendered files: on Valkey 9.1.2 a client certificate alone
logs in as the user its CN names (tls-auth-clients-user CN) and the user's rules hold; on the machine's 8.0
the same users have passwords. Then the operator's own live change (ACL SETUSER through ValkeyAdmin, names
verified) and the premise of its confirmation: a server restarted on the current users file reports the very
`ACL LIST` line the live change left."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import valkey

from tests.acceptance.conftest import PASSWORD, Instance, example, free_port, run_with_hosts, start_instance
from valkey_operator.access import lines_digest, unknown_commands
from valkey_operator.builders.secrets import client_secret
from valkey_operator.conf.users import User, users
from valkey_operator.pki.issue import LeafRequest, issue_leaf

pytestmark = pytest.mark.acceptance

IMAGE9 = "valkey/valkey:9.1.2"
APP_USER = "app@cache.default"  # <client>@<cluster>.<namespace>
CLIENTS = [
    {"name": "app", "acl": "~app:* +@read +@write"},
    {"name": "other", "acl": "~other:* +@all"},
    {"name": "plain"},  # a client certificate without a user
]
SET_USERS = """
import json, sys
from pathlib import Path
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

tls, fqdn, port, password = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
name, args = sys.argv[5], sys.argv[6].split(" ")
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port))
after = admin.set_users(fqdn, [(name, args)], [], creds)
print(json.dumps({"after": after, "read": admin.acl_lines(fqdn, creds)}))
"""


def as_client(inst: Instance, client: str, *args: str) -> str:
    """valkey-cli with `client`'s certificate and no password: whoever the certificate alone makes it."""
    if client in inst.material.clients:
        cert, key = inst.client_files(client)
    else:  # written by write_client
        cert, key = inst.tls_dir / f"{client}.crt", inst.tls_dir / f"{client}.key"
    cmd = ["valkey-cli", "-h", inst.host, "-p", str(inst.layout.port), "--tls", "--cacert", inst.layout.ca_file,
           "--sni", "localhost", "--cert", str(cert), "--key", str(key), *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    return (out.stdout + out.stderr).strip()


def test_on_valkey_9_the_certificate_alone_logs_a_client_in_as_its_user(
    launch: Any, valkey9: Path, tmp_path: Path, instances: list[Instance]
) -> None:
    cluster = example(mode="standalone", replicas=1, image=IMAGE9, tls={"clients": CLIENTS})
    wanted = users(cluster, {})
    assert [u.password for u in wanted] == [None, None]  # 9.x and clientAuth required: no password at all
    inst = launch(cluster, host="127.0.0.2", port=free_port("127.0.0.2"), bin_dir=valkey9, users=wanted)
    assert "tls-auth-clients-user CN" in Path(inst.layout.config_file).read_text()
    # ACL WHOAMI is not in @read/@write: the refusal names the user the certificate made it.
    assert "User app@cache.default has no permissions" in as_client(inst, "app", "ACL", "WHOAMI")
    assert as_client(inst, "app", "SET", "app:1", "one") == "OK"
    assert as_client(inst, "app", "GET", "app:1") == "one"
    assert "NOPERM" in as_client(inst, "app", "SET", "elsewhere", "x")
    assert "NOPERM" in as_client(inst, "app", "GET", "other:1")
    assert "NOPERM" in as_client(inst, "app", "CONFIG", "GET", "maxmemory")  # not in @read/@write
    # Another client's certificate maps to its own user, with its own rules.
    assert as_client(inst, "other", "ACL", "WHOAMI") == "other@cache.default"
    assert as_client(inst, "other", "SET", "other:1", "two") == "OK"
    assert "NOPERM" in as_client(inst, "other", "GET", "app:1")
    # A certificate whose CN names no user gets nothing: it is the default user, which wants the password.
    assert "NOAUTH" in as_client(inst, "plain", "GET", "app:1")
    # Certificates from the same CA for other clusters (a CA shared between namespaces) name their own
    # cluster and namespace: client `app` of a cluster `cache` in namespace `shop` maps to no user here, nor
    # does the CN the operator gave before (`<cluster>-<client>`, which other clusters' clients shared).
    for foreign in ("app@cache.shop", "cache-app"):
        write_client(inst, foreign)
        assert "NOAUTH" in as_client(inst, foreign, "GET", "app:1"), foreign
    # A user without a password cannot be opened by AUTH, whatever is given.
    assert "WRONGPASS" in as_client(inst, "plain", "AUTH", APP_USER, "anything")
    assert "WRONGPASS" in as_client(inst, "plain", "AUTH", APP_USER, "")

    # The operator's live change: app may now also write shared:*.
    fqdn = cluster.names.pod_fqdn("cache-0")
    inst.client_files()
    changed = User(APP_USER, "app", "~app:* ~shared:* +@read +@write", None)
    out = run_with_hosts(tmp_path, {fqdn: inst.host}, SET_USERS, inst.layout.tls_dir, fqdn, str(inst.layout.port),
                         PASSWORD, changed.name, " ".join(changed.setuser))  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads(out.stdout)
    assert seen["after"] == seen["read"]
    line = seen["after"][APP_USER]
    assert "~shared:*" in line, line
    assert as_client(inst, "app", "SET", "shared:1", "three") == "OK"  # live: no restart, same connection rules
    # The confirmation's premise: a server started on the current users file reports the same line.
    restarted = restart_with(inst, cluster, [changed, wanted[1]], valkey9)
    instances.append(restarted)  # stopped with the others (it outlived its test before)
    after_restart = restarted.cli("ACL", "LIST").stdout.splitlines()
    assert line in after_restart, (line, after_restart)
    assert lines_digest({APP_USER: line}, [APP_USER]) == lines_digest(
        {APP_USER: next(x for x in after_restart if x.startswith("user app@cache.default "))}, [APP_USER]
    )


def write_client(inst: Instance, cn: str) -> None:
    """A client certificate with CN `cn` from the instance's CA, as as_client(inst, cn) reads it."""
    assert inst.material.ca is not None
    pair = issue_leaf(inst.material.ca, LeafRequest(cn, server=False, client=True), datetime.now(UTC))
    (inst.tls_dir / f"{cn}.crt").write_bytes(pair.cert_pem)
    key = inst.tls_dir / f"{cn}.key"
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)


def restart_with(inst: Instance, cluster: Any, given: list[User], bin_dir: Path | None) -> Instance:
    """Stop `inst` and start it again in its folder, the users file as `given` (the kubelet's projection)."""
    inst.stop()
    workdir = Path(inst.layout.config_dir).parent
    return start_instance(cluster, workdir, host=inst.host, port=inst.layout.port, material=inst.material,
                          bin_dir=bin_dir, users=given)  # fmt: skip


def test_on_valkey_8_the_users_have_passwords_and_the_certificate_alone_is_not_enough(launch: Any) -> None:
    cluster = example(mode="standalone", replicas=1, tls={"clients": CLIENTS})
    secret = "a-generated-password-for-app"
    wanted = users(cluster, {"app": secret, "other": "another-one"})
    assert [u.password for u in wanted] == [secret, "another-one"]
    inst = launch(cluster, host="127.0.0.2", port=free_port("127.0.0.2"), users=wanted)
    assert "tls-auth-clients-user" not in Path(inst.layout.config_file).read_text()  # 8.0 has no such directive
    assert secret not in Path(inst.layout.users_file).read_text()  # only its hash reaches the pod
    assert "NOAUTH" in as_client(inst, "app", "GET", "app:1")
    login = ("--user", APP_USER, "--pass", secret, "--no-auth-warning")
    assert "User app@cache.default has no permissions" in as_client(inst, "app", *login, "ACL", "WHOAMI")
    assert as_client(inst, "app", *login, "SET", "app:1", "x") == "OK"
    assert "NOPERM" in as_client(inst, "app", *login, "SET", "b", "x")
    assert "WRONGPASS" in as_client(inst, "app", "--user", APP_USER, "--pass", "guess", "--no-auth-warning", "PING")
    other = ("--user", "other@cache.default", "--pass", "another-one", "--no-auth-warning")
    assert as_client(inst, "other", *other, "ACL", "WHOAMI") == "other@cache.default"


def whoami_by_uri(inst: Instance, client: str, uri: str) -> str:
    """valkey-py from the client Secret's `uri` (its host swapped for the instance's address, which the
    certificate's `localhost` name is checked against) and the client's certificate."""
    cert, key = inst.client_files(client)
    parts = urlsplit(uri)
    local = parts._replace(netloc=parts.netloc.replace(parts.hostname or "", "localhost")).geturl()
    with valkey.Valkey.from_url(local, ssl_ca_certs=inst.layout.ca_file, ssl_certfile=str(cert),
                                ssl_keyfile=str(key), socket_timeout=5) as conn:  # fmt: skip
        conn.connection_pool.connection_kwargs["host"] = inst.host
        got = conn.execute_command("ACL", "WHOAMI")
        return got.decode() if isinstance(got, bytes) else str(got)


@pytest.mark.parametrize(("image", "password"), [("valkey/valkey:8.0", "p@ss:w/rd%?#"), (IMAGE9, None)])
def test_the_client_secrets_uri_logs_in_as_the_user(
    launch: Any, valkey9: Path, image: str, password: str | None
) -> None:
    """The `uri` a client Secret carries, read by a real client library: on 8.x the user's name (with its
    `@`) and a password full of URI delimiters round-trip; on 9.x it names no user and the certificate
    alone makes the connection the user."""
    rules = [{"name": "app", "acl": "~app:* +@read +@write +acl|whoami"}]
    cluster = example(mode="standalone", replicas=1, image=image, tls={"clients": rules})
    wanted = users(cluster, {"app": password} if password else {})
    bin_dir = valkey9 if image == IMAGE9 else None
    inst = launch(cluster, host="127.0.0.2", port=free_port("127.0.0.2"), bin_dir=bin_dir, users=wanted)
    secret = client_secret(cluster, "app", inst.material.clients["app"], b"", inst.layout.port, wanted[0])
    uri = base64.b64decode(secret["data"]["uri"]).decode()
    port = inst.layout.port
    if password is None:
        assert uri == f"rediss://cache.default.svc:{port}"
    else:
        assert uri == f"rediss://app%40cache.default:{quote(password, safe='')}@cache.default.svc:{port}"
    assert whoami_by_uri(inst, "app", uri) == APP_USER


TOKENS = ("+get", "-GET", "+config|get", "+config|nosuch", "+config|get|x", "+config|", "+select|0", "-select|0",
          "+get|x|y", "-get|x", "+nosuch", "-acl|whoami", "+client|no-touch", "+cluster|slot-stats",
          "+commandlog|get")  # fmt: skip
COMMANDS = """
import json, sys
from pathlib import Path
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.version import parse_release
from valkey_operator.pki.issue import KeyPair
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

tls, fqdn, port, password = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port))
release = admin.replication(fqdn, creds).release
print(json.dumps(sorted(admin.commands(fqdn, creds, release))))
"""


@pytest.mark.parametrize("image", ["valkey/valkey:8.0", IMAGE9])
def test_the_operators_command_check_agrees_with_acl_setuser(
    launch: Any, valkey9: Path, tmp_path: Path, image: str
) -> None:
    """The operator's own read of the command names (ValkeyAdmin.commands, as a pass makes it), then each
    command token: refused by the operator's check exactly when the real server's ACL SETUSER refuses it.
    Some exist only in 9.x (commandlog, cluster slot-stats)."""
    cluster = example(mode="standalone", replicas=1, image=image)
    inst = launch(cluster, host="127.0.0.2", port=free_port("127.0.0.2"), bin_dir=valkey9 if image == IMAGE9 else None)
    inst.client_files()
    fqdn = cluster.names.pod_fqdn("cache-0")
    out = run_with_hosts(tmp_path, {fqdn: inst.host}, COMMANDS, inst.layout.tls_dir, fqdn, str(inst.layout.port),
                         PASSWORD)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    known = frozenset(json.loads(out.stdout))
    assert known == frozenset(inst.cli("COMMAND", "LIST").stdout.lower().split())
    for token in TOKENS:
        refused = "ERR" in inst.cli("ACL", "SETUSER", "probe", token).stdout
        assert bool(unknown_commands(token, known)) == refused, (image, token)


def test_a_pod_of_an_older_release_starts_on_a_config_rendered_for_9_1(launch: Any, valkey9: Path) -> None:
    """Mid-upgrade, the ConfigMap already carries 9.x directives (tls-auth-clients-user, and with HotReload
    tls-auto-reload-interval). A pod still on the older image that restarts must start: the start script
    leaves out what its server does not know (the machine's 8.0 here), and keeps them for 9.1.2."""
    tls = {"rotation": {"strategy": "HotReload"}, "clients": CLIENTS}
    cluster = example(mode="standalone", replicas=1, image=IMAGE9, tls=tls)
    old = launch(cluster, host="127.0.0.2", port=free_port("127.0.0.2"), users=users(cluster, {}))
    rendered = Path(old.layout.config_file)
    assert "tls-auth-clients-user CN" in rendered.read_text()
    assert "tls-auto-reload-interval" in rendered.read_text()
    assert old.cli("PING").stdout.strip() == "PONG"  # 8.0 started, without them
    assert "tls-auth-clients-user" not in old.cli("CONFIG", "GET", "tls-auth-clients-user").stdout
    new = launch(cluster, host="127.0.0.3", port=free_port("127.0.0.3"), bin_dir=valkey9, users=users(cluster, {}))
    assert new.cli("CONFIG", "GET", "tls-auth-clients-user").stdout.split() == ["tls-auth-clients-user", "CN"]
    assert new.cli("CONFIG", "GET", "tls-auto-reload-interval").stdout.split()[1] != "0"
