"""The pure parts of a pass's edges: the status patch."""

from __future__ import annotations

from valkey_operator.reconcile import changed


def test_the_status_patch_names_only_what_changed_and_removes_what_went() -> None:
    before = {
        "phase": "Ready",
        "certificates": {"server": {"serial": "1"}, "caRotation": {"phase": "Retiring"}},
        "primary": "cache-0",
    }
    after = {"phase": "Ready", "certificates": {"server": {"serial": "1"}}, "primary": "cache-1"}
    # A merge patch leaves an unnamed key alone: the finished CA rotation must be removed by name.
    assert changed(before, after) == {"certificates": {"caRotation": None}, "primary": "cache-1"}
    assert changed(after, after) == {}


def test_fields_a_pass_does_not_report_stay() -> None:
    # A refused pass reports no certificates: the last known ones stay.
    assert changed({"phase": "Ready", "certificates": {"server": {}}}, {"phase": "Degraded"}) == {"phase": "Degraded"}
