"""The e2e tier: real images built with podman, run for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def operator_image() -> str:
    """The operator image, built from the project's Dockerfile on a debootstrapped base (cached)."""
    out = subprocess.run(
        ["bash", str(ROOT / "e2e" / "images.sh"), "operator"], capture_output=True, text=True, timeout=1800, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"building the operator image failed:\n{out.stderr[-5000:]}")
    return out.stdout.strip().splitlines()[-1]
