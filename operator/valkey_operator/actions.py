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


Action = Apply | DeletePod | Relabel | Switchover | Promote | Repoint | Reload


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the ValkeyCluster, posted after the pass."""

    type: str  # Normal | Warning
    reason: str
    message: str
