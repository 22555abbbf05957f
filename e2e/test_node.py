"""A real node: kubelet with containerd and runc, running a pod from an image built here, and a
teardown that leaves no process, mount or network namespace behind."""

from __future__ import annotations

import ipaddress
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.controlplane import LocalCluster
from e2e.node import BRIDGE, POD_CIDR, Node, _mounts_under, _netns


@pytest.fixture(scope="module")
def node(operator_image: str) -> Iterator[Node]:
    with tempfile.TemporaryDirectory(prefix="node-plane-") as tmp:
        cluster = LocalCluster(Path(tmp) / "plane").up()
        before = set(_netns())
        n = Node(cluster, Path(tmp) / "node")
        try:
            n.up()
            n.import_image(operator_image)
            yield n
        finally:
            n.down()
            cluster.down()
            # Teardown leaves nothing behind.
            assert _mounts_under(Path(tmp)) == []
            assert set(_netns()) <= before
            assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode != 0
            left = subprocess.run(["pgrep", "-af", tmp], capture_output=True, text=True, check=False).stdout
            assert left.strip() == "", left


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


def test_a_pod_from_a_locally_built_image_runs_on_the_node(node: Node, operator_image: str) -> None:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "py",
                    "image": operator_image,
                    "imagePullPolicy": "Never",
                    "command": [
                        "python3",
                        "-c",
                        "import time; print('hello from the node', flush=True); time.sleep(600)",
                    ],
                }
            ]
        },
    }
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(pod))
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline and phase != "Running":
        phase = kubectl(node, "get", "pod", "hello", "-o", "jsonpath={.status.phase}")
        time.sleep(1)
    assert phase == "Running", kubectl(node, "describe", "pod", "hello")
    ip = kubectl(node, "get", "pod", "hello", "-o", "jsonpath={.status.podIP}")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR)
    # The API server reaches the kubelet (logs), with the kubelet's own authentication and authorization.
    assert "hello from the node" in kubectl(node, "logs", "hello")
    kubectl(node, "delete", "pod", "hello", "--wait=true", "--timeout=60s")
