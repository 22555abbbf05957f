"""When to re-issue and when to warn: pure functions of a certificate, the policy and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from valkey_operator.pki.inspect import CertInfo
from valkey_operator.pki.validate import name_matches

# Rotation reasons, as the rotations metric labels them.
SCHEDULED = "scheduled"
MANUAL = "manual"
INVALID = "invalid"
CA = "ca"


@dataclass(frozen=True)
class RenewalPolicy:
    renew_before: timedelta
    key_algorithm: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    issuer_subject: str | None = None
    common_name: str | None = None  # None: any (only a client with an ACL user is logged in by its CN)


def renewal_time(info: CertInfo, renew_before: timedelta) -> datetime:
    """notAfter - renewBefore; a certificate shorter-lived than renewBefore renews at 2/3 of its life."""
    lifetime = info.not_after - info.not_before
    if renew_before >= lifetime:
        return info.not_before + lifetime * 2 / 3
    return info.not_after - renew_before


def renewal_reason(info: CertInfo, now: datetime, policy: RenewalPolicy) -> str | None:
    """Why this certificate must be re-issued now (a metric reason), or None to keep it."""
    if now >= renewal_time(info, policy.renew_before):
        return SCHEDULED
    if info.key_algorithm != policy.key_algorithm:
        return INVALID
    if policy.issuer_subject is not None and info.issuer != policy.issuer_subject:
        return CA
    if any(not any(name_matches(p, n) for p in info.dns_names) for n in policy.dns_names):
        return INVALID
    if any(a not in info.ip_addresses for a in policy.ip_addresses):
        return INVALID
    if policy.common_name is not None and info.common_name != policy.common_name:
        return INVALID
    return None


def expiring_soon(info: CertInfo, now: datetime, warn_before: timedelta) -> bool:
    return info.not_after - now < warn_before
