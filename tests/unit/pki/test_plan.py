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
from valkey_operator.pki.plan import (
    CONNECTION_CLIENT,
    NEXT_CRT,
    NEXT_KEY,
    Material,
    Observed,
    SecretData,
    plan,
    server_requirements,
)
from valkey_operator.pki.validate import issued_by


def written(m: Material, rollout_complete: bool = True, ca: SecretData | None = None) -> Observed:
    """What the Secrets hold after the operator wrote `m` (the next pass reads this)."""

    def tls(pair: Any, annotations: Any = None) -> SecretData:
        return SecretData(
            {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": m.bundle}, dict(annotations or {})
        )

    def ca_secret() -> SecretData | None:
        if m.ca is None:
            return ca
        data = dict(tls(m.ca, m.ca_annotations).data)
        if m.next_ca is not None:
            data |= {NEXT_CRT: m.next_ca.cert_pem, NEXT_KEY: m.next_ca.key_pem}
        return SecretData(data, dict(m.ca_annotations))

    return Observed(
        ca=ca_secret(),
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


def phase_of(m: Material) -> str | None:
    return m.ca_annotations.get(names.ANN_CA_ROTATION_PHASE)


def step(cluster: ValkeyCluster, m: Material, rolled: bool, at: timedelta) -> tuple[Material, Any]:
    result = plan(cluster, written(m, rollout_complete=rolled), NOW + at)
    assert result.material is not None, result.problems
    return result.material, result.rotations


def test_rotate_ca_in_three_phases_each_reaching_every_pod_before_the_next() -> None:
    m = first(example())
    assert m.ca is not None
    cluster = annotated(example(), **{names.ANN_ROTATE_CA: "1"})
    hour = timedelta(hours=1)
    # 1. Trusting: every Secret trusts old and new CA; servers and clients keep their old-CA certificates
    #    (a client holding the old ca.crt still verifies them), and pods roll for the new bundle.
    t1, rotations = step(cluster, m, True, 0 * hour)
    assert phase_of(t1) == "Trusting"
    assert ("ca", renewal.MANUAL) in {(r.certificate, r.reason) for r in rotations}
    assert t1.ca == m.ca
    assert t1.next_ca is not None
    assert t1.next_ca != m.ca
    assert [b.strip() for b in split_pem(t1.bundle)] == [m.ca.cert_pem.strip(), t1.next_ca.cert_pem.strip()]
    assert (t1.server, t1.clients) == (m.server, m.clients)
    assert t1.revision == m.revision + 1
    # Rolled, but the overlap (24h) has not passed; or it has, but the pods have not rolled: no change.
    for rolled, at in ((True, 1 * hour), (False, 25 * hour)):
        again, rotations = step(cluster, t1, rolled, at)
        assert (phase_of(again), again.server, again.revision, rotations) == ("Trusting", t1.server, t1.revision, ())
    # 2. Reissuing: every pod has the new bundle and the overlap passed: leaves come from the new CA.
    r1, rotations = step(cluster, t1, True, 25 * hour)
    assert phase_of(r1) == "Reissuing"
    assert r1.ca == t1.next_ca
    assert r1.next_ca is None
    assert issued_by(r1.server.cert_pem, t1.next_ca.cert_pem)
    assert all(issued_by(c.cert_pem, t1.next_ca.cert_pem) for c in r1.clients.values())
    assert {r.reason for r in rotations} == {renewal.CA}
    assert r1.bundle == t1.bundle  # the same trust: under HotReload the new leaves reload in place
    assert r1.revision == t1.revision + 1
    for rolled, at in ((False, 50 * hour), (True, 26 * hour)):
        # Not rolled yet; or rolled, but clients have not had the overlap to pick up their new certificates.
        again, _ = step(cluster, r1, rolled, at)
        assert (phase_of(again), len(split_pem(again.bundle))) == ("Reissuing", 2)
    # 3. Retiring: every pod serves a new-CA certificate: the old CA leaves the bundle, pods roll once more.
    d1, rotations = step(cluster, r1, True, 50 * hour)
    assert phase_of(d1) == "Retiring"
    assert split_pem(d1.bundle) == [t1.next_ca.cert_pem.strip() + b"\n"]
    assert names.ANN_RETIRING_CA not in d1.ca_annotations
    assert d1.revision == r1.revision + 1
    assert rotations == ()
    # ...and when that roll is done, the rotation is over; the annotation is not acted on twice.
    done, rotations = step(cluster, d1, True, 51 * hour)
    assert (phase_of(done), done.revision, rotations) == (None, d1.revision, ())
    assert names.ANN_CA_ROTATION_SINCE not in done.ca_annotations


def test_the_overlap_is_the_specs() -> None:
    m = first(example())
    body = example_body()
    body["spec"]["tls"]["certificates"] = {"caRotationOverlap": "10m"}
    body["metadata"]["annotations"] = {names.ANN_ROTATE_CA: "1"}
    cluster = parse_cluster(body)
    t1, _ = step(cluster, m, True, timedelta(0))
    early, _ = step(cluster, t1, True, timedelta(minutes=9))
    late, _ = step(cluster, t1, True, timedelta(minutes=11))
    assert (phase_of(early), phase_of(late)) == ("Trusting", "Reissuing")


def test_a_ca_rotation_finishes_without_client_certificates() -> None:
    """clientAuth none: the connection Secret carries no leaf; the rotation must not wait for one."""
    base = example(tls={"clientAuth": "none"})
    m = first(base)
    body = example_body(tls={"clientAuth": "none"})
    body["metadata"]["annotations"] = {names.ANN_ROTATE_CA: "1"}
    cluster = parse_cluster(body)
    hour = timedelta(hours=1)
    t1, _ = step(cluster, m, True, 0 * hour)
    r1, _ = step(cluster, t1, True, 25 * hour)
    d1, _ = step(cluster, r1, True, 50 * hour)
    done, _ = step(cluster, d1, True, 51 * hour)
    assert [phase_of(x) for x in (t1, r1, d1, done)] == ["Trusting", "Reissuing", "Retiring", None]


def test_a_rotation_an_older_version_began_goes_on_from_reissuing() -> None:
    """Two CAs in the bundle and no phase recorded (the single-phase rotation of earlier versions): the
    phase is stamped now, so the overlap runs from here and the rotation ends."""
    m = first(example())
    assert m.ca is not None
    new = plan(annotated(example(), **{names.ANN_ROTATE_CA: "1"}), written(m), NOW).material
    assert new is not None
    assert new.next_ca is not None
    legacy = Material(
        bundle=new.next_ca.cert_pem + m.ca.cert_pem,
        server=m.server,
        revision=m.revision,
        server_annotations=m.server_annotations,
        ca=new.next_ca,
        ca_annotations={},
        clients=m.clients,
    )
    cluster = example()
    r1, _ = step(cluster, legacy, True, timedelta(0))
    assert phase_of(r1) == "Reissuing"
    assert names.ANN_CA_ROTATION_SINCE in r1.ca_annotations
    d1, _ = step(cluster, r1, True, timedelta(hours=25))
    assert phase_of(d1) == "Retiring"


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


dns = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?\.example\.com", fullmatch=True)


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
