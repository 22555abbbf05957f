"""The local Kubernetes's addresses, as one value, and what the host holds of them.

Pods live on bridges of the harness's own, one per node (vkbr0 with 10.244.0.0/24 for node-1, vkbr1 with
10.244.1.0/24 for node-2, ...); every node is on this machine, so the host routes between them. Service
addresses are virtual (only kube-proxy's rules on the host give them meaning); nothing leaves this machine.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeNetwork:
    """One node's share: its own bridge and pod subnet; the bridge's address is the node's address."""

    index: int  # 1, 2, ...

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def bridge(self) -> str:
        return f"vkbr{self.index - 1}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index - 1}.0/24"

    @property
    def node_ip(self) -> str:
        return f"10.244.{self.index - 1}.1"  # the API server reaches the kubelet there

    @property
    def node_cidr(self) -> str:
        return f"{self.node_ip}/{self.pod_cidr.split('/')[1]}"


@dataclass(frozen=True)
class Network:
    cluster_cidr: str = "10.244.0.0/16"  # every node's pod subnet; the host routes between the bridges
    service_cidr: str = "10.96.0.0/16"
    service_ip: str = "10.96.0.1"  # the `kubernetes` Service

    def node(self, index: int) -> NodeNetwork:
        return NodeNetwork(index)

    @property
    def first(self) -> NodeNetwork:
        """The node that also runs kube-proxy and CoreDNS (host processes, so they serve every node)."""
        return self.node(1)


NETWORK = Network()
_IPTABLES = (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore"))


def _run(*cmd: str) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=60).stdout


def netns() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()]


def bridge_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


def mounts_under(folder: Path) -> list[str]:
    prefix = str(folder)
    return [
        line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1].startswith(prefix)
    ]


def kube_chains() -> list[str]:
    """Every `KUBE-` iptables chain on the host, as 'save-command table chain'."""
    out = []
    for save, _ in _IPTABLES:
        if not shutil.which(save):
            continue
        table = ""
        for line in _run(save).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                out.append(f"{save} {table} {line[1:].split()[0]}")
    return out


def remove_kube_chains(keep: set[str]) -> None:
    """Drop the `KUBE-` chains that are not in `keep` (those the node's kubelet and kube-proxy made), with every
    rule in them and every rule that jumps to them; chains that were there before stay untouched."""
    for save, restore in _IPTABLES:
        if not shutil.which(save):
            continue
        drop = {tuple(c.split()[1:]) for c in kube_chains() if c.startswith(save + " ") and c not in keep}
        if not drop:
            continue
        table, kept = "", []
        for line in _run(save).splitlines():
            if line.startswith("*"):
                table = line[1:]
            words = line.split()
            named = line[1:].split()[0] if line.startswith(":") else (words[1] if line.startswith("-A ") else "")
            jumps = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g", "--jump", "--goto")}
            if (table, named) in drop or any((table, j) in drop for j in jumps):
                continue
            kept.append(line)
        subprocess.run([restore], input="\n".join(kept) + "\n", text=True, check=True, capture_output=True, timeout=60)
