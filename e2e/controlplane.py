"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

    python e2e/controlplane.py up|down|env|status [--dir DIR]

The same class is the integration tests' session fixture. Certificates come from the operator's own
PKI code. Binaries come from e2e/build-kubernetes.sh (built once, cached; or KUBEBUILDER_ASSETS).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.keys import generate_key, key_to_pem

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("VALKEY_OPERATOR_CACHE", Path.home() / ".cache" / "valkey-tls-operator"))
SERVICE_CIDR = "10.96.0.0/16"  # virtual: only kube-proxy's rules on a node (e2e/node.py) give it meaning
SERVICE_IP = "10.96.0.1"
STARTUP_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    """The folder with the binaries, building them first if needed (fast when cached)."""
    out = subprocess.run(
        ["bash", str(HERE / "build-kubernetes.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass
class LocalCluster:
    """One control plane whose state (certificates, etcd data, logs, pids) lives in `state_dir`."""

    state_dir: Path
    bins: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    keep: bool = False
    # With a node, pods reach the API server through the `kubernetes` Service, whose endpoint is this
    # address (the node's bridge); the API server then listens on every address, not only loopback.
    node_ip: str | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    # --- lifecycle -----------------------------------------------------------------------------------
    def up(self) -> LocalCluster:
        if self.healthy() and json.loads(self.pids_file.read_text()).get("node_ip") == self.node_ip:
            return self
        self.down()
        self.bins = self.bins or bin_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
        self._write_pki()
        self._write_kubeconfig()
        pids: dict[str, int] = {}
        try:
            pids["etcd"] = self._start("etcd", self._etcd_args())
            self._wait(lambda: self._tcp_open(self.ports["etcd"]), "etcd")
            pids["kube-apiserver"] = self._start("kube-apiserver", self._apiserver_args())
            self._wait(self._apiserver_ready, "kube-apiserver /readyz")
            pids["kube-controller-manager"] = self._start("kube-controller-manager", self._controller_args())
            pids["kube-scheduler"] = self._start("kube-scheduler", self._scheduler_args())
            self._save_state(pids)
            self._wait(self._default_service_account, "the default ServiceAccount (controller-manager)")
        except Exception:
            self._save_state(pids)
            self.down(keep_state=True)
            raise
        return self

    def _save_state(self, pids: dict[str, int]) -> None:
        self.pids_file.write_text(json.dumps({"pids": pids, "ports": self.ports, "node_ip": self.node_ip}))

    def down(self, keep_state: bool | None = None) -> None:
        """Stop every process this cluster started (whole process groups) and check none is left."""
        if self.pids_file.exists():
            pids = json.loads(self.pids_file.read_text())["pids"]
            for name in ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]:
                if name in pids:
                    stop_group(pids[name])
            self.pids_file.unlink()
        keep = self.keep if keep_state is None else keep_state
        if not keep and self.state_dir.exists():
            subprocess.run(["rm", "-rf", str(self.state_dir)], check=True)

    def __enter__(self) -> LocalCluster:
        return self.up()

    def __exit__(self, *_: object) -> None:
        self.down()

    def env(self) -> dict[str, str]:
        bins = self.bins or bin_dir()
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": f"{bins}:{os.environ.get('PATH', '')}"}

    def healthy(self) -> bool:
        if not self.pids_file.exists() or not self.kubeconfig.exists():
            return False
        self.ports = json.loads(self.pids_file.read_text())["ports"]
        return self._apiserver_ready()

    # --- processes -----------------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> int:
        assert self.bins is not None
        log = (self.state_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(self.bins / name), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return proc.pid

    def _wait(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.state_dir.glob("*.log")))
        raise RuntimeError(f"timed out after {STARTUP_TIMEOUT:.0f}s waiting for {what}\n{logs}")

    @staticmethod
    def _tcp_open(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _get(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.state_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.state_dir / "admin.crt"), str(self.state_dir / "admin.key"))
        url = f"https://127.0.0.1:{self.ports['apiserver']}{path}"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                return int(resp.status), resp.read()
        except (OSError, ssl.SSLError) as exc:
            return getattr(exc, "code", 0) or 0, b""

    def _apiserver_ready(self) -> bool:
        return self._get("/readyz")[0] == 200

    def _default_service_account(self) -> bool:
        return self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    # --- configuration -------------------------------------------------------------------------------
    def _write_pki(self) -> None:
        d, now = self.state_dir, datetime.now(UTC)
        ca = mint_ca("valkey-operator test control plane CA", now, timedelta(days=365))
        serving = issue_leaf(
            ca,
            LeafRequest(
                common_name="kube-apiserver",
                dns_names=(
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ),
                ip_addresses=("127.0.0.1", SERVICE_IP, *([self.node_ip] if self.node_ip else [])),
                client=False,
                duration=timedelta(days=30),
            ),
            now,
        )
        admin = issue_leaf(
            ca,
            LeafRequest(
                common_name="kubernetes-admin",
                organization=("system:masters",),
                server=False,
                duration=timedelta(days=30),
            ),
            now,
        )
        for name, pair in (("ca", ca), ("apiserver", serving), ("admin", admin)):
            _write_pair(d, name, pair)
        sa = generate_key("RSA-2048")
        (d / "sa.key").write_bytes(key_to_pem(sa))
        (d / "sa.pub").write_bytes(
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def _write_kubeconfig(self) -> None:
        d = self.state_dir
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                        "certificate-authority": str(d / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(d / "admin.crt"), "client-key": str(d / "admin.key")},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "default"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _etcd_args(self) -> list[str]:
        p, peer = self.ports["etcd"], self.ports["etcd_peer"]
        return [
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{p}",
            f"--advertise-client-urls=http://127.0.0.1:{p}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        d = self.state_dir
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--secure-port={self.ports['apiserver']}",
            f"--bind-address={'0.0.0.0' if self.node_ip else '127.0.0.1'}",  # noqa: S104 (pods reach it via the bridge)
            f"--advertise-address={self.node_ip or '127.0.0.1'}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={d / 'admin.crt'}",
            f"--kubelet-client-key={d / 'admin.key'}",
            f"--cert-dir={d / 'apiserver-certs'}",
            # Reach kubelets by the address they report, never by a host name the machine would resolve.
            "--kubelet-preferred-address-types=InternalIP",
            "--v=1",
        ]

    def _controller_args(self) -> list[str]:
        d = self.state_dir
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}",
            f"--cluster-signing-key-file={d / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--v=1",
        ]


def _write_pair(folder: Path, name: str, pair: KeyPair) -> None:
    (folder / f"{name}.crt").write_bytes(pair.cert_pem)
    key = folder / f"{name}.key"
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)


def stop_group(pid: int, grace: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.sh", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("verb", choices=["up", "down", "env", "status", "import"])
    parser.add_argument("images", nargs="*", help="import: local podman images to load into the node")
    parser.add_argument("--dir", type=Path, default=CACHE / "cluster", help="state folder")
    parser.add_argument(
        "--node", action="store_true", help="up: also a node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS)"
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir)
    if args.verb == "up":
        started = time.monotonic()
        if args.node:
            from e2e.node import NODE_IP, Node

            cluster.node_ip = NODE_IP
        cluster.up()
        if args.node:
            node = Node(cluster, args.dir / "node")
            if not node.running():
                node.up()
        print(
            f"control plane up in {time.monotonic() - started:.1f}s; KUBECONFIG={cluster.kubeconfig}", file=sys.stderr
        )
    elif args.verb == "down":
        if (args.dir / "node").exists():
            from e2e.node import Node

            Node(cluster, args.dir / "node").down()
        cluster.down()
    elif args.verb == "import":
        from e2e.node import Node

        node = Node(cluster, args.dir / "node")
        if not (cluster.healthy() and node.running()):
            print("no node is running: e2e/cluster.sh up --node first", file=sys.stderr)
            return 1
        cluster.bins = bin_dir()
        for image in args.images:
            node.import_image(image)
    elif args.verb == "env":
        for key, value in cluster.env().items():
            print(f"export {key}={value!r}".replace("'", '"'))
    else:
        ok = cluster.healthy()
        print("running" if ok else "stopped")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
