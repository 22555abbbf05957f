"""HotReload on a real valkey-server: new files, CONFIG SET through the operator's own code, and a live
handshake (names verified) proving the server now presents the new certificate, with no restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import PASSWORD, example, free_port, run_with_hosts, write_material
from valkey_operator.clock import SystemClock
from valkey_operator.pki.inspect import describe_pem
from valkey_operator.pki.plan import Observed, SecretData, plan

pytestmark = pytest.mark.acceptance

CHILD = """
import sys
from pathlib import Path
from valkey_operator.conf.layout import Layout
from valkey_operator.pki.issue import KeyPair
from valkey_operator.valkey_admin import Credentials, ValkeyAdmin

tls, fqdn, port, password, action = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
admin = ValkeyAdmin(Layout(tls_dir=str(tls), port=port))
creds = Credentials((tls / "ca.crt").read_bytes(),
                    KeyPair((tls / "connection.crt").read_bytes(), (tls / "connection.key").read_bytes()), password)
if action == "reload":
    admin.reload(fqdn, creds)
print(admin.served(fqdn, creds))
"""


def test_hot_reload_serves_the_new_certificate_without_a_restart(launch: Any, tmp_path: Path) -> None:
    cluster = example(tls={"rotation": {"strategy": "HotReload"}})
    port = free_port("127.0.0.2")
    hosts = {cluster.names.pod_fqdn("cache-0"): "127.0.0.2"}
    inst = launch(cluster, host="127.0.0.2", port=port, pod="cache-0", hosts=hosts)
    inst.client_files()
    args = (inst.layout.tls_dir, cluster.names.pod_fqdn("cache-0"), str(port), PASSWORD)

    before = run_with_hosts(tmp_path, hosts, CHILD, *args, "check")
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == describe_pem(inst.material.server.cert_pem).fingerprint_sha256

    # The kubelet's refresh of the Secret volume, done by hand: a re-issued certificate in the same files.
    old = inst.material
    observed = Observed(ca=SecretData({"tls.crt": old.ca.cert_pem, "tls.key": old.ca.key_pem, "ca.crt": old.bundle}))
    body_cluster = example(tls={"rotation": {"strategy": "HotReload"}})
    new = plan(body_cluster, observed, SystemClock().now()).material
    assert new is not None
    write_material(Path(inst.layout.tls_dir), new)
    new_fp = describe_pem(new.server.cert_pem).fingerprint_sha256
    assert new_fp != before.stdout.strip()

    stale = run_with_hosts(tmp_path, hosts, CHILD, *args, "check")
    assert stale.stdout.strip() == before.stdout.strip(), "Valkey re-reads files only when told to"
    after = run_with_hosts(tmp_path, hosts, CHILD, *args, "reload")
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == new_fp
    assert inst.proc.poll() is None, "no restart"
    assert inst.cli("PING").stdout.strip() == "PONG"
