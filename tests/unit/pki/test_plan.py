"""The certificate plan over several passes: first issue, keep, scheduled and manual rotation, CA rotation,
External and CA issuers, and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import NOW, example, example_body
from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster, parse_cluster
from valkey_operator.pki import renewal
from valkey_operator.pki.inspect import describe_pem, split_pem
from valkey_operator.pki.issue import LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material, Observed, SecretData, plan, server_requirements
from valkey_operator.pki.validate import issued_by


def written(m: Material, rollout_complete: bool = True, ca: SecretData | None = None) -> Observed:
    """What the Secrets hold after the operator wrote `m` (the next pass reads this)."""

    def tls(pair: Any, annotations: Any = None) -> SecretData:
        return SecretData(
            {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": m.bundle}, dict(annotations or {})
        )

    return Observed(
        ca=tls(m.ca, m.ca_annotations) if m.ca else ca,
        server=tls(m.server, m.server_annotations),
        clients={name: tls(pair) for name, pair in m.clients.items()},
        rollout_complete=rollout_complete,
    )


def annotated(cluster: ValkeyCluster, **annotations: str) -> ValkeyCluster:
    body = example_body()
    body["metadata"]["annotations"] = annotations
    return parse_cluster(body)


def first(cluster: ValkeyCluster) -> Material:
    result = plan(cluster, Observed(), NOW)
    assert result.problems == ()
    assert result.material is not None
    return result.material


def test_first_pass_issues_ca_server_clients_and_connection_certificate() -> None:
    cluster = example()
    m = first(cluster)
    assert m.revision == 1
    assert m.ca is not None
    assert set(m.clients) == {"app", CONNECTION_CLIENT}
    assert issued_by(m.server.cert_pem, m.ca.cert_pem)
    info = describe_pem(m.server.cert_pem)
    assert set(server_requirements(cluster).dns_names) <= set(info.dns_names)
    assert info.server_auth
    assert info.client_auth
    assert plan(cluster, Observed(), NOW).rotations == ()


def test_no_connection_certificate_without_client_auth() -> None:
    assert CONNECTION_CLIENT not in first(example(tls={"clientAuth": "none"})).clients


def test_second_pass_keeps_everything() -> None:
    cluster = example()
    m = first(cluster)
    again = plan(cluster, written(m), NOW + timedelta(days=1))
    assert again.rotations == ()
    assert again.material is not None
    assert again.material.server == m.server
    assert again.material.clients == m.clients
    assert again.material.ca == m.ca
    assert again.material.bundle == m.bundle
    assert again.material.revision == 1


def test_renewal_time_reissues_leaves_and_bumps_the_revision() -> None:
    cluster = example()
    m = first(cluster)
    later = plan(cluster, written(m), NOW + timedelta(days=31))
    assert later.material is not None
    assert later.material.server != m.server
    assert later.material.revision == 2
    assert later.material.ca == m.ca
    assert {(r.certificate, r.reason) for r in later.rotations} == {
        ("server", renewal.SCHEDULED),
        ("client/app", renewal.SCHEDULED),
        (f"client/{CONNECTION_CLIENT}", renewal.SCHEDULED),
    }


def test_rotate_annotation_reissues_once() -> None:
    m = first(example())
    cluster = annotated(example(), **{names.ANN_ROTATE_CERTIFICATES: "2026-06-01"})
    rotated = plan(cluster, written(m), NOW)
    assert rotated.material is not None
    assert {r.reason for r in rotated.rotations} == {renewal.MANUAL}
    assert rotated.material.revision == 2
    assert rotated.material.server_annotations[names.ANN_HANDLED_ROTATE_CERTIFICATES] == "2026-06-01"
    again = plan(cluster, written(rotated.material), NOW)
    assert again.rotations == ()
    assert again.material is not None
    assert again.material.revision == 2


def test_rotate_ca_bundles_old_and_new_then_drops_the_old_when_everyone_uses_the_new() -> None:
    m = first(example())
    assert m.ca is not None
    cluster = annotated(example(), **{names.ANN_ROTATE_CA: "1"})
    step1 = plan(cluster, written(m), NOW)
    assert step1.material is not None
    new_ca = step1.material.ca
    assert new_ca is not None
    assert new_ca != m.ca
    bundle = split_pem(step1.material.bundle)
    assert len(bundle) == 2
    assert bundle[0].strip() == new_ca.cert_pem.strip()
    assert issued_by(step1.material.server.cert_pem, new_ca.cert_pem)
    assert ("ca", renewal.MANUAL) in {(r.certificate, r.reason) for r in step1.rotations}
    assert step1.material.ca_annotations[names.ANN_RETIRING_CA]
    # Pods have not rolled yet: the old CA stays.
    step2 = plan(cluster, written(step1.material, rollout_complete=False), NOW)
    assert step2.material is not None
    assert len(split_pem(step2.material.bundle)) == 2
    assert step2.material.revision == step1.material.revision
    # Every pod and Secret uses the new CA: the old one leaves, and pods roll once more.
    step3 = plan(cluster, written(step2.material, rollout_complete=True), NOW)
    assert step3.material is not None
    assert split_pem(step3.material.bundle) == [new_ca.cert_pem.strip() + b"\n"]
    assert names.ANN_RETIRING_CA not in step3.material.ca_annotations
    assert step3.material.revision == step2.material.revision + 1
    assert step3.rotations == ()


def test_a_broken_owned_ca_is_replaced_at_once() -> None:
    m = first(example())
    broken = written(m)
    assert broken.ca is not None
    obs = Observed(
        ca=SecretData({"tls.crt": broken.ca.data["tls.crt"]}, {}), server=broken.server, clients=broken.clients
    )
    result = plan(example(), obs, NOW)
    assert result.material is not None
    assert ("ca", renewal.INVALID) in {(r.certificate, r.reason) for r in result.rotations}
    assert len(split_pem(result.material.bundle)) == 1


def external(secret: dict[str, bytes] | None) -> tuple[ValkeyCluster, Observed]:
    body = example_body()
    body["spec"]["tls"] = {"issuer": {"type": "External", "secretName": "mine"}}
    cluster = parse_cluster(body)
    return cluster, Observed(issuer=SecretData(secret) if secret is not None else None)


def test_external_valid_secret_is_copied() -> None:
    cluster, _ = external({})
    ca = mint_ca("ext", NOW - timedelta(days=1), timedelta(days=365))
    leaf = issue_leaf(ca, LeafRequest("x", server_requirements(cluster).dns_names), NOW)
    _, obs = external({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem})
    result = plan(cluster, obs, NOW)
    assert result.problems == ()
    assert result.material is not None
    assert result.material.server == leaf
    assert result.material.bundle == ca.cert_pem
    assert result.material.ca is None


def test_external_problems_give_no_material() -> None:
    cluster, obs = external(None)
    assert [p.reason for p in plan(cluster, obs, NOW).problems] == ["ExternalSecretNotFound"]
    ca = mint_ca("ext", NOW - timedelta(days=1), timedelta(days=365))
    short = issue_leaf(ca, LeafRequest("x", ("only.this",)), NOW)
    _, obs = external({"tls.crt": short.cert_pem, "tls.key": short.key_pem, "ca.crt": ca.cert_pem})
    result = plan(cluster, obs, NOW)
    assert result.material is None
    assert [p.reason for p in result.problems] == ["CertificateMissingNames"]


def test_ca_issuer_signs_with_the_users_ca_and_refuses_a_ca_without_key() -> None:
    body = example_body()
    body["spec"]["tls"]["issuer"] = {"type": "CA", "secretName": "my-ca"}
    cluster = parse_cluster(body)
    ca = mint_ca("user", NOW - timedelta(days=1), timedelta(days=365))
    result = plan(cluster, Observed(issuer=SecretData({"tls.crt": ca.cert_pem, "tls.key": ca.key_pem})), NOW)
    assert result.material is not None
    assert issued_by(result.material.server.cert_pem, ca.cert_pem)
    assert result.material.ca is None
    refused = plan(cluster, Observed(issuer=SecretData({"tls.crt": ca.cert_pem})), NOW)
    assert [p.reason for p in refused.problems] == ["CAPrivateKeyMissing"]
    assert [p.reason for p in plan(cluster, Observed(), NOW).problems] == ["IssuerSecretNotFound"]


def test_cert_manager_is_refused_clearly() -> None:
    body = example_body()
    body["spec"]["tls"]["issuer"] = {"type": "CertManager", "issuerRef": {"name": "letsencrypt"}}
    result = plan(parse_cluster(body), Observed(), NOW)
    assert [p.reason for p in result.problems] == ["IssuerNotSupported"]


dns = st.from_regex(r"[a-z][a-z0-9-]{0,15}\.example\.com", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(dns, max_size=5, unique=True), st.integers(min_value=1, max_value=7))
def test_extra_names_and_every_pod_end_up_in_the_server_certificate(extra: list[str], replicas: int) -> None:
    body = example_body(replicas=replicas)
    body["spec"]["tls"]["certificates"] = {"extraDNSNames": extra}
    cluster = parse_cluster(body)
    info = describe_pem(first(cluster).server.cert_pem)
    assert set(extra) <= set(info.dns_names)
    for pod in cluster.names.pods(replicas):
        assert cluster.names.pod_fqdn(pod) in info.dns_names
