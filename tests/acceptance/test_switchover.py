"""The operator's switchover (valkey_admin over TLS, names verified) between two real valkey-servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import PASSWORD, Pair, run_with_hosts, wait_for_info

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


def test_switchover_moves_the_primary_without_losing_writes(replica_pair: Pair, tmp_path: Path) -> None:
    primary, replica, hosts, port = replica_pair.primary, replica_pair.replica, replica_pair.hosts, replica_pair.port
    wait_for_info(replica, "master_link_status:up")
    for i in range(200):
        primary.cli("SET", f"k{i}", str(i))
    primary.client_files()  # connection.crt/.key for the child
    root = Path(__file__).resolve().parents[2]
    example_file = str(root / "examples" / "valkeycluster.yaml")
    out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, example_file, str(port), PASSWORD)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "switched" in out.stdout
    assert "role:master" in replica.cli("INFO", "replication").stdout
    wait_for_info(primary, "master_link_status:up")
    assert "role:slave" in primary.cli("INFO", "replication").stdout
    assert replica.cli("GET", "k199").stdout.strip() == "199"
    assert replica.cli("DBSIZE").stdout.strip() == "200"
    assert replica.cli("SET", "after", "switch").stdout.strip() == "OK"
