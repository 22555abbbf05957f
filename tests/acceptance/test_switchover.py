"""The operator's switchover (valkey_admin over TLS, names verified) between two real valkey-servers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, Instance, example, free_port, run_with_hosts

pytestmark = pytest.mark.acceptance

CHILD = """
import sys
from pathlib import Path
import yaml
from valkey_operator.api.spec import parse_cluster
from valkey_operator.conf.layout import Layout
from valkey_operator.handlers.runtime import switchover
from valkey_operator.pki.issue import KeyPair
from valkey_operator.pki.plan import Material

tls, example, port, password = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
cluster = parse_cluster(yaml.safe_load(open(example)))
server = KeyPair((tls / "tls.crt").read_bytes(), (tls / "tls.key").read_bytes())
client = KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes())
material = Material(bundle=(tls / "ca.crt").read_bytes(), server=server, revision=1, server_annotations={},
                    clients={"connection": client})
switchover(cluster, material, password, "cache-0", "cache-1", Layout(port=port))
print("switched")
"""


def wait_for(inst: Instance, text: str, attempts: int = 100) -> str:
    info = ""
    for _ in range(attempts):
        info = inst.cli("INFO", "replication").stdout
        if text in info:
            return info
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in:\n{info}")


def test_switchover_moves_the_primary_without_losing_writes(launch: Any, tmp_path: Path) -> None:
    cluster = example()
    port = free_port("127.0.0.2")
    n = cluster.names
    hosts = {n.pod_fqdn("cache-0"): "127.0.0.2", n.pod_fqdn("cache-1"): "127.0.0.3"}
    primary = launch(cluster, host="127.0.0.2", port=port, pod="cache-0", hosts=hosts)
    replica = launch(cluster, host="127.0.0.3", port=port, pod="cache-1", material=primary.material, hosts=hosts)
    wait_for(replica, "master_link_status:up")
    for i in range(200):
        primary.cli("SET", f"k{i}", str(i))
    primary.client_files()  # connection.crt/.key for the child
    root = Path(__file__).resolve().parents[2]
    example_file = str(root / "examples" / "valkeycluster.yaml")
    out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, example_file, str(port), PASSWORD)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "switched" in out.stdout
    assert "role:master" in replica.cli("INFO", "replication").stdout
    wait_for(primary, "master_link_status:up")
    assert "role:slave" in primary.cli("INFO", "replication").stdout
    assert replica.cli("GET", "k199").stdout.strip() == "199"
    assert replica.cli("DBSIZE").stdout.strip() == "200"
    assert replica.cli("SET", "after", "switch").stdout.strip() == "OK"
