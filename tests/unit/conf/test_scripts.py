"""The start and probe scripts: per-pod lines, and a probe that speaks TLS (and mTLS) like a client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.conftest import example
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.scripts import probe_command, render_probe_script, render_start_script
from valkey_operator.conf.valkey_conf import render_valkey_conf


def test_scripts_are_valid_posix_sh() -> None:
    for cluster in (example(), example(mode="cluster"), example(mode="standalone", replicas=1)):
        for script in (render_start_script(cluster), render_probe_script(cluster)):
            subprocess.run(["sh", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(("persistence", "waits"), [(False, True), (True, False)])
def test_a_cluster_node_without_persistence_sets_a_primary_identity_aside(persistence: bool, waits: bool) -> None:
    """Its data is gone after a restart; with persistence it keeps both (nodes.conf and data in the PV)."""
    script = render_start_script(example(mode="cluster", persistence={"enabled": persistence}))
    assert ('mv "/data/nodes.conf" "/data/nodes.conf.without-data"' in script) is waits
    assert ("has a replica taken over the slots" in script) is waits
    # Through a copy without the directives the pod's own server is too old for (see test_users' acceptance).
    assert script.rstrip().endswith('exec valkey-server "/run/valkey/valkey.conf" "$@"')


def test_replication_start_script_follows_the_primary_file() -> None:
    script = render_start_script(example())
    assert 'primary=$(cat "/etc/valkey/primary"' in script
    assert "replicaof $primary.${VALKEY_POD_DOMAIN} 6379" in script
    assert "cluster-announce-hostname" not in script
    # Through a copy without the directives the pod's own server is too old for (see test_users' acceptance).
    assert script.rstrip().endswith('exec valkey-server "/run/valkey/valkey.conf" "$@"')


@pytest.mark.parametrize(
    ("recorded", "pod", "replicaof"),
    [
        ("cache-1", "cache-0", "replicaof cache-1.cache-headless.default.svc 6379"),
        ("cache-0", "cache-0", "replicaof 127.0.0.1 1"),  # the one named waits for the operator
        ("", "cache-2", "replicaof 127.0.0.1 1"),  # nothing named yet
    ],
)
def test_every_pod_boots_as_a_replica(tmp_path: Path, recorded: str, pod: str, replicaof: str) -> None:
    """Run the start script for real, with a `valkey-server` on PATH that prints the per-pod file."""
    layout = Layout(config_dir=str(tmp_path / "etc"), run_dir=str(tmp_path / "run"), port=6379)
    Path(layout.config_dir).mkdir()
    Path(layout.primary_file).write_text(recorded)
    Path(layout.config_file).write_text("hide-user-data-from-log yes\n")
    start = tmp_path / "start.sh"
    start.write_text(render_start_script(example(), layout))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "valkey-server"  # stands in for the server only to show what it would be given
    version = '[ "$1" = --version ] && echo "Valkey server v=9.1.2 sha=0" && exit'
    fake.write_text(f'#!/bin/sh\n{version}\ncat "{layout.runtime_file}"\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "POD_NAME": pod,
        "VALKEY_POD_DOMAIN": "cache-headless.default.svc",
    }
    out = subprocess.run(["sh", str(start)], env=env, capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("replicaof")] == [replicaof]
    assert f"replica-announce-ip {pod}.cache-headless.default.svc" in out


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


@pytest.mark.parametrize(
    ("version", "kept"),
    [
        ("Valkey server v=8.0.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", {"hide-user-data-from-log"}),
        ("Valkey server v=9.0.3 sha=0", {"hide-user-data-from-log", "tls-auth-clients-user"}),
        (
            "Valkey server v=9.1.2 sha=0",
            {"hide-user-data-from-log", "tls-auth-clients-user", "tls-auto-reload-interval"},
        ),
        # A version it cannot read: the config whole (a 9.x server would lose certificate logins otherwise).
        ("something else", {"hide-user-data-from-log", "tls-auth-clients-user", "tls-auto-reload-interval"}),
    ],
)
def test_the_server_starts_on_the_directives_its_version_knows(tmp_path: Path, version: str, kept: set[str]) -> None:
    """The start script run for real, a `valkey-server` on PATH that says `version` and prints the config it
    is given: lines of directives newer than that version are left out of the copy it reads."""
    layout = Layout(config_dir=str(tmp_path / "etc"), run_dir=str(tmp_path / "run"), port=6379)
    cluster = example(image="valkey/valkey:9.1.2", tls={"rotation": {"strategy": "HotReload"},
                                                        "clients": [{"name": "app", "acl": "~a:* +get"}]})  # fmt: skip
    Path(layout.config_dir).mkdir()
    Path(layout.config_file).write_text(render_valkey_conf(cluster, layout))
    start = tmp_path / "start.sh"
    start.write_text(render_start_script(cluster, layout))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "valkey-server"  # stands in for the server only to show what it would be given
    fake.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "{version}" && exit\ncat "$1"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "POD_NAME": "cache-0", "VALKEY_POD_DOMAIN": "d"}
    Path(layout.config_file).chmod(0o444)  # as the kubelet projects a ConfigMap
    # A read-only copy an earlier start left (as `cp` made them): a user without root's override could
    # not rewrite it, and the server had no config (a crash loop). Each start writes a fresh one.
    copy = Path(layout.run_dir) / "valkey.conf"
    copy.parent.mkdir(parents=True)
    copy.write_text("stale")
    copy.chmod(0o400)
    subprocess.run(["sh", str(start)], env=env, capture_output=True, text=True, check=True)
    assert copy.stat().st_mode & 0o600 == 0o600
    out = subprocess.run(["sh", str(start)], env=env, capture_output=True, text=True, check=True).stdout
    gated = {"hide-user-data-from-log", "tls-auth-clients-user", "tls-auto-reload-interval"}
    assert {line.split(" ")[0] for line in out.splitlines()} & gated == kept
    assert "port 0" in out  # the rest is all there
