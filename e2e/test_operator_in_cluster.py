"""The whole product on a real node: the operator installed by helm runs in its own pod, the example
ValkeyCluster's pods start, replicate over TLS and keep every acknowledged write through certificate
rotations, with clients in pods reaching them through kube-proxy and CoreDNS.

The tests in this module share one installation and one ValkeyCluster and run in file order.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import (
    NAME,
    NS,
    OPERATOR_NS,
    ROOT,
    SERVICE_DNS,
    Creds,
    condition,
    finish_pod,
    get_json,
    is_ready,
    kubectl,
    plain,
    pod_fqdn,
    pods,
    primary,
    role,
    run_pod,
    secret,
    served_fingerprint,
    start_client_pod,
    vkc,
    wait_for,
    writer_script,
)
from e2e.node import Node
from valkey_operator import __version__, names
from valkey_operator.builders.services import ROLE_PRIMARY
from valkey_operator.pki.issue import LeafRequest, issue_leaf, mint_ca

# Runs in a pod from the operator image (Python and valkey-py): name verification through CoreDNS and
# kube-proxy, and the refusals.
CLIENT_PY = """
import json, ssl, valkey
pw = open("/tls/password").read()
def conn(host, cert=True, check=True):
    extra = {"ssl_certfile": "/tls/tls.crt", "ssl_keyfile": "/tls/tls.key"} if cert else {}
    return valkey.Valkey(host=host, port=6379, password=pw, ssl=True, ssl_ca_certs="/tls/ca.crt",
                         ssl_check_hostname=check, socket_timeout=5, socket_connect_timeout=5, **extra)
def attempt(fn):
    try:
        return repr(fn())
    except Exception as exc:
        return type(exc).__name__
out = {
    "service_set": attempt(lambda: conn("%(service)s").set("from-pod", "yes")),
    "pod_name_get": attempt(lambda: conn("%(pod)s").get("from-pod")),
    "no_client_cert": attempt(lambda: conn("%(service)s", cert=False).ping()),
    "wrong_name": attempt(lambda: conn("%(wrong)s").ping()),
}
print(json.dumps(out))
"""


@dataclass
class PodWatch:
    """Polls the cluster's pods twice a second while a rotation runs: replacements in order, the role
    each pod had when it went away, and how many pods were ever unavailable at once."""

    node: Node
    seen: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid -> (pod name, last role)
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (pod name, role it had), in order
    most_unavailable: int = 0
    container_restarts: int = 0  # the most restarts any container had (a failed liveness probe restarts one)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._poll()
        self.thread.start()

    def _poll(self) -> None:
        current = pods(self.node)
        uids = {p["metadata"]["uid"] for p in current}
        for uid, (name, last_role) in list(self.seen.items()):
            if uid not in uids:
                self.replaced.append((name, last_role))
                del self.seen[uid]
        for p in current:
            self.seen[p["metadata"]["uid"]] = (p["metadata"]["name"], role(p))
        unavailable = 3 - sum(1 for p in current if is_ready(p) and not p["metadata"].get("deletionTimestamp"))
        self.most_unavailable = max(self.most_unavailable, unavailable)
        for p in current:
            for c in p.get("status", {}).get("containerStatuses") or []:
                self.container_restarts = max(self.container_restarts, int(c.get("restartCount", 0)))

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._poll()
            except Exception as exc:  # keep watching; the test reports what went wrong
                self.errors.append(repr(exc))
            self.stop.wait(0.5)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self._poll()


def rolled_once_in_order(watch: PodWatch, old_primary: str) -> None:
    """Each pod replaced exactly once, the replicas first, the old primary last and only after it had
    handed the primary role to a replica; never more than one pod unavailable."""
    order = [name for name, _ in watch.replaced]
    assert sorted(order) == ["cache-0", "cache-1", "cache-2"], watch.replaced
    assert order[-1] == old_primary, watch.replaced
    assert watch.replaced[-1][1] != ROLE_PRIMARY, f"{old_primary} was deleted while still primary: {watch.replaced}"
    assert watch.most_unavailable <= 1, watch.most_unavailable


def rotate_and_watch(node: Node, creds: Creds, start: Callable[[], None], what: str) -> dict[str, Any]:
    """Run one rotation under the writer: trigger it, watch the roll, check the new certificate everywhere."""
    before = vkc(node)["status"]["certificates"]["server"]
    old_primary = primary(node)["metadata"]["name"]
    watch = PodWatch(node)
    start()
    try:

        def done() -> bool:
            body = vkc(node)
            server = body.get("status", {}).get("certificates", {}).get("server", {})
            return (
                server.get("serial") != before["serial"]
                and body["status"].get("phase") == "Ready"
                and len(watch.replaced) >= 3
            )

        wait_for(done, f"the rotation by {what} to finish", timeout=600)
    finally:
        watch.finish()
    assert not watch.errors, watch.errors
    rolled_once_in_order(watch, old_primary)
    after = vkc(node)["status"]["certificates"]["server"]
    assert after["notAfter"] > before["notAfter"]
    # Every pod serves the new certificate: a live handshake verifying each pod's DNS name.
    for p in pods(node):
        got = served_fingerprint(creds, p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]))
        assert got == plain(after["fingerprintSHA256"]) != plain(before["fingerprintSHA256"])
    # The operator's metrics show the new expiry.
    expiry = datetime.strptime(after["notAfter"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    wait_for(lambda: metric(node, "valkey_operator_certificate_expiration_timestamp_seconds", "server") == expiry,
             "the expiry metric", 60)  # fmt: skip
    return dict(after)


def metric(node: Node, name: str, certificate: str) -> float | None:
    pod = get_json(node, "pods", "-n", OPERATOR_NS)["items"][0]
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and f'cluster="{NAME}"' in line and f'certificate="{certificate}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


# --- tests ----------------------------------------------------------------------------------------------
def test_helm_installed_operator_runs_the_example_to_ready(node: Node, example: dict[str, Any]) -> None:
    operator_pods = get_json(node, "pods", "-n", OPERATOR_NS)["items"]
    assert len(operator_pods) == 1
    assert is_ready(operator_pods[0])
    assert operator_pods[0]["spec"]["containers"][0]["image"].endswith(f"valkey-tls-operator:{__version__}")
    table = kubectl(node, "get", "valkeyclusters", "-n", NS)
    print("\n" + table)
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header[:6] == ["NAME", "MODE", "READY", "TLS", "CERT-EXPIRES", "STATUS"]
    assert row[:4] == [NAME, "replication", "3/3", "required"]
    assert row[4] == example["status"]["certificates"]["server"]["notAfter"]
    assert row[5] == "Ready"
    assert all(is_ready(p) for p in pods(node))
    assert len(pods(node)) == 3


def test_tls_from_the_host_verifies_names_and_refuses_the_rest(node: Node, creds: Creds) -> None:
    for p in pods(node):
        ip, fqdn = p["status"]["podIP"], pod_fqdn(p["metadata"]["name"])
        assert "PONG" in creds.cli(ip, fqdn, "PING")
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"{ip}:6379", "-servername", fqdn, "-verify_hostname", fqdn,
             "-CAfile", str(creds.folder / "ca.crt"), "-cert", str(creds.folder / "tls.crt"),
             "-key", str(creds.folder / "tls.key"), "-verify_return_error", "-brief"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert "Verification: OK" in out.stdout + out.stderr, out.stdout + out.stderr
        # clientAuth: required refuses a client without a certificate; there is no plain port.
        assert "PONG" not in creds.cli(ip, fqdn, "PING", client_cert=False)
        for port in ("6379", "6380"):
            plain_try = subprocess.run(
                ["valkey-cli", "-h", ip, "-p", port, "PING"], capture_output=True, text=True, timeout=30, check=False
            )
            assert "PONG" not in plain_try.stdout


def test_replicas_report_the_link_up_over_tls(node: Node, creds: Creds) -> None:
    head = primary(node)
    for p in pods(node):
        info = creds.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "INFO", "replication")
        if p is head or p["metadata"]["name"] == head["metadata"]["name"]:
            assert "role:master" in info, info
            assert "connected_slaves:2" in info, info
        else:
            assert "role:slave" in info, info
            assert "master_link_status:up" in info, info
            assert f"master_host:{pod_fqdn(head['metadata']['name'])}" in info, info
        tls_replication = creds.cli(
            p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "CONFIG", "GET", "tls-replication"
        )
        assert tls_replication.split() == ["tls-replication", "yes"]


def test_clients_in_pods_reach_the_service_by_name(node: Node, creds: Creds, operator_image: str,
                                                    valkey_image: str) -> None:  # fmt: skip
    # A name CoreDNS resolves to a Valkey pod, but not one its certificate carries.
    wrong = get_json(node, "pod", "cache-1", "-n", NS)["status"]["podIP"].replace(".", "-") + f".{NS}.pod.cluster.local"
    script = CLIENT_PY % {"service": SERVICE_DNS, "pod": pod_fqdn("cache-1"), "wrong": wrong}
    result = json.loads(run_pod(node, "client-py", operator_image, ["python", "-c", script]).splitlines()[-1])
    assert result == {
        "service_set": "True",
        "pod_name_get": "b'yes'",
        "no_client_cert": "ConnectionError",
        "wrong_name": "ConnectionError",
    }, result
    cli = ["valkey-cli", "--no-auth-warning", "--tls", "--cacert", "/tls/ca.crt", "-h", SERVICE_DNS, "-p", "6379"]
    auth = '-a "$(cat /tls/password)"'
    out = run_pod(
        node,
        "client-cli",
        valkey_image,
        ["sh", "-c", f"{' '.join(cli)} {auth} --cert /tls/tls.crt --key /tls/tls.key GET from-pod; "
                     f"{' '.join(cli)} {auth} PING 2>&1 || true"],
    )  # fmt: skip
    assert out.splitlines()[0] == "yes", out
    assert "PONG" not in out


def test_rotation_under_load_keeps_every_acknowledged_write(node: Node, creds: Creds, operator_image: str) -> None:
    writer = writer_script("w", 1500)
    start_client_pod(node, "writer", operator_image, ["python", "-c", writer])
    wait_for(lambda: "first write acknowledged" in kubectl(node, "logs", "writer", "-n", NS, check=False), "the writer")

    # 1. By annotation.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    annotate = ["annotate", "valkeycluster", NAME, "-n", NS, f"{names.ANN_ROTATE_CERTIFICATES}={stamp}"]

    def by_annotation() -> None:
        kubectl(node, *annotate)

    first = rotate_and_watch(node, creds, by_annotation, "annotation")

    # 2. By the clock: renewBefore chosen so the renewal time falls 40 s from now; the operator's timer
    # notices when the clock passes it. Afterwards renewBefore goes back, so the new certificate is not due.
    not_after = datetime.strptime(first["notAfter"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    due_at = datetime.now(UTC) + timedelta(seconds=40)
    renew_before = int((not_after - due_at).total_seconds())
    original = vkc(node)["spec"]["tls"]["certificates"]["renewBefore"]

    def set_renew_before(value: str) -> None:
        patch = {"spec": {"tls": {"certificates": {"renewBefore": value}}}}
        kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))

    def by_clock() -> None:
        set_renew_before(f"{renew_before}s")
        when = wait_for(
            lambda: (
                vkc(node)["status"]["certificates"]["server"].get("renewalTime") != first.get("renewalTime")
                and vkc(node)["status"]["certificates"]["server"]["renewalTime"]
            ),
            "the new renewal time in status",
            60,
        )
        assert abs((datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - due_at).total_seconds()) < 2
        assert vkc(node)["status"]["certificates"]["server"]["serial"] == first["serial"], "re-issued before due"
        wait_for(lambda: vkc(node)["status"]["certificates"]["server"]["serial"] != first["serial"], "renewal", 120)
        assert datetime.now(UTC) >= due_at
        set_renew_before(original)

    rotate_and_watch(node, creds, by_clock, "the clock")

    # Stop the writer (through the primary), then read its report.
    head = primary(node)
    assert "OK" in creds.cli(head["status"]["podIP"], pod_fqdn(head["metadata"]["name"]), "SET", "w:stop", "1")
    report = json.loads(finish_pod(node, "writer", 120).splitlines()[-1])
    print(f"\nwriter under two rotations: {json.dumps(report)}")
    Path(ROOT / ".e2e-rotation-report.json").write_text(json.dumps(report, indent=2))
    assert report["acked"] > 1000, report
    assert report["missing_count"] == 0, report
    # Every replica holds the same keys as the primary.
    head = primary(node)
    size = creds.cli(head["status"]["podIP"], pod_fqdn(head["metadata"]["name"]), "DBSIZE").strip()
    for p in pods(node):
        ip, fqdn = p["status"]["podIP"], pod_fqdn(p["metadata"]["name"])

        def synced(ip: str = ip, fqdn: str = fqdn) -> bool:
            return creds.cli(ip, fqdn, "DBSIZE").strip() == size

        wait_for(synced, f"{fqdn} to hold every key", 60)


def handled_annotations(node: Node) -> dict[str, str]:
    """The annotations as kopf last handled them (its own record, written after each successful pass)."""
    meta = vkc(node)["metadata"].get("annotations") or {}
    last = json.loads(meta.get("kopf.valkeyops.dev/last-handled-configuration") or "{}")
    return dict((last.get("metadata") or {}).get("annotations") or {})


def test_a_broken_external_secret_leaves_the_running_pods_serving(node: Node, creds: Creds) -> None:
    now = datetime.now(UTC)
    ca, other = mint_ca("external CA", now, timedelta(days=365)), mint_ca("other", now, timedelta(days=365))
    dns = vkc(node)["status"]["certificates"]["server"]["dnsNames"]
    leaf = issue_leaf(ca, LeafRequest("cache", tuple(dns)), now)
    wrong_key = issue_leaf(other, LeafRequest("cache", tuple(dns)), now).key_pem
    broken = {"tls.crt": leaf.cert_pem, "tls.key": wrong_key, "ca.crt": ca.cert_pem}
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "my-certs", "namespace": NS},
        "data": {k: base64.b64encode(v).decode() for k, v in broken.items()},
    }
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    uids = {p["metadata"]["uid"] for p in pods(node)}
    sts = get_json(node, "statefulset", NAME, "-n", NS)
    tls_rv = get_json(node, "secret", f"{NAME}-tls", "-n", NS)["metadata"]["resourceVersion"]
    served = {p["metadata"]["name"]: served_fingerprint(creds, p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]))
              for p in pods(node)}  # fmt: skip
    # An External issuer brings its own client certificates, so the app client goes from the spec too.
    patch: dict[str, Any] = {
        "spec": {"tls": {"issuer": {"type": "External", "secretName": "my-certs"}, "clients": None}}
    }
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: condition(vkc(node), "CertificatesReady").get("reason") == "PrivateKeyMismatch", "the refusal", 60)
    events = get_json(node, "events", "-n", NS, "--field-selector", "reason=PrivateKeyMismatch")["items"]
    assert [e["involvedObject"]["name"] for e in events] == [NAME]
    assert "tls.key does not belong to its certificate" in events[0]["message"]
    assert "PRIVATE KEY" not in json.dumps(events)
    # Two more passes, each one the test asks for and sees handled (kopf records the handled essence).
    for poke in ("1", "2"):
        kubectl(node, "annotate", "--overwrite", "valkeycluster", NAME, "-n", NS, f"e2e.valkeyops.dev/poke={poke}")

        def poked(want: str = poke) -> bool:
            return handled_annotations(node).get("e2e.valkeyops.dev/poke") == want

        wait_for(poked, f"pass {poke}", 60)
    assert {p["metadata"]["uid"] for p in pods(node)} == uids
    assert all(is_ready(p) for p in pods(node))
    after = get_json(node, "statefulset", NAME, "-n", NS)
    assert after["metadata"]["generation"] == sts["metadata"]["generation"]
    assert after["status"]["updateRevision"] == sts["status"]["updateRevision"]
    assert get_json(node, "secret", f"{NAME}-tls", "-n", NS)["metadata"]["resourceVersion"] == tls_rv
    for p in pods(node):
        name, ip = p["metadata"]["name"], p["status"]["podIP"]
        assert served_fingerprint(creds, ip, pod_fqdn(name)) == served[name]
        assert "PONG" in creds.cli(ip, pod_fqdn(name), "PING")
    # Back to the operator's own CA: Ready again, with the same pods.
    patch = {"spec": {"tls": {"issuer": {"type": "SelfSigned", "secretName": None}, "clients": [{"name": "app"}]}}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    wait_for(lambda: vkc(node)["status"].get("phase") == "Ready", "Ready again", 120)
    assert {p["metadata"]["uid"] for p in pods(node)} == uids


# A client that loaded ca.crt, its certificate and key once, before the CA rotation, and never re-reads
# them (most applications): a new connection and a PING every half second, each outcome a JSON line.
OLD_BUNDLE_PY = """
import json, os, shutil, time, valkey
os.makedirs("/tmp/old", exist_ok=True)
for k in ("ca.crt", "tls.crt", "tls.key", "password"):
    shutil.copy("/tls/" + k, "/tmp/old/" + k)
pw = open("/tmp/old/password").read()
print(json.dumps({"t": time.time(), "loaded": True}), flush=True)
while True:
    t = time.time()
    try:
        c = valkey.Valkey(host="%(service)s", port=6379, password=pw, ssl=True, ssl_ca_certs="/tmp/old/ca.crt",
                          ssl_certfile="/tmp/old/tls.crt", ssl_keyfile="/tmp/old/tls.key", ssl_check_hostname=True,
                          socket_timeout=2, socket_connect_timeout=2)
        c.ping()
        c.close()
        print(json.dumps({"t": t, "ok": True}), flush=True)
    except Exception as exc:
        print(json.dumps({"t": t, "ok": False, "error": type(exc).__name__ + ": " + str(exc)[:160]}), flush=True)
    time.sleep(0.5)
"""


def tls_error(error: str) -> bool:
    """A refused certificate, either way: the client's verification failed (CERTIFICATE_VERIFY_FAILED), or
    the server's, which it says with an alert (unknown ca, bad certificate). Not a connection refused, reset
    or closed mid-handshake while a pod restarts: `TLS/SSL connection has been closed (EOF)` is that."""
    return any(word in error for word in ("CERTIFICATE", "certificate", "alert", "unknown ca"))


def fresh_creds(node: Node, folder: Path) -> Creds:
    conn = secret(node, f"{NAME}-connection")
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (folder / key).write_bytes(conn[key])
        (folder / key).chmod(0o600)
    return Creds(folder, conn["password"].decode())


def settle(node: Node, watch_what: str) -> None:
    def settled() -> bool:
        body = vkc(node)
        if body["status"].get("observedGeneration") != body["metadata"]["generation"]:
            return False  # the pass for the latest spec has not run yet
        live = [p for p in pods(node) if not p["metadata"].get("deletionTimestamp")]
        return body["status"].get("phase") == "Ready" and len(live) == 3 and all(is_ready(p) for p in live)

    wait_for(settled, watch_what, 600)


@pytest.mark.parametrize("strategy", ["RollingRestart", "HotReload"])
def test_ca_rotation_in_three_phases_under_load(
    node: Node, example: dict[str, Any], operator_image: str, strategy: str, tmp_path: Path
) -> None:
    """rotate-ca under a steady writer that re-reads the connection Secret, beside a client that loaded the
    old ca.crt before: 0 acknowledged writes lost, no container restart the operator did not plan, never
    two pods out, the old-bundle client unbroken until the leaves move to the new CA (after the overlap),
    the re-reading client never refused a certificate."""
    # The overlap is the time an application has to pick up the new ca.crt; a pod that re-reads its mounted
    # Secret sees it after the kubelet's next sync (1 min) and its Secret cache, so 45 s was too short.
    spec = {"rotation": {"strategy": strategy}, "certificates": {"caRotationOverlap": "150s"}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"tls": spec}}))
    settle(node, f"{strategy} in force")
    old_ca = vkc(node)["status"]["certificates"]["ca"]["fingerprintSHA256"]
    writer, old_client = f"writer-ca-{strategy.lower()}", f"old-bundle-{strategy.lower()}"
    start_client_pod(
        node,
        writer,
        operator_image,
        ["python", "-c", writer_script(writer, 1500)],
    )
    start_client_pod(node, old_client, operator_image, ["python", "-c", OLD_BUNDLE_PY % {"service": SERVICE_DNS}])
    wait_for(lambda: "first write acknowledged" in kubectl(node, "logs", writer, "-n", NS, check=False), "writer")
    wait_for(lambda: '"ok": true' in kubectl(node, "logs", old_client, "-n", NS, check=False), "old-bundle client")

    watch = PodWatch(node)
    phases: dict[str, float] = {}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    kubectl(
        node, "annotate", "--overwrite", "valkeycluster", NAME, "-n", NS, f"{names.ANN_ROTATE_CA}={strategy}-{stamp}"
    )
    try:

        def finished() -> bool:
            body = vkc(node)
            phase = (body["status"]["certificates"].get("caRotation") or {}).get("phase")
            if phase and phase not in phases:
                phases[phase] = time.time()
            return bool(
                "Retiring" in phases
                and phase is None
                and body["status"].get("phase") == "Ready"
                and body["status"]["certificates"]["ca"]["fingerprintSHA256"] != old_ca
            )

        wait_for(finished, f"the CA rotation under {strategy}", 1200)
    finally:
        watch.finish()
    assert list(phases) == ["Trusting", "Reissuing", "Retiring"], phases
    assert not watch.errors, watch.errors
    assert watch.most_unavailable <= 1, watch.replaced
    assert watch.container_restarts == 0, "a container restarted that the operator did not restart"
    # Every trust change rolls each pod once; under HotReload the new leaves reload in place.
    assert len(watch.replaced) == (9 if strategy == "RollingRestart" else 6), watch.replaced

    # The old-bundle client: never refused before the leaves moved to the new CA.
    lines = [json.loads(x) for x in kubectl(node, "logs", old_client, "-n", NS).splitlines() if x.startswith("{")]
    kubectl(node, "delete", "pod", old_client, "-n", NS, "--wait=false")
    early = [x for x in lines if not x.get("ok") and "error" in x and x["t"] < phases["Reissuing"]]
    assert not [x for x in early if tls_error(x["error"])], early[:5]
    during_overlap = [x for x in lines if x.get("ok") and phases["Trusting"] <= x["t"] < phases["Reissuing"]]
    assert len(during_overlap) >= 20, len(during_overlap)

    # The re-reading writer: stop it through the primary, with credentials read afresh.
    now_creds = fresh_creds(node, tmp_path / "creds")
    head = primary(node)
    assert "OK" in now_creds.cli(
        head["status"]["podIP"], pod_fqdn(head["metadata"]["name"]), "SET", f"{writer}:stop", "1"
    )
    report = json.loads(finish_pod(node, writer, 180).splitlines()[-1])
    print(f"\nwriter under a CA rotation ({strategy}): {json.dumps(report)}")
    print(f"phases seen at: {phases}")
    assert report["acked"] > 500, report
    assert report["missing_count"] == 0, report
    assert not [e for e in report["errors"] if tls_error(e)], report["errors"]
    # Every pod serves a certificate from the new CA, verified with the new bundle alone.
    bundle = secret(node, f"{NAME}-tls")["ca.crt"].decode()
    assert bundle.count("BEGIN CERTIFICATE") == 1
    for p in pods(node):
        assert "PONG" in now_creds.cli(p["status"]["podIP"], pod_fqdn(p["metadata"]["name"]), "PING")
