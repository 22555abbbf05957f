"""The Valkey versions the pods run, against `spec.image`: a downgrade across a major version is refused,
and a release with a known vulnerability is reported. Pure.

The pods say what they run (INFO server, read with INFO replication in every pass); the image's tag says
what is asked for (`valkey/valkey:9.1.2`, or only `9.1`). Upgrades need nothing of their own: a new image
changes the pod template, and the pods roll as in a rotation (replicas first, the primary after a
switchover, one pod at a time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from valkey_operator.api.spec import SpecError, ValkeyCluster
from valkey_operator.conf.version import (
    BASELINE,
    Advisory,
    Release,
    advisories,
    image_release,
    image_version,
    supports,
)
from valkey_operator.snapshot import PodReport

DOWNGRADE_REFUSED = "DowngradeRefused"
VULNERABLE = "VulnerableValkeyVersion"


def running(reports: Mapping[str, PodReport]) -> dict[str, Release]:
    """The release each pod that answered runs."""
    return {p: r.replication.release for p, r in reports.items() if r.replication and r.replication.release}


def every_pod_supports(pods: Sequence[str], reports: Mapping[str, PodReport], directive: str) -> bool:
    """Every one of `pods` says it runs a release that knows `directive` (a pod that did not answer, or
    runs an older one, may still need what the directive replaces)."""
    runs = running(reports)
    return all(pod in runs and supports(runs[pod][:2], directive) for pod in pods)


def _text(release: Release) -> str:
    return ".".join(map(str, release))


def downgrade(cluster: ValkeyCluster, reports: Mapping[str, PodReport]) -> SpecError | None:
    """`spec.image` names an older major version than a pod runs: its data files (and a newer primary's
    replication stream) may not load in the older one. Refused, nothing rolled."""
    asked = image_version(cluster.spec.image)
    runs = running(reports)
    if asked is None or asked < BASELINE or not runs:  # below 7.2 the tag is not a Valkey version
        return None
    pod, newest = max(runs.items(), key=lambda kv: kv[1])
    if newest[0] <= asked[0]:
        return None
    return SpecError(
        DOWNGRADE_REFUSED,
        f"spec.image {cluster.spec.image} is Valkey {asked[0]}.{asked[1]}, but {pod} runs {_text(newest)}: going "
        f"back to an older major version is refused, since the data files a {newest[0]}.x server wrote may not "
        f"load in {asked[0]}.x. Nothing was changed; set spec.image back to a {newest[0]}.x image (or restore a "
        "backup into a new cluster).",
    )


def _affected(cluster: ValkeyCluster, reports: Mapping[str, PodReport]) -> list[tuple[Advisory, Release, list[str]]]:
    runs = running(reports)
    named = image_release(cluster.spec.image)
    seen: dict[Release, list[str]] = {}
    for pod, release in sorted(runs.items()):
        seen.setdefault(release, []).append(pod)
    if not runs and named is not None:
        seen[named] = [f"spec.image {cluster.spec.image}"]
    return [(a, release, who) for release, who in sorted(seen.items()) for a in advisories(release)]


def advisory_key(cluster: ValkeyCluster, reports: Mapping[str, PodReport]) -> str | None:
    """What an announcement is about (each advisory and affected release), whichever pods say it: the
    Warning Event is posted when this changes, not when a pod comes or goes."""
    found = _affected(cluster, reports)
    return ", ".join(f"{a.cve} {_text(release)}" for a, release, _ in found) or None


def vulnerable(cluster: ValkeyCluster, reports: Mapping[str, PodReport]) -> tuple[str, str] | None:
    """(reason, message) when a pod runs, or the image's tag names, a release with a known vulnerability;
    what the pods say wins over the tag. Nothing is blocked."""
    found = _affected(cluster, reports)
    if not found:
        return None
    runs = running(reports)
    parts = [
        f"{', '.join(who)} {'runs' if runs else 'names'} Valkey {_text(release)}, affected by {a.cve} ({a.what}; "
        f"fixed in {a.fixed_in()})"
        for a, release, who in found
    ]
    return VULNERABLE, "; ".join(parts) + ". Upgrade spec.image; nothing is blocked meanwhile."
