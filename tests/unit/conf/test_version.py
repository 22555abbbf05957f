"""Image tag -> Valkey version, and what each version supports."""

from __future__ import annotations

import pytest

from valkey_operator.conf.version import BASELINE, effective_version, image_version, supports


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("valkey/valkey:8.1", (8, 1)),
        ("valkey/valkey:8.1.2-alpine", (8, 1)),
        ("registry.local:5000/valkey/valkey:7.2.5", (7, 2)),
        ("valkey:v9.0.0", (9, 0)),
        ("valkey/valkey:8", (8, 0)),
        ("valkey/valkey:9-bookworm", (9, 0)),
        ("valkey/valkey:latest", None),
        ("valkey/valkey", None),
        ("valkey/valkey@sha256:0123", None),
        ("localhost:5000/valkey", None),
    ],
)
def test_image_version(image: str, expected: tuple[int, int] | None) -> None:
    assert image_version(image) == expected


def test_unknown_or_too_old_gets_the_baseline() -> None:
    assert effective_version("valkey/valkey:latest") == BASELINE
    assert effective_version("valkey/valkey:6.2") == BASELINE
    assert effective_version("valkey/valkey:8.1") == (8, 1)


def test_supports() -> None:
    assert supports((7, 2), "tls-port")
    assert not supports((8, 1), "tls-auto-reload-interval")
    assert supports((9, 1), "tls-auto-reload-interval")
