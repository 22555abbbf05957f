"""Every cross-field rule of the spec, written once: the CRD carries it as CEL, the operator checks it in Python.

Each Rule holds its CEL text, the same check in Python over the same defaulted data the API server sees,
and a counterexample; an integration test sends each counterexample to the real API server and checks that
both refuse it and accept its fix. Transition rules (comparing with the old object) are CEL only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from valkey_operator.durations import DurationError, parse_duration

Raw = Mapping[str, Any]


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
        "self.mode != 'cluster' || self.shards >= oldSelf.shards",
        "shards cannot be reduced: scaling a cluster down is not supported yet",
        ".shards",
        "FieldValueForbidden",
        "InvalidTopology",
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
        "duration(self.duration) < duration(self.caDuration)",
        "duration must be shorter than caDuration",
        ".duration",
        "FieldValueInvalid",
        "InvalidDuration",
        lambda s: _d(s["duration"]) < _d(s["caDuration"]),
        {"tls": {"certificates": {"duration": "9000h", "caDuration": "8000h"}}},
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
