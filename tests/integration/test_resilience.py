"""The operator restarted in the middle of a rotation finishes it; a 409 Conflict is retried."""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import (
    OperatorThread,
    apply,
    example_body,
    get_vkc,
    kubectl,
    kubectl_json,
    wait_until,
)
from tests.integration.test_rotation import pods_at_update_revision, server_cert, template_revision
from valkey_operator.k8s.client import Kube, with_conflict_retry

pytestmark = pytest.mark.integration


def test_restart_in_the_middle_of_a_rotation_finishes_it(operator: OperatorThread, namespace: str, clock: Any) -> None:
    apply(example_body(namespace))
    wait_until(lambda: get_vkc(namespace).get("status", {}).get("certificates"), what="provisioning")
    wait_until(lambda: pods_at_update_revision(namespace), what="pods")
    old_cert, old_rev = server_cert(namespace), int(template_revision(namespace))
    old_pods = {p["metadata"]["uid"] for p in kubectl_json("get", "pods", "-n", namespace)["items"]}
    operator.stop()
    try:
        # While the operator is down, a rotation is asked for...
        kubectl("annotate", "valkeycluster", "cache", "-n", namespace, "valkeyops.dev/rotate-certificates=r1")
        restarted = OperatorThread(clock).start()
        # ...stop again as soon as the new certificate is written, before the pods have all rolled.
        wait_until(lambda: server_cert(namespace) != old_cert, what="the re-issue")
        restarted.stop()
        assert restarted.error is None
        mid = server_cert(namespace)
        again = OperatorThread(clock).start()
        try:
            wait_until(lambda: pods_at_update_revision(namespace), timeout=90, what="the rollout to finish")
            new_pods = {p["metadata"]["uid"] for p in kubectl_json("get", "pods", "-n", namespace)["items"]}
            assert not new_pods & old_pods, "every pod was replaced"
            # The rotation happened exactly once: the handled annotation survived the restarts.
            assert server_cert(namespace) == mid
            assert int(template_revision(namespace)) == old_rev + 1
            annotations = kubectl_json("get", "secret", "cache-tls", "-n", namespace)["metadata"]["annotations"]
            assert annotations["valkeyops.dev/handled-rotate-certificates"] == "r1"
        finally:
            again.stop()
    finally:
        # The session's operator goes on for the remaining tests.
        operator.start()


def test_conflict_is_retried_against_the_real_api_server(control_plane: Any, namespace: str) -> None:
    kube = Kube()
    core = k8s.CoreV1Api(kube.api_client)
    core.create_namespaced_config_map(namespace, cast(k8s.V1ConfigMap, {"metadata": {"name": "c"}, "data": {"n": "0"}}))
    stale = cast(k8s.V1ObjectMeta, core.read_namespaced_config_map("c", namespace).metadata).resource_version
    core.patch_namespaced_config_map("c", namespace, {"data": {"n": "1"}})  # someone else writes first
    attempts: list[int] = []

    def replace() -> Any:
        rv = (
            stale
            if not attempts
            else cast(k8s.V1ObjectMeta, core.read_namespaced_config_map("c", namespace).metadata).resource_version
        )
        attempts.append(1)
        body = {"metadata": {"name": "c", "resourceVersion": rv}, "data": {"n": "2"}}
        return core.replace_namespaced_config_map("c", namespace, cast(k8s.V1ConfigMap, body))

    with pytest.raises(ApiException) as exc:
        replace()
    assert exc.value.status == 409
    attempts.clear()
    with_conflict_retry(replace)
    assert len(attempts) == 2
    assert core.read_namespaced_config_map("c", namespace).data == {"n": "2"}


def test_owned_objects_deleted_or_edited_by_hand_are_restored_from_the_watch(
    crd: None, unwatched_namespace: str, clock: Any
) -> None:
    """With both timers an hour long, only the watch of the owned objects can repair them within seconds."""
    from valkey_operator.config import OperatorConfig

    namespace = unwatched_namespace
    op = OperatorThread(clock, OperatorConfig(timer_interval=3600, rollout_interval=3600), [namespace]).start()
    try:
        apply(example_body(namespace))

        def exists(kind: str, name: str) -> bool:
            return kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0

        wait_until(lambda: exists("statefulset", "cache") and exists("configmap", "cache-config"), what="objects")
        uid = kubectl_json("get", "statefulset", "cache", "-n", namespace)["metadata"]["uid"]
        # Not waited for: the garbage collector finishes an orphaning delete in its own time (a busy control
        # plane took over 60 s once); `restored` waits for the new object.
        kubectl("delete", "statefulset", "cache", "-n", namespace, "--cascade=orphan", "--wait=false")
        kubectl("delete", "service", "cache", "-n", namespace)
        patch = '[{"op": "remove", "path": "/data/start.sh"}]'
        kubectl("patch", "configmap", "cache-config", "-n", namespace, "--type=json", "-p", patch)

        def restored() -> bool:
            sts = kubectl("get", "statefulset", "cache", "-n", namespace, "-o", "json", check=False)
            config = kubectl_json("get", "configmap", "cache-config", "-n", namespace)["data"]
            return (
                sts.returncode == 0
                and '"uid": "' + uid + '"' not in sts.stdout
                and exists("service", "cache")
                and "start.sh" in config
            )

        # Both timers are an hour long: whatever comes back within this bound came from the watch.
        wait_until(restored, timeout=120, what="the StatefulSet, the Service and the ConfigMap's key restored")
    finally:
        op.stop()
    assert op.error is None, op.error
