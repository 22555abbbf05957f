"""Shared fixtures of the unit tests: the example resource and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from valkey_operator.api.spec import ValkeyCluster, parse_cluster

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# DESIGN.md, "Objects a ValkeyCluster cache owns", for the example (one client, replication mode).
CONTRACT_OBJECTS = [
    ("Secret", "cache-ca"),
    ("Secret", "cache-tls"),
    ("Secret", "cache-client-app"),
    ("Secret", "cache-auth"),
    ("Secret", "cache-connection"),
    ("ConfigMap", "cache-config"),
    ("Service", "cache"),
    ("Service", "cache-headless"),
    ("Service", "cache-ro"),
    ("StatefulSet", "cache"),
    ("PodDisruptionBudget", "cache"),
]


def example_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    tls = spec.pop("tls", None)
    body["spec"].update(spec)
    if tls:
        body["spec"]["tls"].update(tls)
    return body


def example(**spec: Any) -> ValkeyCluster:
    return parse_cluster(example_body(**spec))


@pytest.fixture
def cluster() -> ValkeyCluster:
    return example()
