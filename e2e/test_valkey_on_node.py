"""Valkey pods that really run: the operator's StatefulSet on a real node, TLS probes passing with the pod's
own certificate, and real clients on the host verifying the pod's DNS name against ca.crt of the
connection Secret. The operator runs on the host here; test_operator_in_cluster.py runs it in a pod."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import cli_env, get_json, kubectl, secret
from e2e.node import Node
from e2e.procs import wait_established


@pytest.fixture(scope="module")
def running_operator(node: Node) -> Iterator[None]:
    kubectl(node, "apply", "-f", str(Path(__file__).resolve().parents[1] / "crds"))
    assert node.cluster.bins is not None
    wait_established(
        [str(node.cluster.bins / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}"],
        ["valkeyclusters.valkeyops.dev"],
    )
    with tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False) as log:
        # The default slow timer (300 s): Ready must follow the pods within seconds all the same.
        env = {**os.environ, "KUBECONFIG": str(node.cluster.kubeconfig)}
        env.pop("VALKEY_OPERATOR_TIMER_INTERVAL", None)
        cli = Path(sys.executable).parent / "valkey-operator"
        proc = subprocess.Popen(
            [str(cli), "run", "--namespace", "default", "--standalone", "--metrics-port", "0", "--health-port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def vkc(node: Node, name: str) -> dict[str, Any]:
    return get_json(node, "valkeycluster", name)


def test_a_standalone_valkey_pod_serves_tls_with_verified_names(
    node: Node, running_operator: None, valkey_image: str, tmp_path: Path
) -> None:
    body = {
        "apiVersion": "valkeyops.dev/v1alpha1",
        "kind": "ValkeyCluster",
        "metadata": {"name": "solo", "namespace": "default"},
        "spec": {"image": valkey_image, "imagePullPolicy": "Never", "mode": "standalone", "replicas": 1},
    }
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    deadline, phase = time.monotonic() + 120, ""
    while time.monotonic() < deadline and phase != "Ready":
        phase = vkc(node, "solo").get("status", {}).get("phase", "")
        time.sleep(1)
    assert phase == "Ready", kubectl(node, "describe", "pod", "solo-0", check=False)
    table = kubectl(node, "get", "valkeyclusters").splitlines()
    assert table[1].split()[1:3] == ["standalone", "1/1"]
    assert table[1].split()[5] == "Ready"

    ip = kubectl(node, "get", "pod", "solo-0", "-o", "jsonpath={.status.podIP}")
    conn = secret(node, "solo-connection")
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / name).write_bytes(conn[name])
    (tmp_path / "tls.key").chmod(0o600)
    fqdn = "solo-0.solo-headless.default.svc"
    # openssl: the pod's certificate verifies against ca.crt for the pod's stable DNS name.
    out = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{ip}:6379",
            "-servername",
            fqdn,
            "-verify_hostname",
            fqdn,
            "-CAfile",
            str(tmp_path / "ca.crt"),
            "-cert",
            str(tmp_path / "tls.crt"),
            "-key",
            str(tmp_path / "tls.key"),
            "-verify_return_error",
            "-brief",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Verification: OK" in out.stdout + out.stderr, out.stdout + out.stderr
    # valkey-cli with the connection Secret's client certificate and password.
    cli = [
        "valkey-cli",
        "--no-auth-warning",
        "-h",
        ip,
        "-p",
        "6379",
        "--tls",
        "--sni",
        fqdn,
        "--cacert",
        str(tmp_path / "ca.crt"),
    ]
    env = cli_env(conn["password"].decode())
    ok = subprocess.run(
        [*cli, "--cert", str(tmp_path / "tls.crt"), "--key", str(tmp_path / "tls.key"), "SET", "k", "v"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert ok.stdout.strip() == "OK", ok.stdout + ok.stderr
    # No client certificate: refused (clientAuth defaults to required). The plain port is closed.
    refused = subprocess.run([*cli, "PING"], capture_output=True, text=True, timeout=30, check=False, env=env)
    assert "PONG" not in refused.stdout
    plain = subprocess.run(
        ["valkey-cli", "-h", ip, "-p", "6379", "PING"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "PONG" not in plain.stdout
    kubectl(node, "delete", "valkeycluster", "solo", "--wait=true", "--timeout=60s")
