"""helm lint/template for every values file, the CRD copy, RBAC against the declared needs, the schema,
and the alert rules through promtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, find, helm, render
from valkey_operator import __version__
from valkey_operator.cli import crd_helm_template, crd_yaml
from valkey_operator.k8s.client import CLUSTER_PERMISSIONS, NAMESPACE_OBSERVER_PERMISSIONS, NAMESPACED_PERMISSIONS

EXPIRY = "valkey_operator_certificate_expiration_timestamp_seconds"
WARNING = "valkey_operator_certificate_warning_timestamp_seconds"
FAILOVERS = "valkey_operator_failovers_total"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


@pytest.mark.parametrize("values", VALUES_FILES, ids=[v.stem for v in VALUES_FILES])
def test_lint_and_template_are_clean(bins: Path, values: Path) -> None:
    out = helm(bins, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in out.stdout
    docs = render(bins, "-f", str(values))
    assert find(docs, "Deployment")


def test_committed_chart_crd_is_generated() -> None:
    assert (CHART / "templates" / "crd.yaml").read_text() == crd_helm_template()


def test_rendered_crd_is_byte_for_byte_the_crds_folder(bins: Path) -> None:
    out = helm(
        bins, "template", "vo", str(CHART), "--set", "crds.keep=false", "--show-only", "templates/crd.yaml"
    ).stdout

    def body(text: str) -> str:  # without helm's "---"/"# Source:" lines and the generator's comment
        return "\n".join(line for line in text.splitlines() if line != "---" and not line.startswith("# ")) + "\n"

    committed = (ROOT / "crds" / "valkeyclusters.valkeyops.dev.yaml").read_text()
    assert body(out) == body(committed)
    assert committed == crd_yaml()


def test_crd_keep_and_enabled(bins: Path) -> None:
    (crd,) = find(render(bins), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert not find(render(bins, "--set", "crds.enabled=false"), "CustomResourceDefinition")


def test_all_namespaces_rbac_equals_the_declared_needs(bins: Path) -> None:
    docs = render(bins)
    (role,) = find(docs, "ClusterRole")
    assert rule_set(role["rules"]) == rule_set(CLUSTER_PERMISSIONS + NAMESPACED_PERMISSIONS)
    assert not find(docs, "Role")
    args = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args


def test_watched_namespaces_get_roles_and_the_cluster_role_keeps_only_cluster_wide_needs(bins: Path) -> None:
    docs = render(bins, "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    (cluster_role,) = find(docs, "ClusterRole")
    assert rule_set(cluster_role["rules"]) == rule_set(CLUSTER_PERMISSIONS + NAMESPACE_OBSERVER_PERMISSIONS)
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rule_set(role["rules"]) == rule_set(NAMESPACED_PERMISSIONS)
    assert len(find(docs, "RoleBinding")) == 2
    args = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--log-format=json" in args


def test_deployment_is_hardened_with_probes_on_the_health_port(bins: Path) -> None:
    (dep,) = find(render(bins), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["image"] == f"valkey-tls-operator:{__version__}"
    assert "--leader-election" not in c["args"]  # one replica: no peering to wait for


def test_ha_values_enable_peering(bins: Path) -> None:
    docs = render(bins, "-f", str(CHART / "ci" / "ha-values.yaml"))
    (dep,) = find(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert "--leader-election" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    names = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names
    # Each peer is known by its pod's name (kopf reads POD_ID), never by a passwd lookup of runAsUser.
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env


@pytest.mark.parametrize(
    "bad", ["typo=1", "logLevel=verbose", "image.pullPolicy=Sometimes", "metrics.service.enabld=true"]
)
def test_schema_refuses_typos_and_bad_values(bins: Path, bad: str) -> None:
    out = helm(bins, "template", "vo", str(CHART), "--set", bad, check=False)
    assert out.returncode != 0
    assert "schema" in out.stderr


FREE_FORM = {"resources", "podSecurityContext", "securityContext", "affinity", "nodeSelector", "tolerations"}


def test_every_value_has_a_comment() -> None:
    """Each key has a comment line above it, except inside free-form Kubernetes objects given as defaults."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while path and path[-1][0] >= indent:
            path.pop()
        key = stripped.split(":", 1)[0]
        if not any(name in FREE_FORM for _, name in path):
            above = lines[i - 1].strip()
            assert above.startswith("#") or above.endswith(":"), f"values.yaml line {i + 1} has no comment: {line}"
        path.append((indent, key))


def rules_file(bins: Path, tmp_path: Path) -> Path:
    docs = render(bins, "-f", str(CHART / "ci" / "monitoring-values.yaml"))
    (rule,) = find(docs, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_alert_rules_pass_promtool_check(bins: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(bins / "promtool"), "check", "rules", str(rules_file(bins, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 rules found" in out.stdout


def expect(at: str, alert: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    """One promtool expectation: exactly this alert firing at `at`, with these labels and annotations."""
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description}}],
    }


def test_alert_rules_fire_as_the_contract_says(bins: Path, tmp_path: Path) -> None:
    rules = rules_file(bins, tmp_path)
    day = 86400
    # promtool's clock starts at 0. Each certificate warns at its own cluster's warnBefore: c expires in 30
    # days with the default 45-day warnBefore (warns), d also in 30 days but with warnBefore 10 days (does
    # not warn yet), and e's CA at 600 s has expired by the 20th minute (critical, no longer "expiring soon").
    fixture = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": EXPIRY + '{namespace="a",cluster="c",certificate="server"}',
                        "values": f"{30 * day}x60",
                    },
                    {
                        "series": WARNING + '{namespace="a",cluster="c",certificate="server"}',
                        "values": f"{(30 - 45) * day}x60",
                    },
                    {
                        "series": EXPIRY + '{namespace="a",cluster="d",certificate="server"}',
                        "values": f"{30 * day}x60",
                    },
                    {
                        "series": WARNING + '{namespace="a",cluster="d",certificate="server"}',
                        "values": f"{(30 - 10) * day}x60",
                    },
                    {
                        "series": EXPIRY + '{namespace="a",cluster="e",certificate="ca"}',
                        "values": "600x60",
                    },
                    {
                        "series": WARNING + '{namespace="a",cluster="e",certificate="ca"}',
                        "values": f"{600 - 45 * day}x60",
                    },
                    {"series": 'valkey_operator_cluster_ready{namespace="a",cluster="c"}', "values": "0x60"},
                    {
                        "series": 'valkey_operator_reconcile_errors_total{handler="timer",reason="ApiException"}',
                        "values": "0+1x60",
                    },
                    # f loses its primary every ten minutes; g once; h hands over in every rollout.
                    {
                        "series": FAILOVERS + '{namespace="a",cluster="f",reason="primary-lost"}',
                        "values": "0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 2 2 2 2 2 2 2 2 2 2 3 3 3 3 3 3 3 3 3 3 3",
                    },
                    {"series": FAILOVERS + '{namespace="a",cluster="g",reason="primary-lost"}', "values": "0 1x40"},
                    {"series": FAILOVERS + '{namespace="a",cluster="h",reason="switchover"}', "values": "0+1x40"},
                ],
                "alert_rule_test": [
                    expect(
                        "20m",
                        "ValkeyCertificateExpiringSoon",
                        {"severity": "warning", "namespace": "a", "cluster": "c", "certificate": "server"},
                        "Certificate server of ValkeyCluster a/c has passed its warnBefore and expires soon",
                        "The operator renews certificates before this; check the ValkeyCluster's "
                        "CertificatesReady condition and its Events.",
                    ),
                    expect(
                        "20m",
                        "ValkeyCertificateExpired",
                        {"severity": "critical", "namespace": "a", "cluster": "e", "certificate": "ca"},
                        "Certificate ca of ValkeyCluster a/e has expired",
                        "Clients and replicas can no longer connect with it. Check the issuer and the operator's logs.",
                    ),
                    expect(
                        "20m",
                        "ValkeyClusterNotReady",
                        {"severity": "warning", "namespace": "a", "cluster": "c"},
                        "ValkeyCluster a/c is not ready",
                        "kubectl get valkeycluster shows its phase; its conditions say why.",
                    ),
                    expect(
                        "35m",
                        "ValkeyRepeatedFailovers",
                        {"severity": "warning", "namespace": "a", "cluster": "f"},
                        "ValkeyCluster a/f lost its primary 3 times in an hour",
                        "Each failover may lose the writes not yet replicated. Look at the pods' restarts, OOM kills "
                        "and nodes, and the ValkeyCluster's FailedOver Events.",
                    ),
                    {"eval_time": "15m", "alertname": "ValkeyRepeatedFailovers", "exp_alerts": []},
                    expect(
                        "30m",
                        "ValkeyOperatorReconcileErrors",
                        {"severity": "warning", "handler": "timer", "reason": "ApiException"},
                        "The Valkey operator's timer passes fail (ApiException)",
                        "Read the operator's logs.",
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(json.dumps(fixture))
    out = subprocess.run(
        [str(bins / "promtool"), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
