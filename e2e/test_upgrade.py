"""Version upgrades on the real nodes: the example (replication, 3 pods, mTLS) on Debian's Valkey 8.1.1, then
`spec.image` set to the 9.1 image (Debian forky's 9.1.2) under the steady writer. The pods roll as in a
rotation: replicas first, the primary after `FAILOVER TO`, one at a time. Every acknowledged write is read
back from the primary at the end, every pod then says (INFO server) it runs 9.1.2, and the advisory
condition 8.1.1 raised is gone. Then a HotReload rotation on 9.1 under the writer: no restart, no failed
write. Last, `spec.image` back to 8.1 is refused (DowngradeRefused) and nothing rolls.

The module installs the chart and its own ValkeyCluster (after the other modules uninstalled theirs).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from typing import Any

from e2e.conftest import (
    NAME,
    NS,
    Creds,
    cluster_events,
    condition,
    kubectl,
    plain,
    pod_fqdn,
    pods,
    served_fingerprint,
    vkc,
    wait_for,
)
from e2e.faults import RESUME_WITHIN_MS, StatusWatch, restarts, settled, under_writer
from e2e.node import Node
from valkey_operator import names


def releases(node: Node, creds: Creds) -> dict[str, str]:
    """The release each pod's server reports (INFO server)."""
    out = {}
    for p in pods(node):
        ip, info = p["status"].get("podIP"), ""
        # A pod between lives has no address, or one that nothing answers on any more.
        with contextlib.suppress(subprocess.TimeoutExpired):
            info = creds.cli(ip, pod_fqdn(p["metadata"]["name"]), "INFO", "server", timeout=5) if ip else ""
        out[p["metadata"]["name"]] = next(
            (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("valkey_version:")), "?"
        )
    return out


def serves(creds: Creds, pod: dict[str, Any], fingerprint: str) -> bool:
    """The pod presents the certificate `fingerprint` names (a live handshake); False if it does not answer."""
    try:
        return served_fingerprint(creds, pod["status"]["podIP"], pod_fqdn(pod["metadata"]["name"])) == fingerprint
    except (OSError, KeyError):
        return False


def set_image(node: Node, image: str) -> None:
    patch = {"spec": {"image": image}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(patch))


def test_8_1_to_9_1_under_a_writer_rolls_like_a_rotation_and_loses_nothing(
    node: Node, creds: Creds, operator_image: str, valkey9_image: str
) -> None:
    before = releases(node, creds)
    assert set(before.values()) == {"8.1.1"}, before
    # Debian's 8.1.1 is older than the advisory's fixed 8.1.9: reported, nothing blocked.
    degraded = condition(vkc(node), "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "VulnerableValkeyVersion"), degraded
    assert condition(vkc(node), "Ready")["status"] == "True"
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}

    def upgrade(watch: StatusWatch) -> None:
        set_image(node, valkey9_image)

        def upgraded() -> bool:
            found = releases(node, creds)  # all three pods, each on 9.1.2 (not two while the third is replaced)
            return len(found) == 3 and set(found.values()) == {"9.1.2"}

        wait_for(upgraded, "every pod on 9.1.2", 600, every=3)

    report = under_writer(node, creds, operator_image, "upgrade-8.1-to-9.1", upgrade)
    assert report["missing_count"] == 0, report
    assert report["longest_pause_ms"] < RESUME_WITHIN_MS, report
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    assert all(after[p] != u for p, u in uids.items()), (uids, after)  # every pod was replaced
    events = cluster_events(node)
    assert "Switchover" in events, events  # the primary handed over before it restarted
    wait_for(lambda: condition(vkc(node), "Degraded")["status"] == "False", "the advisory condition gone", 60)
    print(f"releases before {before}, after {releases(node, creds)}")


def test_a_hot_reload_rotation_on_9_1_restarts_nothing_and_fails_no_write(
    node: Node, creds: Creds, operator_image: str
) -> None:
    """HotReload on 9.1 adds `tls-auto-reload-interval` to valkey.conf (one roll); then a rotation under the
    writer: the operator reloads each pod as soon as the kubelet has projected the new Secret (Valkey would
    re-read the files itself within 60 s), confirms each by a live handshake, and nothing restarts."""
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    set_strategy = {"spec": {"tls": {"rotation": {"strategy": "HotReload"}}}}
    kubectl(node, "patch", "valkeycluster", NAME, "-n", NS, "--type=merge", "-p", json.dumps(set_strategy))
    wait_for(lambda: settled(node) and all(p["metadata"]["uid"] != uids.get(p["metadata"]["name"]) for p in pods(node)),
             "the roll that brings tls-auto-reload-interval", 600, every=3)  # fmt: skip
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    serial = vkc(node)["status"]["certificates"]["server"]["serial"]
    took: dict[str, float] = {}

    def rotate(watch: StatusWatch) -> None:
        started = time.monotonic()
        kubectl(node, "annotate", "--overwrite", "valkeycluster", NAME, "-n", NS,
                f"{names.ANN_ROTATE_CERTIFICATES}={time.time()}")  # fmt: skip
        wait_for(lambda: vkc(node)["status"]["certificates"]["server"]["serial"] != serial, "the new certificate", 60)
        want = plain(vkc(node)["status"]["certificates"]["server"]["fingerprintSHA256"])
        wait_for(lambda: all(serves(creds, p, want) for p in pods(node)), "every pod serving it", 300, every=2)
        took["serving"] = time.monotonic() - started

    report = under_writer(node, creds, operator_image, "hot-reload-9.1", rotate)
    assert report["missing_count"] == 0, report
    assert report["failures"] == 0, report
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)} == before  # nothing restarted
    assert all(restarts(node, name) == 0 for name in before)
    print(f"every pod served the new certificate {took['serving']:.1f} s after the rotation was asked for")


def test_back_to_8_1_is_refused_and_nothing_rolls(node: Node, creds: Creds, valkey_image: str) -> None:
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)}
    set_image(node, valkey_image)
    wait_for(lambda: condition(vkc(node), "Ready")["reason"] == "DowngradeRefused", "DowngradeRefused", 60)
    message = condition(vkc(node), "Ready")["message"]
    assert "runs 9.1.2" in message, message
    time.sleep(10)  # a roll, had one started, would have replaced a pod by now
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(node)} == uids
    sts = json.loads(kubectl(node, "get", "statefulset", NAME, "-n", NS, "-o", "json"))
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] != valkey_image
    print(f"refused: {message}")
