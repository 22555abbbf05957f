"""Versions: what the pods run against spec.image: downgrades across a major refused, advisories reported."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.conftest import NOW, example
from tests.unit.test_decide import World, cluster, condition, pass_, running
from valkey_operator.actions import Apply, Promote
from valkey_operator.conf.version import advisories, image_release, parse_release
from valkey_operator.snapshot import PodReport, Replication
from valkey_operator.versions import downgrade, vulnerable


def runs(*releases: tuple[int, int, int]) -> dict[str, PodReport]:
    return {f"cache-{i}": PodReport(Replication("master", release=r)) for i, r in enumerate(releases)}


@pytest.mark.parametrize(
    ("text", "release"),
    [("9.1.2", (9, 1, 2)), ("8.1.1-alpine", (8, 1, 1)), ("v7.2.4", (7, 2, 4)), ("9.1", None), ("latest", None)],
)
def test_a_release_is_read_to_the_patch_or_not_at_all(text: str, release: tuple[int, int, int] | None) -> None:
    assert parse_release(text) == release


def test_an_image_names_a_release_only_with_a_patch() -> None:
    assert image_release("valkey/valkey:8.1.2-alpine") == (8, 1, 2)
    assert image_release("registry.example:5000/valkey:9.1.1") == (9, 1, 1)
    assert image_release("valkey/valkey:9.1") is None
    assert image_release("valkey/valkey@sha256:" + "a" * 64) is None


@pytest.mark.parametrize(
    ("release", "affected"),
    [
        ((9, 1, 0), True),
        ((9, 1, 1), False),
        ((9, 1, 2), False),
        ((8, 1, 8), True),
        ((8, 1, 9), False),
        ((8, 0, 1), True),  # a line older than every fixed one has no fix of its own
        ((7, 2, 4), True),
        ((9, 0, 3), False),  # a line the advisory does not name is not flagged
        ((9, 2, 0), False),
    ],
)
def test_the_tls_advisory_is_fixed_in_9_1_1_and_8_1_9(release: tuple[int, int, int], affected: bool) -> None:
    assert bool(advisories(release)) is affected


def test_what_the_pods_run_wins_over_the_tag() -> None:
    c = example(image="valkey/valkey:9.1.0")
    found = vulnerable(c, {})
    assert found is not None
    assert found[0] == "VulnerableValkeyVersion"
    assert "spec.image valkey/valkey:9.1.0 names Valkey 9.1.0" in found[1]
    assert "fixed in 9.1.1 and 8.1.9" in found[1]
    assert vulnerable(c, runs((9, 1, 2), (9, 1, 2))) is None  # the pods say they run a fixed release
    mixed = vulnerable(example(image="valkey/valkey:9.1"), runs((8, 1, 1), (9, 1, 2), (8, 1, 1)))
    assert mixed is not None
    assert "cache-0, cache-2 runs Valkey 8.1.1, affected by CVE-2026-56684" in mixed[1]


def test_an_older_major_than_a_pod_runs_is_refused_a_newer_one_or_a_patch_is_not() -> None:
    refused = downgrade(example(image="valkey/valkey:8.1"), runs((9, 1, 2), (8, 1, 1)))
    assert refused is not None
    assert refused.reason == "DowngradeRefused"
    assert "cache-0 runs 9.1.2" in refused.message
    assert "set spec.image back to a 9.x image" in refused.message
    assert downgrade(example(image="valkey/valkey:9.1"), runs((8, 1, 1))) is None  # an upgrade
    assert downgrade(example(image="valkey/valkey:9.1.1"), runs((9, 1, 2))) is None  # a patch, either way
    assert downgrade(example(image="valkey/valkey:latest"), runs((9, 1, 2))) is None  # the tag says nothing
    assert downgrade(example(image="acme/valkey:2.3"), runs((9, 1, 2))) is None  # not a Valkey version
    assert downgrade(example(image="valkey/valkey:8.1"), {}) is None  # nothing answered


def running_release(world: World, release: tuple[int, int, int]) -> None:
    """Every pod says (INFO server) it runs `release`."""
    world.release = release
    world.report()


def test_a_pass_reports_a_vulnerable_release_as_degraded_once_and_blocks_nothing() -> None:
    c = cluster()
    world = running(c)
    running_release(world, (8, 1, 1))
    d = pass_(world, c)
    assert condition(d, "Degraded")["reason"] == "VulnerableValkeyVersion"
    assert condition(d, "Ready")["status"] == "True"
    assert d.status["phase"] == "Ready"
    assert [e.reason for e in d.events] == ["VulnerableValkeyVersion"]
    again = pass_(world, c)
    assert condition(again, "Degraded")["reason"] == "VulnerableValkeyVersion"
    assert [e.reason for e in again.events] == []  # said once


def test_a_refused_downgrade_is_held_and_failover_still_runs() -> None:
    """spec.image names 8.1 while the pods run 9.1.2: the StatefulSet keeps its image (nothing rolls), status
    says why, and the rest of the pass goes on: a primary lost meanwhile is still failed over."""
    from tests.unit.test_failover import lose, written

    c = cluster(image="valkey/valkey:9.1")
    world = running(c)
    running_release(world, (9, 1, 2))
    back = cluster(image="valkey/valkey:8.1")
    d = pass_(world, back)
    assert not [a for a in d.actions if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"]
    assert condition(d, "Ready")["reason"] == "DowngradeRefused"
    assert condition(d, "Degraded")["reason"] == "DowngradeRefused"
    assert ("Warning", "DowngradeRefused") in [(e.type, e.reason) for e in d.events]
    assert [e.reason for e in pass_(world, back).events] == []  # said once
    written(world, {"cache-1": 300, "cache-2": 200})
    lose(world, "cache-0")
    pass_(world, back)
    d = pass_(world, back, NOW + timedelta(seconds=10))
    assert [a for a in d.actions if isinstance(a, Promote)] == [Promote("cache-1")]
    assert condition(d, "Ready")["reason"] == "FailingOver"  # the outage first; the refusal after it


def test_an_advisory_is_announced_once_even_when_other_reasons_take_the_degraded_condition() -> None:
    from tests.unit.test_failover import lose, written

    c = cluster()
    world = running(c)
    running_release(world, (8, 1, 1))
    assert [e.reason for e in pass_(world, c).events] == ["VulnerableValkeyVersion"]
    written(world, {"cache-1": 300, "cache-2": 200})
    lose(world, "cache-0")
    for second in (0, 1, 2):
        d = pass_(world, c, NOW + timedelta(seconds=second))
        assert "VulnerableValkeyVersion" not in [e.reason for e in d.events]
