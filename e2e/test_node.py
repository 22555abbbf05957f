"""A real node: kubelet with containerd and runc, running a pod from an image built here, and a
teardown that leaves no process, mount or network namespace behind."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import yaml

from e2e.conftest import kubectl
from e2e.network import NETWORK
from e2e.node import Node


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
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(NETWORK.pod_cidr)
    # The API server reaches the kubelet (logs), with the kubelet's own authentication and authorization.
    assert "hello from the node" in kubectl(node, "logs", "hello")
    kubectl(node, "delete", "pod", "hello", "--wait=true", "--timeout=60s")
