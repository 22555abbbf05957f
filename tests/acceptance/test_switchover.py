"""The operator's switchover and repoint (ValkeyAdmin over TLS, names verified) on three real valkey-servers:
the role moves without losing a write, and the third pod then follows the new primary, so restarting the old
primary takes nobody else down."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, Trio, example, free_port, run_with_hosts, wait_for_info

pytestmark = pytest.mark.acceptance

# What the operator does across passes, in one child process that resolves pod names as a pod would.
CHILD = """
import sys, time
from pathlib import Path
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

tls, port, password, fqdn = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
admin = ValkeyAdmin(Layout(port=port))
pod = lambda name: fqdn.format(name)

def until(check, what):
    for _ in range(100):  # bounded: 20 s
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out: {what}")

admin.switchover(pod("cache-0"), pod("cache-1"), creds)
until(lambda: admin.replication(pod("cache-1"), creds).role == "master", "cache-1 promoted")
until(lambda: admin.replication(pod("cache-0"), creds).role == "slave", "cache-0 demoted")
print("third follows", admin.replication(pod("cache-2"), creds).master_host)
admin.repoint(pod("cache-2"), pod("cache-1"), creds)
until(lambda: (r := admin.replication(pod("cache-2"), creds)).master_host == pod("cache-1") and r.link_up,
      "cache-2 follows cache-1")
print("switched")
"""


def test_switchover_then_repoint_moves_every_replica_without_losing_writes(trio: Trio, tmp_path: Path) -> None:
    n, port, hosts, primary, replicas = trio.cluster.names, trio.port, trio.hosts, trio.primary, trio.replicas
    for i in range(200):
        primary.cli("SET", f"k{i}", str(i))
    primary.client_files()  # connection.crt/.key for the child
    fqdn = n.pod_fqdn("{}")
    out = run_with_hosts(tmp_path, hosts, CHILD, primary.layout.tls_dir, str(port), PASSWORD, fqdn)
    assert out.returncode == 0, out.stdout + out.stderr
    # FAILOVER leaves the third pod following the old primary: what the operator must repair.
    assert f"third follows {n.pod_fqdn('cache-0')}" in out.stdout
    assert "switched" in out.stdout
    new_primary, third = replicas
    assert "role:master" in new_primary.cli("INFO", "replication").stdout
    assert new_primary.cli("DBSIZE").stdout.strip() == "200"
    assert new_primary.cli("SET", "after", "switch").stdout.strip() == "OK"
    for _ in range(50):  # bounded: the write reaches the third pod through its new primary
        if third.cli("GET", "after").stdout.strip() == "switch":
            break
        time.sleep(0.2)
    assert third.cli("GET", "after").stdout.strip() == "switch"
    # The old primary restarts (a rollout's next step): the third pod's link stays up.
    primary.stop()
    info = wait_for_info(third, "master_link_status:up")
    assert f"master_host:{n.pod_fqdn('cache-1')}" in info
    assert third.cli("DBSIZE").stdout.strip() == "201"


PLAIN_CHILD = """
import sys
from valkey_operator.conf.layout import Layout
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

port, password, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(ValkeyAdmin(Layout(port=port)).replication(host, Credentials(None, None, password)).role)
"""


def test_with_tls_disabled_the_operator_reads_roles_in_plaintext(launch: Any, tmp_path: Path) -> None:
    """A cluster whose user disabled TLS still gets roles read from the pods (switchovers, repoints)."""
    cluster = example(tls={"mode": "disabled"})
    port = free_port("127.0.0.2")
    hosts = {cluster.names.pod_fqdn("cache-0"): "127.0.0.2"}
    launch(cluster, host="127.0.0.2", port=port, pod="cache-0", hosts=hosts)
    out = run_with_hosts(tmp_path, hosts, PLAIN_CHILD, str(port), PASSWORD, cluster.names.pod_fqdn("cache-0"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "master"
