"""When an object as read already holds what a manifest says, and when it does not."""

from __future__ import annotations

from typing import Any

import pytest

from valkey_operator.builders.diff import contains

SECRET: dict[str, Any] = {
    "metadata": {"name": "s", "annotations": {"valkeyops.dev/revision": "2"}, "labels": {"a": "b"}},
    "data": {"tls.crt": "QQ==", "tls.key": "Qg=="},
}


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        # The server's own additions (defaults, bookkeeping) are not differences.
        ({**SECRET, "metadata": {**SECRET["metadata"], "uid": "u", "resourceVersion": "9"}}, True),
        ({**SECRET, "type": "Opaque"} | {"data": SECRET["data"]}, True),
        # Someone else's annotation or label stays theirs.
        (
            {**SECRET, "metadata": {**SECRET["metadata"], "annotations": {"valkeyops.dev/revision": "2", "x": "y"}}},
            True,
        ),
        # A changed value is drift.
        ({**SECRET, "data": {"tls.crt": "Qw==", "tls.key": "Qg=="}}, False),
        # A key of ours that the manifest no longer has must go: a data key, a valkeyops.dev/ annotation.
        ({**SECRET, "data": {**SECRET["data"], "next.key": "Qg=="}}, False),
        (
            {
                **SECRET,
                "metadata": {
                    **SECRET["metadata"],
                    "annotations": {"valkeyops.dev/revision": "2", "valkeyops.dev/ca-rotation-phase": "Retiring"},
                },
            },
            False,
        ),
        # Missing: to create.
        (None, False),
    ],
)
def test_contains(observed: Any, expected: bool) -> None:
    assert contains(observed, SECRET) is expected


def test_lists_match_element_by_element_and_empty_matches_absent() -> None:
    assert contains({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}], "b": [], "c": {}})
    assert not contains({"a": [{"x": 1}, {"x": 2}]}, {"a": [{"x": 1}]})


def test_an_owned_annotation_goes_when_the_manifest_has_no_annotations_left() -> None:
    """A scheduled CA rotation ends with no annotation left on the CA Secret's manifest: its phase must go."""
    desired = {"metadata": {"name": "ca"}, "data": {"tls.crt": "QQ=="}}
    left = {"metadata": {"name": "ca", "annotations": {"valkeyops.dev/ca-rotation-phase": "Retiring"}}}
    assert not contains({**left, "data": {"tls.crt": "QQ=="}}, desired)
    theirs = {"metadata": {"name": "ca", "annotations": {"someone.else/x": "1"}}}
    assert contains({**theirs, "data": {"tls.crt": "QQ=="}}, desired)
