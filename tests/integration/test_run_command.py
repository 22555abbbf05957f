"""`valkey-operator run` as users start it: a separate process serving /metrics and /healthz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import apply, example_body, get_vkc, kubectl, wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except OSError:
        return 0, ""


def test_run_serves_metrics_and_health_and_reconciles(crd: None, unwatched_namespace: str, tmp_path: Path) -> None:
    """The README's quick start as written (`run --namespace NS`, only crds/ applied, no peering CRD):
    it reconciles at once, and says at the default level that leader election is off. The namespace is one
    the session's own operator does not watch: two operators on one cluster fight (the session's, on its
    test clock, re-issued the certificates at once, which read as a renewal 15 s early)."""
    namespace = unwatched_namespace
    metrics_port, health_port = free_port(), free_port()
    cli = Path(sys.executable).parent / "valkey-operator"
    log = tmp_path / "operator.log"
    proc = subprocess.Popen(
        [
            str(cli),
            "run",
            "--namespace",
            namespace,
            "--metrics-port",
            str(metrics_port),
            "--health-port",
            str(health_port),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "VALKEY_OPERATOR_TIMER_INTERVAL": "300"},  # the users' default slow timer
    )
    try:
        wait_until(lambda: fetch(health_port, "/healthz")[0] == 200, what="/healthz")
        apply(example_body(namespace))
        # The StatefulSet created and status written within 30 s of the apply.
        wait_until(lambda: get_vkc(namespace).get("status", {}).get("certificates"), timeout=30, what="reconcile")
        kubectl("get", "statefulset", "cache", "-n", namespace)
        assert "leader election off" in log.read_text()

        def scraped() -> Any:
            code, text = fetch(metrics_port, "/metrics")
            return code == 200 and f'namespace="{namespace}"' in text and text

        text = wait_until(scraped, what="metrics for the cluster")
        for name in (
            "valkey_operator_certificate_expiration_timestamp_seconds",
            "valkey_operator_certificate_not_before_timestamp_seconds",
            "valkey_operator_certificate_renewal_timestamp_seconds",
            "valkey_operator_certificate_warning_timestamp_seconds",
            "valkey_operator_certificate_ready_status",
            "valkey_operator_cluster_ready",
            "valkey_operator_reconcile_duration_seconds_bucket",
        ):
            assert f"{name}{{" in text, name
        assert f'certificate="server",cluster="cache",namespace="{namespace}"' in text
        assert "PRIVATE KEY" not in text
        assert "PRIVATE KEY" not in log.read_text()

        # A renewal that falls due before the 300 s timer is made on time. (No pod becomes ready in this
        # tier, so the 5 s timer runs anyway; e2e's rotation "by the clock" proves it on a Ready cluster.)
        body = get_vkc(namespace)
        server = body["status"]["certificates"]["server"]
        not_after = datetime.strptime(server["notAfter"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        due = datetime.now(UTC) + timedelta(seconds=15)
        patch = {"spec": {"tls": {"certificates": {"renewBefore": f"{int((not_after - due).total_seconds())}s"}}}}
        kubectl("patch", "valkeycluster", "cache", "-n", namespace, "--type=merge", "-p", json.dumps(patch))

        def renewed() -> bool:
            return bool(get_vkc(namespace)["status"]["certificates"]["server"]["serial"] != server["serial"])

        wait_until(renewed, timeout=45, what="the renewal the clock made due")
        assert datetime.now(UTC) >= due
    finally:
        proc.terminate()
        proc.wait(30)
