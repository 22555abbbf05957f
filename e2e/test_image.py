"""The Dockerfile builds, and the image starts: as a non-root user, printing its version, and running the
operator against the local control plane, which then reconciles a ValkeyCluster."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from e2e.procs import wait_established
from valkey_operator import __version__

ROOT = Path(__file__).resolve().parents[1]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
    return out


def test_image_metadata(operator_image: str) -> None:
    info = json.loads(podman("image", "inspect", operator_image).stdout)[0]
    config = info["Config"]
    assert config["Entrypoint"] == ["valkey-operator", "run"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    # Only the installed wheel: no project sources in the final image.
    listing = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        operator_image,
        "-c",
        "ls /src 2>&1; ls /venv/lib/python3*/site-packages | grep -c valkey_operator",
    ).stdout
    assert "No such file" in listing


def test_image_prints_its_version_as_a_non_root_user(operator_image: str) -> None:
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "valkey-operator", operator_image, "version")
    assert out.stdout.strip() == __version__
    assert (
        podman("run", "--rm", "--network", "none", "--entrypoint", "id", operator_image, "-u").stdout.strip() == "10001"
    )


def test_image_runs_the_operator_against_the_control_plane(operator_image: str) -> None:
    from e2e.controlplane import LocalCluster

    with tempfile.TemporaryDirectory(prefix="image-plane-") as tmp, LocalCluster(Path(tmp)) as cluster:
        assert cluster.bins is not None
        kubectl = [str(cluster.bins / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
        subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
        wait_established(kubectl, ["valkeyclusters.valkeyops.dev"])
        # The container reads the kubeconfig and its client certificate from a read-only mount.
        Path(tmp).chmod(0o755)
        for f in ("admin.key", "admin.kubeconfig"):
            (Path(tmp) / f).chmod(0o644)
        name = f"vo-{uuid.uuid4().hex[:6]}"
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-v",
            f"{tmp}:{tmp}:ro",
            "-e",
            f"KUBECONFIG={cluster.kubeconfig}",
            operator_image,
            "--namespace",
            "default",
            "--standalone",
            "--metrics-port",
            "0",
            "--health-port",
            "18089",
        )
        try:
            body = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
            subprocess.run(
                [*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(body), text=True, check=True, capture_output=True
            )
            deadline = time.monotonic() + 120
            phase = ""
            while time.monotonic() < deadline and not phase:
                phase = subprocess.run(
                    [*kubectl, "get", "vkc", "cache", "-o", "jsonpath={.status.phase}"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                time.sleep(1)
            logs = podman("logs", name).stdout + podman("logs", name).stderr
            assert phase in {"Provisioning", "Rotating"}, logs
            assert "reconciled default/cache" in logs
            secrets = subprocess.run([*kubectl, "get", "secret", "cache-tls"], capture_output=True, check=False)
            assert secrets.returncode == 0
        finally:
            podman("rm", "-f", name, check=False)
