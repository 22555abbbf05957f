"""Real nodes: each kubelet with its containerd and runc runs a pod from an image built here, on its own pod
subnet, and that pod reaches the cluster's DNS and Services; a teardown leaves no process, mount or network
namespace behind (the `nodes` fixture checks that)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
import yaml

from e2e.conftest import kubectl
from e2e.network import NETWORK
from e2e.node import Node

# Resolve the API server's Service by name (CoreDNS on the first node) and open a TCP connection to it
# (kube-proxy's rules on the host): both serve every node.
PROBE = """
import socket, time
ip = socket.gethostbyname("kubernetes.default.svc.cluster.local")
socket.create_connection((ip, 443), timeout=5).close()
print("hello from the node; kubernetes is", ip, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("index", [1, 2])
def test_a_pod_from_a_locally_built_image_runs_on_each_node(
    nodes: list[Node], node: Node, operator_image: str, index: int
) -> None:
    target = nodes[index - 1]
    name = f"hello-{index}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": target.name},
            "restartPolicy": "Never",
            "containers": [
                {"name": "py", "image": operator_image, "imagePullPolicy": "Never", "command": ["python3", "-c", PROBE]}
            ],
        },
    }
    kubectl(node, "apply", "-f", "-", stdin=yaml.safe_dump(pod))
    deadline = time.monotonic() + 120
    log = ""
    while time.monotonic() < deadline and "hello from the node" not in log:
        time.sleep(1)
        log = kubectl(node, "logs", name, check=False)
    # The API server reaches the kubelet (logs), with the kubelet's own authentication and authorization.
    assert f"kubernetes is {NETWORK.service_ip}" in log, kubectl(node, "describe", "pod", name) + log
    assert kubectl(node, "get", "pod", name, "-o", "jsonpath={.spec.nodeName}") == target.name
    ip = kubectl(node, "get", "pod", name, "-o", "jsonpath={.status.podIP}")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(target.net.pod_cidr)
    kubectl(node, "delete", "pod", name, "--wait=true", "--timeout=60s")
