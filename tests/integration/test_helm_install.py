"""`helm install` on a fresh control plane, then the operator running with the chart's ServiceAccount
token (not the admin kubeconfig): the real authorizer proves the chart's RBAC sufficient, and `can-i`
that it is no wider than needed. Also helm upgrade, helm uninstall keeping the CRD, and /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.procs import wait_established

from tests.integration.conftest import ROOT, example_body, wait_until

pytestmark = pytest.mark.integration
CHART = ROOT / "charts" / "valkey-operator"
RELEASE, NS = "vo", "valkey-system"
SA = f"system:serviceaccount:{NS}:{RELEASE}-valkey-operator"
CONTRACT_METRICS = [
    "valkey_operator_certificate_expiration_timestamp_seconds",
    "valkey_operator_certificate_not_before_timestamp_seconds",
    "valkey_operator_certificate_renewal_timestamp_seconds",
    "valkey_operator_certificate_ready_status",
    "valkey_operator_certificate_rotations_total",
    "valkey_operator_cluster_ready",
    "valkey_operator_reconcile_duration_seconds",
    "valkey_operator_reconcile_errors_total",
]


class Plane:
    """A fresh control plane of this module's own, so the chart installs the CRD itself."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.bins: Path = cluster.bins
        self.admin = str(cluster.kubeconfig)

    def run(
        self, tool: str, *args: str, kubeconfig: str | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bins / tool), f"--kubeconfig={kubeconfig or self.admin}", *args]
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
        return out

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, **kw)


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    from e2e.controlplane import LocalCluster

    with tempfile.TemporaryDirectory(prefix="helm-plane-") as tmp, LocalCluster(Path(tmp)) as cluster:
        yield Plane(cluster)


def token_kubeconfig(plane: Plane, path: Path, release: str = RELEASE) -> Path:
    token = plane.kubectl("create", "token", f"{release}-valkey-operator", "-n", NS, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(Path(plane.admin).read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class Operator:
    def __init__(self, kubeconfig: Path, log: Path, *args: str, standalone: bool = True) -> None:
        from tests.integration.test_run_command import free_port

        self.metrics_port, self.log = free_port(), log
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "VALKEY_OPERATOR_TIMER_INTERVAL": "2"}
        cli = Path(sys.executable).parent / "valkey-operator"
        self.proc = subprocess.Popen(
            [
                str(cli),
                "run",
                *([] if standalone else ["--leader-election"]),
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(free_port()),
                *args,
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def forbidden(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "status=403" in line or "orbidden" in line]


def vkc(plane: Plane, ns: str) -> dict[str, Any]:
    out = plane.kubectl("get", "valkeycluster", "cache", "-n", ns, "-o", "yaml", check=False)
    return yaml.safe_load(out.stdout) if out.returncode == 0 else {}


def certificates_ready(plane: Plane, ns: str) -> bool:
    conds = vkc(plane, ns).get("status", {}).get("conditions", [])
    return any(c["type"] == "CertificatesReady" and c["status"] == "True" for c in conds)


def test_helm_install_and_the_operator_with_the_charts_rbac(plane: Plane, tmp_path: Path) -> None:
    plane.helm("install", RELEASE, str(CHART), "-n", NS, "--create-namespace")
    crd = yaml.safe_load(plane.kubectl("get", "crd", "valkeyclusters.valkeyops.dev", "-o", "yaml").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The rendered manifests are valid for this Kubernetes: the real API server took every one.
    wait_established([str(plane.bins / "kubectl"), f"--kubeconfig={plane.admin}"], ["valkeyclusters.valkeyops.dev"])
    wait_until(lambda: plane.kubectl("explain", "valkeycluster", check=False).returncode == 0, what="OpenAPI")

    # Minimal: what the operator never needs, it cannot do.
    for verb, resource in [
        ("delete", "secrets"),
        ("update", "secrets"),
        ("create", "pods"),
        ("delete", "statefulsets"),
        ("create", "clusterrolebindings"),
        ("get", "nodes"),
        ("delete", "valkeyclusters"),
    ]:
        out = plane.kubectl("auth", "can-i", verb, resource, "-A", f"--as={SA}", check=False)
        assert out.stdout.strip() == "no", (verb, resource)
    assert plane.kubectl("auth", "can-i", "patch", "valkeyclusters/status", "-A", f"--as={SA}").stdout.strip() == "yes"
    # The passes read the owned kinds, Secrets included, from watches the API server filters by label.
    for verb in ("list", "watch"):
        assert plane.kubectl("auth", "can-i", verb, "secrets", "-A", f"--as={SA}").stdout.strip() == "yes"
    # Issuer CertManager: its Certificates deleted when no longer asked for, and their Issuing condition set.
    # (A SubjectAccessReview: `kubectl auth can-i` says no for a kind the API server does not serve.)
    for verb, subresource in [("delete", ""), ("patch", "status")]:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": SA,
                "resourceAttributes": {
                    "group": "cert-manager.io",
                    "resource": "certificates",
                    "subresource": subresource,
                    "verb": verb,
                    "namespace": "apps",
                },
            },
        }
        out = plane.kubectl("create", "-f", "-", "-o", "jsonpath={.status.allowed}", stdin=yaml.safe_dump(review))
        assert out.stdout.strip() == "true", (verb, subresource, out.stdout)

    kubeconfig = token_kubeconfig(plane, tmp_path / "sa.kubeconfig")
    plane.kubectl("create", "namespace", "apps")
    op = Operator(kubeconfig, tmp_path / "operator.log", "--all-namespaces")
    try:
        plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(example_body("apps")))
        wait_until(lambda: certificates_ready(plane, "apps"), timeout=90, what="reconcile with the SA token")
        for kind, name in [
            ("secret", "cache-tls"),
            ("secret", "cache-connection"),
            ("statefulset", "cache"),
            ("service", "cache-ro"),
            ("poddisruptionbudget", "cache"),
            ("configmap", "cache-config"),
        ]:
            plane.kubectl("get", kind, name, "-n", "apps")
        plane.kubectl("annotate", "valkeycluster", "cache", "-n", "apps", "valkeyops.dev/rotate-certificates=now")
        wait_until(lambda: 'reason="manual"' in op.metrics(), what="a rotation in the metrics")
        text = op.metrics()
        for name in CONTRACT_METRICS:
            assert f"# TYPE {name} " in text, name
        for name in CONTRACT_METRICS[:4]:
            assert f'{name}{{certificate="server",cluster="cache",namespace="apps"}}' in text, name
        assert 'valkey_operator_cluster_ready{cluster="cache",namespace="apps"}' in text
        assert 'certificate="client/app"' in text
        assert op.forbidden() == [], op.forbidden()
    finally:
        op.stop()

    # helm upgrade: watch only "apps"; the Role there is enough for the operator.
    plane.helm("upgrade", RELEASE, str(CHART), "-n", NS, "--set", "watchNamespaces={apps}", "--set", "logLevel=debug")
    roles = plane.kubectl("get", "role", "-n", "apps", "-o", "name").stdout
    assert f"role.rbac.authorization.k8s.io/{RELEASE}-valkey-operator" in roles
    assert (
        plane.kubectl("auth", "can-i", "get", "secrets", "-n", "default", f"--as={SA}", check=False).stdout.strip()
        == "no"
    )
    op = Operator(kubeconfig, tmp_path / "operator-ns.log", "--namespace", "apps")
    try:
        body = example_body("apps", name="second")
        plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))
        wait_until(
            lambda: plane.kubectl("get", "secret", "second-tls", "-n", "apps", check=False).returncode == 0,
            timeout=90,
            what="reconcile with namespaced RBAC",
        )
        assert op.forbidden() == [], op.forbidden()
    finally:
        op.stop()

    # helm uninstall keeps the CRD (crds.keep) and so every ValkeyCluster.
    plane.helm("uninstall", RELEASE, "-n", NS)
    plane.kubectl("get", "crd", "valkeyclusters.valkeyops.dev")
    assert vkc(plane, "apps")["metadata"]["name"] == "cache"
    assert plane.kubectl("get", "clusterrole", f"{RELEASE}-valkey-operator", check=False).returncode != 0


def test_two_replicas_elect_one_active_operator_through_kopf_peering(plane: Plane, tmp_path: Path) -> None:
    plane.helm(
        "install",
        "ha",
        str(CHART),
        "-n",
        NS,
        "--create-namespace",
        "--set",
        "crds.enabled=false",
        "-f",
        str(CHART / "ci" / "ha-values.yaml"),
    )
    plane.kubectl("apply", "-f", str(ROOT / "crds"))  # whether or not an earlier release kept it
    wait_established([str(plane.bins / "kubectl"), f"--kubeconfig={plane.admin}"], ["valkeyclusters.valkeyops.dev"])
    kubeconfig = token_kubeconfig(plane, tmp_path / "ha.kubeconfig", "ha")
    high = Operator(kubeconfig, tmp_path / "high.log", "--all-namespaces", "--priority=20", standalone=False)
    low: Operator | None = None
    try:
        plane.kubectl("create", "namespace", "ha-apps")
        plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(example_body("ha-apps")))
        wait_until(lambda: certificates_ready(plane, "ha-apps"), timeout=90, what="the active peer to reconcile")
        # The operator made its peering object itself (the chart's CRDs, the operator's object: no hook race).
        plane.kubectl("get", "clusterkopfpeering", "valkey-tls-operator")
        # A second replica joins: kopf starts it paused until it has seen its peers.
        low = Operator(kubeconfig, tmp_path / "low.log", "--all-namespaces", "--priority=10", standalone=False)
        wait_until(lambda: "Initial authentication has finished" in low.log.read_text(), what="the second replica")
        assert "reconciled ha-apps/cache" in high.log.read_text()
        # The lower peer stays paused while the higher one lives...
        start = len(high.log.read_text().splitlines())
        wait_until(lambda: len(high.log.read_text().splitlines()) > start + 3, what="more passes by the active peer")
        assert "reconciled ha-apps/cache" not in low.log.read_text()
        # ...and takes over when it goes.
        high.stop()
        plane.kubectl("annotate", "valkeycluster", "cache", "-n", "ha-apps", "touched=1")
        wait_until(lambda: "reconciled ha-apps/cache" in low.log.read_text(), timeout=150, what="the takeover")
        # A higher peer comes back: the serving one pauses, and no pass of it starts from then on (its timer
        # runs every 2 s here)...
        high = Operator(kubeconfig, tmp_path / "high2.log", "--all-namespaces", "--priority=20", standalone=False)
        wait_until(
            lambda: "kopf paused this replica" in low.log.read_text(), timeout=90, what="the serving peer to pause"
        )
        plane.kubectl("annotate", "valkeycluster", "cache", "-n", "ha-apps", "touched=2", "--overwrite")
        wait_until(
            lambda: "reconciled ha-apps/cache" in high.log.read_text(), timeout=90, what="the higher peer's pass"
        )
        served = low.log.read_text().count("reconciled ha-apps/cache")
        more = high.log.read_text().count("reconciled ha-apps/cache") + 3
        wait_until(
            lambda: high.log.read_text().count("reconciled ha-apps/cache") >= more, what="the higher peer's timer"
        )
        assert low.log.read_text().count("reconciled ha-apps/cache") == served
        # ...until the higher one goes again: the listing after the pause admits the cluster anew (no event
        # of the cluster itself comes).
        high.stop()
        resumed_from = len(low.log.read_text())
        wait_until(
            lambda: "reconciled ha-apps/cache" in low.log.read_text()[resumed_from:], timeout=150, what="the resumption"
        )
        assert low.forbidden() == []
        assert high.forbidden() == []
    finally:
        if low is not None:
            low.stop()
        high.stop()
        plane.helm("uninstall", "ha", "-n", NS, check=False)


@pytest.mark.parametrize("values", sorted((CHART / "ci").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_values_file_renders_manifests_the_api_server_accepts(plane: Plane, values: Path) -> None:
    """Server-side dry run: the pinned release's own schema validation, for every object of every values file.

    ServiceMonitor and PrometheusRule need the Prometheus Operator's CRDs, which no registry here provides:
    their rules are checked by promtool instead (tests/chart).
    """
    out = plane.helm("template", "dry", str(CHART), "-n", NS, "-f", str(values)).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] not in {"ServiceMonitor", "PrometheusRule"}]
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        plane.kubectl("create", "namespace", ns, check=False)
    # Kinds defined by a CRD of the same render (the kopf peering objects) need that CRD to exist first.
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    if crds:
        plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
        wait_established(
            [str(plane.bins / "kubectl"), f"--kubeconfig={plane.admin}"], [c["metadata"]["name"] for c in crds]
        )
    applied = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert applied.stdout.count("(server dry run)") == len(docs)
