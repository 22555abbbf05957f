"""cert-manager's real controller for the tests: built from e2e/certmanager (the controller packages of the
github.com/cert-manager/cert-manager module, see e2e/build-cert-manager.sh; cached), its CRDs applied without
a conversion webhook, the controller run as a process against a control plane's kubeconfig."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from e2e.procs import wait_established

HERE = Path(__file__).resolve().parent
CRDS = ("certificaterequests", "certificates", "clusterissuers", "issuers")
# The namespace of the Secrets a ClusterIssuer names (its CA), as cert-manager's --cluster-resource-namespace.
CLUSTER_RESOURCES = "cert-manager"


def build() -> Path:
    """The folder with `cert-manager-controller` and `crds/`, building them first if needed."""
    out = subprocess.run(
        ["bash", str(HERE / "build-cert-manager.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


@contextlib.contextmanager
def running(kubectl: str, kubeconfig: Path, log: IO[str]) -> Iterator[subprocess.Popen[bytes]]:
    """cert-manager's CRDs installed and its controller running until the block ends (`kubectl`: the
    kubectl binary, run against `kubeconfig`)."""

    def run(*args: str, check: bool = True) -> int:
        out = subprocess.run(
            [kubectl, f"--kubeconfig={kubeconfig}", *args], check=False, capture_output=True, text=True, timeout=120
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {out.stdout}{out.stderr}")
        return out.returncode

    folder = build()
    run("apply", "--server-side", "-f", str(folder / "crds"))
    wait_established([kubectl, f"--kubeconfig={kubeconfig}"], [f"{crd}.cert-manager.io" for crd in CRDS])
    if run("get", "namespace", CLUSTER_RESOURCES, check=False) != 0:
        run("create", "namespace", CLUSTER_RESOURCES)
    proc = subprocess.Popen(
        [
            str(folder / "cert-manager-controller"),
            f"--kubeconfig={kubeconfig}",
            f"--cluster-resource-namespace={CLUSTER_RESOURCES}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"cert-manager-controller exited at once ({proc.returncode}); see {log.name}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
