"""A real control plane for the session, the CRD applied, and the operator running in this process.

The operator is the real one (kopf, the real handlers, the real Kubernetes adapter); only its clock is
a ManualClock, so renewals become due without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import yaml
from e2e.procs import wait_established

if TYPE_CHECKING:
    from valkey_operator.reconcile import Reconciler

# The timer re-checks often here, so tests that move the clock see the result quickly.
TIMER_INTERVAL = 2.0
WATCHED_PREFIX = "t-"

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from e2e.controlplane import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("controlplane"))
    cluster.up()
    env = cluster.env()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield cluster
    finally:
        cluster.down()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def kubectl_json(*args: str) -> Any:
    return yaml.safe_load(kubectl(*args, "-o", "json").stdout)


def written(obj: dict[str, Any]) -> str:
    """A digest of what writers of an object itself left on it: everything but its status, its
    resourceVersion and the managed-fields records of status writes. A StatefulSet's or a budget's status is
    its controller's to write at any moment (its resourceVersion moves with it), so a test that asks "did
    anyone write this object?" compares these. A digest, so a Secret's data never reaches an assertion's diff."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    meta["managedFields"] = [m for m in obj["metadata"].get("managedFields") or [] if m.get("subresource") != "status"]
    kept = {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, "metadata": meta}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def written_of(namespace: str, objects: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`written()` of each (kind, name) in `namespace`, keyed "kind/name"; an absent object is left out (so
    the same call says both "nothing was made" and "nothing made was written again")."""
    out = {}
    for kind, name in objects:
        got = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if got.returncode == 0:
            out[f"{kind}/{name}"] = written(json.loads(got.stdout))
        elif "NotFound" not in got.stderr:  # an API server that failed to answer says nothing of absence
            raise AssertionError(f"kubectl get {kind} {name} failed: {got.stderr}")
    return out


@pytest.fixture(scope="session")
def crd(control_plane: Any) -> None:
    kubectl("apply", "-f", str(ROOT / "crds"))
    wait_established(["kubectl"], ["valkeyclusters.valkeyops.dev"])
    # The OpenAPI document (kubectl explain, client-side validation) is published a little later.
    wait_until(lambda: kubectl("explain", "valkeycluster", check=False).returncode == 0, what="OpenAPI for the CRD")


@pytest.fixture(scope="session")
def cert_manager(control_plane: Any) -> Iterator[None]:
    """cert-manager's real controller (e2e/cert_manager.py) against the session's control plane, with its
    CRDs, from first use to the end of the session."""
    from e2e import cert_manager as cm

    with (
        (control_plane.state_dir / "cert-manager.log").open("w") as log,
        cm.running("kubectl", control_plane.kubeconfig, log),
    ):
        yield


class CountingReconciler:
    """The real Reconciler, counting finished passes per cluster, so a test waits for passes of its own
    cluster (a count over every cluster of the session passes as soon as others are busy)."""

    def __init__(self, *args: Any) -> None:
        from valkey_operator.reconcile import Reconciler

        self.inner = Reconciler(*args)
        self.passes: dict[tuple[str, str], int] = {}

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def reconcile(self, namespace: str, name: str) -> Any:
        outcome = self.inner.reconcile(namespace, name)
        key = (namespace, name)
        self.passes[key] = self.passes.get(key, 0) + 1
        return outcome


class OperatorThread:
    """kopf.operator() in a thread of its own; start() and stop() may be called again and again."""

    def __init__(self, clock: Any, config: Any = None, namespaces: list[str] | None = None) -> None:
        self.clock = clock
        self.config = config  # OperatorConfig; None: the session's (short slow timer)
        self.namespaces = namespaces or [f"{WATCHED_PREFIX}*", "default"]
        self.reconciler: CountingReconciler | None = None
        self.thread: threading.Thread | None = None
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def _run(self, stop_flag: threading.Event, ready_flag: threading.Event) -> None:
        import kopf

        from valkey_operator import handlers
        from valkey_operator.config import OperatorConfig
        from valkey_operator.k8s.cache import Cache, CachedKube
        from valkey_operator.k8s.client import Kube
        from valkey_operator.valkey_admin import ValkeyAdmin

        config = self.config or OperatorConfig(timer_interval=TIMER_INTERVAL)
        cached = CachedKube(Kube(), Cache())
        reconciler = CountingReconciler(cached, ValkeyAdmin(), self.clock, config.cluster_domain)
        self.reconciler = reconciler
        try:
            asyncio.run(
                kopf.operator(
                    registry=handlers.registry(config),
                    memo=handlers.memo(cast("Reconciler", reconciler), self.clock, config, cached),
                    # Only the namespaces of the `namespace` fixture: a test that drives passes itself
                    # (`unwatched_namespace`) is never reconciled behind its back.
                    namespaces=self.namespaces,
                    standalone=True,
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                )
            )
        except BaseException as exc:  # reported by the fixture
            self.error = exc

    def start(self) -> OperatorThread:
        assert self.thread is None, "already running"
        self.stop_flag, ready = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(self.stop_flag, ready), daemon=True)
        self.thread.start()
        assert ready.wait(60), "the operator did not start"
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.stop_flag.set()
            self.thread.join(60)
            assert not self.thread.is_alive(), "the operator did not stop"
            self.thread = None


@pytest.fixture(scope="session")
def clock() -> Any:
    from valkey_operator.clock import ManualClock

    return ManualClock()


class LogCapture(logging.Handler):
    """Every record the operator logs during the session, formatted with its traceback, if any."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # kopf names the object in `k8s_ref` (its own formatter makes that a prefix): keep it, so that a
        # traceback from kopf's handler-failure path is found by namespace too.
        ref = getattr(record, "k8s_ref", None)
        prefix = f"[{ref.get('namespace', '')}/{ref.get('name', '')}] " if isinstance(ref, dict) else ""
        self.lines.append(prefix + self.format(record))

    def tracebacks(self, about: str) -> list[str]:
        return [line for line in self.lines if "Traceback (most recent call last)" in line and about in line]


LOG = LogCapture()
# Secret values (passwords, private keys) of every namespace a test used: none may reach the operator's
# log, an Event or a status (checked per namespace when it goes, and over the whole log at the end).
SECRETS_SEEN: set[str] = set()
PEM_KEY = "PRIVATE KEY-----"


def _secret_values(namespace: str) -> set[str]:
    out = kubectl("get", "secrets", "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return set()
    values = set()
    for item in json.loads(out.stdout)["items"]:
        for key, value in (item.get("data") or {}).items():
            if key in ("password", "tls.key"):
                text = base64.b64decode(value).decode(errors="replace")
                values |= {text} if key != "tls.key" else {ln for ln in text.splitlines() if len(ln) > 40}
    return {v for v in values if len(v) >= 8}


def assert_nothing_secret_in(text: str, secrets: set[str], where: str) -> None:
    assert PEM_KEY not in text, f"a private key in {where}"
    leaked = [s[:4] + "..." for s in secrets if s in text]
    assert not leaked, f"secret values {leaked} in {where}"


@pytest.fixture(scope="session")
def operator(crd: None, clock: Any) -> Iterator[OperatorThread]:
    logging.getLogger().addHandler(LOG)
    logging.getLogger().setLevel(logging.INFO)
    op = OperatorThread(clock).start()
    yield op
    op.stop()
    logging.getLogger().removeHandler(LOG)
    assert op.error is None, op.error
    assert_nothing_secret_in("\n".join(LOG.lines), SECRETS_SEEN, "the operator's log")


def _namespace(prefix: str) -> Iterator[str]:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    secrets = _secret_values(name)
    SECRETS_SEEN.update(secrets)
    for kind in ("events", "valkeyclusters"):
        out = kubectl("get", kind, "-n", name, "-o", "json", check=False)
        assert_nothing_secret_in(out.stdout, secrets, f"the {kind} of {name}")
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(control_plane: Any) -> Iterator[str]:
    """A namespace the session's operator watches."""
    yield from _namespace(WATCHED_PREFIX)


@pytest.fixture
def unwatched_namespace(control_plane: Any) -> Iterator[str]:
    """A namespace no operator watches: the test runs every pass itself."""
    yield from _namespace("manual-")


def events_once_posted(namespace: str, selector: str, text: str, timeout: float = 30) -> str:
    """The namespace's Events matching a field selector, once one shows `text`. The operator posts a pass's
    Events after the pass (kopf's poster, asynchronously), so a status already showing the reason may come
    before its Event."""

    def posted() -> str | None:
        out = kubectl("get", "events", "-n", namespace, "--field-selector", selector).stdout
        return out if text in out else None

    return str(wait_until(posted, timeout=timeout, what=f"an Event with {text!r} ({selector})"))


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def example_body(namespace: str, name: str = "cache", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "valkeycluster.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"].update(spec)
    return body


def apply(body: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))


def get_vkc(namespace: str, name: str = "cache") -> dict[str, Any]:
    return dict(kubectl_json("get", "valkeycluster", name, "-n", namespace))


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def passes(operator: OperatorThread, namespace: str, name: str = "cache") -> int:
    """How many passes the session's operator has finished for this one cluster."""
    assert operator.reconciler is not None
    return operator.reconciler.passes.get((namespace, name), 0)


def handled_annotations(namespace: str, name: str = "cache") -> dict[str, str]:
    """The annotations as kopf last handled them (its record, written after each successful pass)."""
    meta = get_vkc(namespace, name)["metadata"].get("annotations") or {}
    last = yaml.safe_load(meta.get("kopf.valkeyops.dev/last-handled-configuration") or "{}")
    return dict((last.get("metadata") or {}).get("annotations") or {})
