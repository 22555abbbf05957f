"""The start and probe scripts: per-pod lines, and a probe that speaks TLS (and mTLS) like a client."""

from __future__ import annotations

import subprocess

from tests.unit.conftest import example
from valkey_operator.conf.scripts import probe_command, render_probe_script, render_start_script


def test_scripts_are_valid_posix_sh() -> None:
    for cluster in (example(), example(mode="cluster"), example(mode="standalone", replicas=1)):
        for script in (render_start_script(cluster), render_probe_script(cluster)):
            subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_replication_start_script_follows_the_primary_file() -> None:
    script = render_start_script(example())
    assert 'primary=$(cat "/etc/valkey/primary"' in script
    assert "replicaof $primary.${VALKEY_POD_DOMAIN} 6379" in script
    assert "cluster-announce-hostname" not in script
    assert script.rstrip().endswith('exec valkey-server "/etc/valkey/valkey.conf" "$@"')


def test_cluster_start_script_announces_the_hostname() -> None:
    script = render_start_script(example(mode="cluster"))
    assert 'echo "cluster-announce-hostname $fqdn"' in script
    assert "replicaof" not in script


def test_password_goes_to_the_runtime_file_never_the_command_line() -> None:
    script = render_start_script(example())
    assert "requirepass" in script
    assert "--requirepass" not in script
    assert "umask 077" in script


def test_probe_uses_tls_and_the_pods_own_certificate_under_mtls() -> None:
    cmd = probe_command(example())
    assert cmd[-1] == "ping"
    assert "--tls" in cmd
    assert cmd[cmd.index("--cacert") + 1] == "/tls/ca.crt"
    assert cmd[cmd.index("--cert") + 1] == "/tls/tls.crt"
    assert "--cert" not in probe_command(example(tls={"clientAuth": "none"}))
    assert "--tls" not in probe_command(example(tls={"mode": "disabled"}))
