"""The e2e tier: real images built with podman, run for real."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.controlplane import LocalCluster
from e2e.network import NETWORK, bridge_exists, kube_chains, mounts_under, netns
from e2e.node import Node

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
    """Debian's valkey-server 8.0 (built with TLS) on the debootstrapped base."""
    return _image("valkey")


@pytest.fixture(scope="session")
def node(operator_image: str, valkey_image: str) -> Iterator[Node]:
    """A control plane with a real node (kubelet, kube-proxy, CoreDNS) that has both images; torn down with
    no process, mount, network namespace, bridge or iptables chain of its own left behind."""
    with tempfile.TemporaryDirectory(prefix="node-plane-") as tmp:
        cluster = LocalCluster(Path(tmp) / "plane", node_ip=NETWORK.node_ip).up()
        before, chains_before = set(netns()), kube_chains()
        n = Node(cluster, Path(tmp) / "node")
        try:
            n.up()
            n.import_image(operator_image)
            n.import_image(valkey_image)
            yield n
        finally:
            n.down()
            cluster.down()
            assert mounts_under(Path(tmp)) == []
            assert set(netns()) <= before
            assert not bridge_exists(NETWORK.bridge)
            left = subprocess.run(["pgrep", "-af", tmp], capture_output=True, text=True, check=False).stdout
            assert left.strip() == "", left
            # Exactly what the node made is gone: no iptables chain of its own (nor of kube-proxy's) is left.
            assert kube_chains() == chains_before, "the node left iptables chains behind"


def kubectl(node: Node, *args: str, stdin: str | None = None, check: bool = True) -> str:
    assert node.cluster.bins is not None
    out = subprocess.run(
        [str(node.cluster.bins / "kubectl"), f"--kubeconfig={node.cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(out.stdout + out.stderr)
    return out.stdout


def get_json(node: Node, *args: str) -> dict[str, Any]:
    """`kubectl get ... -o json`, parsed."""
    return dict(json.loads(kubectl(node, "get", *args, "-o", "json")))


def secret(node: Node, name: str, namespace: str = "default") -> dict[str, bytes]:
    """A Secret's data, decoded."""
    return {k: base64.b64decode(v) for k, v in get_json(node, "secret", name, "-n", namespace)["data"].items()}
