"""Apply N ValkeyClusters to a real API server and measure the operator. Prints figures; asserts nothing.

For each code (this checkout, and `--baseline REF` from a git worktree) and each `--count`, on a fresh
control plane of its own (the project's; none is left over from the run before):
- the time until every ValkeyCluster is Ready-for-pods (all owned objects created and status written);
- the operator's reconcile passes (p50/p95, from its log) and their rhythm: how late each started after it
  was due (this checkout's log says so), in all and by what asked for it (an admission or edit of the
  cluster, news of an owned object, a revisit its last pass asked for, a sweep, a role check that found
  roles moved), and the gap between passes of one cluster;
- the API requests the operator made, by verb, for the initial sync and for `--idle` seconds after it, from
  the API server's own counters: the operator runs as a user of its own, and one FlowSchema per verb
  matches only that user, so `apiserver_flowcontrol_dispatched_requests_total` by FlowSchema is the
  operator's requests by verb (`apiserver_request_total`, for every client, is printed beside it);
- the operator's CPU time and memory (RSS per cluster, peak), and during the sync the CPU time of each
  control-plane process and how busy the whole machine was (what bounds the sync on a small machine);
- how long it takes to exit after SIGTERM, with the fleet in place;
- with `--probes N`: whether a cluster that promised its next pass keeps that rhythm while the fleet syncs.
  N probe clusters are created first, in the same namespace, where an admission policy refuses their
  Secrets: each of their passes fails at its first write and promises the next in 15 s (a failed pass's
  retry, which the pass queue serves like a failover's re-check). Once each has had two passes, the fleet
  is applied; the probes' passes during the sync, how late each started and the gaps between them, are
  printed, and the probes are deleted before the idle window (their passes' requests count in the sync's).

The clusters never get pods running (the control plane has no node): they wait for pods, as a fleet just
created does. Uses the current KUBECONFIG instead when set (one run per code and count, in namespaces;
no per-user attribution there).

    .venv/bin/python bench/bench_apiserver.py --count 200 --count 1000 --baseline 855add2 [--idle 600] [--floor]
        [--probes 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the e2e package importable

OPERATOR_USER = "bench:valkey-operator"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")  # RBAC's (server-side apply: patch)
HTTP_VERBS = ("get", "list", "watch", "post", "put", "patch", "apply", "delete")  # apiserver_request_total's
WRITES = ("create", "update", "patch", "delete")
SLOW_TIMER = 300.0  # the operator's default slow timer: the idle budget is per cluster per this period
FLEET_PREFIX, PROBE_PREFIX = "vk-", "probe-"
PROBE_RETRY = 15.0  # seconds: decide.FAILED_PASS_RETRY, the next pass a probe's failed pass promises
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} ([0-9.e+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_PASS = re.compile(
    r"^(\S+ \S+) INFO valkey_operator.handlers: reconciled (\S+) \((\S+)\) in ([0-9.]+) s(?:, ([0-9.]+) s after due)?"
)


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False, timeout=300)
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def scrape() -> dict[str, Counter[str]]:
    """The API server's counters: requests by verb (every client, leases aside), and the operator's by verb
    (its FlowSchemas)."""
    every: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2))), float(m.group(3))
        if name == "apiserver_request_total" and labels.get("resource") != "leases":
            every[labels.get("verb", "").lower()] += int(value)
        elif name == "apiserver_flowcontrol_dispatched_requests_total":
            schema = labels.get("flow_schema", "")
            if schema.startswith("bench-operator-"):
                ours[schema.removeprefix("bench-operator-")] += int(value)
    return {"every": every, "ours": ours}


def delta(after: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    return {k: Counter({v: after[k][v] - before[k][v] for v in after[k]}) for k in after}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# The control plane's processes, by the name /proc/PID/comm gives them (cut to 15 characters).
CONTROL_PLANE = {"kube-apiserver": "API server", "etcd": "etcd", "kube-controller": "controller manager",
                 "kube-scheduler": "scheduler"}  # fmt: skip


def control_plane_cpu() -> dict[str, float]:
    """CPU seconds used so far by each control-plane process on this machine (none: a remote cluster)."""
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            comm = (proc / "comm").read_text().strip()
            if comm in CONTROL_PLANE:
                out[CONTROL_PLANE[comm]] = out.get(CONTROL_PLANE[comm], 0.0) + cpu_seconds(int(proc.name))
    return out


def machine_jiffies() -> tuple[int, int]:
    """The machine's busy and total CPU time so far (/proc/stat, every core)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def memory_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def connections(pid: int) -> Counter[str]:
    """The process's open TCP connections, by the remote port they go to (each TLS one holds buffers)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out: Counter[str] = Counter()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                    out[str(int(fields[2].rsplit(":", 1)[1], 16))] += 1
    return out


def ready_for_pods(namespace: str) -> int:
    """The fleet's clusters (not the probes) whose status says their certificates are in place."""
    out = kubectl(
        "get",
        "valkeyclusters",
        "-n",
        namespace,
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}={.status.certificates.server.notAfter}{"\\n"}{end}',
    )
    return sum(1 for line in out.splitlines() if line.startswith(FLEET_PREFIX) and not line.endswith("="))


def attribute_operator(folder: Path, cluster: object) -> Path:
    """A kubeconfig for the operator's own user (cluster-admin by a binding, outside system:masters so that
    its requests are classified) and one FlowSchema per verb that matches only it."""
    kubeconfig: Path = cluster.kubeconfig_for(OPERATOR_USER, ("bench",), folder)  # type: ignore[attr-defined]
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "bench-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}],
        }
    ]
    for verb in VERBS:
        docs.append(
            {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": f"bench-operator-{verb}"},
                "spec": {
                    # Exempt, as the operator's requests are when it runs as an admin: counted, never queued.
                    "priorityLevelConfiguration": {"name": "exempt"},
                    "matchingPrecedence": 100,
                    "rules": [
                        {
                            "subjects": [{"kind": "User", "user": {"name": OPERATOR_USER}}],
                            "resourceRules": [
                                {
                                    "verbs": [verb],
                                    "apiGroups": ["*"],
                                    "resources": ["*"],
                                    "clusterScope": True,
                                    "namespaces": ["*"],
                                }
                            ],
                        }
                    ],
                },
            }
        )
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return kubeconfig


@dataclass
class Result:
    code: str
    count: int
    ready: int = 0
    sync_s: float = 0.0
    passes: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    late_by: dict[str, list[float]] = field(default_factory=dict)  # by what asked for the pass
    gaps: list[float] = field(default_factory=list)
    sync_calls: dict[str, Counter[str]] = field(default_factory=dict)
    idle_calls: dict[str, Counter[str]] = field(default_factory=dict)
    idle_passes: int = 0
    idle_s: float = 0.0
    cpu_sync: float = 0.0
    cpu_idle: float = 0.0
    rss_base: float = 0.0
    rss_sync: float = 0.0
    rss_peak: float = 0.0
    sockets: Counter[str] = field(default_factory=Counter)  # established TCP connections after the sync, by port
    shutdown_s: float = 0.0
    trace: str = ""
    control_plane_sync: dict[str, float] = field(default_factory=dict)  # CPU seconds by process, sync
    busy_sync: float = 0.0  # the machine's busy fraction during the sync (every core)
    probes: int = 0
    probe_late: list[float] = field(default_factory=list)  # the probes' passes in the sync: started after due (s)
    probe_gaps: list[float] = field(default_factory=list)  # between passes of one probe, through the sync (s)


# With --tracemalloc: the operator started under tracemalloc, writing its top allocations (by file) to
# the path in VALKEY_BENCH_TRACE on SIGUSR1.
_TRACED = r"""
import os, signal, sys, tracemalloc
FRAMES = int(os.environ["VALKEY_BENCH_FRAMES"])  # 0: the census alone, no tracemalloc (an undistorted run)
if FRAMES:
    tracemalloc.start(FRAMES)
def dump(*_):
    try:
        text = _dump()
    except Exception:  # never into the operator's event loop, which the signal interrupted
        import traceback
        text = traceback.format_exc()
    with open(os.environ["VALKEY_BENCH_TRACE"], "w") as out:  # at once: the bench reads it once it has a size
        out.write(text)
def _dump():
    text = []
    if FRAMES:
        snap = tracemalloc.take_snapshot()
        for group in ("filename", "lineno"):
            stats = snap.statistics(group)
            text.append(f"by {group}: {sum(s.size for s in stats) / 2**20:.1f} MiB traced\n")
            for stat in stats[:15]:
                text.append(f"  {stat.size / 2**20:8.1f} MiB {stat.count:9d} blocks  {stat.traceback}\n")
    text.append(census())
    return "".join(text)
CONNECTIONS = (
    "asyncio.sslproto.SSLProtocol", "aiohttp.client_proto.ResponseHandler", "urllib3.connection.HTTPSConnection"
)
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
def census():
    # Which Kubernetes objects stay decoded in memory, by kind, and what holds a few of each.
    import gc
    from collections import Counter
    def deep(o, seen):
        if id(o) in seen:
            return 0
        seen.add(id(o))
        size = sys.getsizeof(o)
        if isinstance(o, dict):
            size += sum(deep(k, seen) + deep(v, seen) for k, v in o.items())
        elif isinstance(o, (list, tuple)):
            size += sum(deep(v, seen) for v in o)
        return size
    count, size, holders, seen = Counter(), Counter(), Counter(), set()
    everything = gc.get_objects()
    types = Counter(type(o) for o in everything)
    lines = [f"objects the collector tracks: {len(everything)}; the most common types:"]
    lines += [f"  {repr(t)[8:-2]:60s} {n:9d}" for t, n in types.most_common(25)]
    by_name = {repr(t)[8:-2]: n for t, n in types.items()}
    lines.append("connections: " + ", ".join(f"{name} {by_name.get(name, 0)}" for name in CONNECTIONS))
    import ctypes
    before = rss()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    lines.append(f"RSS {before:.0f} MiB; after malloc_trim(0) {rss():.0f} MiB (freed heap the C allocator keeps)")
    found = [o for o in everything if type(o) is dict and "metadata" in o and ("kind" in o or "spec" in o)]
    del everything
    for o in found:
        kind = str(o.get("kind", "?"))
        count[kind] += 1
        size[kind] += deep(o, seen)
    lines.append("decoded Kubernetes objects in memory (dicts with metadata; a pod template counts as \"?\"):")
    for kind, n in count.most_common():
        lines.append(f"  {kind:28s} {n:7d} {size[kind] / 2**20:8.1f} MiB")
    sampled = Counter()
    for o in found:
        kind = str(o.get("kind", "?"))
        if sampled[kind] >= 3:
            continue
        sampled[kind] += 1
        for r in gc.get_referrers(o):
            if r is found:
                continue
            name = type(r).__qualname__
            if isinstance(r, dict):
                up = [type(u).__qualname__ for u in gc.get_referrers(r) if u is not found][:3]
                name += f" <- {up}"
            holders[(kind, name)] += 1
    lines.append("what holds a few of each:")
    for (kind, name), n in holders.most_common(40):
        lines.append(f"  {kind:24s} {n:3d} {name[:120]}")
    return "\n".join(lines) + "\n"
signal.signal(signal.SIGUSR1, dump)
from valkey_operator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _operator(
    source: Path, namespace: str, kubeconfig: Path | None, log: Path, trace: Path | None, frames: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(source / "operator"),
        "VALKEY_OPERATOR_TIMER_INTERVAL": str(SLOW_TIMER),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    args = ["run", "--namespace", namespace, "--standalone", "--metrics-port", "0", "--health-port", "0"]
    command = [sys.executable, "-m", "valkey_operator.cli"]
    if trace is not None:
        env.update(VALKEY_BENCH_TRACE=str(trace), VALKEY_BENCH_FRAMES=str(frames))
        command = [sys.executable, "-c", _TRACED]
    return subprocess.Popen([*command, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def _dump(proc: subprocess.Popen[bytes], trace: Path) -> str:
    """Ask the traced operator for its top allocations (a snapshot takes a while at 1,000 clusters)."""
    proc.send_signal(signal.SIGUSR1)
    for _ in range(600):
        if trace.exists() and trace.stat().st_size:
            time.sleep(1)
            break
        time.sleep(0.5)
    return trace.read_text() if trace.exists() else "(no dump)"


def _log_passes(log: Path, since: datetime | None = None) -> list[tuple[datetime, str, str, float, float | None]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _PASS.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if since is None or at >= since:
            late = float(m.group(5)) if m.group(5) else None
            out.append((at, m.group(2), m.group(3), float(m.group(4)), late))
    return out


@dataclass
class Sample:
    """The counters at one moment: the API server's, the operator's CPU, the control plane's, the machine's."""

    calls: dict[str, Counter[str]]
    cpu: float
    control_plane: dict[str, float]
    jiffies: tuple[int, int]

    @classmethod
    def take(cls, pid: int) -> Sample:
        return cls(scrape(), cpu_seconds(pid), control_plane_cpu(), machine_jiffies())


def _refuse_probe_secrets(namespace: str) -> str:
    """An admission policy that refuses the probes' Secrets in `namespace` (their names start with theirs);
    returns its name (the policy's and the binding's), once the API server applies it."""
    policy = f"refuse-probes-{namespace}"
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["secrets"]}
    docs = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [rule]},
                "validations": [
                    {"expression": f"!object.metadata.name.startsWith('{PROBE_PREFIX}')", "message": "a probe"}
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        },
    ]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    for _ in range(120):
        dry = subprocess.run(
            ["kubectl", "create", "secret", "generic", f"{PROBE_PREFIX}x", "-n", namespace, "--dry-run=server"],
            capture_output=True,
            text=True,
            check=False,
        )
        if dry.returncode != 0 and "a probe" in dry.stderr:
            return policy
        time.sleep(1)
    raise RuntimeError("the probes' admission policy never took effect")


def _create_probes(namespace: str, count: int, log: Path) -> None:
    """`count` probe clusters, and wait (2 min at most) until each has had two passes: in its rhythm."""
    docs = _fleet_docs(namespace, count, PROBE_PREFIX)
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    names = {f"{namespace}/{d['metadata']['name']}" for d in docs}
    for _ in range(120):
        seen = Counter(p[1] for p in _log_passes(log) if p[1] in names)
        if len(seen) == count and min(seen.values()) >= 2:
            return
        time.sleep(1)
    raise RuntimeError(f"the probes did not get their passes: {seen}")


def _start_probes(namespace: str, count: int, log: Path) -> str:
    """The probes in their rhythm, their Secrets refused; returns the admission policy's name."""
    policy = _refuse_probe_secrets(namespace)
    _create_probes(namespace, count, log)
    return policy


def _end_probes(namespace: str, count: int, policy: str) -> None:
    """The probes and their policy deleted, and their deletions' events let pass, before the idle window."""
    probes = [d["metadata"]["name"] for d in _fleet_docs(namespace, count, PROBE_PREFIX)]
    kubectl("delete", "valkeyclusters", "-n", namespace, *probes, "--wait=false")
    kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy)
    time.sleep(2)


def _create_fleet(namespace: str, count: int) -> tuple[int, float]:
    """Apply `count` copies of the example and wait until each is Ready-for-pods (30 min at most): how many
    were, and after how long."""
    docs = _fleet_docs(namespace, count)
    start = time.monotonic()
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    ready = 0
    while time.monotonic() < start + 1800:
        ready = ready_for_pods(namespace)
        if ready >= count:
            break
        time.sleep(2)
    return ready, time.monotonic() - start


def measure(
    code: str,
    source: Path,
    count: int,
    idle: float,
    kubeconfig: Path | None,
    attributed: bool,
    frames: int | None,
    probes: int = 0,
) -> Result:
    namespace = f"bench-{count}-{int(time.time())}"
    kubectl("create", "namespace", namespace)
    res = Result(code, count)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    trace = log.with_name("tracemalloc.txt") if frames is not None else None
    proc = _operator(source, namespace, kubeconfig, log, trace, frames or 0)
    try:
        time.sleep(5)
        res.rss_base = memory_mib(proc.pid, "VmRSS")
        policy = _start_probes(namespace, probes, log) if probes else None
        s0 = Sample.take(proc.pid)
        fleet_from = datetime.now()
        res.ready, res.sync_s = _create_fleet(namespace, count)
        sync_end = datetime.now()
        if policy is not None:
            _end_probes(namespace, probes, policy)
        s1 = Sample.take(proc.pid)
        res.control_plane_sync = {k: v - s0.control_plane.get(k, 0.0) for k, v in s1.control_plane.items()}
        res.busy_sync = (s1.jiffies[0] - s0.jiffies[0]) / max(s1.jiffies[1] - s0.jiffies[1], 1)
        res.rss_sync = memory_mib(proc.pid, "VmRSS")
        res.sockets = connections(proc.pid)
        if trace is not None:
            res.trace = _dump(proc, trace)
        idle_from = datetime.now()
        time.sleep(idle)
        s2 = Sample.take(proc.pid)
        res.idle_s = idle
        res.rss_peak = memory_mib(proc.pid, "VmHWM")
        res.sync_calls, res.idle_calls = delta(s1.calls, s0.calls), delta(s2.calls, s1.calls)
        res.cpu_sync, res.cpu_idle = s1.cpu - s0.cpu, s2.cpu - s1.cpu
        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
        res.shutdown_s = time.monotonic() - stop
    finally:
        if proc.poll() is None:
            proc.kill()
    _from_log(res, log, idle_from)
    if probes:
        _probes_from_log(res, log, namespace, fleet_from, sync_end)
        res.probes = probes
    if not attributed:
        res.sync_calls.pop("ours", None)
        res.idle_calls.pop("ours", None)
    return res


def _from_log(res: Result, log: Path, idle_from: datetime) -> None:
    passes = _log_passes(log)
    res.passes = [p[3] for p in passes if p[0] < idle_from]
    res.late = [p[4] for p in passes if p[4] is not None]
    for p in passes:
        if p[4] is not None:
            res.late_by.setdefault(p[2], []).append(p[4])
    res.idle_passes = sum(1 for p in passes if p[0] >= idle_from)
    last: dict[str, datetime] = {}
    for at, name, _, _, _ in passes:
        if name in last:
            res.gaps.append((at - last[name]).total_seconds())
        last[name] = at


def _probes_from_log(res: Result, log: Path, namespace: str, since: datetime, until: datetime) -> None:
    """The probes' passes while the fleet synced: how late each started, and the gaps between passes of one
    probe (the first gap runs from its last pass before the fleet came)."""
    last: dict[str, datetime] = {}
    for at, name, _, _, late in _log_passes(log):
        if not name.startswith(f"{namespace}/{PROBE_PREFIX}") or at > until:
            continue
        if at >= since:
            if late is not None:
                res.probe_late.append(late)
            if name in last:
                res.probe_gaps.append((at - last[name]).total_seconds())
        last[name] = at


# What asks for a pass (the scheduler's reasons, in the operator's log line), for the after-due rows.
PASS_REASONS = {
    "reconcile": "admitted or edited",
    "watch": "owned-object news",
    "timer": "timer revisit",
    "sweep": "namespace sweep",
    "role-check": "role check: roles moved",
}


def _late(values: list[float] | None) -> str:
    """Passes started after due: how many; p50 / p95 (s). n/a for a log that does not say (an older code)."""
    if values is None:
        return "n/a"
    return f"{len(values)}; {_q(values, 50):.2f} / {_q(values, 95):.2f}" if values else "0"


def _q(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


FLOOR_THREADS = 16  # the bare client's requests under way at once (the operator's fan-out pool)


@dataclass
class Floor:
    """The same writes a fleet's first passes make, by a bare client on a fresh control plane."""

    count: int
    gets: bool = False  # one GET of each object's name before its apply, as a cluster's first pass makes
    seconds: float = 0.0
    writes: int = 0
    control_plane: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0


def _fleet_docs(namespace: str, count: int, prefix: str = FLEET_PREFIX) -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    docs = []
    for i in range(count):
        doc = json.loads(json.dumps(base))
        doc["metadata"] = {"name": f"{prefix}{i}", "namespace": namespace}
        docs.append(doc)
    return docs


def measure_floor(count: int, gets: bool = False) -> Floor:
    """What the control plane needs for the sync with no operator at all: the ValkeyClusters applied, then
    each one's rendered objects applied (server-side, FLOOR_THREADS at once) and its status patched once, as
    the operator's first passes do. The StatefulSets' pods are created and scheduled meanwhile, as in the
    sync. Without `gets`, a floor of writes only; with it, each apply comes after a GET of its name (the
    operator asks so for each name its watches have not shown: what those GETs cost the sync)."""
    from concurrent.futures import ThreadPoolExecutor

    from valkey_operator import names
    from valkey_operator.k8s.client import Kube
    from valkey_operator.render import render_documents

    out = Floor(count, gets)
    with fresh_control_plane():
        namespace = f"floor-{count}"
        kubectl("create", "namespace", namespace)
        docs = _fleet_docs(namespace, count)
        manifests = render_documents(docs)  # before the clock starts: the operator mints as it goes
        kube = Kube()
        status = {"phase": "Provisioning", "certificates": {"server": {"notAfter": "2027-01-01T00:00:00Z"}}}

        def patch(doc: dict[str, Any]) -> object:
            meta = doc["metadata"]
            return kube.patch_status(names.API_VERSION, names.KIND, meta["namespace"], meta["name"], status)

        def write(manifest: dict[str, Any]) -> object:
            if gets:
                meta = manifest["metadata"]
                kube.get(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
            return kube.apply(manifest)

        s0 = Sample.take(os.getpid())
        start = time.monotonic()
        kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
        with ThreadPoolExecutor(FLOOR_THREADS) as pool:
            list(pool.map(write, manifests))
            list(pool.map(patch, docs))
        out.seconds = time.monotonic() - start
        s1 = Sample.take(os.getpid())
        out.writes = len(docs) * 2 + len(manifests)
        out.control_plane = {k: v - s0.control_plane.get(k, 0.0) for k, v in s1.control_plane.items()}
        out.busy = (s1.jiffies[0] - s0.jiffies[0]) / max(s1.jiffies[1] - s0.jiffies[1], 1)
    return out


def report_floor(floors: list[Floor]) -> None:
    print("\nThe floor: the same writes by a bare client, no operator (see measure_floor)")
    for f in floors:
        cpu = ", ".join(f"{who} {f.control_plane.get(who, 0.0):.1f} s" for who in CONTROL_PLANE.values())
        gets = f", {f.writes - 2 * f.count} GETs, one before each apply" if f.gets else ""
        print(
            f"  n={f.count}{gets}: {f.writes} writes in {f.seconds:.1f} s ({f.writes / max(f.seconds, 1e-9):.0f}/s), "
            f"machine busy {100 * f.busy:.0f} %; CPU: {cpu}"
        )


def report(results: list[Result]) -> None:
    cols = [f"{r.code} n={r.count}" for r in results]
    width = max(18, *(len(c) + 2 for c in cols))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<44}" + "".join(f" {v:>{width - 1}}" for v in values))  # a space between, always

    row("", cols)
    row("ready-for-pods", [f"{r.ready}/{r.count}" for r in results])
    row("all ready-for-pods (s)", [f"{r.sync_s:.1f}" for r in results])
    row("reconcile passes during sync", [str(len(r.passes)) for r in results])
    row("reconcile p50 / p95 (ms)", [f"{1000 * _q(r.passes, 50):.0f} / {1000 * _q(r.passes, 95):.0f}" for r in results])
    row("pass started after due (n; p50 / p95 s)", [_late(r.late or None) for r in results])
    others = sorted({reason for r in results for reason in r.late_by} - set(PASS_REASONS))
    for reason, what in [*PASS_REASONS.items(), *((o, o) for o in others)]:
        row(f"  {what}", [_late(r.late_by.get(reason, []) if r.late else None) for r in results])
    row(
        "gap between passes of one cluster p50/p95 (s)",
        [f"{_q(r.gaps, 50):.1f} / {_q(r.gaps, 95):.1f}" for r in results],
    )
    for phase, attr in (("sync", "sync_calls"), ("idle", "idle_calls")):
        for who in ("ours", "every"):
            label = "operator" if who == "ours" else "API server, all clients"
            calls = [getattr(r, attr).get(who) for r in results]
            if all(c is None for c in calls):
                continue
            row(f"{phase}: {label} requests", [str(sum(c.values())) if c is not None else "-" for c in calls])
            for verb in VERBS if who == "ours" else HTTP_VERBS:
                row(f"  {verb}", [str(c.get(verb, 0)) if c is not None else "-" for c in calls])
    row("idle window (s)", [f"{r.idle_s:.0f}" for r in results])
    row("idle: passes", [str(r.idle_passes) for r in results])
    periods = [max(r.idle_s / SLOW_TIMER, 1e-9) for r in results]
    ours = [r.idle_calls.get("ours") for r in results]
    row(
        "idle: operator requests / cluster / slow period",
        [
            f"{sum(c.values()) / r.count / p:.2f}" if c is not None else "-"
            for c, r, p in zip(ours, results, periods, strict=True)
        ],
    )
    row(
        "idle: operator writes",
        [str(sum(c.get(v, 0) for v in WRITES)) if c is not None else "-" for c in ours],
    )
    row("operator CPU, sync / idle (s)", [f"{r.cpu_sync:.1f} / {r.cpu_idle:.1f}" for r in results])
    for who in CONTROL_PLANE.values():
        row(f"{who} CPU, sync (s)", [f"{r.control_plane_sync.get(who, 0.0):.1f}" for r in results])
    row(f"machine busy during sync ({os.cpu_count()} cores)", [f"{100 * r.busy_sync:.0f} %" for r in results])
    row("operator RSS before / after sync (MiB)", [f"{r.rss_base:.0f} / {r.rss_sync:.0f}" for r in results])
    row("operator RSS per cluster (KiB)", [f"{1024 * (r.rss_sync - r.rss_base) / r.count:.0f}" for r in results])
    row("operator peak RSS (MiB)", [f"{r.rss_peak:.0f}" for r in results])
    row(
        "operator TCP connections after sync, by port",
        [" ".join(f"{port}:{n}" for port, n in r.sockets.most_common(3)) or "-" for r in results],
    )
    row("exit after SIGTERM (s)", [f"{r.shutdown_s:.1f}" for r in results])
    if any(r.probes for r in results):
        print(f"\nprobes (each pass fails and promises the next in {PROBE_RETRY:.0f} s), while the fleet synced:")
        row("  probes; their passes", [f"{r.probes}; {len(r.probe_gaps)}" if r.probes else "-" for r in results])
        row(
            "  started after due p50 / p95 / max (s)",
            [
                f"{_q(r.probe_late, 50):.2f} / {_q(r.probe_late, 95):.2f} / {max(r.probe_late):.2f}"
                if r.probe_late
                else "-"
                for r in results
            ],
        )
        row(
            f"  gap between passes p50 / max (s; promise {PROBE_RETRY:.0f})",
            [f"{_q(r.probe_gaps, 50):.1f} / {max(r.probe_gaps):.1f}" if r.probe_gaps else "-" for r in results],
        )


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp()) / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), ref], check=True, capture_output=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)


def run_one(code: str, source: Path, count: int, idle: float, frames: int | None, probes: int = 0) -> Result:
    """One measurement; `frames`: None, no census; 0, the census of objects alone; 1, under tracemalloc."""
    from e2e.procs import wait_established

    if os.environ.get("KUBECONFIG"):
        kubectl("apply", "-f", str(ROOT / "crds"))
        wait_established(["kubectl"], ["valkeyclusters.valkeyops.dev"])
        return measure(code, source, count, idle, None, attributed=False, frames=frames, probes=probes)
    with fresh_control_plane() as (folder, cluster):
        kubeconfig = attribute_operator(folder, cluster)
        return measure(code, source, count, idle, kubeconfig, attributed=True, frames=frames, probes=probes)


@contextlib.contextmanager
def fresh_control_plane() -> Iterator[tuple[Path, object]]:
    """The project's local control plane, new, with the CRD established and KUBECONFIG pointing at it."""
    from e2e.controlplane import LocalCluster
    from e2e.procs import wait_established

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "cp") as cluster:
        saved = dict(os.environ)
        os.environ.update(cluster.env())
        try:
            kubectl("apply", "-f", str(ROOT / "crds"))
            wait_established(["kubectl"], ["valkeyclusters.valkeyops.dev"])
            yield Path(tmp), cluster
        finally:
            os.environ.clear()
            os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, action="append", help="clusters (repeatable; default 200)")
    parser.add_argument("--baseline", help="a git ref to measure beside this checkout (e.g. the last release)")
    parser.add_argument("--idle", type=float, default=600.0, help="seconds measured at rest after the sync")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="print the operator's top allocations after the sync (slower)"
    )
    parser.add_argument(
        "--census", action="store_true", help="print the operator's objects after the sync, without tracemalloc"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the same writes by a bare client, no operator (a floor), without and with the GETs",
    )
    parser.add_argument(
        "--probes",
        type=int,
        default=0,
        help="clusters whose every pass fails and promises the next in 15 s, created before the fleet: their rhythm",
    )
    args = parser.parse_args()
    counts = args.count or [200]
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        codes = [("this", ROOT)]
        if args.baseline:
            codes.insert(0, (args.baseline, stack.enter_context(worktree(args.baseline))))
        frames = 1 if args.tracemalloc else 0 if args.census else None
        for count in counts:
            for code, source in codes:
                print(f"measuring {code} with {count} clusters...", file=sys.stderr, flush=True)
                results.append(run_one(code, source, count, args.idle, frames, args.probes))
    floors = [measure_floor(count, gets) for count in counts for gets in (False, True)] if args.floor else []
    report(results)
    report_floor(floors)
    for r in results:
        if r.trace:
            print(f"\n{r.code} n={r.count}: the operator's memory after the sync\n{r.trace}")


if __name__ == "__main__":
    main()
