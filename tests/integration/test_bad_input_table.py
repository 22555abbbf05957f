"""About a hundred ways to get a ValkeyCluster wrong, on the real API server with the real operator: each is
stopped where it enters, with a message that names the field, and changes nothing that runs.

Most are refused at admission (the CRD's schema and CEL rules: nothing is stored, so nothing can run).
What only code can judge (a cipher list OpenSSL selects nothing from, a supplied key or signature OpenSSL
refuses) is stopped by the operator's first pass: one condition and one Event, no object written, and no
traceback in the operator's log.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import (
    LOG,
    OperatorThread,
    apply,
    condition,
    events_once_posted,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    wait_until,
    written,
)
from valkey_operator.api.spec import parse_cluster
from valkey_operator.pki.plan import server_requirements

pytestmark = pytest.mark.integration

TLS13 = "ciphersuites must be TLS 1.3 suite names"
DNS = "extraDNSNames must be DNS names"
IP = "extraIPAddresses must be IPv4 or IPv6 addresses"
MATCH = "should match"
EMPTY = "should be at least 1 chars long"
UNSUPPORTED = "Unsupported value"
DURATION = "caDuration must be more than twice duration"
OVERFLOW = "caRotationOverlap"  # Go's duration parser refuses it inside the CEL rule: the error names the field


def tls(**fields: Any) -> dict[str, Any]:
    return {"tls": fields}


def certs(**fields: Any) -> dict[str, Any]:
    return {"tls": {"certificates": fields}}


def spread(**fields: Any) -> dict[str, Any]:
    """One topology spread constraint: a valid one with `fields` changed (None leaves a field out)."""
    base = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", **fields}
    return {"topologySpreadConstraints": [{k: v for k, v in base.items() if v is not None}]}


# (spec, what the API server says). Each names the field it refuses.
ADMISSION: list[tuple[str, dict[str, Any], str]] = [
    # Values that would reach valkey.conf and crash-loop every pod, or inject a line into it.
    ("cipher with a space", tls(ciphers="NOT A CIPHER"), MATCH),
    ("cipher with a newline", tls(ciphers="AES128-SHA\nrequirepass x"), MATCH),
    ("cipher with a quote", tls(ciphers='HIGH"; include /etc/passwd'), MATCH),
    ("empty cipher list", tls(ciphers=""), EMPTY),
    ("cipher list too long", tls(ciphers="A" * 2049), "Too long"),
    ("unknown TLS 1.3 suite", tls(ciphersuites="TLS_NOPE"), TLS13),
    ("one unknown suite among good ones", tls(ciphersuites="TLS_AES_128_GCM_SHA256:bogus"), TLS13),
    ("TLS 1.2 cipher as a suite", tls(ciphersuites="ECDHE-RSA-AES128-GCM-SHA256"), TLS13),
    ("empty suites", tls(ciphersuites=""), EMPTY),
    ("suite with a newline", tls(ciphersuites="TLS_AES_128_GCM_SHA256\nx"), TLS13),
    ("empty image", {"image": ""}, EMPTY),
    ("image with spaces", {"image": "Not An Image"}, MATCH),
    ("image with an argument", {"image": "valkey/valkey:8.1 --port 1"}, MATCH),
    ("image with upper-case path", {"image": "valkey/VALKEY:8.1"}, MATCH),
    ("image with a short digest", {"image": "valkey/valkey@sha256:abc"}, MATCH),
    ("image with a newline", {"image": "valkey/valkey:8.1\nx"}, MATCH),
    ("image pull policy", {"imagePullPolicy": "Sometimes"}, UNSUPPORTED),
    # Resources and storage: quantities, and requests within limits.
    ("cpu limit banana", {"resources": {"limits": {"cpu": "banana"}}}, MATCH),
    ("memory request lots", {"resources": {"requests": {"memory": "lots"}}}, MATCH),
    (
        "memory request above limit",
        {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
        "requests may not exceed resources.limits",
    ),
    (
        "cpu request above limit",
        {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
        "requests may not exceed resources.limits",
    ),
    ("too many limits", {"resources": {"limits": {f"example.com/r{i}": "1" for i in range(17)}}}, "at most 16"),
    ("cpu limit x", {"resources": {"limits": {"cpu": "x"}}}, MATCH),
    ("negative cpu limit", {"resources": {"limits": {"cpu": "-1"}}}, MATCH),
    ("negative memory request", {"resources": {"requests": {"memory": "-1Gi"}}}, MATCH),
    ("resource named banana", {"resources": {"limits": {"banana": "1"}}}, "resources may name only"),
    ("resource with a space", {"resources": {"requests": {"my cpu": "1"}}}, "resources may name only"),
    ("negative volume size", {"persistence": {"enabled": True, "size": "-1Gi"}}, MATCH),
    ("zero volume size", {"persistence": {"enabled": True, "size": "0"}}, "persistence.size must be more than 0"),
    ("volume size lots", {"persistence": {"enabled": True, "size": "lots"}}, MATCH),
    ("volume size with a space", {"persistence": {"enabled": True, "size": "1 Gi"}}, MATCH),
    ("empty storage class", {"persistence": {"storageClassName": ""}}, EMPTY),
    ("storage class with a space", {"persistence": {"storageClassName": "Fast SSD"}}, MATCH),
    # Issuers.
    ("empty issuer secret", tls(issuer={"type": "CA", "secretName": ""}), EMPTY),
    ("issuer secret not a name", tls(issuer={"type": "External", "secretName": "My_Secret"}), MATCH),
    ("CA without a secret", tls(issuer={"type": "CA"}), "secretName is required"),
    ("External without a secret", tls(issuer={"type": "External"}), "secretName is required"),
    ("cert-manager without issuerRef", tls(issuer={"type": "CertManager"}), "issuerRef is required"),
    ("cert-manager issuerRef without name", tls(issuer={"type": "CertManager", "issuerRef": {"name": ""}}), EMPTY),
    ("issuer type", tls(issuer={"type": "Vault"}), UNSUPPORTED),
    (
        "clients with an External issuer",
        tls(issuer={"type": "External", "secretName": "x"}, clients=[{"name": "app"}]),
        "client certificates cannot",
    ),
    # Names in the certificate.
    ("DNS name with a space", certs(extraDNSNames=["bad name.example.com"]), DNS),
    ("empty DNS name", certs(extraDNSNames=[""]), DNS),
    ("DNS name of 300 characters", certs(extraDNSNames=["a" * 300]), "Too long"),
    ("DNS label of 64 characters", certs(extraDNSNames=["a" * 64 + ".example.com"]), DNS),
    ("wildcard in the middle", certs(extraDNSNames=["foo.*.example.com"]), DNS),
    ("non-ASCII DNS name", certs(extraDNSNames=["bücher.example.com"]), DNS),
    ("upper-case DNS name", certs(extraDNSNames=["Cache.Example.com"]), DNS),
    ("DNS name ending in a dot-dash", certs(extraDNSNames=["cache-.example.com"]), DNS),
    ("65 DNS names", certs(extraDNSNames=[f"n{i}.example.com" for i in range(65)]), "at most 64"),
    ("IP address out of range", certs(extraIPAddresses=["10.0.0.300"]), IP),
    ("IP address that is a word", certs(extraIPAddresses=["not-an-ip"]), IP),
    ("IP network instead of address", certs(extraIPAddresses=["10.0.0.0/8"]), IP),
    ("empty IP address", certs(extraIPAddresses=[""]), IP),
    # Clients.
    ("client named connection", tls(clients=[{"name": "connection"}]), "taken by the connection Secret"),
    ("client name of 64 characters", tls(clients=[{"name": "a" * 64}]), "Too long"),
    ("client name with an underscore", tls(clients=[{"name": "Bad_Name"}]), MATCH),
    ("client without a name", tls(clients=[{}]), "Required value"),
    ("33 clients", tls(clients=[{"name": f"c{i}"} for i in range(33)]), "at most 32"),
    ("duplicate clients", tls(clients=[{"name": "app"}, {"name": "app"}]), "Duplicate value"),
    # Lifetimes: a policy that cannot hold.
    ("CA not twice a leaf (re-issue storm)", certs(duration="8760h", caDuration="17000h"), DURATION),
    ("CA shorter than a leaf", certs(duration="9000h", caDuration="8000h"), DURATION),
    ("duration in words", certs(duration="90 days"), MATCH),
    (
        "renewBefore beyond duration",
        certs(duration="100h", renewBefore="200h", warnBefore="50h"),
        "renewBefore must be shorter than duration",
    ),
    (
        "warnBefore beyond duration",
        certs(duration="100h", renewBefore="50h", warnBefore="150h"),
        "warnBefore must be shorter than duration",
    ),
    ("duration under an hour", certs(duration="30m", renewBefore="10m", warnBefore="5m"), "at least 1h"),
    ("key algorithm too weak", certs(keyAlgorithm="RSA-1024"), UNSUPPORTED),
    ("CA overlap longer than the CA", certs(caRotationOverlap="90000h"), "caRotationOverlap must be shorter"),
    ("CA overlap beyond any duration", certs(caRotationOverlap="99999999999999h"), OVERFLOW),
    # Failover and write safety.
    ("failover after 500ms", {"failover": {"after": "500ms"}}, "between 1s and 10m"),
    ("failover after 11m", {"failover": {"after": "11m"}}, "between 1s and 10m"),
    ("failover after soon", {"failover": {"after": "soon"}}, MATCH),
    (
        "minReplicasToWrite as many as pods",
        {"replicas": 3, "replication": {"minReplicasToWrite": 3}},
        "minReplicasToWrite must be smaller",
    ),
    (
        "minReplicasToWrite in standalone",
        {"mode": "standalone", "replication": {"minReplicasToWrite": 1}},
        "minReplicasToWrite must be smaller",
    ),
    ("maxLagSeconds zero", {"replication": {"maxLagSeconds": 0}}, "greater than or equal to 1"),
    # Topology and enums.
    ("no replicas", {"replicas": 0}, "greater than or equal to 1"),
    ("too many replicas", {"replicas": 101}, "less than or equal to 100"),
    ("unknown mode", {"mode": "sharded"}, UNSUPPORTED),
    ("standalone with replicas", {"mode": "standalone", "replicas": 3}, "replicas must be 1"),
    ("cluster with two shards", {"mode": "cluster", "shards": 2}, "shards must be at least 3"),
    ("eleven replicas per shard", {"mode": "cluster", "replicasPerShard": 11}, "less than or equal to 10"),
    ("negative replicas per shard", {"mode": "cluster", "replicasPerShard": -1}, "greater than or equal to 0"),
    ("TLS mode on", tls(mode="on"), UNSUPPORTED),
    ("client auth sometimes", tls(clientAuth="sometimes"), UNSUPPORTED),
    ("TLS 1.1", tls(protocols=["TLSv1.1"]), UNSUPPORTED),
    ("no TLS protocol", tls(protocols=[]), "at least 1 items"),
    ("rotation strategy", tls(rotation={"strategy": "Now"}), UNSUPPORTED),
    ("replicas as a word", {"replicas": "three"}, "must be of type integer"),
    # Pod placement: a wrong constraint would be refused only with the StatefulSet, after the other objects.
    ("spread with maxSkew 0", spread(maxSkew=0), "greater than or equal to 1"),
    ("spread without a topology key", spread(topologyKey=None), "Required value"),
    ("spread topology key with a space", spread(topologyKey="kubernetes io/hostname"), MATCH),
    ("spread when unsatisfiable sometimes", spread(whenUnsatisfiable="Sometimes"), UNSUPPORTED),
    (
        "spread selector operator maybe",
        spread(labelSelector={"matchExpressions": [{"key": "a", "operator": "Maybe"}]}),
        UNSUPPORTED,
    ),
    ("spread minDomains 0", spread(minDomains=0, whenUnsatisfiable="DoNotSchedule"), "greater than or equal to 1"),
    ("spread node taints policy", spread(nodeTaintsPolicy="Sometimes"), UNSUPPORTED),
]

# (metadata.name, what the API server says): every derived name must fit Kubernetes' limits.
NAMES = [
    ("1cache", "starts with a letter"),
    ("cache.v2", "starts with a letter"),
    ("c" * 53, "at most 52 characters"),
    ("cache-", "RFC 1123"),  # Kubernetes' own rule for every object name comes first
]


def refused(namespace: str, name: str, spec: dict[str, Any], message: str) -> None:
    body = {"apiVersion": "valkeyops.dev/v1alpha1", "kind": "ValkeyCluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip
    out = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body), check=False)
    assert out.returncode != 0, f"accepted: {spec}"
    assert message in out.stderr, out.stderr
    # Nothing was stored, so nothing can run: no resource, no object the operator would derive from it.
    assert kubectl("get", "valkeycluster", name, "-n", namespace, check=False).returncode != 0
    assert kubectl("get", "all,secrets,configmaps", "-n", namespace, "-o", "name").stdout.split() in (
        [],
        ["secret/default-token"],
        ["configmap/kube-root-ca.crt"],
    )


@pytest.mark.parametrize(("case", "spec", "message"), ADMISSION, ids=[c[0] for c in ADMISSION])
def test_refused_at_admission(crd: None, namespace: str, case: str, spec: dict[str, Any], message: str) -> None:
    refused(namespace, "cache", spec, message)


@pytest.mark.parametrize(("name", "message"), NAMES)
def test_names_that_would_not_fit_are_refused(crd: None, namespace: str, name: str, message: str) -> None:
    refused(namespace, name, {}, message)


def test_the_longest_name_that_fits_is_accepted_and_every_derived_name_is_valid(crd: None, namespace: str) -> None:
    # Server-side dry run of every object the operator would create: the API server checks each name.
    name = "c" * 52
    body = example_body(namespace, name=name)
    apply(body)
    from valkey_operator.render import render_documents

    rendered = render_documents([body])
    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rendered), check=False)
    assert out.returncode == 0, out.stderr


# --- what only the operator can judge -----------------------------------------------------------------
def stopped_by_the_operator(
    namespace: str, body: dict[str, Any], kind: str, reason: str, fresh: bool = True
) -> dict[str, Any]:
    apply(body)
    name = body["metadata"]["name"]

    def said() -> dict[str, Any] | None:
        cond = condition(get_vkc(namespace, name), kind)
        return cond if cond.get("reason") == reason else None

    cond: dict[str, Any] = wait_until(said, what=f"{kind} reason {reason}")
    events = events_once_posted(namespace, f"involvedObject.name={name}", reason)
    assert events.count(reason) == 1, events
    if fresh:  # a new cluster: nothing of it was made, not even a Secret
        made = kubectl("get", "statefulsets,services,configmaps,secrets,poddisruptionbudgets", "-n", namespace,
                       "-l", f"app.kubernetes.io/instance={name}", "-o", "name").stdout.split()  # fmt: skip
        assert made == [], made
    assert LOG.tracebacks(namespace) == []
    return cond


def test_a_full_spread_constraint_is_accepted_and_reaches_a_valid_statefulset(crd: None, namespace: str) -> None:
    # The typed schema keeps every field a pod spec's constraint has (none is pruned on the way).
    constraint = {
        "maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 2, "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore",
        "matchLabelKeys": ["pod-template-hash"],
        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "cache"},
                          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]},
    }  # fmt: skip
    body = example_body(namespace)
    body["spec"]["topologySpreadConstraints"] = [constraint]
    apply(body)
    assert get_vkc(namespace)["spec"]["topologySpreadConstraints"] == [constraint]
    from valkey_operator.render import render_documents

    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(render_documents([body])),
                  check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_a_cipher_list_openssl_selects_nothing_from(operator: OperatorThread, namespace: str) -> None:
    body = example_body(namespace)
    body["spec"]["tls"] = {"ciphers": "NOT-A-CIPHER"}
    cond = stopped_by_the_operator(namespace, body, "Ready", "InvalidCiphers")
    assert "spec.tls.ciphers" in cond["message"]
    # Nothing of the cluster was written: not even its Secrets.
    assert kubectl("get", "secret", "cache-tls", "-n", namespace, check=False).returncode != 0


def _external(namespace: str, cert: bytes, key: bytes, ca: bytes) -> dict[str, Any]:
    data = {"tls.crt": cert, "tls.key": key, "ca.crt": ca}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-certs", "namespace": namespace},
              "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
    body = example_body(namespace)
    body["spec"]["tls"] = {"issuer": {"type": "External", "secretName": "my-certs"}}
    return body


def _openssl_leaf(namespace: str, *args: str) -> tuple[bytes, bytes]:
    """A self-signed leaf for the example's names, made by OpenSSL's own tool (cryptography refuses weak ones)."""
    names = server_requirements(parse_cluster(example_body(namespace))).dns_names
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["openssl", "req", "-x509", "-nodes", "-days", "30", "-subj", "/CN=cache", *args,
             "-keyout", f"{tmp}/k.pem", "-out", f"{tmp}/c.pem",
             "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names),
             "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return Path(tmp, "c.pem").read_bytes(), Path(tmp, "k.pem").read_bytes()


@pytest.mark.parametrize(
    ("case", "args", "reason"),
    [
        ("a 1024-bit RSA key", ["-newkey", "rsa:1024", "-sha256"], "WeakKey"),
        ("a SHA-1 signature", ["-newkey", "rsa:2048", "-sha1"], "WeakSignature"),
    ],
)
def test_supplied_certificates_openssl_would_refuse(
    operator: OperatorThread, namespace: str, case: str, args: list[str], reason: str
) -> None:
    cert, key = _openssl_leaf(namespace, *args)
    body = _external(namespace, cert, key, cert)
    cond = stopped_by_the_operator(namespace, body, "CertificatesReady", reason)
    assert "OpenSSL refuses" in cond["message"]


def test_a_bad_cipher_list_on_a_running_cluster_changes_nothing_that_runs(
    operator: OperatorThread, namespace: str
) -> None:
    apply(example_body(namespace))
    wait_until(lambda: kubectl("get", "statefulset", "cache", "-n", namespace, check=False).returncode == 0,
               what="the StatefulSet")  # fmt: skip

    def versions() -> dict[str, str]:
        found = kubectl_json("get", "statefulset,configmap,secret,service", "-n", namespace,
                             "-l", "app.kubernetes.io/instance=cache")["items"]  # fmt: skip
        return {f"{o['kind']}/{o['metadata']['name']}": written(o) for o in found}

    wait_until(lambda: get_vkc(namespace).get("status", {}).get("certificates"), what="a first full pass")
    before = versions()
    body = example_body(namespace)
    body["spec"]["tls"] = {"ciphers": "NOT-A-CIPHER"}
    stopped = stopped_by_the_operator(namespace, body, "Ready", "InvalidCiphers", fresh=False)
    assert "OpenSSL knows no cipher" in stopped["message"]
    assert versions() == before  # no object of the cluster was written, so no pod rolls
