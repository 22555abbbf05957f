"""The chart, rendered by the real helm; promtool for the alert rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "valkey-operator"


@pytest.fixture(scope="session")
def bins() -> Path:
    from e2e.controlplane import bin_dir

    return bin_dir()


def helm(bins: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(bins / "helm"), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
    return out


def render(bins: Path, *args: str) -> list[dict[str, Any]]:
    out = helm(bins, "template", "vo", str(CHART), "--namespace", "valkey-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
