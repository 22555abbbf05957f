"""Where the operator gets the time: the system clock, or one that tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # how times appear in status and annotations (RFC 3339, UTC, seconds)


def iso(when: datetime) -> str:
    return when.strftime(TIMESTAMP)


def parse_iso(value: object) -> datetime | None:
    """A timestamp written by `iso`; None when absent or unreadable (a hand edit must not crash a pass)."""
    try:
        return datetime.strptime(str(value), TIMESTAMP).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: tests make renewals due without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when
