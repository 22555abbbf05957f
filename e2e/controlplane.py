"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Started by e2e/cluster.sh (e2e/cli.py), and the integration tests' session fixture. Certificates come from
the operator's own PKI code. Binaries come from e2e/build-kubernetes.sh (built once, cached; or KUBEBUILDER_ASSETS).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from e2e import procs
from e2e.network import NETWORK
from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.keys import generate_key, key_to_pem

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("VALKEY_OPERATOR_CACHE", Path.home() / ".cache" / "valkey-tls-operator"))
STARTUP_TIMEOUT = 180.0


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

    @property
    def ca_file(self) -> Path:
        """The cluster CA's certificate (kubelets trust client certificates it signed)."""
        return self.state_dir / "ca.crt"

    def kubeconfig_for(self, user: str, groups: tuple[str, ...], folder: Path) -> Path:
        """A kubeconfig in `folder` for `user` in `groups`, with a client certificate from the cluster CA."""
        ca = KeyPair(self.ca_file.read_bytes(), (self.state_dir / "ca.key").read_bytes())
        name = user.replace(":", "-")
        pair = issue_leaf(
            ca,
            LeafRequest(user, organization=groups, server=False, duration=timedelta(days=30)),
            datetime.now(UTC),
        )
        _write_pair(folder, name, pair)
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"][0]["user"] = {
            "client-certificate": str(folder / f"{name}.crt"),
            "client-key": str(folder / f"{name}.key"),
        }
        path = folder / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # --- lifecycle -----------------------------------------------------------------------------------
    def up(self) -> LocalCluster:
        if self.healthy() and json.loads(self.pids_file.read_text()).get("node_ip") == self.node_ip:
            return self
        self.down()
        self.bins = self.bins or bin_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {"etcd": procs.free_port(), "etcd_peer": procs.free_port(), "apiserver": procs.free_port()}
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
                    procs.stop_group(pids[name])
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
        return procs.start([str(self.bins / name), *args], self.state_dir / f"{name}.log")

    def _wait(self, check: Any, what: str) -> None:
        procs.wait_for(check, what, STARTUP_TIMEOUT, self.state_dir)

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
                ip_addresses=("127.0.0.1", NETWORK.service_ip, *([self.node_ip] if self.node_ip else [])),
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
            f"--service-cluster-ip-range={NETWORK.service_cidr}",
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
            f"--secure-port={procs.free_port()}",
            "--v=1",
        ]


def _write_pair(folder: Path, name: str, pair: KeyPair) -> None:
    (folder / f"{name}.crt").write_bytes(pair.cert_pem)
    key = folder / f"{name}.key"
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)
