"""The ValkeyCluster CRD, built here and nowhere else: `crds/` and the chart are generated from it."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from valkey_operator import names
from valkey_operator.api import rules
from valkey_operator.durations import DURATION_PATTERN

Schema = dict[str, Any]

# Each enum once, as a type the typed spec uses, and as the tuple the schema lists.
KeyAlgorithm = Literal["ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096", "Ed25519"]
Mode = Literal["standalone", "replication", "cluster"]
TLSMode = Literal["disabled", "preferred", "required"]
ClientAuth = Literal["required", "optional", "none"]
IssuerType = Literal["SelfSigned", "CA", "External", "CertManager"]
RotationStrategy = Literal["RollingRestart", "HotReload"]
TLSProtocol = Literal["TLSv1.2", "TLSv1.3"]
Phase = Literal["Pending", "Provisioning", "Ready", "Rotating", "Degraded", "Failed"]
CARotationPhase = Literal["Trusting", "Reissuing", "Retiring"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = get_args(KeyAlgorithm)
MODES: tuple[Mode, ...] = get_args(Mode)
TLS_MODES: tuple[TLSMode, ...] = get_args(TLSMode)
CLIENT_AUTH: tuple[ClientAuth, ...] = get_args(ClientAuth)
ISSUER_TYPES: tuple[IssuerType, ...] = get_args(IssuerType)
ROTATION_STRATEGIES: tuple[RotationStrategy, ...] = get_args(RotationStrategy)
TLS_PROTOCOLS: tuple[TLSProtocol, ...] = get_args(TLSProtocol)
PHASES: tuple[Phase, ...] = get_args(Phase)
CA_ROTATION_PHASES: tuple[CARotationPhase, ...] = get_args(CARotationPhase)
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Kubernetes object name (DNS-1123 subdomain).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A ValkeyCluster's own name: a DNS-1035 label (Service names start with a letter), and short enough that
# every derived name fits: `<name>-headless` is a Service (63), and a pod's controller-revision-hash label
# is `<name>-<10 characters>` (63).
CLUSTER_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CLUSTER_NAME_MAX = 52
# A container image reference (the distribution grammar: optional registry host and port, lower-case path
# components, optional tag, optional sha256 digest).
IMAGE_REFERENCE = (
    r"^(([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
# A resource quantity, as Kubernetes writes it, never negative (no resource or volume size can be).
QUANTITY = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# A label key or topology key: an optional DNS-subdomain prefix and a name (Kubernetes' qualified name).
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# ACL rules for a client's user: key patterns, channels, commands; never a password, on/off, reset or a
# selector (those are the operator's), never a space inside a rule (the rules are written into a file).
# Patterns are printable ASCII without quotes or a backslash (Valkey's config reader would take them for a
# quoted string in the users file); categories are Valkey's own (a pod refuses a file naming another one).
ACL_CATEGORIES = (
    "all", "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog",
    "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection", "transaction",
    "scripting",
)  # fmt: skip
_ACL_RULE = (
    r"(?:(?:~|%R~|%W~|%RW~|&)[!#-&(-\[\]-~]+|[+-]@(?:" + "|".join(ACL_CATEGORIES) + r")"
    r"|[+-][a-z][a-z0-9_-]*(?:[|][a-z0-9_-]+)?"
    r"|allkeys|resetkeys|allchannels|resetchannels|allcommands|nocommands)"
)
ACL_RULES = rf"^{_ACL_RULE}( {_ACL_RULE})*$"
# OpenSSL cipher-list syntax: names, separators and operators; never a space, quote or control character
# (the value is written into valkey.conf).
CIPHER_LIST = r"^[A-Za-z0-9_:+!@=.,-]+$"
# Mozilla's "intermediate" server profile for TLS 1.2: ECDHE key exchange, AEAD ciphers only (no RSA key
# exchange, no CBC); TLS 1.3 suites are all AEAD already. Both ECDSA and RSA server keys are served.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def _s(description: str, default: Any = None, **extra: Any) -> Schema:
    out: Schema = {"type": "string", "description": description, **extra}
    if default is not None:
        out["default"] = default
    return out


def _i(description: str, default: int | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "integer", "format": "int32", "description": description, **extra}
    if default is not None:
        out["default"] = default
    return out


def _b(description: str, default: bool | None = None) -> Schema:
    out: Schema = {"type": "boolean", "description": description}
    if default is not None:
        out["default"] = default
    return out


def _o(description: str, properties: dict[str, Schema], default: Any = None, **extra: Any) -> Schema:
    out: Schema = {"type": "object", "description": description, "properties": properties, **extra}
    if default is not None:
        out["default"] = default
    return out


def _a(description: str, items: Schema, default: Any = None, **extra: Any) -> Schema:
    out: Schema = {"type": "array", "description": description, "items": items, **extra}
    if default is not None:
        out["default"] = default
    return out


def _quantities(description: str) -> Schema:
    quantity = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY, "maxLength": 64}  # fmt: skip
    return {"type": "object", "description": description, "additionalProperties": quantity, "maxProperties": 16}


def _spread_constraint() -> Schema:
    """A pod spec's topology spread constraint, typed field by field (the API server would refuse a wrong
    one only when the StatefulSet is written, after the cluster's other objects)."""
    label_key = _s("A label key.", pattern=QUALIFIED_NAME, maxLength=316)
    expression = _o(
        "A label selector requirement.",
        {
            "key": label_key,
            "operator": _s("How the key relates to the values.", enum=["In", "NotIn", "Exists", "DoesNotExist"]),
            "values": _a("Values for In and NotIn.", _s("A label value.", maxLength=63), maxItems=64),
        },
        required=["key", "operator"],
    )
    selector = _o(
        "Which pods count (default: this ValkeyCluster's).",
        {
            "matchLabels": {
                "type": "object",
                "description": "Labels the pods carry.",
                "maxProperties": 32,
                "additionalProperties": _s("A label value.", maxLength=63),
            },
            "matchExpressions": _a("Label selector requirements.", expression, maxItems=16),
        },
    )
    policy = ["Honor", "Ignore"]
    return _o(
        "A topology spread constraint, as in a pod spec.",
        {
            "maxSkew": _i("How unevenly the pods may spread (>= 1).", None, minimum=1, maximum=1000),
            "topologyKey": _s(
                "The node label that names a domain (kubernetes.io/hostname, a zone).",
                pattern=QUALIFIED_NAME,
                maxLength=316,
            ),
            "whenUnsatisfiable": _s("Whether a skew is a hard rule.", enum=["DoNotSchedule", "ScheduleAnyway"]),
            "labelSelector": selector,
            "minDomains": _i("Minimum eligible domains (DoNotSchedule only).", None, minimum=1, maximum=1000),
            "nodeAffinityPolicy": _s("Whether node affinity limits the domains.", enum=policy),
            "nodeTaintsPolicy": _s("Whether node taints limit the domains.", enum=policy),
            "matchLabelKeys": _a("Pod label keys whose values also select the pods.", label_key, maxItems=16),
        },
        required=["maxSkew", "topologyKey", "whenUnsatisfiable"],
    )


def _duration(description: str, default: str) -> Schema:
    return _s(description, default, pattern=DURATION_PATTERN)


def _certificates() -> Schema:
    return _o(
        "How the operator issues the server and client certificates.",
        {
            "keyAlgorithm": _s(
                "Private key algorithm of every certificate the operator issues (CA, server, clients).",
                "ECDSA-P256",
                enum=list(KEY_ALGORITHMS),
            ),
            "duration": _duration("Validity of leaf certificates (Go duration). Default 90 days.", "2160h"),
            "renewBefore": _duration(
                "Re-issue a leaf certificate when less than this is left. Default 60 days: a rotation every 30 days.",
                "1440h",
            ),
            "warnBefore": _duration(
                "Set CertificateExpiringSoon and fire the alert when less than this is left. Default 45 days.",
                "1080h",
            ),
            "caDuration": _duration("Validity of the CA the operator mints (SelfSigned). Default 10 years.", "87600h"),
            "caRotationOverlap": _duration(
                "CA rotation: how long every pod and Secret trusts both the old and the new CA before the "
                "certificates move to the new one (time for applications to pick up the new ca.crt).",
                "24h",
            ),
            "extraDNSNames": _a(
                "DNS names added to the server certificate, besides every Service and pod name.",
                _s("A DNS name (lower case; a leading *. for a wildcard).", maxLength=253),
                default=[],
                maxItems=64,
            ),
            "extraIPAddresses": _a(
                "IP addresses added to the server certificate.",
                _s("An IPv4 or IPv6 address.", maxLength=45),
                default=[],
                maxItems=64,
            ),
        },
        default={},
        **{"x-kubernetes-validations": rules.cel("tls.certificates")},
    )


def _issuer() -> Schema:
    return _o(
        "Where certificates come from.",
        {
            "type": _s(
                "SelfSigned: the operator mints a private CA per cluster. CA: sign with the CA in secretName "
                "(tls.crt, tls.key). External: leaf certificates supplied in secretName (tls.crt, tls.key, "
                "optional ca.crt), validated and watched only. CertManager: the operator creates cert-manager "
                "Certificates against issuerRef.",
                "SelfSigned",
                enum=list(ISSUER_TYPES),
            ),
            "secretName": _s(
                "Secret in the cluster's namespace holding the CA (type CA) or the leaf (External).",
                minLength=1,
                maxLength=253,
                pattern=DNS_SUBDOMAIN,
            ),
            "issuerRef": _o(
                "cert-manager issuer to request certificates from (type CertManager).",
                {
                    "name": _s("Name of the Issuer or ClusterIssuer.", minLength=1, maxLength=253),
                    "kind": _s("Issuer or ClusterIssuer.", "Issuer"),
                    "group": _s("API group of the issuer.", "cert-manager.io"),
                },
                required=["name"],
            ),
        },
        default={},
        **{"x-kubernetes-validations": rules.cel("tls.issuer")},
    )


def _tls() -> Schema:
    return _o(
        "TLS for clients, replication and the cluster bus.",
        {
            "mode": _s(
                "required: TLS only (port 0). preferred: TLS on 6379 and plaintext on 6380, for migrating "
                "clients. disabled: no TLS (certificates are still kept, ready for a switch to TLS).",
                "required",
                enum=list(TLS_MODES),
            ),
            "clientAuth": _s(
                "Client certificates: required (mTLS), optional, or none. Maps to tls-auth-clients yes|optional|no.",
                "required",
                enum=list(CLIENT_AUTH),
            ),
            "replication": _b("Replicas connect to their primary over TLS (tls-replication).", True),
            "clusterBus": _b("The cluster bus speaks TLS (tls-cluster), cluster mode only.", True),
            "protocols": _a(
                "TLS protocol versions accepted (tls-protocols). The default with the default ciphers is "
                "Mozilla's intermediate profile; [TLSv1.3] alone is its modern profile.",
                _s("A TLS protocol version.", enum=list(TLS_PROTOCOLS)),
                default=list(TLS_PROTOCOLS),
                minItems=1,
                **{"x-kubernetes-list-type": "set"},
            ),
            "ciphers": _s(
                "TLSv1.2 cipher list (tls-ciphers), OpenSSL syntax. Unset: Mozilla's intermediate profile "
                f"({INTERMEDIATE_CIPHERS}).",
                minLength=1,
                maxLength=2048,
                pattern=CIPHER_LIST,
            ),
            "ciphersuites": _s(
                "TLSv1.3 cipher suites (tls-ciphersuites), colon-separated. Unset keeps Valkey's default (all "
                "AEAD). protocols: [TLSv1.3] alone is Mozilla's modern profile.",
                minLength=1,
                maxLength=512,
            ),
            "issuer": _issuer(),
            "certificates": _certificates(),
            "rotation": _o(
                "How new certificates reach running pods.",
                {
                    "strategy": _s(
                        "RollingRestart: roll pods one at a time, replicas first, primary last after a "
                        "switchover. HotReload: no restart; the operator makes each pod re-read its files.",
                        "RollingRestart",
                        enum=list(ROTATION_STRATEGIES),
                    )
                },
                default={},
            ),
            "clients": _a(
                "Client certificates for applications (mTLS), one Secret each: <cluster>-client-<name>.",
                _o(
                    "A client certificate.",
                    {
                        "name": _s(
                            "Client name: the Secret's suffix; the certificate's CN is <cluster>-<name>, or with acl "
                            "<name>@<cluster>.<namespace>. `connection` is taken (the connection Secret's own "
                            "certificate).",
                            pattern=DNS_LABEL,
                            maxLength=63,
                        ),
                        "acl": _s(
                            "ACL rules of an ACL user for this client, named as its certificate's CN "
                            "(<name>@<cluster>.<namespace>; needs auth.enabled): key patterns (~app:*, %R~, %W~), "
                            "channels (&news:*) and "
                            "commands (+@read, -@dangerous, +get, +config|get), separated by single spaces. On "
                            "Valkey 9.0 or later with clientAuth required the certificate alone logs it in "
                            "(tls-auth-clients-user CN); otherwise its Secret gets a generated password. Changes "
                            "apply live, once every command they name is one the pods know (else Ready says "
                            "InvalidAclRules). Passwords, on/off, reset and selectors are the operator's, not allowed.",
                            pattern=ACL_RULES,
                            maxLength=1024,
                        ),
                    },
                    required=["name"],
                ),
                default=[],
                maxItems=32,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            ),
        },
        default={},
        **{"x-kubernetes-validations": rules.cel("tls")},
    )


def _complete_defaults(schema: Schema) -> Schema:
    """Give every object default its nested defaults too.

    The API server checks a default against the CEL rules as written, before nested defaulting, so a
    bare `{}` would fail rules that read its fields.
    """
    for sub in schema.get("properties", {}).values():
        _complete_defaults(sub)
    if "items" in schema:
        _complete_defaults(schema["items"])
    if schema.get("type") == "object" and "default" in schema:
        schema["default"] = apply_defaults(schema, schema["default"])
    return schema


def spec_schema() -> Schema:
    """The OpenAPI v3 schema of `spec`, defaults included."""
    return _complete_defaults(_spec_schema())


def _spec_schema() -> Schema:
    return _o(
        "Desired state of a TLS-enabled Valkey deployment.",
        {
            "image": _s(
                "Valkey container image (Valkey >= 7.2). Its tag decides which config directives are emitted.",
                "valkey/valkey:9.1",
                minLength=1,
                maxLength=512,
                pattern=IMAGE_REFERENCE,
            ),
            "imagePullPolicy": _s(
                "Pull policy of the Valkey container.", "IfNotPresent", enum=["Always", "IfNotPresent", "Never"]
            ),
            "mode": _s(
                "standalone (one pod), replication (one primary plus replicas) or cluster (sharded, cluster "
                "bus). Immutable.",
                "replication",
                enum=list(MODES),
                **{"x-kubernetes-validations": rules.cel("mode")},
            ),
            # No schema default: it follows the mode (3 in replication, 1 in standalone), so a user who
            # writes only `mode: standalone` is not told to fix a value they never wrote.
            "replicas": _i(
                "replication: pods in total (1 primary + replicas), default 3. standalone: 1 (the default).",
                None,
                minimum=1,
                maximum=100,
            ),
            "shards": _i("cluster mode: number of shards (>= 3).", 3, minimum=1, maximum=1000),
            "replicasPerShard": _i("cluster mode: replicas per shard.", 1, minimum=0, maximum=10),
            "ioThreads": _i(
                "io-threads: threads for network I/O, the main one included (Valkey 8.1+ also moves TLS "
                "handshakes, encryption and decryption to them). Unset: the whole cores of resources.limits.cpu, "
                "at most 8; without a CPU limit, 1 (the main thread only). Not set before Valkey 8.0 with TLS, where "
                "threaded I/O on TLS connections is a known crash.",
                None,
                minimum=1,
                maximum=16,
            ),
            "resources": _o(
                "Resource requests and limits of the Valkey container (requests may not exceed limits).",
                {
                    "requests": _quantities("Minimum resources, by name (cpu, memory, ...)."),
                    "limits": _quantities("Maximum resources, by name (cpu, memory, ...)."),
                },
                default={},
                **{"x-kubernetes-validations": rules.cel("resources")},
            ),
            "topologySpreadConstraints": _a(
                "How the pods spread over nodes (the pod spec's field; the operator fills in its labelSelector "
                "when it is left out). Unset: prefer different nodes, so one node's loss never takes the primary "
                "and its replicas together. [] turns spreading off.",
                _spread_constraint(),
                maxItems=8,
            ),
            "persistence": _o(
                "Persistent storage for the data directory (append-only file).",
                {
                    "enabled": _b("Keep data on a PersistentVolumeClaim per pod.", False),
                    "size": _s("Size of each volume (a quantity).", "1Gi", pattern=QUANTITY),
                    "storageClassName": _s(
                        "StorageClass of the volumes; unset uses the default class.",
                        minLength=1,
                        maxLength=253,
                        pattern=DNS_SUBDOMAIN,
                    ),
                },
                default={},
                **{"x-kubernetes-validations": rules.cel("persistence")},
            ),
            "failover": _o(
                "replication mode: the operator promotes the most advanced replica when the primary is lost.",
                {
                    "enabled": _b("Promote a replica when the primary is lost (planned switchovers always run).", True),
                    "after": {
                        **_duration("How long the primary may be lost before a replica is promoted (1s to 10m).", "5s"),
                        "x-kubernetes-validations": rules.cel("failover.after"),
                    },
                },
                default={},
            ),
            "replication": _o(
                "Write safety: a primary refuses writes while fewer replicas than minReplicasToWrite are in sync.",
                {
                    "minReplicasToWrite": _i(
                        "min-replicas-to-write: replicas that must be connected for a write to be accepted (0: off).",
                        0,
                        minimum=0,
                        maximum=100,
                    ),
                    "maxLagSeconds": _i(
                        "min-replicas-max-lag: seconds since a replica's last acknowledgement for it to count.",
                        10,
                        minimum=1,
                        maximum=3600,
                    ),
                },
                default={},
            ),
            "auth": _o(
                "Password authentication (default user), in a generated Secret <cluster>-auth.",
                {"enabled": _b("Require a password.", True)},
                default={},
            ),
            "tls": _tls(),
        },
        default={},
        **{"x-kubernetes-validations": rules.cel("")},
    )


def _cert_status(extra: dict[str, Schema]) -> Schema:
    props: dict[str, Schema] = {
        "notBefore": _s("Start of validity.", format="date-time"),
        "notAfter": _s("End of validity.", format="date-time"),
        "serial": _s("Serial number, hex."),
        "fingerprintSHA256": _s("SHA-256 fingerprint of the DER certificate, hex."),
        "secretName": _s("Secret that holds it."),
    }
    props.update(extra)
    return _o("A certificate's public facts (never its key).", props)


def status_schema() -> Schema:
    """The OpenAPI v3 schema of `status`, written by the operator only."""
    condition = _o(
        "A metav1.Condition.",
        {
            "type": _s("Condition type."),
            "status": _s("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _s("CamelCase reason."),
            "message": _s("What the user should know or do."),
            "lastTransitionTime": _s("When status last changed.", format="date-time"),
            "observedGeneration": {"type": "integer", "format": "int64", "description": "Generation seen."},
        },
        required=["type", "status"],
    )
    return _o(
        "Observed state, written by the operator.",
        {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The metadata.generation this status describes.",
            },
            "phase": _s("Pending, Provisioning, Ready, Rotating, Degraded or Failed.", enum=list(PHASES)),
            "replicas": _i("Pods desired."),
            "readyReplicas": _i("Pods ready."),
            "readyDisplay": _s("readyReplicas/desired, for the READY column."),
            "primary": _s("Pod that reports itself primary (replication mode); unset while none does."),
            "replicationId": _s(
                "replication mode: the primary's replication history (master_replid), kept while it is lost: "
                "a failover compares offsets on that history first."
            ),
            "failover": _o(
                "Set while the primary is lost (PrimaryLost) or its role moves (FailingOver).",
                {
                    "state": _s("PrimaryLost or FailingOver.", enum=["PrimaryLost", "FailingOver"]),
                    "primary": _s("The primary that was lost or hands over."),
                    "since": _s("When it began.", format="date-time"),
                    "waitingUntil": _s(
                        "Persistence on and every pod restarted: until when the lost primary, whose volume holds "
                        "the last writes, is waited for before a replica takes the role.",
                        format="date-time",
                    ),
                },
            ),
            "handovers": _a(
                "Role handovers asked for in the last two minutes (FAILOVER TO, CLUSTER FAILOVER): one that does "
                "not complete is asked again after 5 s, then 10, 20, 40 and 60 s.",
                _o(
                    "A handover.",
                    {
                        "action": _s("What was asked, e.g. switchover cache-0 -> cache-1."),
                        "attempts": _i("How many times."),
                        "at": _s("When it was last asked.", format="date-time"),
                    },
                ),
            ),
            "shards": _a(
                "cluster mode: each primary that serves slots, as the nodes report it.",
                _o(
                    "A shard.",
                    {
                        "index": _i("Order of the shard's first slot."),
                        "primary": _s("Pod that serves the shard's slots."),
                        "replicas": _a("Pods that follow it.", _s("A pod.")),
                        "slots": _s("Slot ranges, e.g. 0-5461."),
                    },
                ),
            ),
            "clusterState": _s("cluster mode: ok when every node reports cluster_state:ok, else fail."),
            "advisory": _s(
                "Known vulnerabilities of the running release last announced (VulnerableValkeyVersion), e.g. "
                "CVE-2026-56684 8.1.1; the Warning Event is posted when this changes."
            ),
            "acl": _o(
                "The clients' ACL users (spec.tls.clients[].acl) on the pods.",
                {
                    "digest": _s("Digest of the rules every pod must hold (passwords only as their hash)."),
                    "users": _a(
                        "The users the operator made (it deletes them when no longer asked for).", _s("A user.")
                    ),
                    "pods": {
                        "type": "object",
                        "description": "Pods that hold the current users: the digest of the ACL LIST lines each "
                        "reported right after it was given them (compared with what it reports on every pass).",
                        "additionalProperties": {"type": "string"},
                    },
                },
            ),
            "reshardingTo": _i(
                "cluster mode: while slots migrate, the shards count they move for; a change of spec.shards "
                "meanwhile waits (ShardsChangeDuringMigration)."
            ),
            "tls": _o(
                "TLS settings in force.",
                {"mode": _s("TLS mode in force."), "clientAuth": _s("Client authentication in force.")},
            ),
            "certificates": _o(
                "Public facts of the certificates in use.",
                {
                    "ca": _cert_status({}),
                    "server": _cert_status(
                        {
                            "renewalTime": _s("When the operator will re-issue it.", format="date-time"),
                            "dnsNames": _a("Names it covers.", _s("A DNS name.")),
                            "revision": _i("TLS revision: bumped on every re-issue."),
                        }
                    ),
                    "clients": _a(
                        "Client certificates.",
                        _o(
                            "A client certificate.",
                            {
                                "name": _s("Client name."),
                                "notAfter": _s("End of validity.", format="date-time"),
                                "secretName": _s("Secret that holds it."),
                            },
                        ),
                    ),
                    "caRotation": _o(
                        "A CA rotation under way: Trusting (both CAs trusted, certificates still from the old "
                        "one), Reissuing (certificates from the new CA), Retiring (the old CA leaves the bundle).",
                        {
                            "phase": _s("Trusting, Reissuing or Retiring.", enum=list(CA_ROTATION_PHASES)),
                            "since": _s("When the phase began.", format="date-time"),
                        },
                    ),
                    "served": _a(
                        "What each pod serves, checked by a live TLS handshake (HotReload).",
                        _o(
                            "A pod's served certificate.",
                            {"pod": _s("Pod name."), "fingerprintSHA256": _s("SHA-256 fingerprint, hex.")},
                        ),
                    ),
                },
            ),
            "endpoints": _o(
                "Connection URIs.",
                {"primary": _s("Read-write endpoint."), "readOnly": _s("Read-only endpoint (replicas).")},
            ),
            "connectionSecret": _s("Secret with everything an application needs to connect."),
            "conditions": _a(
                "Ready, CertificatesReady, CertificateExpiringSoon, Rotating, Degraded.",
                condition,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
            ),
        },
    )


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "description": "Deployment mode."},
    {"name": "Ready", "type": "string", "jsonPath": ".status.readyDisplay", "description": "Ready pods / desired."},
    {"name": "TLS", "type": "string", "jsonPath": ".status.tls.mode", "description": "TLS mode in force."},
    {
        # "string", not "date": kubectl shows a date column as an age, and a future date as <invalid>.
        "name": "Cert-Expires",
        "type": "string",
        "jsonPath": ".status.certificates.server.notAfter",
        "description": "When the server certificate expires.",
    },
    {"name": "Status", "type": "string", "jsonPath": ".status.phase", "description": "Phase."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{names.PLURAL}.{names.GROUP}",
            "labels": {"app.kubernetes.io/name": "valkey-tls-operator"},
        },
        "spec": {
            "group": names.GROUP,
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": [names.SHORT_NAME],
                "categories": [names.CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "ValkeyCluster is a TLS-enabled Valkey deployment whose certificates "
                            "the operator issues, rotates and watches.",
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {CLUSTER_NAME_MAX}",
                                    "message": f"metadata.name must be at most {CLUSTER_NAME_MAX} characters, so that "
                                    "every object derived from it fits Kubernetes' limits",
                                },
                                {
                                    "rule": f"self.metadata.name.matches('{CLUSTER_NAME}')",
                                    "message": "metadata.name must be a DNS label that starts with a letter (lower "
                                    "case letters, digits and '-'; no dots), as Service names are",
                                },
                            ],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version."},
                                "kind": {"type": "string", "description": "Kind."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def _go_pattern(pattern: str) -> str:
    """The API server's (Go's) reading of a pattern: a final `$` ends the text, where Python's `$` would also
    match before a final newline (which would let a newline into a rendered file)."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def value_errors(schema: Schema, value: Any, path: str) -> list[str]:
    """What the API server's structural checks (pattern, length, item and property counts) say about a
    defaulted value, for offline use (`render`) and as a second line behind the API server."""
    out: list[str] = []
    if isinstance(value, str):
        if "pattern" in schema and re.search(_go_pattern(schema["pattern"]), value) is None:
            out.append(f"{path}: {value!r} should match '{schema['pattern']}'")
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: may not be empty")
        if len(value) > schema.get("maxLength", len(value)):
            out.append(f"{path}: may not be longer than {schema['maxLength']} characters")
    elif isinstance(value, dict):
        if len(value) > schema.get("maxProperties", len(value)):
            out.append(f"{path}: may not have more than {schema['maxProperties']} entries")
        for key, sub in value.items():
            sub_schema = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
            if isinstance(sub_schema, dict):
                out += value_errors(sub_schema, sub, f"{path}.{key}")
    elif isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            out.append(f"{path}: may not have more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            out += value_errors(schema.get("items", {}), item, f"{path}[{i}]")
    return out


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill in defaults as the API server does (structural defaulting), so offline use matches the cluster."""
    if schema.get("type") == "object" and isinstance(value, dict):
        out = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in out and "default" in sub:
                out[key] = _copy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        return out
    if schema.get("type") == "array" and isinstance(value, list):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
