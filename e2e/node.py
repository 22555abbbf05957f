"""A real node for the local control plane: containerd (Debian trixie's 1.7) with runc and CNI, a kubelet,
and on the first node kube-proxy (iptables mode) and CoreDNS.

Pods get addresses on a bridge of the node's own (node-1: vkbr0, 10.244.0.0/24), inside network namespaces
that its containerd creates; nothing leaves this machine. kube-proxy and CoreDNS run as host processes, as
"the hard way" runs them: kube-proxy programs the Service rules (10.96.0.0/16) into the host's iptables,
CoreDNS answers the cluster's names on the first bridge's address, which every kubelet gives pods as their
nameserver. Further nodes (node-2, ...) are a second containerd and kubelet with their own bridge, state
folder and pod logs; the host's iptables and routes serve them too, so the Services and DNS reach them.
`down` removes every process, iptables rule, mount and network namespace it made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2e import procs
from e2e.controlplane import LocalCluster
from e2e.network import NETWORK, NodeNetwork, bridge_exists, kube_chains, mounts_under, netns, remove_kube_chains

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PAUSE_C = """#include <signal.h>
#include <unistd.h>
static void done(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }
"""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=300)


def ensure_packages() -> None:
    """containerd 1.7 from trixie (pinned low by build-kubernetes.sh), runc, CNI plugins and iptables."""
    if shutil.which("containerd") and Path("/usr/lib/cni/bridge").exists() and shutil.which("iptables"):
        return
    before = set(_run("pgrep", "-x", "containerd", check=False).stdout.split())
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    Path("/usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    Path("/usr/sbin/policy-rc.d").chmod(0o755)
    subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "containerd/trixie",
            "runc",
            "containernetworking-plugins",
            "iptables",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    # A package script may have started a containerd: stop that one, never one that ran before.
    for pid in set(_run("pgrep", "-x", "containerd", check=False).stdout.split()) - before:
        _run("kill", pid, check=False)


@dataclass
class Node:
    cluster: LocalCluster
    state_dir: Path
    index: int = 1

    @property
    def net(self) -> NodeNetwork:
        return NETWORK.node(self.index)

    @property
    def name(self) -> str:
        return self.net.name

    @property
    def serves_cluster(self) -> bool:
        """The first node also runs kube-proxy and CoreDNS for every node."""
        return self.index == 1

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd.sock"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "node-pids"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check)

    # --- lifecycle -----------------------------------------------------------------------------------
    @property
    def services_pids_file(self) -> Path:
        return self.state_dir / "service-pids"

    def running(self) -> bool:
        """Every process of this node (containerd, kubelet, and kube-proxy and CoreDNS on the first) is alive."""
        if not (self.pids_file.exists() and (self.services_pids_file.exists() or not self.serves_cluster)):
            return False
        return all(procs.alive(pid) for pid in _pids(self.pids_file) + _pids(self.services_pids_file))

    def clear_stale_service_chains(self) -> None:
        """Remove the Service chains a killed earlier run's kube-proxy left: this node's `down` runs the same
        `kube-proxy --cleanup`, so without this they would be counted as the host's own and then vanish."""
        if self.serves_cluster and self.cluster.bins is not None:
            _run(str(self.cluster.bins / "kube-proxy"), "--cleanup", check=False)

    def up(self) -> Node:
        ensure_packages()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.clear_stale_service_chains()
        # What the host had before: down removes only what this node added.
        (self.state_dir / "netns-before").write_text("\n".join(sorted(netns())))
        (self.state_dir / "kube-chains-before").write_text("\n".join(kube_chains()))
        _run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        _run("mount", "--make-rshared", "/")
        self._bridge()
        self._write_containerd_config()
        pids = [self._start("containerd", ["containerd", "--config", str(self.state_dir / "containerd.toml")])]
        self._wait(lambda: self.ctr("version", check=False).returncode == 0, "containerd")
        self._import_pause()
        self._write_kubelet_config()
        assert self.cluster.bins is not None
        pids.append(
            self._start(
                "kubelet",
                [
                    str(self.cluster.bins / "kubelet"),
                    f"--config={self.state_dir / 'kubelet.yaml'}",
                    f"--kubeconfig={self.state_dir / 'kubelet.kubeconfig'}",
                    f"--root-dir={self.state_dir / 'kubelet'}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.net.node_ip}",
                    "--v=1",
                ],
            )
        )
        self.pids_file.write_text(" ".join(map(str, pids)))
        self._wait(self._ready, f"{self.name} to be Ready")
        if self.serves_cluster:
            self._start_cluster_services()
        return self

    def _start_cluster_services(self) -> None:
        """kube-proxy and CoreDNS, as host processes: they serve every node."""
        assert self.cluster.bins is not None
        self._write_kube_proxy_config()
        self._write_corefile()
        extra = [
            self._start(
                "kube-proxy", [str(self.cluster.bins / "kube-proxy"), f"--config={self.state_dir / 'kube-proxy.yaml'}"]
            ),
            self._start("coredns", [str(self.cluster.bins / "coredns"), "-conf", str(self.state_dir / "Corefile")]),
        ]
        self.services_pids_file.write_text(" ".join(map(str, extra)))
        self._wait(self._services_programmed, "kube-proxy's rules for the kubernetes Service")
        self._wait(self._dns_ready, "CoreDNS to be ready")

    def down(self) -> None:
        """Stop CoreDNS, kube-proxy, the kubelet, containers and containerd; remove the iptables chains
        they made; unmount, delete the network namespaces and the bridge. Later nodes go down before the first."""
        for pid in _pids(self.services_pids_file):
            procs.stop_group(pid)
        pids = _pids(self.pids_file)
        if pids:
            procs.stop_group(pids[-1])  # the kubelet first, so it restarts nothing
        if self.cluster.bins is not None and (self.state_dir / "kube-proxy.yaml").exists():
            # kube-proxy's own cleanup removes the Service chains; the kubelet's canaries stay, so they go next.
            _run(str(self.cluster.bins / "kube-proxy"), "--cleanup", check=False)
        if self.serves_cluster:  # a later node adds no chain of its own (its kubelet's canaries exist already)
            remove_kube_chains(set(_lines(self.state_dir / "kube-chains-before")))
        if self.socket.exists():
            tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
            for task in tasks:
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            for task in tasks:
                self.ctr("tasks", "delete", "-f", task, check=False)
        for pid in pids[:-1]:
            procs.stop_group(pid)
        _run("pkill", "-f", f"containerd-shim-runc-v2 .*-address {self.socket}", check=False)
        for mount in sorted(mounts_under(self.state_dir), reverse=True):
            _run("umount", "-l", mount, check=False)
        if self.serves_cluster:  # a later node keeps its network namespaces in its state folder (unmounted above)
            for ns in set(netns()) - set(_lines(self.state_dir / "netns-before")):
                _run("ip", "netns", "delete", ns, check=False)
        # The harness's own name: ours, even from a crashed run.
        _run("ip", "link", "delete", self.net.bridge, check=False)
        if self.pids_file.exists():
            self.pids_file.unlink()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def import_image(self, image: str) -> None:
        """podman save -> ctr import: images reach the node without a registry."""
        tar = self.state_dir / "image.tar"
        _run("podman", "save", "-o", str(tar), image)
        self.ctr("images", "import", str(tar))
        tar.unlink()

    # --- pieces --------------------------------------------------------------------------------------
    def _start(self, name: str, cmd: list[str]) -> int:
        return procs.start(cmd, self.state_dir / f"{name}.log")

    def _wait(self, check: Callable[[], object], what: str, timeout: float = 120) -> None:
        procs.wait_for(check, what, timeout, self.state_dir)

    def _ready(self) -> bool:
        assert self.cluster.bins is not None
        out = _run(
            str(self.cluster.bins / "kubectl"),
            f"--kubeconfig={self.cluster.kubeconfig}",
            "get",
            "node",
            self.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return out.stdout.strip() == "True"

    def _bridge(self) -> None:
        bridge = self.net.bridge
        if not bridge_exists(bridge):
            _run("ip", "link", "add", bridge, "type", "bridge")
            _run("ip", "addr", "add", self.net.node_cidr, "dev", bridge)
        _run("ip", "link", "set", bridge, "up")

    def _write_containerd_config(self) -> None:
        s = self.state_dir
        (s / "cni").mkdir(exist_ok=True)
        (s / "containerd.toml").write_text(f"""version = 2
root = "{s}/containerd/root"
state = "{s}/containerd/state"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This sandbox refuses negative oom_score_adj for the pause container ("can't get final child's PID").
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  disable_apparmor = true
  netns_mounts_under_state_dir = {"false" if self.serves_cluster else "true"}
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{s}/cni"
""")
        conflist = {
            "cniVersion": "0.4.0",
            "name": f"valkeynet-{self.name}",  # host-local keeps its leases per network name
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.net.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.net.pod_cidr, "gateway": self.net.node_ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (s / "cni" / "10-bridge.conflist").write_text(json.dumps(conflist))  # CNI reads JSON only

    def _import_pause(self) -> None:
        if PAUSE_IMAGE in self.ctr("images", "ls", "-q").stdout.split():
            return
        work = self.state_dir / "pause"
        work.mkdir(exist_ok=True)
        (work / "pause.c").write_text(PAUSE_C)
        _run("gcc", "-static", "-O2", "-o", str(work / "pause"), str(work / "pause.c"))
        (work / "Containerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
        _run("podman", "build", "--pull=never", "-t", PAUSE_IMAGE, str(work))
        self.import_image(PAUSE_IMAGE)

    def _write_kubelet_config(self) -> None:
        s = self.state_dir
        kubeconfig = self.cluster.kubeconfig_for(f"system:node:{self.name}", ("system:nodes",), s)
        kubeconfig.rename(s / "kubelet.kubeconfig")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cluster.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [NETWORK.first.node_ip],  # CoreDNS listens on the first bridge's address
            "address": self.net.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "enforceNodeAllocatable": [],
            "cgroupsPerQOS": False,
            "resolvConf": "/etc/resolv.conf",
            # Each kubelet removes the log folders of pods it does not know: one folder per node.
            "podLogsDir": str(s / "pod-logs"),
        }
        (s / "kubelet.yaml").write_text(yaml.safe_dump(config))

    def _write_kube_proxy_config(self) -> None:
        # system:kube-proxy is bound to the built-in system:node-proxier ClusterRole.
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {
                "kubeconfig": str(self.cluster.kubeconfig_for("system:kube-proxy", (), self.state_dir))
            },
            "mode": "iptables",
            "clusterCIDR": NETWORK.cluster_cidr,
            "hostnameOverride": self.name,
            "bindAddress": self.net.node_ip,
            "healthzBindAddress": f"127.0.0.1:{procs.free_port()}",
            "metricsBindAddress": f"127.0.0.1:{procs.free_port()}",
            # Leave the host's conntrack table and sysctls as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        }
        (self.state_dir / "kube-proxy.yaml").write_text(yaml.safe_dump(config))

    def _write_corefile(self) -> None:
        self.dns_ports = {"health": procs.free_port(), "ready": procs.free_port()}
        (self.state_dir / "Corefile").write_text(f""".:53 {{
    bind {self.net.node_ip}
    errors
    health 127.0.0.1:{self.dns_ports["health"]}
    ready 127.0.0.1:{self.dns_ports["ready"]}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.cluster.kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")

    def _services_programmed(self) -> bool:
        rules = _run("iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False).stdout
        return "default/kubernetes:https cluster IP" in rules

    def _dns_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.dns_ports['ready']}/ready", timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False


def _pids(path: Path) -> list[int]:
    """The pids a node wrote to `path` (none when it is missing)."""
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
