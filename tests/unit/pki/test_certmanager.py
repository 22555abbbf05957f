"""Issuer CertManager, the pure part: what cert-manager says, what it issued, checked, and the phases of a
CA change behind the issuer. The certificates here are real ones (minted, signed); the cert-manager
objects are the shapes its controllers write (the integration tests run the real controller)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.conftest import example
from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.certificates import certificate_manifests, private_key
from valkey_operator.clock import iso
from valkey_operator.pki import certmanager
from valkey_operator.pki.certmanager import CertManagerObserved
from valkey_operator.pki.inspect import describe_pem, split_pem
from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.plan import Observed, SecretData, plan, wanted_certificates
from valkey_operator.pki.validate import issued_by

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
REF = {"name": "company-ca", "kind": "ClusterIssuer"}


def cm_cluster(**tls: Any) -> ValkeyCluster:
    return example(tls={"issuer": {"type": "CertManager", "issuerRef": REF}, "clients": [{"name": "app"}], **tls})


def ready(generation: int = 1, status: str = "True", reason: str = "Ready", message: str = "ok") -> dict[str, Any]:
    condition = {"type": "Ready", "status": status, "reason": reason, "message": message}
    return {
        "metadata": {"generation": generation},
        "status": {"conditions": [{**condition, "observedGeneration": generation}]},
    }


def issue_all(cluster: ValkeyCluster, ca: KeyPair, now: datetime = NOW) -> dict[str, dict[str, bytes]]:
    """What cert-manager's CA issuer writes for each Certificate: tls.crt, tls.key, ca.crt."""
    out = {}
    for want in wanted_certificates(cluster):
        server = want.role == certmanager.SERVER
        request = LeafRequest(
            common_name=want.common_name,
            dns_names=want.requirements.dns_names,
            server=server,
            client=True,
        )
        pair = issue_leaf(ca, request, now)
        out[want.secret] = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.cert_pem}
    return out


def unready_certificate(since: datetime, failed: str = "") -> dict[str, Any]:
    """A Certificate as cert-manager leaves it while issuing (since `since`), or after a failed issuance."""
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "Issuing" if not failed else "Failed",
        "message": failed if failed else "Issuing certificate as Secret does not exist",
        "observedGeneration": 1,
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    issuing = {**ready, "type": "Issuing", "status": "False" if failed else "True"}
    status: dict[str, Any] = {"conditions": [ready, issuing]}
    if failed:
        status |= {"lastFailureTime": ready["lastTransitionTime"], "failedIssuanceAttempts": 1}
    return {"metadata": {"generation": 1}, "status": status}


def observed(cluster: ValkeyCluster, issued: dict[str, dict[str, bytes]], **kw: Any) -> CertManagerObserved:
    fields: dict[str, Any] = {
        "installed": True,
        "issuer": ready(),
        "certificates": {w.certificate: ready() for w in wanted_certificates(cluster)},
        "issued": issued,
    }
    return CertManagerObserved(**{**fields, **kw})


CA1 = mint_ca("company CA 1", NOW - timedelta(days=100), timedelta(days=3650))
CA2 = mint_ca("company CA 2", NOW - timedelta(days=1), timedelta(days=3650))


def test_the_certificates_ask_for_what_the_operator_would_issue() -> None:
    cluster = example(
        auth={"enabled": True},
        tls={
            "issuer": {"type": "CertManager", "issuerRef": REF},
            "clients": [{"name": "app", "acl": "+get"}],
            "clientAuth": "required",
        },
    )
    manifests = {m["metadata"]["name"]: m for m in certificate_manifests(cluster)}
    assert sorted(manifests) == ["cache-client-app", "cache-connection", "cache-server"]
    server = manifests["cache-server"]["spec"]
    assert server["secretName"] == "cache-issued-server"
    assert "commonName" not in server  # its DNS names name it (a CN is at most 64 bytes)
    assert server["dnsNames"] == list(wanted_certificates(cluster)[0].requirements.dns_names)
    assert server["issuerRef"] == {"name": "company-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert server["usages"] == ["digital signature", "server auth", "client auth"]
    assert server["duration"] == f"{int(cluster.spec.tls.certificates.duration.total_seconds())}s"
    app = manifests["cache-client-app"]["spec"]
    assert app["commonName"] == "app@cache.default"  # the ACL user the certificate logs in as
    assert app["usages"] == ["digital signature", "client auth"]
    assert "dnsNames" not in app
    assert manifests["cache-server"]["metadata"]["labels"] == names.labels("cache", names.COMPONENT_TLS)
    # The Secrets cert-manager writes are labelled as cert-manager's for this cluster (the operator's Secrets
    # watch holds them), never as the operator's own: they outlive the cluster.
    for manifest in manifests.values():
        labels = manifest["spec"]["secretTemplate"]["labels"]
        assert labels == names.issued_labels("cache")
        assert labels[names.MANAGED_BY_LABEL] != names.MANAGER
    assert certificate_manifests(example()) == []


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("ECDSA-P256", {"algorithm": "ECDSA", "size": 256}),
        ("ECDSA-P384", {"algorithm": "ECDSA", "size": 384}),
        ("RSA-3072", {"algorithm": "RSA", "size": 3072}),
        ("Ed25519", {"algorithm": "Ed25519"}),
    ],
)
def test_private_key_follows_key_algorithm(algorithm: str, key: dict[str, Any]) -> None:
    assert private_key(algorithm) == {**key, "rotationPolicy": "Always", "encoding": "PKCS8"}


def refused(cluster: ValkeyCluster, cm: CertManagerObserved) -> list[tuple[str, str]]:
    result = plan(cluster, Observed(cert_manager=cm), NOW)
    assert result.material is None
    return [(p.reason, p.message) for p in result.problems]


def test_what_cert_manager_says_becomes_the_reason() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    [(reason, message)] = refused(cluster, CertManagerObserved(installed=False))
    assert reason == "CertManagerNotInstalled"
    assert "certificates.cert-manager.io" in message
    [(reason, message)] = refused(cluster, observed(cluster, issued, issuer=None))
    assert (reason, message) == (
        "IssuerNotFound",
        "cert-manager ClusterIssuer company-ca (spec.tls.issuer.issuerRef) was not found: create it.",
    )
    not_ready = ready(status="False", reason="ErrGetKeyPair", message='secret "ca" not found')
    [(reason, message)] = refused(cluster, observed(cluster, issued, issuer=not_ready))
    assert reason == "IssuerNotReady"
    assert 'ErrGetKeyPair: secret "ca" not found' in message
    cm = observed(cluster, issued)
    # cert-manager at work on the server's Certificate (and no copy to keep): held, said, not a failure.
    issuing = {**cm.certificates, "cache-server": unready_certificate(NOW - timedelta(minutes=1))}
    [(reason, message)] = refused(cluster, observed(cluster, issued, certificates=issuing))
    assert (reason, message) == (
        "CertificateIssuing",
        "cert-manager is issuing Certificate cache-server (Issuing: Issuing certificate as Secret does not exist).",
    )
    # Under way for longer than STUCK_AFTER: not ready, in cert-manager's words.
    stuck = {**cm.certificates, "cache-server": unready_certificate(NOW - timedelta(minutes=11))}
    [(reason, message)] = refused(cluster, observed(cluster, issued, certificates=stuck))
    assert (reason, message) == (
        "CertificateNotReady",
        "Certificate cache-server is not ready after 11 minutes (Issuing: Issuing certificate as Secret does not "
        "exist).",
    )
    # An issuance cert-manager says failed.
    failed = {**cm.certificates, "cache-server": unready_certificate(NOW, failed="signing failed: CA expired")}
    [(reason, message)] = refused(cluster, observed(cluster, issued, certificates=failed))
    assert (reason, message) == (
        "CertificateNotReady",
        "cert-manager failed to issue Certificate cache-server (signing failed: CA expired).",
    )
    # Ready for an older spec (cert-manager has not looked at the new one yet) is not ready.
    old = {**cm.certificates, "cache-server": {**ready(generation=1), "metadata": {"generation": 2}}}
    [(reason, _)] = refused(cluster, observed(cluster, issued, certificates=old))
    assert reason == "CertificateIssuing"
    # Applied in this very pass: what cert-manager issued is for the spec before. A client without a copy
    # waits for its certificate (its Secret and ACL user with it); the rest goes on.
    result = plan(cluster, Observed(cert_manager=observed(cluster, issued, stale=("cache-client-app",))), NOW)
    assert result.material is not None
    assert "app" not in result.material.clients
    [problem] = result.unready
    assert (problem.reason, "cache-client-app" in problem.message) == ("CertificateIssuing", True)
    # The connection's without one holds the pass: its Secret would lose the certificate applications use.
    [(reason, _)] = refused(cluster, observed(cluster, issued, stale=("cache-connection",)))
    assert reason == "CertificateIssuing"
    # An issuer of another group (an external issuer) is not read: its Certificates say the rest.
    assert plan(
        cluster, Observed(cert_manager=observed(cluster, issued, issuer=None, issuer_checked=False)), NOW
    ).material


def test_an_issued_certificate_that_fails_the_checks_reaches_no_secret() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    # cert-manager wrote a server certificate without the pods' names (an issuer that drops SANs).
    short = issue_leaf(CA1, LeafRequest(common_name="cache", dns_names=("cache.default.svc",)), NOW)
    broken = {
        **issued,
        "cache-issued-server": {"tls.crt": short.cert_pem, "tls.key": short.key_pem, "ca.crt": CA1.cert_pem},
    }
    [(reason, message)] = refused(cluster, observed(cluster, broken))
    assert reason == "IssuedCertificateInvalid"
    assert "cache-issued-server" in message
    # A key that is not the certificate's.
    other = issue_leaf(CA1, LeafRequest(common_name="x", server=False), NOW)
    swapped = {**issued, "cache-issued-client-app": {**issued["cache-issued-client-app"], "tls.key": other.key_pem}}
    result = plan(cluster, Observed(cert_manager=observed(cluster, swapped)), NOW)
    assert result.material is not None
    assert "app" not in result.material.clients
    assert [p.reason for p in result.unready] == ["IssuedCertificateInvalid"]
    # A client whose ACL user the CN must name.
    acl = cm_cluster(clients=[{"name": "app", "acl": "+get"}])
    wrong_cn = issue_leaf(CA1, LeafRequest(common_name="cache-app", server=False), NOW)
    named = {
        **issue_all(acl, CA1),
        "cache-issued-client-app": {"tls.crt": wrong_cn.cert_pem, "tls.key": wrong_cn.key_pem, "ca.crt": CA1.cert_pem},
    }
    result = plan(example(auth={"enabled": True}, tls=acl_tls()), Observed(cert_manager=observed(acl, named)), NOW)
    assert result.material is not None
    assert "app" not in result.material.clients
    [problem] = result.unready
    assert (problem.reason, "app@cache.default" in problem.message) == ("IssuedCertificateInvalid", True)


def acl_tls() -> dict[str, Any]:
    return {"issuer": {"type": "CertManager", "issuerRef": REF}, "clients": [{"name": "app", "acl": "+get"}]}


def test_what_cert_manager_issued_is_copied_and_a_renewal_is_a_new_revision() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    first = plan(cluster, Observed(cert_manager=observed(cluster, issued)), NOW).material
    assert first is not None
    assert first.server.cert_pem == issued["cache-issued-server"]["tls.crt"]
    assert first.clients["app"].cert_pem == issued["cache-issued-client-app"]["tls.crt"]
    assert first.bundle == CA1.cert_pem
    assert first.revision == 1
    held = Observed(
        server=SecretData(
            {"tls.crt": first.server.cert_pem, "tls.key": first.server.key_pem, "ca.crt": first.bundle},
            dict(first.server_annotations),
        ),
        clients={
            "app": SecretData(
                {
                    "tls.crt": first.clients["app"].cert_pem,
                    "tls.key": first.clients["app"].key_pem,
                    "ca.crt": first.bundle,
                }
            )
        },
        cert_manager=observed(cluster, issued),
    )
    same = plan(cluster, held, NOW)
    assert same.material is not None
    assert (same.material.revision, same.rotations) == (1, ())
    renewed = issue_all(cluster, CA1, NOW + timedelta(days=60))
    result = plan(
        cluster,
        Observed(server=held.server, clients=held.clients, cert_manager=observed(cluster, renewed)),
        NOW + timedelta(days=60),
    )
    assert result.material is not None
    assert result.material.server.cert_pem == renewed["cache-issued-server"]["tls.crt"]
    assert result.material.revision == 2
    assert sorted((r.certificate, r.reason) for r in result.rotations) == [
        ("client/app", "scheduled"),
        ("server", "scheduled"),
    ]


def secrets_from(material: Any) -> tuple[SecretData, dict[str, SecretData]]:
    server = SecretData(
        {"tls.crt": material.server.cert_pem, "tls.key": material.server.key_pem, "ca.crt": material.bundle},
        dict(material.server_annotations),
    )
    clients = {
        c: SecretData({"tls.crt": p.cert_pem, "tls.key": p.key_pem, "ca.crt": material.bundle})
        for c, p in material.clients.items()
    }
    return server, clients


def copied(cluster: ValkeyCluster) -> tuple[Any, SecretData, dict[str, SecretData]]:
    """The first issue from CA1, and the operator's Secrets holding it."""
    first = plan(cluster, Observed(cert_manager=observed(cluster, issue_all(cluster, CA1))), NOW).material
    assert first is not None
    server, clients = secrets_from(first)
    return first, server, clients


def test_a_ca_change_behind_the_issuer_is_trusted_first_then_used_then_the_old_ca_leaves() -> None:
    """The issuer's CA is replaced and cert-manager re-issues from the new one: the pods first trust both
    CAs and keep serving the old certificates (Trusting), then serve the new ones (Reissuing), then drop the
    old CA (Retiring), each phase for caRotationOverlap and only once every pod runs the last one."""
    cluster = cm_cluster()
    overlap = cluster.spec.tls.certificates.ca_rotation_overlap
    first, server, clients = copied(cluster)
    renewed = issue_all(cluster, CA2)
    cm = observed(cluster, renewed)
    phase = names.ANN_CA_ROTATION_PHASE

    def step(at: datetime, complete: bool = True) -> Any:
        nonlocal server, clients
        result = plan(cluster, Observed(server=server, clients=clients, cert_manager=cm, rollout_complete=complete), at)
        assert result.material is not None, result.problems
        server, clients = secrets_from(result.material)
        return result.material

    trusting = step(NOW)
    assert trusting.server_annotations[phase] == "Trusting"
    assert split_pem(trusting.bundle) == [CA1.cert_pem, CA2.cert_pem]
    assert trusting.server.cert_pem == first.server.cert_pem  # still the old CA's
    assert trusting.revision == first.revision + 1  # the bundle changed: the pods pick it up
    assert step(NOW + overlap, complete=False).server_annotations[phase] == "Trusting"  # pods not all there yet
    reissuing = step(NOW + overlap)
    assert reissuing.server_annotations[phase] == "Reissuing"
    assert issued_by(reissuing.server.cert_pem, CA2.cert_pem)
    assert issued_by(reissuing.clients["app"].cert_pem, CA2.cert_pem)
    assert split_pem(reissuing.bundle) == [CA1.cert_pem, CA2.cert_pem]
    assert step(NOW + overlap + timedelta(minutes=1)).server_annotations[phase] == "Reissuing"  # overlap again
    retiring = step(NOW + 2 * overlap + timedelta(minutes=1))
    assert retiring.server_annotations[phase] == "Retiring"
    assert retiring.bundle == CA2.cert_pem
    done = step(NOW + 2 * overlap + timedelta(minutes=2))
    assert phase not in done.server_annotations
    assert done.bundle == CA2.cert_pem
    assert (
        describe_pem(done.server.cert_pem).fingerprint_sha256
        == describe_pem(renewed["cache-issued-server"]["tls.crt"]).fingerprint_sha256
    )


def test_a_ca_change_takes_the_new_certificate_at_once_where_the_old_one_no_longer_passes() -> None:
    """The old server certificate expired during the change: nothing to keep serving, the new one goes in
    (with both CAs trusted)."""
    cluster = cm_cluster()
    first = plan(
        cluster,
        Observed(cert_manager=observed(cluster, issue_all(cluster, CA1, NOW - timedelta(days=89)))),
        NOW - timedelta(days=89),
    ).material
    assert first is not None
    server, clients = secrets_from(first)
    later = NOW + timedelta(days=2)
    renewed = issue_all(cluster, CA2, later)
    result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, renewed)), later)
    assert result.material is not None
    assert result.material.server.cert_pem == renewed["cache-issued-server"]["tls.crt"]
    assert split_pem(result.material.bundle) == [CA1.cert_pem, CA2.cert_pem]


def test_certificates_cert_manager_renews_at_different_times_still_overlap() -> None:
    """cert-manager renews each Certificate on its own schedule: after the issuer's CA changed, the clients
    were renewed from the new CA, the server only later. The old CA leaves the bundle only once nothing
    chains to it any more, after the new server certificate was served for an overlap, never in the same
    step that brings that certificate."""
    cluster = cm_cluster()
    overlap = cluster.spec.tls.certificates.ca_rotation_overlap
    _, server, clients = copied(cluster)
    mixed = issue_all(cluster, CA2)
    mixed["cache-issued-server"] = issue_all(cluster, CA1)["cache-issued-server"]
    phase = names.ANN_CA_ROTATION_PHASE
    at = NOW

    def step(issued: dict[str, dict[str, bytes]]) -> Any:
        nonlocal server, clients, at
        result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, issued)), at)
        assert result.material is not None, result.problems
        server, clients = secrets_from(result.material)
        at += overlap
        return result.material

    seen = [step(mixed) for _ in range(4)]  # Trusting, Reissuing, Retiring (nothing to drop), done
    assert [m.server_annotations.get(phase) for m in seen] == ["Trusting", "Reissuing", "Retiring", None]
    assert split_pem(seen[-1].bundle) == [CA1.cert_pem, CA2.cert_pem]  # CA1 still signs the server's
    renewed = {**mixed, "cache-issued-server": issue_all(cluster, CA2)["cache-issued-server"]}
    moving = step(renewed)
    assert moving.server_annotations.get(phase) == "Reissuing"
    assert issued_by(moving.server.cert_pem, CA2.cert_pem)
    assert split_pem(moving.bundle) == [CA1.cert_pem, CA2.cert_pem]  # not in the same step
    retiring = step(renewed)
    assert (retiring.server_annotations.get(phase), retiring.bundle) == ("Retiring", CA2.cert_pem)


def test_a_further_ca_change_during_reissuing_is_trusted_first_again() -> None:
    cluster = cm_cluster()
    overlap = cluster.spec.tls.certificates.ca_rotation_overlap
    _, server, clients = copied(cluster)
    for at, ca in ((NOW, CA2), (NOW + overlap, CA2)):
        result = plan(
            cluster,
            Observed(server=server, clients=clients, cert_manager=observed(cluster, issue_all(cluster, ca))),
            at,
        )
        assert result.material is not None
        server, clients = secrets_from(result.material)
    assert server.annotations[names.ANN_CA_ROTATION_PHASE] == "Reissuing"
    ca3 = mint_ca("company CA 3", NOW - timedelta(days=1), timedelta(days=3650))
    result = plan(
        cluster,
        Observed(server=server, clients=clients, cert_manager=observed(cluster, issue_all(cluster, ca3))),
        NOW + 2 * overlap,
    )
    assert result.material is not None
    assert result.material.server_annotations[names.ANN_CA_ROTATION_PHASE] == "Trusting"
    assert result.material.server.cert_pem == server.data["tls.crt"]  # still the CA2 certificate
    assert split_pem(result.material.bundle)[-1] == ca3.cert_pem


def test_an_expired_ca_in_what_cert_manager_wrote_reaches_no_pod() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    expired = mint_ca("old CA", NOW - timedelta(days=400), timedelta(days=30))
    bad = {
        **issued,
        "cache-issued-server": {**issued["cache-issued-server"], "ca.crt": CA1.cert_pem + expired.cert_pem},
    }
    [(reason, _)] = refused(cluster, observed(cluster, bad))
    assert reason == "IssuedCertificateInvalid"


def test_client_names_never_collide_with_the_servers_or_cert_managers_objects() -> None:
    """A client named `server`, and clients `app` and `app-issued`: every Certificate, every Secret
    cert-manager writes and every Secret the operator writes has a name of its own."""
    cluster = cm_cluster(clients=[{"name": "server"}, {"name": "app"}, {"name": "app-issued"}])
    wanted = wanted_certificates(cluster)
    certificates = [w.certificate for w in wanted]
    written = {
        cluster.names.tls_secret,
        cluster.names.connection_secret,
        *(cluster.names.client_secret(c) for c in cluster.spec.tls.clients),
    }
    issued = {w.secret for w in wanted}
    assert len(set(certificates)) == len(certificates)
    assert len(issued) == len(wanted)
    assert not issued & written
    assert len({w.role for w in wanted}) == len(wanted)
    result = plan(cluster, Observed(cert_manager=observed(cluster, issue_all(cluster, CA1))), NOW)
    assert result.material is not None
    assert sorted(result.material.clients) == ["app", "app-issued", "connection", "server"]


def test_with_tls_disabled_the_certificates_are_still_asked_for_and_kept() -> None:
    cluster = example(tls={"mode": "disabled", "issuer": {"type": "CertManager", "issuerRef": REF}})
    assert certificate_manifests(cluster)
    assert plan(cluster, Observed(cert_manager=observed(cluster, issue_all(cluster, CA1))), NOW).material is not None


def test_an_issuer_kind_cert_manager_does_not_have_is_said_so() -> None:
    cluster = example(tls={"issuer": {"type": "CertManager", "issuerRef": {"name": "x", "kind": "Issuers"}}})
    [(reason, message)] = refused(
        cluster, observed(cluster, issue_all(cluster, CA1), issuer=None, issuer_checked=False)
    )
    assert reason == "IssuerNotFound"
    assert "use Issuer or ClusterIssuer" in message


def test_a_switch_to_another_issuer_ends_a_ca_change() -> None:
    server = SecretData(
        {},
        {
            names.ANN_CA_ROTATION_PHASE: "Trusting",
            names.ANN_CA_ROTATION_SINCE: "2026-01-01T00:00:00Z",
            names.ANN_REVISION: "3",
        },
    )
    result = plan(example(), Observed(server=server), NOW)
    assert result.material is not None
    assert names.ANN_CA_ROTATION_PHASE not in result.material.server_annotations
    assert names.ANN_CA_ROTATION_SINCE not in result.material.server_annotations


def test_a_certificate_renewed_late_in_reissuing_gets_its_own_overlap() -> None:
    """Reissuing began with `app` still on the old CA; cert-manager renews it from the new CA just before
    the overlap ends: the old CA stays for a whole overlap after that copy, not a minute."""
    cluster = cm_cluster()
    overlap = cluster.spec.tls.certificates.ca_rotation_overlap
    _, server, clients = copied(cluster)
    late = issue_all(cluster, CA2)
    late["cache-issued-client-app"] = issue_all(cluster, CA1)["cache-issued-client-app"]
    phase = names.ANN_CA_ROTATION_PHASE

    def step(issued: dict[str, dict[str, bytes]], at: datetime) -> Any:
        nonlocal server, clients
        result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, issued)), at)
        assert result.material is not None, result.problems
        server, clients = secrets_from(result.material)
        return result.material

    assert step(late, NOW).server_annotations[phase] == "Trusting"
    assert step(late, NOW + overlap).server_annotations[phase] == "Reissuing"
    renewed = issue_all(cluster, CA2)
    almost = NOW + 2 * overlap - timedelta(minutes=1)
    assert step(renewed, almost).server_annotations[phase] == "Reissuing"  # the app copy is new: overlap again
    kept = step(renewed, NOW + 2 * overlap)
    assert (kept.server_annotations[phase], len(split_pem(kept.bundle))) == ("Reissuing", 2)
    assert step(renewed, almost + overlap).server_annotations[phase] == "Retiring"


def test_the_same_ca_in_other_line_endings_is_no_ca_change() -> None:
    cluster = cm_cluster()
    _, server, clients = copied(cluster)
    issued = issue_all(cluster, CA1)
    crlf = {name: {**data, "ca.crt": data["ca.crt"].replace(b"\n", b"\r\n")} for name, data in issued.items()}
    result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, crlf)), NOW)
    assert result.material is not None
    assert names.ANN_CA_ROTATION_PHASE not in result.material.server_annotations


def test_an_unreadable_phase_keeps_every_ca_until_an_overlap_has_passed() -> None:
    cluster = cm_cluster()
    _, server, clients = copied(cluster)
    # Both CAs trusted, as a hand edit might leave them.
    result = plan(
        cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, issue_all(cluster, CA2))), NOW
    )
    assert result.material is not None
    assert result.material.server_annotations[names.ANN_CA_ROTATION_PHASE] == "Trusting"
    server, clients = secrets_from(result.material)
    edited = SecretData(server.data, {**server.annotations, names.ANN_CA_ROTATION_PHASE: "reissuing"})
    edited.annotations.pop(names.ANN_CA_ROTATION_SINCE)  # type: ignore[attr-defined]
    result = plan(
        cluster, Observed(server=edited, clients=clients, cert_manager=observed(cluster, issue_all(cluster, CA2))), NOW
    )
    assert result.material is not None
    assert result.material.server_annotations[names.ANN_CA_ROTATION_PHASE] == "Reissuing"
    assert result.material.server_annotations[names.ANN_CA_ROTATION_SINCE]
    assert len(split_pem(result.material.bundle)) == 2


def test_a_role_cert_manager_has_not_issued_for_keeps_the_copy_that_still_passes() -> None:
    """A Certificate being changed (a new duration) or failing keeps what the operator's Secrets hold while
    that still passes the checks; the rest goes on, nothing rotates."""
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    first = plan(cluster, Observed(cert_manager=observed(cluster, issued)), NOW).material
    assert first is not None
    server, clients = secrets_from(first)
    cm = observed(cluster, issue_all(cluster, CA1), stale=("cache-server",))  # each one renewed
    failing = {**cm.certificates, "cache-client-app": unready_certificate(NOW, failed="refused")}
    result = plan(
        cluster, Observed(server=server, clients=clients, cert_manager=replace(cm, certificates=failing)), NOW
    )
    assert result.material is not None
    assert result.material.server == first.server
    assert result.material.clients["app"] == first.clients["app"]
    assert result.material.clients["connection"] != first.clients["connection"]  # renewed, and ready
    assert result.material.revision == 1  # the server's Secret is as it was
    assert [(r.certificate, r.reason) for r in result.rotations] == [("client/connection", "scheduled")]
    assert [p.reason for p in result.unready] == ["CertificateNotReady"]  # the failure before the server's
    # The server's copy no longer covers what the spec asks (a scale-up): everything waits.
    bigger = example(
        replicas=4, tls={"issuer": {"type": "CertManager", "issuerRef": REF}, "clients": [{"name": "app"}]}
    )
    held = plan(bigger, Observed(server=server, clients=clients, cert_manager=observed(bigger, issued)), NOW)
    assert held.material is None
    assert [p.reason for p in held.problems] == ["IssuedCertificateInvalid"]


def with_annotations(cluster: ValkeyCluster, **annotations: str) -> ValkeyCluster:
    return replace(cluster, annotations={**cluster.annotations, **annotations})


def test_rotate_certificates_asks_cert_manager_to_issue_every_certificate_once() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    first = plan(cluster, Observed(cert_manager=observed(cluster, issued)), NOW).material
    assert first is not None
    server, clients = secrets_from(first)
    asked = with_annotations(cluster, **{names.ANN_ROTATE_CERTIFICATES: "2026-11-27"})
    cm = observed(cluster, issued)
    # cert-manager left an Issuing condition (False, a failed attempt before) on the client's Certificate:
    # that one is replaced in place; the others get one appended. One already issuing is left to it.
    failed_before = {"type": "Issuing", "status": "False", "reason": "Failed", "message": "x"}
    app = {**ready(), "status": {"conditions": [*ready()["status"]["conditions"], failed_before]}}
    busy = {
        **ready(),
        "status": {"conditions": [*ready()["status"]["conditions"], {"type": "Issuing", "status": "True"}]},
    }
    cm = replace(cm, certificates={**cm.certificates, "cache-client-app": app, "cache-connection": busy})
    result = plan(asked, Observed(server=server, clients=clients, cert_manager=cm), NOW)
    assert result.material is not None
    assert [(r.certificate, r.index) for r in result.reissue] == [("cache-server", None), ("cache-client-app", 1)]
    assert result.material.server_annotations[names.ANN_HANDLED_ROTATE_CERTIFICATES] == "2026-11-27"
    assert result.rotations == ()  # the new certificates are copied when cert-manager has issued them
    handled, _ = secrets_from(result.material)
    again = plan(asked, Observed(server=handled, clients=clients, cert_manager=cm), NOW)
    assert again.reissue == ()


def test_a_ca_change_asks_cert_manager_to_reissue_what_the_old_ca_signed() -> None:
    """cert-manager renewed one certificate from the issuer's new CA: the others, signed by the old CA
    before the change was seen, are asked for at once (not at their own renewal, which would keep the old
    CA in the bundle that long); once re-issued, nothing more is asked."""
    cluster = cm_cluster()
    _, server, clients = copied(cluster)
    later = NOW + timedelta(hours=1)
    mixed = {**issue_all(cluster, CA1), "cache-issued-server": issue_all(cluster, CA2, later)["cache-issued-server"]}
    result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, mixed)), later)
    assert result.material is not None
    assert result.material.server_annotations[names.ANN_CA_ROTATION_PHASE] == "Trusting"
    assert sorted(r.certificate for r in result.reissue) == ["cache-client-app", "cache-connection"]
    assert all("CA changed" in r.why for r in result.reissue)
    # Everything within one second (the certificates' and the phase's clocks count whole seconds): the
    # old CA's certificates are still asked for.
    same_second = {**issue_all(cluster, CA1, later), "cache-issued-server": mixed["cache-issued-server"]}
    quick = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, same_second)), later)
    assert sorted(r.certificate for r in quick.reissue) == ["cache-client-app", "cache-connection"]
    server, clients = secrets_from(result.material)
    redone = issue_all(cluster, CA2, later + timedelta(minutes=1))
    at = later + timedelta(minutes=2)
    again = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, redone)), at)
    assert again.reissue == ()


def _ca(cn: str, signer: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """A CA (a root, or an intermediate under `signer`) as an issuer backed by an intermediate has them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer, signing = (name, key) if signer is None else (signer[0].subject, signer[1])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=3000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(signing, hashes.SHA256())
    )
    return cert, key


def _pair(ca: tuple[Any, Any]) -> KeyPair:
    pkcs8 = serialization.PrivateFormat.PKCS8
    key = ca[1].private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    return KeyPair(ca[0].public_bytes(serialization.Encoding.PEM), key)


def test_an_issuer_with_an_intermediate_is_asked_once_per_certificate_and_a_spec_change_is_no_ca_change() -> None:
    """cert-manager's CA issuer backed by an intermediate writes leaf + intermediate in tls.crt and the root
    in ca.crt: a CA change asks for each old certificate once, and a spec change that makes every
    Certificate stale at once (copies kept) starts no CA change."""
    root1, root2 = _ca("root 1"), _ca("root 2")
    int1, int2 = _pair(_ca("intermediate 1", root1)), _pair(_ca("intermediate 2", root2))
    cluster = cm_cluster()
    wanted = wanted_certificates(cluster)

    def leaf(want: Any, root: tuple[Any, Any], inter: KeyPair, at: datetime) -> dict[str, bytes]:
        request = LeafRequest(
            common_name=want.common_name, dns_names=want.requirements.dns_names, server=not want.role, client=True
        )
        pair = issue_leaf(inter, request, at)
        return {"tls.crt": pair.cert_pem + inter.cert_pem, "tls.key": pair.key_pem, "ca.crt": _pair(root).cert_pem}

    issued = {w.secret: leaf(w, root1, int1, NOW) for w in wanted}
    first = plan(cluster, Observed(cert_manager=observed(cluster, issued)), NOW).material
    assert first is not None
    server, clients = secrets_from(first)
    stale = tuple(w.certificate for w in wanted)  # e.g. a new duration: every Certificate applied again
    result = plan(
        cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, issued, stale=stale)), NOW
    )
    assert result.material is not None
    assert names.ANN_CA_ROTATION_PHASE not in result.material.server_annotations
    assert (result.material.revision, result.reissue) == (1, ())
    # The issuer's CA changed: the server's renewed from it; the others are asked for once.
    t = NOW + timedelta(hours=1)
    issued[wanted[0].secret] = leaf(wanted[0], root2, int2, t)
    asked: list[str] = []
    for _ in range(20):  # bounded: passes a few minutes apart, cert-manager issuing what was asked
        t += timedelta(minutes=3)
        result = plan(cluster, Observed(server=server, clients=clients, cert_manager=observed(cluster, issued)), t)
        assert result.material is not None, result.problems
        for r in result.reissue:
            want = next(w for w in wanted if w.certificate == r.certificate)
            issued[want.secret] = leaf(want, root2, int2, t + timedelta(seconds=5))
        asked += [r.certificate for r in result.reissue]
        server, clients = secrets_from(result.material)
    assert sorted(asked) == ["cache-client-app", "cache-connection"]


def test_a_failed_issuance_is_said_and_not_asked_again() -> None:
    """cert-manager failed to renew (the issuer refused): the certificate it holds is still valid and stays;
    CertificateNotReady says so; the operator does not ask again (cert-manager retries on its backoff)."""
    cluster = cm_cluster()
    first, server, clients = copied(cluster)
    t = NOW + timedelta(hours=1)
    issued = {**issue_all(cluster, CA1), "cache-issued-server": issue_all(cluster, CA2, t)["cache-issued-server"]}
    app = ready()
    app["status"]["conditions"].append({"type": "Issuing", "status": "False", "reason": "Failed", "message": "denied"})
    app["status"] |= {"lastFailureTime": "2026-11-27T13:00:05Z", "failedIssuanceAttempts": 1}
    cm = observed(cluster, issued)
    cm = replace(cm, certificates={**cm.certificates, "cache-client-app": app})
    result = plan(cluster, Observed(server=server, clients=clients, cert_manager=cm), t)
    assert result.material is not None
    assert [r.certificate for r in result.reissue] == ["cache-connection"]
    assert result.material.clients["app"] == first.clients["app"]
    [problem] = result.unready
    assert (problem.reason, problem.message) == (
        "CertificateNotReady",
        "cert-manager failed to issue Certificate cache-client-app (denied).",
    )


def test_how_long_cert_manager_has_been_at_it_is_read_from_the_right_times() -> None:
    cluster = cm_cluster()
    issued = issue_all(cluster, CA1)
    long_ago = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def server_problem(cert: dict[str, Any]) -> tuple[str, str]:
        cm = observed(cluster, issued)
        [(reason, message)] = refused(cluster, replace(cm, certificates={**cm.certificates, "cache-server": cert}))
        return reason, message

    # The spec just changed (generation 2) and cert-manager has not looked yet: Ready, an old transition.
    ready_before = {"type": "Ready", "status": "True", "observedGeneration": 1, "lastTransitionTime": long_ago}
    behind = {"metadata": {"generation": 2}, "status": {"conditions": [ready_before]}}
    assert server_problem(behind)[0] == "CertificateIssuing"
    # ... and still not, 11 minutes after the operator applied that spec (its managedFields entry).
    applied = [{"manager": names.MANAGER, "operation": "Apply", "time": iso(NOW - timedelta(minutes=11))}]
    late = {"metadata": {"generation": 2, "managedFields": applied}, "status": {"conditions": [ready_before]}}
    assert server_problem(late)[0] == "CertificateNotReady"
    # A leftover Issuing False from the last issuance says nothing of now.
    issued_before = {"type": "Issuing", "status": "False", "reason": "Issued", "lastTransitionTime": long_ago}
    mismatch = {"type": "Ready", "status": "False", "reason": "SecretMismatch", "observedGeneration": 2}
    leftover = {"metadata": {"generation": 2}, "status": {"conditions": [mismatch, issued_before]}}
    assert server_problem(leftover)[0] == "CertificateIssuing"
    # A Certificate cert-manager never looked at (its controller down): since its creation.
    never = {"metadata": {"generation": 1, "creationTimestamp": long_ago}}
    reason, message = server_problem(never)
    assert reason == "CertificateNotReady"
    assert "not ready after 43200 minutes" in message
