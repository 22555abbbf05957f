"""The e2e tier: real images built with podman, run for real."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.controlplane import LocalCluster
from e2e.network import NETWORK, bridge_exists, kube_chains, mounts_under, netns
from e2e.node import Node
from valkey_operator import names
from valkey_operator.builders.services import ROLE_LABEL, ROLE_PRIMARY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def operator_image() -> str:
    """The operator image, built from the project's Dockerfile on a debootstrapped base (cached)."""
    out = subprocess.run(
        ["bash", str(ROOT / "e2e" / "images.sh"), "operator"], capture_output=True, text=True, timeout=1800, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"building the operator image failed:\n{out.stderr[-5000:]}")
    return out.stdout.strip().splitlines()[-1]


def _image(verb: str) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "e2e" / "images.sh"), verb], capture_output=True, text=True, timeout=1800, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"images.sh {verb} failed:\n{out.stderr[-5000:]}")
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def valkey_image() -> str:
    """Debian trixie's valkey-server 8.1 (built with TLS) on the debootstrapped base."""
    return _image("valkey")


@pytest.fixture(scope="session")
def valkey9_image() -> str:
    """Debian forky's valkey-server 9.1.2 (built with TLS) on a forky minbase (cached)."""
    return _image("valkey9")


@pytest.fixture(scope="session")
def nodes(operator_image: str, valkey_image: str, valkey9_image: str) -> Iterator[list[Node]]:
    """A control plane with two real nodes (each its own containerd, kubelet and bridge; kube-proxy and
    CoreDNS on the first) that have both images; torn down with no process, mount, network namespace,
    bridge or iptables chain of their own left behind. Two, so that spreading and a drain are real."""
    with tempfile.TemporaryDirectory(prefix="node-plane-") as tmp:
        cluster = LocalCluster(Path(tmp) / "plane", node_ip=NETWORK.first.node_ip).up()
        made = [Node(cluster, Path(tmp) / f"node-{i}", index=i) for i in (1, 2)]
        made[0].clear_stale_service_chains()
        before, chains_before = set(netns()), kube_chains()
        try:
            for n in made:
                n.up()
                n.import_image(operator_image)
                n.import_image(valkey_image)
                n.import_image(valkey9_image)
            yield made
        finally:
            for n in reversed(made):
                n.down()
            cluster.down()
            assert mounts_under(Path(tmp)) == []
            assert set(netns()) <= before
            assert not any(bridge_exists(n.net.bridge) for n in made)
            left = subprocess.run(["pgrep", "-af", tmp], capture_output=True, text=True, check=False).stdout
            assert left.strip() == "", left
            # Exactly what the nodes made is gone: no iptables chain of their own (nor of kube-proxy's) is left.
            assert kube_chains() == chains_before, "the nodes left iptables chains behind"


@pytest.fixture(scope="session")
def node(nodes: list[Node]) -> Node:
    """The first node: the handle the tests reach the cluster through (kubectl, helm)."""
    return nodes[0]


def kubectl(node: Node, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> str:
    assert node.cluster.bins is not None
    out = subprocess.run(
        [str(node.cluster.bins / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(out.stdout + out.stderr)
    return out.stdout


def operator_logs(node: Node, tail: int, timeout: float = 60) -> str:
    """The last lines of the operator's log (the chart's pods), or what kubectl said instead."""
    return kubectl(node, "logs", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=valkey-operator", f"--tail={tail}",
                   check=False, timeout=timeout)  # fmt: skip


def get_json(node: Node, *args: str) -> dict[str, Any]:
    """`kubectl get ... -o json`, parsed."""
    return dict(json.loads(kubectl(node, "get", *args, "-o", "json")))


def secret(node: Node, name: str, namespace: str = "default") -> dict[str, bytes]:
    """A Secret's data, decoded."""
    return {k: base64.b64decode(v) for k, v in get_json(node, "secret", name, "-n", namespace)["data"].items()}


# --- the operator installed by helm, the example, and clients in pods: shared by the e2e modules ---------
RELEASE, OPERATOR_NS, NS, NAME = "valkey-operator", "valkey-operator-system", "default", "cache"
SELECTOR = ",".join(f"{k}={v}" for k, v in names.selector_labels(NAME).items())
SERVICE_DNS = f"{NAME}.{NS}.svc"  # the read-write Service, as clients in pods address it


def pod_fqdn(pod: str) -> str:
    return f"{pod}.{NAME}-headless.{NS}.svc"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 300, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def vkc(node: Node) -> dict[str, Any]:
    return get_json(node, "valkeycluster", NAME, "-n", NS)


def cluster_events(node: Node) -> str:
    """The Events of this ValkeyCluster (by uid: an earlier module's resource of the same name had its own)."""
    uid = vkc(node)["metadata"]["uid"]
    return kubectl(node, "get", "events", "-n", NS, "--field-selector", f"involvedObject.uid={uid}")


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def pods(node: Node) -> list[dict[str, Any]]:
    return list(get_json(node, "pods", "-n", NS, "-l", SELECTOR)["items"])


def is_ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def role(pod: dict[str, Any]) -> str:
    return str(pod["metadata"].get("labels", {}).get(ROLE_LABEL, ""))


def primary(node: Node) -> dict[str, Any]:
    found = [p for p in pods(node) if role(p) == ROLE_PRIMARY]
    assert len(found) == 1, [(p["metadata"]["name"], role(p)) for p in pods(node)]
    return found[0]


@dataclass
class Creds:
    folder: Path
    password: str

    def tls_context(self, client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.folder / "ca.crt"))
        if client_cert:
            ctx.load_cert_chain(str(self.folder / "tls.crt"), str(self.folder / "tls.key"))
        return ctx

    def cli(self, ip: str, fqdn: str, *args: str, client_cert: bool = True, timeout: float = 30) -> str:
        """valkey-cli on the host, over TLS to a pod address, with the pod's name as SNI."""
        cmd = ["valkey-cli", "--no-auth-warning", "-h", ip, "-p", "6379", "--tls", "--sni", fqdn]
        cmd += ["--cacert", str(self.folder / "ca.crt")]
        if client_cert:
            cmd += ["--cert", str(self.folder / "tls.crt"), "--key", str(self.folder / "tls.key")]
        out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False,
                             env=cli_env(self.password))  # fmt: skip
        return out.stdout + out.stderr


def cli_env(password: str) -> dict[str, str]:
    """The environment that gives valkey-cli its password: not on its command line, which a process list, or a
    timed-out run's traceback in the test log, shows (the host's valkey-cli reads one name or the other)."""
    return {**os.environ, "VALKEYCLI_AUTH": password, "REDISCLI_AUTH": password}


def served_fingerprint(creds: Creds, ip: str, fqdn: str) -> str:
    """A live handshake from the host that verifies `fqdn` against ca.crt; the served leaf's SHA-256."""
    with (
        socket.create_connection((ip, 6379), timeout=10) as raw,
        creds.tls_context().wrap_socket(raw, server_hostname=fqdn) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def plain(fingerprint: str) -> str:
    return fingerprint.replace(":", "").lower()


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(node: Node, operator_image: str) -> Iterator[None]:
    """`helm install` of the chart with the locally built operator image; uninstalled at the end."""
    assert node.cluster.bins is not None
    repo, tag = operator_image.rsplit(":", 1)
    helm = [str(node.cluster.bins / "helm"), f"--kubeconfig={node.cluster.kubeconfig}"]
    args = [
        "install", RELEASE, str(ROOT / "charts" / "valkey-operator"), "-n", OPERATOR_NS, "--create-namespace",
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
        # The defaults users get (300 s slow timer, 5 s while rolling): nothing here waits for a timer.
        "--wait", "--timeout", "300s",
    ]  # fmt: skip
    out = subprocess.run([*helm, *args], capture_output=True, text=True, timeout=400, check=False)
    assert out.returncode == 0, out.stdout + out.stderr + kubectl(node, "get", "pods", "-A", "-o", "wide", check=False)
    try:
        yield
    finally:
        # The operator removes its finalizer once its timers have stopped (a pass in flight finishes first).
        started = time.monotonic()
        deleted = subprocess.run(
            [str(node.cluster.bins / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}", "delete", "valkeycluster",
             "--all", "-n", NS, "--wait=true", "--timeout=170s"], capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        print(f"\nValkeyClusters deleted in {took:.1f} s")
        if took > 30 or deleted.returncode:  # slow: what the operator was doing, for whoever reads the log
            print(operator_logs(node, 80))
        uninstalled = subprocess.run(
            [*helm, "uninstall", RELEASE, "-n", OPERATOR_NS, "--wait"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # Teardown leaves nothing: the ValkeyClusters are gone, and with them (owner references, the garbage
        # collector) every object the operator made; then the release's own objects.
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert uninstalled.returncode == 0, uninstalled.stdout + uninstalled.stderr
        wait_for(lambda: not leftovers(node), "nothing left after the teardown", 120, every=2)


def leftovers(node: Node) -> list[str]:
    """What a teardown left: ValkeyClusters, anything the operator labels as its own (pods included; a
    PersistentVolumeClaim is the StatefulSet's, kept as Kubernetes keeps it), and the release's objects."""
    owned = f"app.kubernetes.io/managed-by={names.MANAGER}"
    kinds = "all,secrets,configmaps,poddisruptionbudgets,networkpolicies,serviceaccounts,roles,rolebindings"
    found = kubectl(node, "get", "valkeyclusters", "-n", NS, "-o", "name", check=False).split()
    found += kubectl(node, "get", kinds, "-A", "-l", owned, "-o", "name", check=False).split()
    found += kubectl(node, "get", "all,serviceaccounts", "-n", OPERATOR_NS, "-o", "name", check=False).split()
    found += [
        n
        for n in kubectl(node, "get", "clusterroles,clusterrolebindings", "-o", "name", check=False).split()
        if RELEASE in n
    ]
    return [n for n in found if not n.endswith("serviceaccount/default")]


@pytest.fixture(scope="module")
def example(node: Node, installed: None, valkey_image: str) -> dict[str, Any]:
    """examples/valkeycluster.yaml as shipped, with only the image swapped for the locally built Debian
    valkey-server 8.1 (no registry here; the example names the 9.1 line, which the resharding and upgrade
    modules run, so both lines are tested); Ready within five minutes."""
    body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    assert body["spec"]["image"].endswith(":9.1")
    assert valkey_image.endswith(":8.1")
    body["spec"]["image"], body["spec"]["imagePullPolicy"] = valkey_image, "Never"
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    return dict(wait_for(lambda: vkc(node).get("status", {}).get("phase") == "Ready" and vkc(node), "Ready", 300))


@pytest.fixture(scope="module")
def creds(node: Node, example: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Creds:
    return read_creds(node, tmp_path_factory.mktemp("conn"))


def read_creds(node: Node, folder: Path) -> Creds:
    """The connection Secret's CA, client certificate and password, in `folder`."""
    conn = secret(node, f"{NAME}-connection")
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (folder / key).write_bytes(conn[key])
        (folder / key).chmod(0o600)
    return Creds(folder, conn["password"].decode())


def start_client_pod(
    node: Node, name: str, image: str, command: list[str], on: str | None = None, secret: str | None = None
) -> None:
    """A hardened pod with the connection Secret (or `secret`) at /tls, running `command` once (on node `on`
    if given)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            # glibc sends the A and AAAA queries from one socket; through kube-proxy's conntrack one may be
            # dropped, and the lookup then waits out a 5 s resolver timeout (a known Kubernetes DNS race).
            # The usual client-side remedy, so a writer's pauses measure the failover, not that race.
            "dnsConfig": {"options": [{"name": "single-request-reopen"}]},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
            "volumes": [{"name": "tls", "secret": {"secretName": secret or f"{NAME}-connection"}}],
            **({"nodeSelector": {"kubernetes.io/hostname": on}} if on else {}),
        },
    }
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))


def finish_pod(node: Node, name: str, timeout: float) -> str:
    """Wait for a client pod to end, delete it, return its log; it must have succeeded."""

    def ended() -> str | None:
        phase = get_json(node, "pod", name, "-n", NS).get("status", {}).get("phase")
        return str(phase) if phase in ("Succeeded", "Failed") else None

    phase = wait_for(ended, f"pod {name} to finish", timeout)
    log = kubectl(node, "logs", name, "-n", NS)
    kubectl(node, "delete", "pod", name, "-n", NS, "--wait=false")
    assert phase == "Succeeded", log
    return log


def run_pod(node: Node, name: str, image: str, command: list[str], timeout: float = 180) -> str:
    """A client pod run to completion; its log."""
    start_client_pod(node, name, image, command)
    return finish_pod(node, name, timeout)


# A writer at a steady rate (50/s) of numbered keys through the read-write Service, until the key
# <prefix>:stop appears; every failed attempt is counted and retried with the same number, so the
# acknowledged writes are exactly 0..acked-1, and at the end each one is read back (the pod fails if no
# read-back of them all succeeds in 20 tries, never a partial count). With `wait` > 0 a
# write counts as acknowledged only once WAIT says that many replicas have it (the client-side half of
# write safety).
# How the writer connects: one primary through the read-write Service, or a cluster client that starts
# from the Service and follows the slots (valkey-py's ValkeyCluster). Both verify names, both with mTLS.
_CONNECT = {
    False: """
def conn():
    from valkey.backoff import NoBackoff
    from valkey.retry import Retry
    return valkey.Valkey(host="%(service)s", port=6379, password=pw, ssl=True, ssl_ca_certs="/tls/ca.crt",
                         ssl_certfile="/tls/tls.crt", ssl_keyfile="/tls/tls.key", ssl_check_hostname=True,
                         socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
""",
    True: """
def conn():
    from valkey.cluster import ValkeyCluster
    return ValkeyCluster(host="%(service)s", port=6379, password=pw, ssl=True, ssl_ca_certs="/tls/ca.crt",
                         ssl_certfile="/tls/tls.crt", ssl_keyfile="/tls/tls.key", ssl_check_hostname=True,
                         socket_timeout=2, socket_connect_timeout=2, cluster_error_retry_attempts=1)
""",
}
WRITER_PY = """
import collections, json, sys, time, valkey
pw = open("/tls/password").read()
%(connect)s
i = failures = 0
errors = collections.Counter()
c = None
start = last_ack = time.monotonic()
longest = first_ack = 0.0
next_t = start
deadline = start + %(max_seconds)d
while time.monotonic() < deadline:
    try:
        if c is None:
            c = conn()
        c.set("%(prefix)s:%%08d" %% i, i)
        if %(wait)d and c.execute_command("WAIT", %(wait)d, 1000) < %(wait)d:
            raise RuntimeError("not replicated within 1 s")
        now = time.monotonic()
        longest = max(longest, now - last_ack)
        last_ack = now
        i += 1
        if i == 1:
            first_ack = now - start
            print("first write acknowledged", flush=True)
        if i %% 25 == 0 and c.exists("%(prefix)s:stop"):
            break
    except Exception as exc:
        failures += 1
        errors[type(exc).__name__ + ": " + str(exc)[:160]] += 1  # whole enough to tell a refusal from a reset
        c = None
        time.sleep(0.05)
    next_t = max(next_t + 0.02, time.monotonic() - 0.02)
    time.sleep(max(0.0, next_t - time.monotonic()))
elapsed = time.monotonic() - start
missing = None  # unknown until one whole read-back succeeds: never a partial list
last_error = ""
for attempt in range(20):
    try:
        c = conn()
        found = []
        for base in range(0, i, 500):
            keys = ["%(prefix)s:%%08d" %% n for n in range(base, min(i, base + 500))]
            pipe = c.pipeline()  # a cluster client sends each GET to its slot's primary
            for k in keys:
                pipe.get(k)
            found += [k for k, v in zip(keys, pipe.execute()) if v is None]
        missing = found
        break
    except Exception as exc:
        last_error = type(exc).__name__ + ": " + str(exc)[:200]
        time.sleep(1)
if missing is None:
    print(json.dumps({"acked": i, "read_back_failed": last_error}))
    sys.exit(1)
print(json.dumps({"acked": i, "failures": failures, "longest_pause_ms": round(longest * 1000),
                  "first_ack_s": round(first_ack, 1),
                  "seconds": round(elapsed, 1), "missing": missing[:20], "missing_count": len(missing),
                  "errors": dict(errors)}))
"""


def writer_script(prefix: str, max_seconds: int, wait: int = 0, cluster: bool = False) -> str:
    """WRITER_PY through the read-write Service (a cluster client with `cluster`), its keys `prefix`:N."""
    connect = _CONNECT[cluster] % {"service": SERVICE_DNS}
    return WRITER_PY % {"connect": connect, "max_seconds": max_seconds, "prefix": prefix, "wait": wait}
