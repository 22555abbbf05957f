"""Every cross-field rule of the spec, written once: the CRD carries it as CEL, the operator checks it in Python.

Each Rule holds its CEL text, the same check in Python over the same defaulted data the API server sees,
and a counterexample; an integration test sends each counterexample to the real API server and checks that
both refuse it and accept its fix. Transition rules (comparing with the old object) are CEL only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from valkey_operator.durations import DurationError, parse_duration

Raw = Mapping[str, Any]
# A DNS name for a certificate: lower-case labels of at most 63 characters, an optional leading wildcard.
DNS_NAME = r"^(\\*\\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
# requests <= limits is checked for these (a fixed list keeps the rule within the CEL cost budget).
COMPARED_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_CEL_COMPARED = "[" + ", ".join(f"'{r}'" for r in COMPARED_RESOURCES) + "]"
_CEL_SUITES = "[" + ", ".join(f"'{c}'" for c in TLS13_SUITES) + "]"
# Resource names a container may ask for: the built-in ones, huge pages, and extended resources (a domain-
# prefixed name, such as example.com/gpu).
BUILTIN_RESOURCES = ("cpu", "memory", "ephemeral-storage")
EXTENDED_RESOURCE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
_CEL_BUILTIN = "[" + ", ".join(f"'{r}'" for r in BUILTIN_RESOURCES) + "]"


def _cel_resource_names(field: str) -> str:
    return (
        f"!has(self.{field}) || self.{field}.all(k, k in {_CEL_BUILTIN} || k.startsWith('hugepages-') || "
        f"k.matches('{EXTENDED_RESOURCE}'))"
    )


def _resource_name(name: str) -> bool:
    return name in BUILTIN_RESOURCES or name.startswith("hugepages-") or re.match(EXTENDED_RESOURCE, name) is not None


def _dns_name(value: str) -> bool:
    return len(value) <= 253 and re.fullmatch(DNS_NAME.replace("\\\\", "\\"), value) is not None


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_SUFFIX: dict[str, int | Decimal] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}  # fmt: skip
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity's value (NaN when it is not one: the schema's pattern refuses it first)."""
    return _q(value)


def _q(value: Any) -> Decimal:
    """A Kubernetes quantity's value (NaN when it is not one: the schema's pattern refuses it first)."""
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        return Decimal("NaN")
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _d(value: Any) -> float:
    try:
        return parse_duration(str(value)).total_seconds()
    except DurationError:
        return float("nan")  # the schema's pattern refuses it first


def _data_pods(spec: Raw) -> int:
    """Pods that hold one copy of the data each: a primary and its replicas."""
    if spec["mode"] == "cluster":
        return int(spec["replicasPerShard"]) + 1
    if spec["mode"] == "standalone":
        return 1
    return int(spec.get("replicas", 3))


@dataclass(frozen=True)
class Rule:
    scope: str  # where the rule sits: "" (spec), "tls.issuer", "tls.certificates", or a field ("mode")
    cel: str
    message: str  # the CEL message; the Python error adds a period
    field_path: str  # relative to scope, for the API server's error
    cel_reason: str  # FieldValueInvalid | FieldValueRequired | FieldValueForbidden
    reason: str  # the condition's and Event's reason when the operator finds it
    ok: Callable[[Raw], bool] | None = None  # None: a transition rule, only the API server can check it
    counterexample: Mapping[str, Any] = field(default_factory=dict)  # a spec that breaks it


RULES: tuple[Rule, ...] = (
    Rule(
        "",
        "self.mode != 'cluster' || self.shards >= 3",
        "shards must be at least 3 in cluster mode",
        ".shards",
        "FieldValueInvalid",
        "InvalidTopology",
        lambda s: s["mode"] != "cluster" or s["shards"] >= 3,
        {"mode": "cluster", "shards": 2},
    ),
    Rule(
        "",
        "self.mode != 'standalone' || !has(self.replicas) || self.replicas == 1",
        "replicas must be 1 in standalone mode",
        ".replicas",
        "FieldValueInvalid",
        "InvalidTopology",
        lambda s: s["mode"] != "standalone" or "replicas" not in s or s["replicas"] == 1,
        {"mode": "standalone", "replicas": 3},
    ),
    Rule(
        "",
        "self.tls.mode == 'disabled' || self.tls.issuer.type != 'External' || self.tls.clients.size() == 0",
        "client certificates cannot be issued with an External issuer: supply them yourself",
        ".tls.clients",
        "FieldValueForbidden",
        "ClientsWithExternalIssuer",
        lambda s: s["tls"]["mode"] == "disabled" or s["tls"]["issuer"]["type"] != "External" or not s["tls"]["clients"],
        {"tls": {"issuer": {"type": "External", "secretName": "x"}, "clients": [{"name": "app"}]}},
    ),
    Rule(
        "",
        "self.auth.enabled || self.tls.clients.all(c, !has(c.acl))",
        "tls.clients[].acl needs auth.enabled: without a password on the default user, any client could "
        "AUTH default and leave its rules",
        ".tls.clients",
        "FieldValueForbidden",
        "AclWithoutAuth",
        lambda s: s["auth"]["enabled"] or not any(c.get("acl") for c in s["tls"]["clients"]),
        {"auth": {"enabled": False}, "tls": {"clients": [{"name": "app", "acl": "~app:* +@read"}]}},
    ),
    Rule(
        "",
        "self.replication.minReplicasToWrite < (self.mode == 'cluster' ? self.replicasPerShard + 1 : "
        "self.mode == 'standalone' ? 1 : has(self.replicas) ? self.replicas : 3)",
        "replication.minReplicasToWrite must be smaller than the pods that hold the data (replicas; in cluster "
        "mode 1 + replicasPerShard; 0 in standalone mode)",
        ".replication.minReplicasToWrite",
        "FieldValueInvalid",
        "InvalidReplication",
        lambda s: s["replication"]["minReplicasToWrite"] < _data_pods(s),
        {"replicas": 2, "replication": {"minReplicasToWrite": 2}},
    ),
    Rule(
        "failover.after",
        "duration(self) >= duration('1s') && duration(self) <= duration('10m')",
        "failover.after must be between 1s and 10m",
        "",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: 1 <= _d(s) <= 600,
        {"failover": {"after": "500ms"}},
    ),
    Rule(
        "mode",
        "self == oldSelf",
        "mode is immutable",
        "",
        "FieldValueForbidden",
        "InvalidTopology",
    ),
    Rule(
        "tls.issuer",
        "!(self.type in ['CA', 'External']) || has(self.secretName)",
        "secretName is required when the issuer type is CA or External",
        ".secretName",
        "FieldValueRequired",
        "IssuerSecretMissing",
        lambda s: s["type"] not in ("CA", "External") or bool(s.get("secretName")),
        {"tls": {"issuer": {"type": "CA"}}},
    ),
    Rule(
        "tls.issuer",
        "self.type != 'CertManager' || has(self.issuerRef)",
        "issuerRef is required when the issuer type is CertManager",
        ".issuerRef",
        "FieldValueRequired",
        "IssuerRefMissing",
        lambda s: s["type"] != "CertManager" or "issuerRef" in s,
        {"tls": {"issuer": {"type": "CertManager"}}},
    ),
    Rule(
        "tls.certificates",
        "duration(self.renewBefore) < duration(self.duration)",
        "renewBefore must be shorter than duration",
        ".renewBefore",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: _d(s["renewBefore"]) < _d(s["duration"]),
        {"tls": {"certificates": {"duration": "100h", "renewBefore": "200h", "warnBefore": "50h"}}},
    ),
    Rule(
        "",
        "self.tls.issuer.type != 'CertManager' || duration(self.tls.certificates.renewBefore) >= duration('5m')",
        "renewBefore must be at least 5m with the CertManager issuer (cert-manager refuses a shorter one)",
        ".tls.certificates.renewBefore",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: s["tls"]["issuer"]["type"] != "CertManager" or _d(s["tls"]["certificates"]["renewBefore"]) >= 300,
        {
            "tls": {
                "issuer": {"type": "CertManager", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}},
                "certificates": {"duration": "2h", "renewBefore": "4m", "warnBefore": "3m"},
            }
        },
    ),
    Rule(
        "tls.certificates",
        "duration(self.warnBefore) < duration(self.duration)",
        "warnBefore must be shorter than duration",
        ".warnBefore",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: _d(s["warnBefore"]) < _d(s["duration"]),
        {"tls": {"certificates": {"duration": "100h", "renewBefore": "50h", "warnBefore": "150h"}}},
    ),
    Rule(
        "tls.certificates",
        "duration(self.duration) + duration(self.duration) < duration(self.caDuration)",
        "caDuration must be more than twice duration (the CA is renewed once less than two leaf lifetimes are "
        "left: a shorter CA would be renewed on every pass)",
        ".caDuration",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: 2 * _d(s["duration"]) < _d(s["caDuration"]),
        {"tls": {"certificates": {"duration": "8760h", "caDuration": "17000h"}}},
    ),
    Rule(
        "tls.certificates",
        "duration(self.caRotationOverlap) < duration(self.caDuration)",
        "caRotationOverlap must be shorter than caDuration (both CAs are trusted for that long during a CA rotation)",
        ".caRotationOverlap",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: _d(s["caRotationOverlap"]) < _d(s["caDuration"]),
        {"tls": {"certificates": {"caRotationOverlap": "90000h"}}},
    ),
    Rule(
        "tls.certificates",
        "self.extraDNSNames.all(n, n.matches('" + DNS_NAME + "'))",
        "extraDNSNames must be DNS names: lower-case labels of letters, digits and '-' (at most 63 characters "
        "each) joined by dots, optionally after a leading '*.'",
        ".extraDNSNames",
        "FieldValueInvalid",
        "InvalidDNSName",
        lambda s: all(_dns_name(n) for n in s["extraDNSNames"]),
        {"tls": {"certificates": {"extraDNSNames": ["bad name.example.com"]}}},
    ),
    Rule(
        "tls.certificates",
        "self.extraIPAddresses.all(a, isIP(a))",
        "extraIPAddresses must be IPv4 or IPv6 addresses",
        ".extraIPAddresses",
        "FieldValueInvalid",
        "InvalidIPAddress",
        lambda s: all(_ip(a) for a in s["extraIPAddresses"]),
        {"tls": {"certificates": {"extraIPAddresses": ["10.0.0.300"]}}},
    ),
    Rule(
        "tls",
        "!has(self.ciphersuites) || self.ciphersuites.split(':').all(c, c in " + _CEL_SUITES + ")",
        "ciphersuites must be TLS 1.3 suite names separated by ':' (" + ", ".join(TLS13_SUITES) + ")",
        ".ciphersuites",
        "FieldValueInvalid",
        "InvalidCiphers",
        lambda s: "ciphersuites" not in s or all(c in TLS13_SUITES for c in str(s["ciphersuites"]).split(":")),
        {"tls": {"ciphersuites": "TLS_NOPE"}},
    ),
    Rule(
        "tls",
        "self.clients.all(c, c.name != 'connection')",
        "the client name 'connection' is taken by the connection Secret's own certificate",
        ".clients",
        "FieldValueInvalid",
        "InvalidClientName",
        lambda s: all(c["name"] != "connection" for c in s["clients"]),
        {"tls": {"clients": [{"name": "connection"}]}},
    ),
    Rule(
        "resources",
        "!has(self.requests) || !has(self.limits) || " + _CEL_COMPARED + ".all(k, !(k in self.requests) || "
        "!(k in self.limits) || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
        "resources.requests may not exceed resources.limits (" + ", ".join(COMPARED_RESOURCES) + ")",
        ".requests",
        "FieldValueInvalid",
        "InvalidResources",
        lambda s: all(
            _q(s["requests"][k]) <= _q(s["limits"][k])
            for k in COMPARED_RESOURCES
            if k in s.get("requests", {}) and k in s.get("limits", {})
        ),
        {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
    ),
    Rule(
        "resources",
        "(" + _cel_resource_names("requests") + ") && (" + _cel_resource_names("limits") + ")",
        "resources may name only cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource "
        "(a domain-prefixed name such as example.com/gpu)",
        "",
        "FieldValueInvalid",
        "InvalidResources",
        lambda s: all(_resource_name(k) for part in ("requests", "limits") for k in s.get(part, {})),
        {"resources": {"limits": {"banana": "1"}}},
    ),
    Rule(
        "persistence",
        "quantity(self.size).isGreaterThan(quantity('0'))",
        "persistence.size must be more than 0",
        ".size",
        "FieldValueInvalid",
        "InvalidPersistence",
        lambda s: _q(s["size"]) > 0,
        {"persistence": {"enabled": True, "size": "0"}},
    ),
    Rule(
        "tls.certificates",
        "duration(self.duration) >= duration('1h')",
        "duration must be at least 1h",
        ".duration",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: _d(s["duration"]) >= 3600,
        {"tls": {"certificates": {"duration": "30m", "renewBefore": "10m", "warnBefore": "5m"}}},
    ),
)


def cel(scope: str) -> list[dict[str, str]]:
    """The CRD's `x-kubernetes-validations` for the schema node at `scope`."""
    out = []
    for r in RULES:
        if r.scope == scope:
            rule = {"rule": r.cel, "message": r.message}
            if r.field_path:
                rule |= {"reason": r.cel_reason, "fieldPath": r.field_path}
            out.append(rule)
    return out


def _at(data: Raw, scope: str) -> Raw:
    for key in filter(None, scope.split(".")):
        data = data[key]
    return data


def violations(spec: Raw) -> list[Rule]:
    """The rules a defaulted raw spec breaks (the ones Python can check), in table order."""
    return [r for r in RULES if r.ok is not None and not r.ok(_at(spec, r.scope))]
