"""Version upgrades on the real nodes: the example (replication, 3 pods, mTLS) on Debian's Valkey 8.1.1, then
`spec.image` set to the 9.1 image (Debian forky's 9.1.2) under the steady writer. The pods roll as in a
rotation: replicas first, the primary after `FAILOVER TO`, one at a time. Every acknowledged write is read
back from the primary at the end, every pod then says (INFO server) it runs 9.1.2, and the advisory
condition 8.1.1 raised is gone. Then a HotReload rotation on 9.1 under the writer: no restart, no failed
write. Then the `app` client gets ACL rules: its certificate alone logs it in as its user on 9.1, and a
rules change reaches every pod live. Last, `spec.image` back to 8.1 is refused (DowngradeRefused) and
nothing rolls.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from typing import Any

from e2e.conftest import (
    NAME,
    NS,
    SERVICE_DNS,
    Creds,
    cluster_events,
    condition,
    finish_pod,
    kubectl,
    plain,
    pod_fqdn,
    pods,
    secret,
    served_fingerprint,
    start_client_pod,
    vkc,
    wait_for,
)
from e2e.faults import RESUME_WITHIN_MS, StatusWatch, restarts, settled, under_writer
from e2e.node import Node
from valkey_operator import names


def releases(node: Node, creds: Creds) -> dict[str, str]:
    """The release each pod's server reports (INFO server)."""
    out = {}
    for p in pods(node):
        ip, info = p["status"].get("podIP"), ""
        # A pod between lives has no address, or one that nothing answers on any more.
        with contextlib.suppress(subprocess.TimeoutExpired):
            info = creds.cli(ip, pod_fqdn(p["metadata"]["name"]), "INFO", "server", timeout=5) if ip else ""
        out[p["metadata"]["name"]] = next(
            (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("valkey_version:")), "?"
        )
    return out


def serves(creds: Creds, pod: dict[str, Any], fingerprint: str) -> bool:
    """The pod presents the certificate `fingerprint` names (a live handshake); False if it does not answer."""
    try:
        return served_fingerprint(creds, pod["status"]["podIP"], pod_fqdn(pod["metadata"]["name"])) == fingerprint
    except (OSError, KeyError):
        return False


def set_image(node: Node, image: str) -> None:
    patch = {"spec": {"image": image}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))


def test_8_1_to_9_1_under_a_writer_rolls_like_a_rotation_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str, valkey9_image: str
) -> None:
    before = releases(node, creds)
    assert set(before.values()) == {"8.1.1"}, before
    # Debian's 8.1.1 is older than the advisory's fixed 8.1.9: reported, nothing blocked.
    degraded = condition(vkc(node), "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "VulnerableValkeyVersion"), degraded
    assert condition(vkc(node), "Ready")["status"] == "True"
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}

    def upgrade(watch: StatusWatch) -> None:
        set_image(node, valkey9_image)

        def upgraded() -> bool:
            found = releases(node, creds)  # all three pods, each on 9.1.2 (not two while the third is replaced)
            return len(found) == 3 and set(found.values()) == {"9.1.2"}

        wait_for(upgraded, "every pod on 9.1.2", 600, every=3)

    report = under_writer(node, creds, operator_image, "upgrade-8.1-to-9.1", upgrade)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    assert all(after[p] != u for p, u in uids.items()), (uids, after)  # every pod was replaced
    events = cluster_events(node)
    assert "Switchover" in events, events  # the primary handed over before it restarted
    wait_for(lambda: condition(vkc(node), "Degraded")["status"] == "False", "the advisory condition gone", 60)
    print(f"releases before {before}, after {releases(node, creds)}")


def test_a_hot_reload_rotation_on_9_1_restarts_nothing_and_fails_no_write(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """HotReload on 9.1 adds `tls-auto-reload-interval` to valkey.conf (one roll); then a rotation under the
    writer: the operator reloads each pod as soon as the kubelet has projected the new Secret (Valkey would
    re-read the files itself within 60 s), confirms each by a live handshake, and nothing restarts."""
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    set_strategy = {"spec": {"tls": {"rotation": {"strategy": "HotReload"}}}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(set_strategy))
    wait_for(lambda: settled(node) and all(p["metadata"]["uid"] != uids.get(p["metadata"]["name"]) for p in pods(node)),
             "the roll that brings tls-auto-reload-interval", 600, every=3)  # fmt: skip
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    serial = vkc(node)["status"]["certificates"]["server"]["serial"]
    took: dict[str, float] = {}

    def rotate(watch: StatusWatch) -> None:
        started = time.monotonic()
        kubectl(node, "annotate", "--overwrite", "valkeycluster", NAME, "-n", NS,
                f"{names.ANN_ROTATE_CERTIFICATES}={time.time()}")  # fmt: skip
        wait_for(lambda: vkc(node)["status"]["certificates"]["server"]["serial"] != serial, "the new certificate", 60)
        want = plain(vkc(node)["status"]["certificates"]["server"]["fingerprintSHA256"])
        wait_for(lambda: all(serves(creds, p, want) for p in pods(node)), "every pod serving it", 300, every=2)
        took["serving"] = time.monotonic() - started

    report = under_writer(node, creds, operator_image, "hot-reload-9.1", rotate)
    assert report["missing_count"] == 0, report
    assert report["failures"] == 0, report
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)} == before  # nothing restarted
    assert all(restarts(node, name) == 0 for name in before)
    print(f"every pod served the new certificate {took['serving']:.1f} s after the rotation was asked for")


APP_CLIENT_PY = """
import valkey
c = valkey.Valkey(host="%(service)s", port=6379, ssl=True, ssl_ca_certs="/tls/ca.crt", ssl_certfile="/tls/tls.crt",
                  ssl_keyfile="/tls/tls.key", ssl_check_hostname=True, socket_timeout=5)
def attempt(what, *args):
    try:
        got = c.execute_command(*args)
        print(what + "\tok " + (got.decode() if isinstance(got, bytes) else str(got)))
    except Exception as exc:
        print(what + "\trefused " + type(exc).__name__ + ": " + str(exc)[:80])
attempt("set app", "SET", "app:1", "one")
attempt("get app", "GET", "app:1")
attempt("set shared", "SET", "shared:1", "two")
attempt("set other", "SET", "other:1", "x")
attempt("whoami", "ACL", "WHOAMI")
attempt("auth", "AUTH", "%(user)s", "anything")
"""


APP_USER = f"app@{NAME}.{NS}"  # the client's ACL user: <client>@<cluster>.<namespace>


def app_client(node: Node, image: str, tag: str) -> dict[str, str]:
    """What the `app` client's certificate alone (its Secret, no password) may do, through the Service."""
    script = APP_CLIENT_PY % {"service": SERVICE_DNS, "user": APP_USER}
    start_client_pod(node, f"app-{tag}", image, ["python", "-c", script], secret=f"{NAME}-client-app")
    log = finish_pod(node, f"app-{tag}", 120)
    return dict(line.split("\t", 1) for line in log.splitlines() if "\t" in line)


def acl_held(node: Node) -> bool:
    """Status says every pod holds the clients' current ACL users, and the cluster is Ready."""
    body = vkc(node)
    acl = body.get("status", {}).get("acl") or {}
    return settled(node) and sorted(acl.get("pods") or {}) == sorted(p["metadata"]["name"] for p in pods(node))


def test_a_clients_acl_user_on_9_1_logs_in_by_certificate_alone_and_changes_live(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """`app` gets ACL rules: the pods mount the users (one roll), and the app's certificate alone, with no
    password, logs in as `app@cache.<namespace>` with those rules; AUTH cannot open that user. Then wider rules reach
    every pod live (ACL SETUSER, each pod's ACL LIST confirmed): no pod restarts."""
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    rules = {"spec": {"tls": {"clients": [{"name": "app", "acl": "~app:* +@read +@write"}]}}}
    started = time.monotonic()
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(rules))

    def rolled() -> bool:
        return all(p["metadata"]["uid"] != uids.get(p["metadata"]["name"]) for p in pods(node))

    wait_for(lambda: acl_held(node) and rolled(), "every pod holding the users, after the roll", 600, every=3)
    print(f"\nthe users held by every pod {time.monotonic() - started:.1f} s after the rules were set")
    app_secret = secret(node, f"{NAME}-client-app")
    assert (app_secret["username"], "password" in app_secret) == (APP_USER.encode(), False)
    assert app_secret["uri"] == f"rediss://{SERVICE_DNS}:6379".encode()
    seen = app_client(node, operator_image, "1")
    print(json.dumps(seen))
    assert seen["set app"] == "ok True", seen
    assert seen["get app"] == "ok one", seen
    assert "NoPermissionError" in seen["set shared"], seen
    assert "NoPermissionError" in seen["set other"], seen
    assert f"User {APP_USER} has no permissions" in seen["whoami"], seen  # the certificate made it the user
    assert seen["auth"].startswith("refused"), seen
    # Wider rules, live.
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    digest = vkc(node)["status"]["acl"]["digest"]
    wider = {"spec": {"tls": {"clients": [{"name": "app", "acl": "~app:* ~shared:* +@read +@write"}]}}}
    started = time.monotonic()
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(wider))
    wait_for(lambda: vkc(node)["status"]["acl"]["digest"] != digest and acl_held(node), "the wider rules held", 120)
    print(f"the wider rules held by every pod {time.monotonic() - started:.1f} s after they were set")
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)} == before  # live: nothing restarted
    assert "AclUsersChanged" in cluster_events(node)
    for p in pods(node):
        lines = creds.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "ACL", "LIST")
        assert any(x.startswith(f"user {APP_USER} ") and "~shared:*" in x for x in lines.splitlines()), lines
    seen = app_client(node, operator_image, "2")
    assert seen["set shared"] == "ok True", seen
    assert "NoPermissionError" in seen["set other"], seen


def test_back_to_8_1_is_refused_and_nothing_rolls(node: Node, creds: Creds, valkey_image: str) -> None:
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    set_image(node, valkey_image)
    wait_for(lambda: condition(vkc(node), "Ready")["reason"] == "DowngradeRefused", "DowngradeRefused", 60)
    message = condition(vkc(node), "Ready")["message"]
    assert "runs 9.1.2" in message, message
    time.sleep(10)  # a roll, had one started, would have replaced a pod by now
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)} == uids
    sts = json.loads(kubectl(node, "get", "statefulset", NAME, "-n", NS, "-o", "json"))
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] != valkey_image
    print(f"refused: {message}")
