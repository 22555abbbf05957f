"""Shared fixtures of the unit tests: the example resource and a fixed clock."""

from __future__ import annotations

import os
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


def check_golden(path: Path, text: str) -> None:
    """`text` must equal the reviewed golden file. `UPDATE_GOLDEN=1 python -m pytest tests/unit` rewrites the
    files for review (git diff shows what changed); under CI that variable is an error, never a rewrite."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        assert not os.environ.get("CI"), "UPDATE_GOLDEN=1 under CI would rewrite the golden files: unset it"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed; see tests/unit/conftest.py:check_golden to regenerate"
