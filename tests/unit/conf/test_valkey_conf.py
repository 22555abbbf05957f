"""valkey.conf: every TLS directive the spec implies, per mode; golden files for the example and cluster mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit import conftest as golden
from tests.unit.conftest import example
from valkey_operator.api.schema import INTERMEDIATE_CIPHERS
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.valkey_conf import render_valkey_conf

GOLDEN = Path(__file__).parent / "golden"


def lines(**spec: Any) -> list[str]:
    return render_valkey_conf(example(**spec)).splitlines()


def directive(conf: list[str], name: str) -> list[str]:
    return [line for line in conf if line.split(" ", 1)[0] == name]


def check_golden(name: str, text: str) -> None:
    golden.check_golden(GOLDEN / name, text)


def test_golden_example() -> None:
    check_golden("example.valkey.conf", render_valkey_conf(example()))


def test_golden_cluster_mode() -> None:
    check_golden("cluster.valkey.conf", render_valkey_conf(example(mode="cluster", shards=3, replicasPerShard=1)))


def test_required_closes_the_plain_port() -> None:
    conf = lines()
    assert directive(conf, "port") == ["port 0"]
    assert directive(conf, "tls-port") == ["tls-port 6379"]
    assert directive(conf, "tls-cert-file") == ["tls-cert-file /tls/tls.crt"]
    assert directive(conf, "tls-key-file") == ["tls-key-file /tls/tls.key"]
    assert directive(conf, "tls-ca-cert-file") == ["tls-ca-cert-file /tls/ca.crt"]


def test_preferred_keeps_both_ports() -> None:
    conf = lines(tls={"mode": "preferred"})
    assert directive(conf, "port") == ["port 6380"]
    assert directive(conf, "tls-port") == ["tls-port 6379"]


def test_disabled_has_no_tls() -> None:
    conf = lines(tls={"mode": "disabled"})
    assert directive(conf, "port") == ["port 6379"]
    assert not [line for line in conf if line.startswith("tls-")]


@pytest.mark.parametrize(("client_auth", "value"), [("required", "yes"), ("optional", "optional"), ("none", "no")])
def test_client_auth(client_auth: str, value: str) -> None:
    assert directive(lines(tls={"clientAuth": client_auth}), "tls-auth-clients") == [f"tls-auth-clients {value}"]


def test_replication_and_cluster_bus_only_where_they_exist() -> None:
    assert directive(lines(mode="standalone", replicas=1), "tls-replication") == []
    assert directive(lines(), "tls-replication") == ["tls-replication yes"]
    assert directive(lines(tls={"replication": False}), "tls-replication") == ["tls-replication no"]
    assert directive(lines(), "tls-cluster") == []
    cluster = lines(mode="cluster")
    assert directive(cluster, "tls-cluster") == ["tls-cluster yes"]
    assert directive(cluster, "cluster-enabled") == ["cluster-enabled yes"]
    assert directive(cluster, "cluster-preferred-endpoint-type") == ["cluster-preferred-endpoint-type hostname"]


def test_protocols_ciphers_and_suites_are_quoted() -> None:
    conf = lines(
        tls={
            "protocols": ["TLSv1.3"],
            "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ciphersuites": "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        }
    )
    assert directive(conf, "tls-protocols") == ['tls-protocols "TLSv1.3"']
    assert directive(conf, "tls-ciphers") == ['tls-ciphers "ECDHE-ECDSA-AES256-GCM-SHA384"']
    assert directive(conf, "tls-ciphersuites") == [
        'tls-ciphersuites "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"'
    ]
    # Unset: Mozilla's intermediate profile (ECDHE key exchange, AEAD ciphers), not OpenSSL's wide default.
    default = directive(lines(), "tls-ciphers")
    assert default == [f'tls-ciphers "{INTERMEDIATE_CIPHERS}"']
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in INTERMEDIATE_CIPHERS.split(":"))


@pytest.mark.parametrize(
    ("image", "hide", "auto_reload"),
    [
        ("valkey/valkey:7.2", False, False),
        ("valkey/valkey:8.0.1", True, False),
        ("valkey/valkey:9.1", True, True),
        ("valkey/valkey:latest", False, False),
        ("valkey/valkey@sha256:" + "ab" * 32, False, False),
    ],
)
def test_version_gated_directives(image: str, hide: bool, auto_reload: bool) -> None:
    conf = lines(image=image, tls={"rotation": {"strategy": "HotReload"}})
    assert bool(directive(conf, "hide-user-data-from-log")) is hide
    assert bool(directive(conf, "tls-auto-reload-interval")) is auto_reload


def test_auto_reload_only_under_hot_reload() -> None:
    assert directive(lines(image="valkey/valkey:9.1"), "tls-auto-reload-interval") == []


def test_persistence() -> None:
    assert directive(lines(), "appendonly") == ["appendonly no"]
    assert directive(lines(persistence={"enabled": True}), "appendonly") == ["appendonly yes"]


def test_layout_moves_paths_and_ports_and_runtime_include_comes_last() -> None:
    layout = Layout(tls_dir="/x/tls", run_dir="/x/run", port=7000)
    conf = render_valkey_conf(example(), layout).splitlines()
    assert "tls-port 7000" in conf
    assert "tls-cert-file /x/tls/tls.crt" in conf
    assert conf[-1] == "include /x/run/runtime.conf"


def test_write_safety_only_when_asked() -> None:
    assert directive(lines(), "min-replicas-to-write") == []
    # Replicas hear their primary every second: their silence is what tells a cut-off primary apart.
    assert directive(lines(), "repl-ping-replica-period") == ["repl-ping-replica-period 1"]
    assert directive(lines(mode="standalone", replicas=1), "repl-ping-replica-period") == []
    conf = lines(replication={"minReplicasToWrite": 1, "maxLagSeconds": 5})
    assert directive(conf, "min-replicas-to-write") == ["min-replicas-to-write 1"]
    assert directive(conf, "min-replicas-max-lag") == ["min-replicas-max-lag 5"]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({}, []),  # no CPU limit: the main thread only (Valkey's default)
        ({"resources": {"limits": {"cpu": "1"}}}, []),
        ({"resources": {"limits": {"cpu": "2"}}}, ["io-threads 2"]),
        ({"resources": {"limits": {"cpu": "3500m"}}}, ["io-threads 3"]),  # whole cores
        ({"resources": {"limits": {"cpu": "500m"}}}, []),
        ({"resources": {"limits": {"cpu": "64"}}}, ["io-threads 8"]),  # at most 8 from a limit
        ({"ioThreads": 12, "resources": {"limits": {"cpu": "2"}}}, ["io-threads 12"]),  # the spec wins
        ({"ioThreads": 1, "resources": {"limits": {"cpu": "4"}}}, []),
        ({"image": "valkey/valkey:7.2", "ioThreads": 4}, []),  # threaded I/O with TLS crashes 7.2
        ({"image": "valkey/valkey:latest", "ioThreads": 4}, []),  # an unknown version is taken as 7.2
        (
            {"image": "valkey/valkey:7.2", "ioThreads": 4, "tls": {"mode": "disabled"}},
            ["io-threads 4", "io-threads-do-reads yes"],
        ),
    ],
)
def test_io_threads_follow_the_cpu_limit_or_the_spec(spec: dict[str, Any], want: list[str]) -> None:
    conf = lines(**spec)
    assert directive(conf, "io-threads") + directive(conf, "io-threads-do-reads") == want
