"""Real valkey-server processes started from the operator's own rendered config, scripts and certificates."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from valkey_operator.api.spec import ValkeyCluster, parse_cluster
from valkey_operator.clock import SystemClock
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.scripts import render_probe_script, render_start_script
from valkey_operator.conf.users import User, users_file
from valkey_operator.conf.valkey_conf import render_valkey_conf
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material, Observed, plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "valkeycluster.yaml"
PASSWORD = "acceptance-password"

pytestmark = pytest.mark.acceptance


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("valkey-server") is None:
        raise pytest.UsageError("valkey-server is not installed: run scripts/install-system-deps.sh")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# The machine's own valkey-server (bookworm-backports): the example names the 9.1 line, whose directives
# (tls-auto-reload-interval) 8.0 refuses, so a test that runs the machine's server renders for it. Tests on
# 9.1 (scripts/valkey-9.sh) name their image.
MACHINE_IMAGE = "valkey/valkey:8.0"


def example(**spec_overrides: Any) -> ValkeyCluster:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["spec"]["image"] = MACHINE_IMAGE
    tls_over = spec_overrides.pop("tls", {})
    body["spec"].update(spec_overrides)
    body["spec"]["tls"].update(tls_over)
    return parse_cluster(body)


@dataclass
class Instance:
    """One valkey-server started by the rendered start script with the rendered config."""

    cluster: ValkeyCluster
    layout: Layout
    host: str
    material: Material
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def tls_dir(self) -> Path:
        return Path(self.layout.tls_dir)

    def client_files(self, name: str = CONNECTION_CLIENT) -> tuple[Path, Path]:
        pair = self.material.clients[name]
        cert, key = self.tls_dir / f"{name}.crt", self.tls_dir / f"{name}.key"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        key.chmod(0o600)
        return cert, key

    def cli(
        self, *args: str, tls: bool = True, client: bool = True, port: int | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """valkey-cli against this instance; `stdin`: one command per line, in one connection."""
        cmd = ["valkey-cli", "--no-auth-warning", "-h", self.host, "-p", str(port or self.layout.port), "-a", PASSWORD]
        if tls:
            cmd += ["--tls", "--cacert", self.layout.ca_file, "--sni", "localhost"]
            if client:
                cert, key = self.client_files()
                cmd += ["--cert", str(cert), "--key", str(key)]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=20, check=False, input=stdin)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_material(tls_dir: Path, material: Material) -> None:
    tls_dir.mkdir(parents=True, exist_ok=True)
    (tls_dir / "tls.crt").write_bytes(material.server.cert_pem)
    (tls_dir / "tls.key").write_bytes(material.server.key_pem)
    (tls_dir / "tls.key").chmod(0o600)
    (tls_dir / "ca.crt").write_bytes(material.bundle)


def start_instance(
    cluster: ValkeyCluster,
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    pod: str = "cache-0",
    primary: str = "cache-0",
    material: Material | None = None,
    hosts: dict[str, str] | None = None,
    promote: bool = True,
    bus_port: int | None = None,
    bin_dir: Path | None = None,
    users: Sequence[User] = (),
) -> Instance:
    """Render config, start script and certificates into `workdir` and run the start script there.

    In replication mode every pod boots as a replica; the recorded primary (`pod == primary`) waits for
    the operator, which `promote` stands in for here (REPLICAOF NO ONE, as the operator's first pass does).

    `hosts` maps names to loopback addresses through a private /etc/hosts in a mount namespace of the
    instance's own, so a replica resolves its primary's pod name as it would in Kubernetes.
    """
    port = port or free_port(host)
    layout = Layout(
        tls_dir=str(workdir / "tls"),
        config_dir=str(workdir / "config"),
        run_dir=str(workdir / "run"),
        data_dir=str(workdir / "data"),
        port=port,
        plain_port=free_port(host),
        bus_port=bus_port or free_port(host),
        users_dir=str(workdir / "acl"),
    )
    for d in (layout.config_dir, layout.run_dir, layout.data_dir):
        Path(d).mkdir(parents=True, exist_ok=True)
    if users:  # the users Secret's file, as the pod mounts it
        Path(layout.users_dir).mkdir(parents=True, exist_ok=True)
        Path(layout.users_file).write_text(users_file(users))
    if material is None:
        result = plan(cluster, Observed(), SystemClock().now())
        assert result.material is not None, result.problems
        material = result.material
    write_material(Path(layout.tls_dir), material)
    Path(layout.config_file).write_text(render_valkey_conf(cluster, layout))
    start = Path(layout.config_dir) / "start.sh"
    start.write_text(render_start_script(cluster, layout))
    (Path(layout.config_dir) / "probe.sh").write_text(render_probe_script(cluster, layout))
    Path(layout.primary_file).write_text(primary)
    env = {
        **os.environ,
        "POD_NAME": pod,
        "VALKEY_POD_DOMAIN": cluster.names.pod_domain,
        "VALKEY_PASSWORD": PASSWORD,
    }
    if bin_dir is not None:  # another Valkey than the machine's (scripts/valkey-9.sh)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    # Loopback only: bind the instance to its own address instead of the pod's "*", and make its outgoing
    # links (replication, cluster bus) come from that address too, as a pod's have its own IP.
    cmd = ["sh", str(start), "--bind", host, "--bind-source-addr", host]
    if hosts:
        hosts_file = workdir / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in hosts.items()))
        inner = f'mount --bind "{hosts_file}" /etc/hosts && exec "$@"'
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh", *cmd]
    log = workdir / "valkey.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    inst = Instance(cluster, layout, host, material, proc, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"valkey-server exited {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                if promote and pod == primary and cluster.spec.mode == "replication":
                    _promote(inst)
                return inst
        time.sleep(0.1)
    inst.stop()
    raise RuntimeError(f"valkey-server did not listen on {host}:{port}:\n{log.read_text()}")


def _promote(inst: Instance) -> None:
    tls = inst.cluster.spec.tls.enabled
    for _ in range(50):  # bounded: the TLS port may take a moment after the socket listens
        if inst.cli("REPLICAOF", "NO", "ONE", tls=tls).stdout.strip() == "OK":
            return
        time.sleep(0.1)
    raise RuntimeError(f"could not promote {inst.host}:\n{inst.log.read_text()}")


def _with_hosts(workdir: Path, hosts: dict[str, str], code: str, *args: str) -> list[str]:
    import sys

    hosts_file = workdir / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in hosts.items()))
    inner = f'mount --bind "{hosts_file}" /etc/hosts && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        inner,
        "sh",
        sys.executable,
        "-c",
        code,
        *args,
    ]


def run_with_hosts(
    workdir: Path, hosts: dict[str, str], code: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run Python `code` where `hosts` resolve as pod names do in Kubernetes (a private /etc/hosts)."""
    cmd = _with_hosts(workdir, hosts, code, *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def spawn_with_hosts(workdir: Path, hosts: dict[str, str], code: str, *args: str) -> subprocess.Popen[str]:
    """The same, in the background (its output read when it ends)."""
    cmd = _with_hosts(workdir, hosts, code, *args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="session")
def valkey9() -> Path:
    """The bin folder of Valkey 9.1 beside the machine's own (scripts/valkey-9.sh, cached)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "valkey-9.sh")], capture_output=True, text=True,
                         timeout=600, check=False)  # fmt: skip
    assert out.returncode == 0, f"scripts/valkey-9.sh failed:\n{out.stderr[-3000:]}"
    return Path(out.stdout.strip().splitlines()[-1]) / "bin"


def probe(inst: Instance, kind: str) -> int:
    """The rendered probe.sh of `inst`, with `localhost` resolving to the instance as it does in its pod."""
    hosts = Path(inst.layout.run_dir) / "probe-hosts"
    hosts.write_text(f"{inst.host} localhost\n")
    inner = f'mount --bind "{hosts}" /etc/hosts && exec "$@"'
    script = f"{inst.layout.config_dir}/probe.sh"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh", "sh", script, kind],
        env={"PATH": "/usr/bin:/bin", "VALKEY_PASSWORD": PASSWORD},
        capture_output=True,
        timeout=20,
        check=False,
    ).returncode


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[Instance]]:
    started: list[Instance] = []
    yield started
    for inst in started:
        inst.stop()


@pytest.fixture
def launch(tmp_path: Path, instances: list[Instance]) -> Any:
    counter = iter(range(100))

    def _launch(cluster: ValkeyCluster, **kwargs: Any) -> Instance:
        inst = start_instance(cluster, tmp_path / f"i{next(counter)}", **kwargs)
        instances.append(inst)
        return inst

    return _launch


def wait_for_info(inst: Instance, text: str, attempts: int = 150) -> str:
    """Poll INFO replication (bounded) until `text` shows; the last INFO."""
    info = ""
    for _ in range(attempts):
        info = inst.cli("INFO", "replication").stdout
        if text in info:
            return info
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in:\n{info}\n{inst.log.read_text()}")


@dataclass
class Pair:
    cluster: ValkeyCluster
    primary: Instance
    replica: Instance
    hosts: dict[str, str]
    port: int


@pytest.fixture
def replica_pair(launch: Any) -> Pair:
    """cache-0 (primary, 127.0.0.2) and cache-1 (its replica, 127.0.0.3), resolving each other by pod name."""
    cluster = example()
    port = free_port("127.0.0.2")
    n = cluster.names
    hosts = {n.pod_fqdn("cache-0"): "127.0.0.2", n.pod_fqdn("cache-1"): "127.0.0.3"}
    primary = launch(cluster, host="127.0.0.2", port=port, pod="cache-0", hosts=hosts)
    replica = launch(cluster, host="127.0.0.3", port=port, pod="cache-1", material=primary.material, hosts=hosts)
    return Pair(cluster, primary, replica, hosts, port)


@dataclass
class Trio:
    cluster: ValkeyCluster
    primary: Instance
    replicas: list[Instance]
    hosts: dict[str, str]
    port: int


@pytest.fixture
def trio(launch: Any) -> Trio:
    """cache-0 (primary, 127.0.0.2) and its replicas cache-1 and cache-2 (127.0.0.3, .4), linked, resolving
    each other by pod name."""
    cluster = example()
    n = cluster.names
    port = free_port("127.0.0.2")
    hosts = {n.pod_fqdn(f"cache-{i}"): f"127.0.0.{i + 2}" for i in range(3)}
    primary = launch(cluster, host="127.0.0.2", port=port, pod="cache-0", hosts=hosts)
    replicas = [
        launch(cluster, host=f"127.0.0.{i + 2}", port=port, pod=f"cache-{i}", material=primary.material, hosts=hosts)
        for i in (1, 2)
    ]
    for r in replicas:
        wait_for_info(r, "master_link_status:up")
    return Trio(cluster, primary, replicas, hosts, port)


__all__ = ["Instance", "example", "free_port", "replace", "start_instance"]
