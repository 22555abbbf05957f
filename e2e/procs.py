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


def wait_established(kubectl: list[str], crds: list[str], timeout: float = 60.0) -> None:
    """Wait (bounded) until each CRD is Established. `kubectl wait --for=condition=Established` is not used:
    right after the create it may read `status.conditions: null` and fail at once ("accessor error")."""
    deadline = time.monotonic() + timeout
    for crd in crds:
        while True:
            out = subprocess.run(
                [*kubectl, "get", "crd", crd, "-o", f"jsonpath={ESTABLISHED}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if out.stdout.strip() == "True":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {crd} is not Established after {timeout:.0f} s: {out.stdout}{out.stderr}")
            time.sleep(0.5)
