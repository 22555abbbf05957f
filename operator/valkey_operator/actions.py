"""The writes a pass can make, as small typed values: `decide` returns them, `reconcile.act` runs them in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Apply:
    """Server-side apply of a whole desired object (create, update, repair drift)."""

    manifest: Mapping[str, Any]

    def __str__(self) -> str:
        return f"apply {self.manifest['kind']}/{self.manifest['metadata']['name']}"


@dataclass(frozen=True)
class DeletePod:
    """Delete a pod, only if it is still the one decided about (uid precondition)."""

    pod: str
    uid: str

    def __str__(self) -> str:
        return f"delete pod {self.pod}"


@dataclass(frozen=True)
class Relabel:
    """Set a pod's role label (the Services select by it)."""

    pod: str
    role: str

    def __str__(self) -> str:
        return f"label {self.pod} {self.role}"


@dataclass(frozen=True)
class Switchover:
    """Coordinated FAILOVER TO `target` on the primary `pod`; the outcome is read on the next pass."""

    pod: str
    target: str

    def __str__(self) -> str:
        return f"switchover {self.pod} -> {self.target}"


@dataclass(frozen=True)
class Repoint:
    """REPLICAOF the primary on a replica that follows another pod."""

    pod: str
    primary: str

    def __str__(self) -> str:
        return f"repoint {self.pod} -> {self.primary}"


@dataclass(frozen=True)
class Promote:
    """REPLICAOF NO ONE: the most advanced replica becomes the primary (the old one is lost)."""

    pod: str

    def __str__(self) -> str:
        return f"promote {self.pod}"


@dataclass(frozen=True)
class Reload:
    """HotReload: CONFIG SET the certificate files again, so the pod re-reads them."""

    pod: str

    def __str__(self) -> str:
        return f"reload {self.pod}"


@dataclass(frozen=True)
class Meet:
    """CLUSTER MEET on `pod`: it shakes hands with the node at `ip` (addresses only), which then gossips."""

    pod: str
    ip: str

    def __str__(self) -> str:
        return f"cluster meet {self.pod} -> {self.ip}"


@dataclass(frozen=True)
class AddSlots:
    """CLUSTER ADDSLOTSRANGE on a primary that serves no slot yet."""

    pod: str
    first: int
    last: int

    def __str__(self) -> str:
        return f"add slots {self.first}-{self.last} to {self.pod}"


@dataclass(frozen=True)
class MigrateSlots:
    """CLUSTER MIGRATESLOTS on the primary `pod` (Valkey 9.0+, atomic: no write is lost or refused while
    it runs): each group of slot ranges to the node that takes them. The outcome is read on later passes."""

    pod: str
    moves: tuple[tuple[tuple[tuple[int, int], ...], str], ...]  # ((ranges, target node id), ...)

    def __str__(self) -> str:
        # One line per target, its batches in order (a batch's own ranges joined by commas).
        by_target: dict[str, list[str]] = {}
        for ranges, target in self.moves:
            by_target.setdefault(target, []).append(",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges))
        told = "; ".join(f"{' '.join(batches)} to {target[:8]}" for target, batches in by_target.items())
        return f"migrate slots of {self.pod}: {told}"


@dataclass(frozen=True)
class SetUsers:
    """The clients' ACL users on `pod`, live: ACL SETUSER for each (from nothing: `reset` first), ACL DELUSER
    for the ones the operator made that are no longer asked for; `digest` names the rules given."""

    pod: str
    users: tuple[tuple[str, tuple[str, ...]], ...]  # (name, SETUSER arguments after the name)
    remove: tuple[str, ...] = ()
    digest: str = ""

    def __str__(self) -> str:
        # Never the arguments: they may hold a password's hash.
        told = ", ".join(name for name, _ in self.users) or "none"
        gone = f"; delete {', '.join(self.remove)}" if self.remove else ""
        return f"set ACL users on {self.pod}: {told}{gone}"


@dataclass(frozen=True)
class Replicate:
    """CLUSTER REPLICATE: `pod` becomes a replica of the node `primary_id` (its shard's primary)."""

    pod: str
    primary_id: str

    def __str__(self) -> str:
        return f"cluster replicate {self.pod} -> {self.primary_id[:8]}"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the ValkeyCluster, posted after the pass."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Forget:
    """CLUSTER FORGET on `pod`: it drops a node that no pod has any more (each node must be told)."""

    pod: str
    node_id: str

    def __str__(self) -> str:
        return f"cluster forget {self.node_id} on {self.pod}"


@dataclass(frozen=True)
class ClusterFailover:
    """CLUSTER FAILOVER on the replica `pod`: coordinated, its primary stops writes until it has caught up,
    then the two swap roles. The outcome is read on the next pass."""

    pod: str

    def __str__(self) -> str:
        return f"cluster failover to {self.pod}"


@dataclass(frozen=True)
class DeleteCertificate:
    """Delete a cert-manager Certificate the cluster owns and no longer asks for (a client removed, mTLS off,
    another issuer), so that cert-manager stops renewing it (uid precondition)."""

    certificate: str
    uid: str

    def __str__(self) -> str:
        return f"delete Certificate/{self.certificate}"


@dataclass(frozen=True)
class Reissue:
    """Ask cert-manager to issue a Certificate again now: its Issuing condition set True (ManuallyTriggered),
    as `cmctl renew` does, at `index` in status.conditions (where a False one is), else appended."""

    certificate: str
    index: int | None
    at: str  # the condition's lastTransitionTime (the pass's now)
    resource_version: str = ""  # the Certificate as read: the patch holds only on it

    def __str__(self) -> str:
        return f"reissue Certificate/{self.certificate}"


Action = (
    Apply
    | DeleteCertificate
    | Reissue
    | DeletePod
    | Relabel
    | Switchover
    | Promote
    | Repoint
    | Reload
    | SetUsers
    | Meet
    | AddSlots
    | MigrateSlots
    | Replicate
    | Forget
    | ClusterFailover
)
