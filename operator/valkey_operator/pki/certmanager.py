"""Issuer `CertManager`: what cert-manager says and issued, checked, and what the pods may serve from it.

The operator owns one cert-manager `Certificate` per certificate it would otherwise issue itself (the
server's, each client's, the connection's) and never writes cert-manager's Secrets: it reads them, checks
every issued certificate with the same named checks as `External`, and copies them into its own Secrets
(`<cluster>-tls`, the client Secrets), so that a broken certificate never reaches a pod and a renewal by
cert-manager rolls (or hot-reloads) the pods like the operator's own.

A CA change behind the issuer (its CA re-keyed: certificates issued from then on chain to a CA the pods
do not trust yet) goes in the same three phases as the operator's own CA rotation: Trusting (the new CA
joins the bundle everywhere, the pods keep serving the certificates from the old one), Reissuing (the new
certificates are copied in, both CAs trusted) and Retiring (the old CA leaves the bundle), each phase for
at least `caRotationOverlap` and only once every pod runs the last one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from valkey_operator import names
from valkey_operator.api.schema import CA_ROTATION_PHASES
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.clock import iso, parse_iso
from valkey_operator.pki.inspect import describe, describe_pem, fingerprint, load_certificates, split_pem
from valkey_operator.pki.issue import KeyPair
from valkey_operator.pki.validate import Problem, Requirements, validate_bundle, validate_leaf

TRUSTING, REISSUING, RETIRING = CA_ROTATION_PHASES
SERVER = ""  # the server certificate's role key: no client name is empty

NOT_INSTALLED = "CertManagerNotInstalled"
ISSUER_NOT_FOUND = "IssuerNotFound"
ISSUER_NOT_READY = "IssuerNotReady"
CERTIFICATE_NOT_READY = "CertificateNotReady"
CERTIFICATE_ISSUING = "CertificateIssuing"  # cert-manager at work: said, not Degraded
STUCK_AFTER = timedelta(minutes=10)  # an issuance under way longer than this is CertificateNotReady
ISSUED_INVALID = "IssuedCertificateInvalid"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")


@dataclass(frozen=True)
class Wanted:
    """One certificate the cluster needs: `role` is SERVER or a client's name (the connection's too)."""

    role: str
    certificate: str  # the Certificate's name
    secret: str  # the Secret cert-manager writes
    common_name: str
    requirements: Requirements
    exact_name: bool = False  # the CN must be `common_name` (a client whose ACL user it names)


@dataclass(frozen=True)
class CertManagerObserved:
    """What a pass read of cert-manager: whether its CRDs are served, the issuer the spec names, the
    Certificates this cluster owns (by name) and the Secrets cert-manager wrote for them (by name)."""

    installed: bool = True
    issuer: Mapping[str, Any] | None = None
    issuer_checked: bool = True  # False: an issuer of another group (an external issuer), not read
    certificates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    issued: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    stale: tuple[str, ...] = ()  # Certificates this pass (re)applies: what cert-manager issued is not for them


@dataclass(frozen=True)
class Issued:
    """What the operator's Secrets hold after this pass: the server's pair, each client's, the bundle, and
    the server Secret's annotations (the CA-change phase)."""

    server: KeyPair
    clients: Mapping[str, KeyPair]
    bundle: bytes
    annotations: Mapping[str, str]


def readiness(cluster: ValkeyCluster, cm: CertManagerObserved) -> list[Problem]:
    """What keeps cert-manager from issuing any certificate for this cluster, in its own words."""
    ref = cluster.spec.tls.issuer.issuer_ref
    assert ref is not None  # the API requires it with type CertManager
    if not cm.installed:
        return [
            Problem(
                NOT_INSTALLED,
                "spec.tls.issuer.type is CertManager, but the API server does not serve certificates.cert-manager.io: "
                "install cert-manager (its CRDs and controller), or choose another issuer. Nothing was created.",
            )
        ]
    where = f"{ref.kind} {ref.name}" + (f" in namespace {cluster.namespace}" if ref.kind == "Issuer" else "")
    if ref.group == names.CERT_MANAGER_GROUP and ref.kind not in ISSUER_KINDS:
        message = (
            f"spec.tls.issuer.issuerRef.kind {ref.kind} is not a cert-manager.io issuer: use Issuer or ClusterIssuer."
        )
        return [Problem(ISSUER_NOT_FOUND, message)]
    if cm.issuer_checked and cm.issuer is None:
        message = f"cert-manager {where} (spec.tls.issuer.issuerRef) was not found: create it."
        return [Problem(ISSUER_NOT_FOUND, message)]
    if cm.issuer_checked and cm.issuer is not None:
        ready = _condition(cm.issuer, "Ready")
        if ready.get("status") != "True":
            return [
                Problem(
                    ISSUER_NOT_READY,
                    f"cert-manager {where} is not ready ({ready.get('reason') or 'no Ready condition yet'}: "
                    f"{ready.get('message') or 'cert-manager has not checked it yet'}).",
                )
            ]
    return []


def _unready(cm: CertManagerObserved, want: Wanted, now: datetime) -> Problem | None:
    """Why a Certificate is not issued for its current spec, or None. cert-manager at work (a Certificate
    just created or changed, an issuance under way) is CertificateIssuing; a failed issuance, or one under
    way for longer than STUCK_AFTER, is CertificateNotReady, with cert-manager's own words."""
    cert = cm.certificates.get(want.certificate)
    if cert is None or want.certificate in cm.stale:
        message = f"Certificate {want.certificate} is being created or changed now; cert-manager issues it next."
        return Problem(CERTIFICATE_ISSUING, message)
    ready, issuing = _condition(cert, "Ready"), _condition(cert, "Issuing")
    meta, status = cert.get("metadata") or {}, cert.get("status") or {}
    said = f"{ready.get('reason') or 'Pending'}: {ready.get('message') or 'not issued for the current spec yet'}"
    if failed(cert):  # the certificate it holds may still be valid: that one stays (the copy), said
        why = issuing.get("message") or said
        return Problem(CERTIFICATE_NOT_READY, f"cert-manager failed to issue Certificate {want.certificate} ({why}).")
    if _ready(cert):
        return None
    # How long cert-manager has been at it: since its Issuing condition turned True; for a Certificate it
    # never looked at (no status: its controller down, or not watching this namespace), since the creation;
    # for one not Ready, since it turned so; for a Ready one a spec change behind, since the operator applied
    # that spec (its managedFields entry).
    if issuing.get("status") == "True":
        since = parse_iso(issuing.get("lastTransitionTime"))
    elif not status.get("conditions"):
        since = parse_iso(meta.get("creationTimestamp"))
    elif ready.get("status") != "True":
        since = parse_iso(ready.get("lastTransitionTime"))
    else:
        applied = [f.get("time") for f in meta.get("managedFields") or [] if f.get("manager") == names.MANAGER]
        since = parse_iso(applied[0]) if applied else None
    if since is not None and now - since >= STUCK_AFTER:
        return Problem(
            CERTIFICATE_NOT_READY,
            f"Certificate {want.certificate} is not ready after {int((now - since).total_seconds() // 60)} minutes "
            f"({said}).",
        )
    return Problem(CERTIFICATE_ISSUING, f"cert-manager is issuing Certificate {want.certificate} ({said}).")


def _ready(cert: Mapping[str, Any]) -> bool:
    """cert-manager says the Certificate's Secret holds a certificate for its current spec."""
    ready = _condition(cert, "Ready")
    generation = (cert.get("metadata") or {}).get("generation")
    return ready.get("status") == "True" and ready.get("observedGeneration", generation) == generation


def failed(cert: Mapping[str, Any]) -> bool:
    """cert-manager's last issuance of this Certificate failed (it retries with its own backoff)."""
    status = cert.get("status") or {}
    return bool(status.get("lastFailureTime") or status.get("failedIssuanceAttempts"))


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def check(
    cert: bytes | None,
    key: bytes | None,
    ca: bytes | None,
    want: Wanted,
    now: datetime,
    label: str,
    trust_store: bool = True,
) -> list[Problem]:
    """The `External` checks (key, window, usages, names, chain to `ca`, and `ca` as the bundle the pods
    would load, unless not `trust_store`), and the CN a client's user needs."""
    problems = validate_leaf(cert, key, ca or None, want.requirements, now, label)
    if not problems and ca and trust_store:
        problems = validate_bundle(ca, now)
    if not problems and want.exact_name and describe_pem(cert or b"").common_name != want.common_name:
        problems = [Problem("CommonNameMismatch", f"The {label} does not name {want.common_name} as its CN.")]
    return problems


def checked_leaves(
    cm: CertManagerObserved, wanted: Sequence[Wanted], now: datetime
) -> tuple[dict[str, tuple[KeyPair, list[bytes]]], dict[str, Problem]]:
    """Each issued certificate with the CAs it chains to (its Secret's ca.crt, else the chain's CAs), by
    role, and why each other role has none: cert-manager has not issued it (yet), or it fails the checks."""
    out: dict[str, tuple[KeyPair, list[bytes]]] = {}
    unready: dict[str, Problem] = {}
    for want in wanted:
        if (problem := _unready(cm, want, now)) is not None:
            unready[want.role] = problem
            obj = cm.certificates.get(want.certificate) or {}
            if want.certificate in cm.stale or not (failed(obj) and _ready(obj)):
                continue  # but a failed renewal of a Ready Certificate: what it holds is still checked and used
        data = cm.issued.get(want.secret) or {}
        cert, key, ca = data.get("tls.crt"), data.get("tls.key"), data.get("ca.crt")
        label = f"cert-manager {want.role or 'server'} certificate (Secret {want.secret})"
        problems = check(cert, key, ca, want, now, label)
        if problems:
            message = f"{problems[0].message} ({problems[0].reason}). It is not used."
            unready[want.role] = unready.get(want.role) or Problem(ISSUED_INVALID, message)
            continue
        assert cert is not None
        assert key is not None
        if ca:
            cas = split_pem(ca)
        else:
            chain = load_certificates(cert)
            cas = [split_pem(cert)[i] for i, c in enumerate(chain) if i > 0 and describe(c).is_ca]
        out[want.role] = (KeyPair(cert, key), cas)
    return out, unready


def first(unready: Mapping[str, Problem], wanted: Sequence[Wanted]) -> Problem | None:
    """The problem to report: a failure before cert-manager at work, the server's before a client's."""
    ordered = [unready[w.role] for w in wanted if w.role in unready]
    return next((p for p in ordered if p.reason != CERTIFICATE_ISSUING), ordered[0] if ordered else None)


@dataclass(frozen=True)
class Reissue:
    """A Certificate cert-manager is asked to issue again now (its Issuing condition set, as `cmctl renew`
    does): at `index` in status.conditions where an Issuing condition is already (False), else appended."""

    certificate: str
    index: int | None
    why: str
    resource_version: str = ""  # the Certificate as read: the patch holds only on it


def issuing(at: str) -> dict[str, str]:
    """The condition `cmctl renew` sets on a Certificate: cert-manager issues it again at once."""
    return {
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered by valkey-tls-operator",
        "lastTransitionTime": at,
    }


def reissues(
    cm: CertManagerObserved,
    wanted: Sequence[Wanted],
    leaves: Mapping[str, tuple[KeyPair, list[bytes]]],
    annotations: Mapping[str, str],
    manual: bool,
) -> list[Reissue]:
    """The Certificates to ask cert-manager to issue again: every one on `valkeyops.dev/rotate-certificates`
    (`manual`), and, during a CA change behind the issuer (Trusting, Reissuing), each whose certificate was
    issued before the change was seen and does not chain to the CA the newest certificate chains to (the
    issuer's CA now): cert-manager would otherwise renew it only on its own schedule, keeping the old CA in
    the bundle that long. `leaves` are what cert-manager issued (checked), by role. A Certificate cert-manager
    is issuing, or has not made ready, is left to it."""
    phase = annotations.get(names.ANN_CA_ROTATION_PHASE)
    since = parse_iso(annotations.get(names.ANN_CA_ROTATION_SINCE))
    dated = {role: describe_pem(pair.cert_pem).not_before for role, (pair, _) in leaves.items()}
    newest = max(dated, key=lambda role: dated[role], default=None)
    # The issuer's CA now: what the newest certificate's ca.crt names (a root above an intermediate, too).
    current = {_key(ca) for ca in leaves[newest][1]} if newest is not None else set()
    out = []
    for want in wanted:
        cert = cm.certificates.get(want.certificate)
        if cert is None or want.certificate in cm.stale or _condition(cert, "Ready").get("status") != "True":
            continue
        if _condition(cert, "Issuing").get("status") == "True" or failed(cert):
            continue  # cert-manager is at it, or retries a failure on its own backoff
        if manual:
            why = f"{names.ANN_ROTATE_CERTIFICATES} was set"
        elif phase in (TRUSTING, REISSUING) and since is not None and want.role in leaves:
            # Issued after the second the change was seen: already from the new CA, or the issuer still signs
            # with the old one (asking again would not help; the phases wait for cert-manager's schedule).
            if dated[want.role] > since or current & {_key(ca) for ca in leaves[want.role][1]}:
                continue
            why = "the issuer's CA changed: every certificate moves to the new CA"
        else:
            continue
        conditions = (cert.get("status") or {}).get("conditions") or []
        index = next((i for i, c in enumerate(conditions) if c.get("type") == "Issuing"), None)
        version = str((cert.get("metadata") or {}).get("resourceVersion") or "")
        out.append(Reissue(want.certificate, index, why, version))
    return out


def set_phase(annotations: dict[str, str], phase: str | None, now: datetime) -> dict[str, str]:
    """A CA rotation's phase and its start (now) written into `annotations`, or both gone (None)."""
    if phase is None:
        annotations.pop(names.ANN_CA_ROTATION_PHASE, None)
        annotations.pop(names.ANN_CA_ROTATION_SINCE, None)
    else:
        annotations[names.ANN_CA_ROTATION_PHASE] = phase
        annotations[names.ANN_CA_ROTATION_SINCE] = iso(now)
    return annotations


def _key(pem: bytes) -> str:
    """A CA by its contents (the same CA with other line endings or wrapping is the same CA)."""
    return fingerprint(load_certificates(pem)[0])


def _unique(pems: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = []
    seen: set[str] = set()
    for pem in pems:
        if (key := _key(pem)) not in seen:
            seen.add(key)
            out.append(pem.strip() + b"\n")
    return out


def issued(
    leaves: Mapping[str, tuple[KeyPair, list[bytes]]],
    copies: Mapping[str, KeyPair],
    bundle_now: bytes | None,
    annotations: Mapping[str, str],
    rollout_complete: bool,
    overlap: timedelta,
    now: datetime,
) -> Issued:
    """What the operator's Secrets hold after this pass, given the checked `leaves` (by role), the pairs its
    Secrets hold now that still pass the checks against the bundle they carry (`copies`, `bundle_now`), and
    the server Secret's annotations. Each phase lasts at least `overlap` (caRotationOverlap)."""
    ann = dict(annotations)
    phase = ann.get(names.ANN_CA_ROTATION_PHASE)
    if phase is not None and phase not in (TRUSTING, REISSUING, RETIRING):
        phase = REISSUING  # an unreadable phase: the one that keeps every CA and moves on only after the overlap
    since = parse_iso(ann.get(names.ANN_CA_ROTATION_SINCE))
    if phase is not None and since is None:  # no readable start: the overlap starts now, and is written
        ann[names.ANN_CA_ROTATION_PHASE], ann[names.ANN_CA_ROTATION_SINCE] = phase, iso(now)
    since = since or now
    issuing = _unique([ca for _, cas in leaves.values() for ca in cas])
    # An expired CA leaves at once (Valkey 9.1 refuses a bundle with one; it verifies nothing any more).
    current = [ca for ca in _unique(split_pem(bundle_now)) if describe_pem(ca).not_after > now] if bundle_now else []
    new = [ca for ca in issuing if _key(ca) not in {_key(c) for c in current}]
    fresh = {role: pair for role, (pair, _) in leaves.items()}

    def moved(to: str | None) -> dict[str, str]:
        return set_phase(ann, to, now)

    def result(pairs: Mapping[str, KeyPair], bundle: list[bytes], annotations: dict[str, str]) -> Issued:
        clients = {role: pair for role, pair in pairs.items() if role != SERVER}
        return Issued(pairs[SERVER], clients, b"".join(bundle), annotations)

    if not current:
        return result(fresh, issuing, moved(None))  # the first issue: nothing to overlap with
    if new:
        # A CA the pods do not trust yet (the issuer's CA changed, in any phase): it joins every bundle
        # first, and the pods keep what they serve where it still passes (a role without such a copy takes
        # the new one now). The overlap starts again for it.
        kept = {role: copies.get(role) or fresh[role] for role in fresh}
        return result(kept, current + new, moved(TRUSTING))
    union = _unique(current + issuing)
    if phase == TRUSTING:
        if rollout_complete and now - since >= overlap:
            return result(fresh, union, moved(REISSUING))
        kept = {role: copies.get(role) or fresh[role] for role in fresh}
        return result(kept, union, ann)
    retiring = len(union) > len(issuing)  # a CA no issued certificate chains to any more
    if phase == REISSUING or (phase is None and retiring):
        # cert-manager renews each certificate on its own schedule: a CA leaves the bundle only once every
        # certificate from it was replaced, every pod runs the copies, and the overlap has passed again.
        # A certificate copied now (cert-manager renewed one late) starts the overlap again: applications
        # get that long to pick it up before the CA of the one it replaces leaves.
        copied = all(copies.get(role) == pair for role, pair in fresh.items())
        if copied and rollout_complete and now - since >= overlap and phase == REISSUING:
            return result(fresh, issuing, moved(RETIRING))
        return result(fresh, union, ann if phase == REISSUING and copied else moved(REISSUING))
    if phase == RETIRING:
        return result(fresh, issuing, moved(None) if rollout_complete else ann)
    # No CA change: a renewal (or nothing new) is copied as is.
    return result(fresh, issuing, ann)
