"""Which certificates to keep, which to (re-)issue, and with what trust bundle: one pure decision.

Input is what the Secrets hold now (decoded), the spec, the clock and whether the last rollout has
finished; output is either the material to write, or the problems that stop everything (bad input
changes nothing that runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from valkey_operator import names
from valkey_operator.api.schema import CA_ROTATION_PHASES
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import parse_iso
from valkey_operator.pki import certmanager, renewal
from valkey_operator.pki.inspect import describe, describe_pem, fingerprint, load_certificates, split_pem
from valkey_operator.pki.issue import KeyPair, LeafRequest, issue_leaf, mint_ca
from valkey_operator.pki.validate import (
    Problem,
    Requirements,
    issued_by,
    validate_bundle,
    validate_ca,
    validate_leaf,
)

CONNECTION_CLIENT = "connection"
TRUSTING, REISSUING, RETIRING = CA_ROTATION_PHASES
NEXT_CRT, NEXT_KEY = "next.crt", "next.key"  # the CA Secret's new CA while it is only trusted
_PHASE_ANNOTATIONS = (names.ANN_CA_ROTATION_PHASE, names.ANN_CA_ROTATION_SINCE)


@dataclass(frozen=True)
class SecretData:
    """A Secret as read: decoded data and annotations."""

    data: Mapping[str, bytes]
    annotations: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)


@dataclass(frozen=True)
class Observed:
    """The Secrets that matter to certificates, as they are now (None: absent)."""

    ca: SecretData | None = None  # <cluster>-ca (SelfSigned)
    issuer: SecretData | None = None  # the user's CA or External Secret
    server: SecretData | None = None  # <cluster>-tls
    clients: Mapping[str, SecretData] = field(default_factory=dict)  # by client name; "connection" too
    rollout_complete: bool = True  # every pod runs the current revision
    cert_manager: certmanager.CertManagerObserved | None = None  # issuer CertManager: what cert-manager says


@dataclass(frozen=True)
class Rotation:
    certificate: str  # "ca", "server", "client/<name>"
    reason: str  # renewal.SCHEDULED | MANUAL | INVALID | CA


@dataclass(frozen=True)
class Material:
    """What the Secrets must hold after this pass."""

    bundle: bytes
    server: KeyPair
    revision: int
    server_annotations: Mapping[str, str]
    ca: KeyPair | None = None  # an owned CA to write (SelfSigned)
    ca_annotations: Mapping[str, str] = field(default_factory=dict)
    next_ca: KeyPair | None = None  # a CA rotation's new CA, trusted but not yet signing
    clients: Mapping[str, KeyPair] = field(default_factory=dict)  # includes "connection" when issued

    @property
    def rotation(self) -> Mapping[str, str]:
        """The annotations that carry a CA rotation's phase: the owned CA's (SelfSigned), else the server
        Secret's (a CA change behind a cert-manager issuer)."""
        return self.ca_annotations if self.ca is not None else self.server_annotations


@dataclass(frozen=True)
class Plan:
    problems: tuple[Problem, ...] = ()  # the certificates cannot be served: nothing that runs changes
    material: Material | None = None
    rotations: tuple[Rotation, ...] = ()
    unready: tuple[Problem, ...] = ()  # issuer CertManager: what is not issued (yet); the roles keep their copies
    reissue: tuple[certmanager.Reissue, ...] = ()  # issuer CertManager: Certificates to ask cert-manager to issue now


def server_requirements(cluster: ValkeyCluster) -> Requirements:
    certs = cluster.spec.tls.certificates
    return Requirements(
        dns_names=tuple(cluster.names.server_dns_names(cluster.spec.pod_count, certs.extra_dns_names)),
        ip_addresses=certs.extra_ip_addresses,
        server=True,
        client=True,
    )


def _requested(cluster: ValkeyCluster, annotation: str, state: SecretData | None, handled: str) -> str | None:
    """The new value of a rotation annotation not yet handled, or None."""
    want = cluster.annotations.get(annotation)
    if not want:
        return None
    done = state.annotations.get(handled) if state else None
    return want if want != done else None


def _pair(secret: SecretData | None) -> KeyPair | None:
    if secret is None or not secret.get("tls.crt") or not secret.get("tls.key"):
        return None
    return KeyPair(secret.data["tls.crt"], secret.data["tls.key"])


@dataclass(frozen=True)
class _Trust:
    signer: KeyPair | None  # who signs leaves (None: External)
    bundle: bytes
    owned_ca: KeyPair | None = None  # SelfSigned: the CA Secret to write on every pass
    ca_annotations: Mapping[str, str] = field(default_factory=dict)
    rotations: tuple[Rotation, ...] = ()
    next_ca: KeyPair | None = None
    # Why a leaf that its signer did not issue is re-issued: the CA moved, or it is broken.
    mismatch_reason: str = renewal.INVALID


def _ca_reason(cluster: ValkeyCluster, obs: Observed, manual: str | None, now: datetime) -> str | None:
    """Why a new CA must be minted ("" for the very first one), or None to keep the current one."""
    if obs.ca is None:
        return ""
    current = _pair(obs.ca)
    if current is None or validate_ca(current.cert_pem, current.key_pem, now, need_key=True):
        return renewal.INVALID
    if manual:
        return renewal.MANUAL
    if describe(current.certificate).not_after - now < 2 * cluster.spec.tls.certificates.duration:
        # Renew the CA while a whole leaf lifetime still fits inside the old one's remaining life.
        return renewal.SCHEDULED
    return None


def rotation_since(annotations: Mapping[str, str]) -> datetime | None:
    """When the CA rotation's phase began (None: not recorded, or unreadable)."""
    return parse_iso(annotations.get(names.ANN_CA_ROTATION_SINCE))


def _self_signed_trust(cluster: ValkeyCluster, obs: Observed, now: datetime) -> _Trust:
    """A private CA, rotated in three phases, each reaching every pod before the next (DESIGN.md):
    Trusting (old and new CA trusted, leaves still from the old one, for caRotationOverlap), Reissuing
    (leaves from the new CA, the old one still trusted, for caRotationOverlap again, so that clients pick up
    their new certificates), Retiring (the old CA leaves the bundle)."""
    certs = cluster.spec.tls.certificates
    current = _pair(obs.ca)
    ann = dict(obs.ca.annotations) if obs.ca else {}
    phase = ann.get(names.ANN_CA_ROTATION_PHASE)
    manual = _requested(cluster, names.ANN_ROTATE_CA, obs.ca, names.ANN_HANDLED_ROTATE_CA)
    reason = _ca_reason(cluster, obs, manual, now)

    def mint() -> KeyPair:
        return mint_ca(f"{cluster.name}.{cluster.namespace} Valkey CA", now, certs.ca_duration, certs.key_algorithm)

    if current is None or reason in ("", renewal.INVALID):
        # Nothing trustworthy to keep (none yet, or broken): a new CA at once, no phases.
        new = mint()
        ann.pop(names.ANN_RETIRING_CA, None)
        rotations = (Rotation("ca", reason),) if reason else ()
        return _Trust(
            new, new.cert_pem, new, certmanager.set_phase(ann, None, now), rotations, mismatch_reason=renewal.CA
        )
    assert obs.ca is not None
    bundle = obs.ca.get("ca.crt") or current.cert_pem
    others = [b for b in split_pem(bundle) if b.strip() != current.cert_pem.strip() and not validate_bundle(b, now)]
    following = _pair(SecretData({"tls.crt": obs.ca.get(NEXT_CRT) or b"", "tls.key": obs.ca.get(NEXT_KEY) or b""}))
    if phase == TRUSTING and following is not None:
        since = rotation_since(ann) or now
        if obs.rollout_complete and now - since >= certs.ca_rotation_overlap:
            # Every pod trusts the new CA and applications had their overlap: leaves move to it.
            # The bundle keeps its bytes (old first, then new): under HotReload only the leaves change
            # in this phase, and they reload in place.
            return _Trust(
                following,
                current.cert_pem + following.cert_pem,
                following,
                certmanager.set_phase(ann, REISSUING, now),
                mismatch_reason=renewal.CA,
            )
        return _Trust(current, current.cert_pem + following.cert_pem, current, ann, next_ca=following)
    if phase is None and others:
        # A rotation an earlier operator version began (leaves already moved): go on from Reissuing, now.
        ann, phase = certmanager.set_phase(ann, REISSUING, now), REISSUING
    if phase == REISSUING:
        # ...and applications have had the overlap again to pick up their new client certificates.
        since = rotation_since(ann) or now
        if obs.rollout_complete and _new_ca_in_use(obs, current, bundle) and now - since >= certs.ca_rotation_overlap:
            ann.pop(names.ANN_RETIRING_CA, None)
            return _Trust(current, current.cert_pem, current, certmanager.set_phase(ann, RETIRING, now))
        return _Trust(current, b"".join([*others, current.cert_pem]), current, ann, mismatch_reason=renewal.CA)
    if phase == RETIRING:
        return _Trust(
            current, current.cert_pem, current, certmanager.set_phase(ann, None, now) if obs.rollout_complete else ann
        )
    if reason is not None:
        # A manual or scheduled rotation begins: the new CA is trusted everywhere first.
        new = mint()
        if manual:
            ann[names.ANN_HANDLED_ROTATE_CA] = manual
        ann[names.ANN_RETIRING_CA] = fingerprint(current.certificate)
        return _Trust(
            current,
            current.cert_pem + new.cert_pem,
            current,
            certmanager.set_phase(ann, TRUSTING, now),
            (Rotation("ca", reason),),
            next_ca=new,
        )
    return _Trust(current, current.cert_pem, current, certmanager.set_phase(ann, None, now))


def _new_ca_in_use(obs: Observed, ca: KeyPair, bundle: bytes) -> bool:
    """Every Secret already carries this bundle and every leaf in them is signed by the current CA (the
    connection Secret has no leaf under clientAuth none)."""
    secrets = [obs.server, *obs.clients.values()]
    return all(
        s is not None
        and s.get("ca.crt") == bundle
        and (not s.get("tls.crt") or issued_by(s.get("tls.crt") or b"", ca.cert_pem))
        for s in secrets
    )


def _ca_issuer_trust(cluster: ValkeyCluster, obs: Observed, now: datetime) -> _Trust | tuple[Problem, ...]:
    if obs.issuer is None:
        return (
            Problem(
                "IssuerSecretNotFound",
                f"Secret {cluster.spec.tls.issuer.secret_name} with the CA was not found: create it with tls.crt "
                "and tls.key.",
            ),
        )
    cert, key = obs.issuer.get("tls.crt"), obs.issuer.get("tls.key")
    problems = validate_ca(cert, key, now, need_key=True)
    if problems:
        return tuple(problems)
    assert cert is not None
    assert key is not None
    ca_cert = split_pem(cert)[0]
    bundle = obs.issuer.get("ca.crt") or ca_cert
    problems = validate_bundle(bundle, now)
    if problems:
        return tuple(problems)
    if ca_cert.strip() not in [b.strip() for b in split_pem(bundle)]:
        bundle = ca_cert + bundle
    return _Trust(KeyPair(ca_cert, key), bundle)


def _leaf(
    cluster: ValkeyCluster,
    existing: SecretData | None,
    trust: _Trust,
    request: LeafRequest,
    req: Requirements,
    now: datetime,
    label: str,
    manual: bool,
) -> tuple[KeyPair, Rotation | None]:
    assert trust.signer is not None
    pair = _pair(existing)
    reason: str | None = None
    if pair is None:
        reason = None  # first issue: not a rotation
    elif validate_leaf(pair.cert_pem, pair.key_pem, trust.signer.cert_pem, req, now, label):
        reason = trust.mismatch_reason
    else:
        policy = renewal.RenewalPolicy(
            renew_before=cluster.spec.tls.certificates.renew_before,
            key_algorithm=request.key_algorithm,
            dns_names=req.dns_names,
            ip_addresses=req.ip_addresses,
            common_name=request.common_name if request.exact_name else None,
        )
        reason = renewal.renewal_reason(describe_pem(pair.cert_pem), now, policy)
        if reason is None and manual:
            reason = renewal.MANUAL
        if reason is None:
            return pair, None
    return issue_leaf(trust.signer, request, now), Rotation(label, reason) if reason else None


def client_roles(cluster: ValkeyCluster) -> list[str]:
    """Every client certificate the cluster has: each spec client's, and the connection's under mTLS."""
    return [*cluster.spec.tls.clients, *([CONNECTION_CLIENT] if cluster.spec.tls.client_auth != "none" else [])]


def client_common_name(cluster: ValkeyCluster, client: str) -> str:
    """A client certificate's CN. A client with an ACL user carries the user's name (tls-auth-clients-user
    CN logs it in as that user)."""
    with_users = {name for name, _ in cluster.spec.tls.acls}
    return cluster.names.acl_user(client) if client in with_users else f"{cluster.name}-{client}"


def wanted_certificates(cluster: ValkeyCluster) -> list[certmanager.Wanted]:
    """Issuer CertManager: the Certificates the cluster needs, as the operator would issue them itself."""
    n = cluster.names
    server = certmanager.Wanted(
        certmanager.SERVER,
        n.certificate(certmanager.SERVER),
        n.issued_secret(certmanager.SERVER),
        n.service_host(n.service),
        server_requirements(cluster),
    )
    with_users = {name for name, _ in cluster.spec.tls.acls}
    clients = [
        certmanager.Wanted(
            c,
            n.certificate(c),
            n.issued_secret(c),
            client_common_name(cluster, c),
            Requirements(server=False, client=True),
            exact_name=c in with_users,
        )
        for c in client_roles(cluster)
    ]
    return [server, *clients]


def _issued_material(cluster: ValkeyCluster, obs: Observed, trust: _Trust, now: datetime) -> Plan:
    certs = cluster.spec.tls.certificates
    req = server_requirements(cluster)
    manual = _requested(cluster, names.ANN_ROTATE_CERTIFICATES, obs.server, names.ANN_HANDLED_ROTATE_CERTIFICATES)
    server, server_rot = _leaf(
        cluster,
        obs.server,
        trust,
        LeafRequest(
            common_name=cluster.names.service_host(cluster.names.service),
            dns_names=req.dns_names,
            ip_addresses=req.ip_addresses,
            duration=certs.duration,
            key_algorithm=certs.key_algorithm,
        ),
        req,
        now,
        "server",
        manual is not None,
    )
    rotations = list(trust.rotations)
    if server_rot:
        rotations.append(server_rot)
    clients: dict[str, KeyPair] = {}
    wanted = client_roles(cluster)
    client_req = Requirements(server=False, client=True)
    with_users = {client for client, _ in cluster.spec.tls.acls}
    for name in wanted:
        cn = client_common_name(cluster, name)
        pair, rot = _leaf(
            cluster,
            obs.clients.get(name),
            trust,
            LeafRequest(
                common_name=cn,
                server=False,
                client=True,
                duration=certs.duration,
                key_algorithm=certs.key_algorithm,
                exact_name=name in with_users,
            ),
            client_req,
            now,
            f"client/{name}",
            manual is not None,
        )
        clients[name] = pair
        if rot:
            rotations.append(rot)
    return _finish(cluster, obs, trust, server, clients, tuple(rotations), manual)


def _finish(
    cluster: ValkeyCluster,
    obs: Observed,
    trust: _Trust,
    server: KeyPair,
    clients: Mapping[str, KeyPair],
    rotations: tuple[Rotation, ...],
    manual: str | None,
) -> Plan:
    annotations = dict(obs.server.annotations) if obs.server else {}
    revision = int(annotations.get(names.ANN_REVISION, "0") or 0)
    old_pair = _pair(obs.server)
    old_bundle = obs.server.get("ca.crt") if obs.server else None
    if old_pair is None or old_pair.cert_pem != server.cert_pem or old_bundle != trust.bundle:
        revision += 1
    annotations[names.ANN_REVISION] = str(revision)
    if manual:
        annotations[names.ANN_HANDLED_ROTATE_CERTIFICATES] = manual
    return Plan(
        material=Material(
            bundle=trust.bundle,
            server=server,
            revision=revision,
            server_annotations=annotations,
            ca=trust.owned_ca,
            ca_annotations=trust.ca_annotations,
            next_ca=trust.next_ca,
            clients=clients,
        ),
        rotations=rotations,
    )


def _external(cluster: ValkeyCluster, obs: Observed, now: datetime) -> Plan:
    if obs.issuer is None:
        return Plan(
            problems=(
                Problem(
                    "ExternalSecretNotFound",
                    f"Secret {cluster.spec.tls.issuer.secret_name} with the certificates was not found: create it "
                    "with tls.crt, tls.key and ca.crt.",
                ),
            )
        )
    cert, key, ca = obs.issuer.get("tls.crt"), obs.issuer.get("tls.key"), obs.issuer.get("ca.crt")
    problems = validate_leaf(cert, key, ca, server_requirements(cluster), now, "External server")
    if not problems and ca:
        problems = validate_bundle(ca, now)
    if problems:
        return Plan(problems=tuple(problems))
    assert cert is not None
    assert key is not None
    if not ca:
        chain = load_certificates(cert)
        ca = b"".join(split_pem(cert)[i] for i, c in enumerate(chain) if i > 0 and describe(c).is_ca)
    trust = _Trust(None, ca)
    return _finish(cluster, obs, trust, KeyPair(cert, key), {}, (), None)


def _cert_manager(cluster: ValkeyCluster, obs: Observed, now: datetime) -> Plan:
    """What cert-manager issued, checked, copied in (module pki.certmanager)."""
    cm = obs.cert_manager or certmanager.CertManagerObserved(installed=False)
    wanted = wanted_certificates(cluster)
    problems = certmanager.readiness(cluster, cm)
    if problems:
        return Plan(problems=tuple(problems))
    leaves, unready = certmanager.checked_leaves(cm, wanted, now)
    issued_leaves = dict(leaves)
    manual = _requested(cluster, names.ANN_ROTATE_CERTIFICATES, obs.server, names.ANN_HANDLED_ROTATE_CERTIFICATES)
    bundle = obs.server.get("ca.crt") if obs.server else None
    copies: dict[str, KeyPair] = {}
    for want in wanted:  # what the operator's Secrets hold now, where it still passes against their bundle
        pair = _pair(obs.server if want.role == certmanager.SERVER else obs.clients.get(want.role))
        if pair and bundle and not certmanager.check(pair.cert_pem, pair.key_pem, bundle, want, now, "copy", False):
            copies[want.role] = pair
    # A role cert-manager has not issued for (yet), or issued a certificate that fails the checks, keeps
    # the copy its Secret holds while that still passes, anchored where its chain ends in the bundle. Without
    # one, the server's or the connection's holds the pass (a scale-up waits for the names of its new pods;
    # the connection Secret would lose its certificate); a client's is left out of it (its Secret and ACL
    # user wait for its certificate), the rest goes on.
    for want in wanted:
        if want.role in unready and want.role not in leaves and want.role in copies:
            pair, cas = copies[want.role], split_pem(bundle or b"")
            anchors = [ca for ca in cas if not validate_leaf(pair.cert_pem, pair.key_pem, ca, want.requirements, now)]
            leaves[want.role] = (pair, anchors)
    essential = (certmanager.SERVER, CONNECTION_CLIENT)
    held = certmanager.first({r: p for r, p in unready.items() if r in essential and r not in leaves}, wanted)
    if held is not None:
        return Plan(problems=(held,))
    reported = certmanager.first(unready, wanted)
    result = certmanager.issued(
        leaves,
        copies,
        bundle,
        obs.server.annotations if obs.server else {},
        obs.rollout_complete,
        cluster.spec.tls.certificates.ca_rotation_overlap,
        now,
    )
    # cert-manager renewed a certificate (on its schedule, or asked to): `ca` when the new one chains to
    # another CA than the one it replaces, `scheduled` otherwise (which trigger it was is cert-manager's).
    cas = split_pem(bundle or b"")
    rotations = [
        Rotation(
            "server" if role == certmanager.SERVER else f"client/{role}",
            renewal.SCHEDULED
            if any(issued_by(pair.cert_pem, ca) and issued_by(copies[role].cert_pem, ca) for ca in cas)
            else renewal.CA,
        )
        for role, pair in ((certmanager.SERVER, result.server), *result.clients.items())
        if role in copies and copies[role] != pair
    ]
    trust = _Trust(None, result.bundle)
    server_secret = replace(obs.server, annotations=result.annotations) if obs.server else None
    obs = replace(obs, server=server_secret)
    done = _finish(cluster, obs, trust, result.server, result.clients, tuple(rotations), manual)
    reissue = certmanager.reissues(cm, wanted, issued_leaves, result.annotations, manual is not None)
    return replace(done, unready=(reported,) if reported else (), reissue=tuple(reissue))


def plan(cluster: ValkeyCluster, obs: Observed, now: datetime) -> Plan:
    """Decide every certificate for this pass."""
    issuer = cluster.spec.tls.issuer.type
    if issuer == "CertManager":
        return _cert_manager(cluster, obs, now)
    if obs.server and names.ANN_CA_ROTATION_PHASE in obs.server.annotations:
        # A CA change behind a cert-manager issuer, left by a switch to another issuer: over (a switch back
        # starts from Trusting again, never from a stale phase).
        kept = {k: v for k, v in obs.server.annotations.items() if k not in _PHASE_ANNOTATIONS}
        obs = replace(obs, server=replace(obs.server, annotations=kept))
    if issuer == "External":
        return _external(cluster, obs, now)
    if issuer == "CA":
        trust = _ca_issuer_trust(cluster, obs, now)
        if isinstance(trust, tuple):
            return Plan(problems=trust)
        return _issued_material(cluster, obs, trust, now)
    if issuer == "SelfSigned":
        return _issued_material(cluster, obs, _self_signed_trust(cluster, obs, now), now)
    return Plan(
        problems=(
            Problem(
                "IssuerNotSupported",
                f"Issuer type {issuer} is not supported: use SelfSigned, CA, External or CertManager.",
            ),
        )
    )
