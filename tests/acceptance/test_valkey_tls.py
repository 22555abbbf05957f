"""The rendered valkey.conf, scripts and minted certificates, served by a real valkey-server.

Checked with real clients: valkey-cli --tls, openssl s_client, and valkey-py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import valkey

from tests.acceptance.conftest import PASSWORD, Instance, Pair, example, probe, wait_for_info

pytestmark = pytest.mark.acceptance


def s_client(inst: Instance, *extra: str, client: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [
        "openssl",
        "s_client",
        "-connect",
        f"{inst.host}:{inst.layout.port}",
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-CAfile",
        inst.layout.ca_file,
        "-verify_return_error",
        *extra,
    ]
    if client:
        cert, key = inst.client_files()
        cmd += ["-cert", str(cert), "-key", str(key)]
    return subprocess.run(cmd, input="PING\r\nQUIT\r\n", capture_output=True, text=True, timeout=20, check=False)


def test_tls12_and_tls13_verify_the_name_against_the_ca(launch: Any) -> None:
    inst = launch(example())
    for version in ("-tls1_2", "-tls1_3"):
        out = s_client(inst, version, "-ign_eof")
        assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr
        assert "Verification: OK" in out.stdout
    # The name check is real: a name the certificate does not carry fails verification.
    bad = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{inst.host}:{inst.layout.port}",
            "-verify_hostname",
            "not-in-the-cert.example",
            "-CAfile",
            inst.layout.ca_file,
            "-verify_return_error",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert bad.returncode != 0
    assert "hostname mismatch" in (bad.stdout + bad.stderr).lower()


def test_tls11_is_refused(launch: Any) -> None:
    inst = launch(example())
    out = s_client(inst, "-tls1_1")
    assert out.returncode != 0
    assert "no peer certificate available" in out.stdout, out.stdout + out.stderr


def test_valkey_cli_with_client_certificate(launch: Any) -> None:
    inst = launch(example())
    out = inst.cli("SET", "k", "v")
    assert out.stdout.strip() == "OK", out
    assert inst.cli("GET", "k").stdout.strip() == "v"


def test_python_client_verifies_hostname(launch: Any) -> None:
    inst = launch(example())
    cert, key = inst.client_files()
    client = valkey.Valkey(
        host="localhost",
        port=inst.layout.port,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=inst.layout.ca_file,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        ssl_check_hostname=True,
        ssl_cert_reqs="required",
        socket_timeout=10,
    )
    assert client.ping() is True
    client.set("py", "ok")
    assert client.get("py") == b"ok"
    client.close()  # type: ignore[no-untyped-call]  # valkey-py is py.typed but leaves Valkey.close unannotated


def _ping_without_certificate(inst: Instance) -> bytes:
    """AUTH and PING over TLS with no client certificate; the server's answer, b"" if it hung up."""
    ctx = ssl.create_default_context(cafile=inst.layout.ca_file)
    with (
        socket.create_connection((inst.host, inst.layout.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        # TLS 1.3 reports the missing certificate after the handshake, on the first read.
        tls.sendall(f"AUTH default {PASSWORD}\r\nPING\r\n".encode())
        return tls.recv(64)


def test_client_without_certificate_is_refused_when_required(launch: Any) -> None:
    inst = launch(example())
    out = inst.cli("PING", client=False)
    assert "PONG" not in out.stdout
    try:
        answer = _ping_without_certificate(inst)
    except (ssl.SSLError, ConnectionResetError):
        return  # refused in the handshake
    assert answer == b"", answer


def test_client_without_certificate_is_accepted_when_optional(launch: Any) -> None:
    inst = launch(example(tls={"clientAuth": "optional"}))
    out = inst.cli("PING", client=False)
    assert out.stdout.strip() == "PONG", out
    answer = _ping_without_certificate(inst)
    assert answer.startswith(b"+OK\r\n"), answer


def test_plain_port_is_closed_under_required(launch: Any) -> None:
    inst = launch(example())
    with socket.socket() as s:
        assert s.connect_ex((inst.host, inst.layout.plain_port)) != 0
    # And the TLS port does not speak plaintext.
    out = inst.cli("PING", tls=False)
    assert "PONG" not in out.stdout


def test_plain_port_is_open_under_preferred(launch: Any) -> None:
    inst = launch(example(tls={"mode": "preferred"}))
    assert inst.cli("PING", tls=False, port=inst.layout.plain_port).stdout.strip() == "PONG"
    assert inst.cli("PING").stdout.strip() == "PONG"


def test_the_rendered_probe_passes_with_the_pods_own_certificate(launch: Any) -> None:
    inst = launch(example())
    probe = f"{inst.layout.config_dir}/probe.sh"
    ok = subprocess.run(
        ["sh", probe],
        env={"PATH": "/usr/bin:/bin", "VALKEY_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    # The probe was rendered for this instance's layout, so it checks this server.
    assert f"-p {inst.layout.port}" in Path(probe).read_text()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run(
        ["sh", probe],
        env={"PATH": "/usr/bin:/bin", "VALKEY_PASSWORD": "wrong"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert wrong.returncode != 0


def test_replica_syncs_from_primary_over_tls(replica_pair: Pair) -> None:
    primary, replica, names = replica_pair.primary, replica_pair.replica, replica_pair.cluster.names
    assert primary.cli("SET", "replicated", "yes").stdout.strip() == "OK"
    info = wait_for_info(replica, "master_link_status:up")
    assert f"master_host:{names.pod_fqdn('cache-0')}" in info
    assert replica.cli("GET", "replicated").stdout.strip() == "yes"
    # The primary has no plaintext port (port 0), so this link is TLS; it lists its replica.
    assert "connected_slaves:1" in primary.cli("INFO", "replication").stdout


@pytest.mark.parametrize(
    "spec",
    [
        {"mode": "cluster"},
        {"mode": "standalone", "replicas": 1, "persistence": {"enabled": True}},
        {"image": "valkey/valkey:7.2", "tls": {"protocols": ["TLSv1.3"], "ciphersuites": "TLS_AES_256_GCM_SHA384"}},
        {"tls": {"mode": "disabled"}},
    ],
    ids=["cluster", "standalone-aof", "valkey-7.2-tls13-only", "tls-disabled"],
)
def test_other_rendered_configs_start_and_serve(launch: Any, spec: dict[str, Any]) -> None:
    cluster = example(**spec)
    inst = launch(cluster)
    out = inst.cli("PING", tls=cluster.spec.tls.enabled)
    assert out.stdout.strip() == "PONG", out.stdout + out.stderr + inst.log.read_text()
    if cluster.spec.mode == "cluster":
        info = inst.cli("CLUSTER", "INFO").stdout
        assert "cluster_enabled:1" in inst.cli("INFO", "cluster").stdout
        # What this proves is only that the config starts and answers cluster commands over TLS: a lone node
        # that nobody formed holds no slots, so its state is fail (forming a cluster is not built yet).
        assert "cluster_slots_assigned:0" in info
        assert "cluster_state:fail" in info
        myself = inst.cli("CLUSTER", "MYSHARDID").stdout.strip()
        assert myself, "cluster commands answer over TLS"
        myself_id = inst.cli("CLUSTER", "MYID").stdout.strip()
        # The operator reads the same state over TLS (name verified), so status cannot say Ready.
        from valkey_operator.pki.issue import KeyPair
        from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

        cert, key = inst.client_files()
        creds = Credentials(inst.material.bundle, KeyPair(cert.read_bytes(), key.read_bytes()), PASSWORD)
        view = ValkeyAdmin(inst.layout).cluster_view("localhost", creds)
        assert (view.state, view.myid, [n.id for n in view.nodes]) == ("fail", myself_id, [myself_id])


def test_a_replica_is_ready_only_while_its_link_to_the_primary_is_up(replica_pair: Pair) -> None:
    primary, replica = replica_pair.primary, replica_pair.replica
    wait_for_info(replica, "master_link_status:up")
    assert probe(primary, "readiness") == 0
    assert probe(replica, "readiness") == 0
    primary.stop()
    wait_for_info(replica, "master_link_status:down")
    # Cut off from its primary it serves stale data: not ready, yet alive (no restart would help).
    assert probe(replica, "readiness") != 0
    assert probe(replica, "liveness") == 0


def test_a_primary_being_deleted_waits_in_prestop_until_its_role_has_moved(replica_pair: Pair) -> None:
    primary, replica = replica_pair.primary, replica_pair.replica
    wait_for_info(replica, "master_link_status:up")
    assert probe(replica, "prestop") == 0  # a replica stops at once
    hosts = Path(primary.layout.run_dir) / "probe-hosts"
    hosts.write_text(f"{primary.host} localhost\n")
    inner = f'mount --bind "{hosts}" /etc/hosts && exec "$@"'
    script = f"{primary.layout.config_dir}/probe.sh"
    waiting = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh", "sh", script, "prestop"],
        env={"PATH": "/usr/bin:/bin", "VALKEY_PASSWORD": PASSWORD},
    )
    try:
        time.sleep(3)
        assert waiting.poll() is None, "a primary with a replica keeps serving until the handover"
        # The operator's handover (what ValkeyAdmin.switchover sends).
        target = replica_pair.cluster.names.pod_fqdn("cache-1")
        assert primary.cli("FAILOVER", "TO", target, str(replica_pair.port)).stdout.strip() == "OK"
        assert waiting.wait(15) == 0
        assert "role:master" in wait_for_info(replica, "role:master")
    finally:
        waiting.kill()
