"""The local Kubernetes's processes: start one in a group of its own with a log, wait for a condition
(bounded), stop a whole group. One set of helpers for the control plane and the node."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], log: Path) -> int:
    """Start `argv` in a new session (so its whole group can be stopped), output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True).pid


def wait_for(check: Callable[[], object], what: str, timeout: float, logs: Path) -> None:
    """Poll `check` twice a second until it is true; on time-out, raise with the tail of every log in `logs`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def stop_group(pid: int, grace: float = 15.0) -> None:
    """SIGTERM a process group, SIGKILL it after `grace` seconds, and reap the leader."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


ESTABLISHED = '{.status.conditions[?(@.type=="Established")].status}'
STORED = "{.spec.versions[?(@.storage==true)].name}"


def wait_established(kubectl: list[str], crds: list[str], timeout: float = 60.0) -> None:
    """Wait (bounded) until each CRD is Established and its kind can be watched. `kubectl wait
    --for=condition=Established` is not used: right after the create it may read `status.conditions: null`
    and fail at once ("accessor error"). A watch is refused (429, "storage is (re)initializing") for a
    moment after that: an operator started then may miss its first events."""
    deadline = time.monotonic() + timeout

    def get(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired as exc:  # a hung request: tried again until the deadline
            return subprocess.CompletedProcess(exc.cmd, 1, "", f"timed out: {exc}")

    for crd in crds:
        plural, _, group = crd.partition(".")
        while True:
            out = get("get", "crd", crd, "-o", f"jsonpath={ESTABLISHED} {STORED}")
            established, _, version = out.stdout.strip().partition(" ")
            watch = f"/apis/{group}/{version}/{plural}?watch=1&timeoutSeconds=1"
            if established == "True" and get("get", "--raw", watch).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {crd} is not Established and watchable after {timeout:.0f} s: {out.stderr}")
            time.sleep(0.5)
