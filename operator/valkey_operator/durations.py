"""Go-style duration strings ("2160h", "1h30m", "90s") to and from timedelta."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
# The same grammar as the CRD's pattern, so the schema and the parser cannot disagree.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"


class DurationError(ValueError):
    """A string that is not a Go duration."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration such as ``2160h`` or ``1h30m``; negative and empty strings are refused."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise DurationError(f"{text!r} is not a duration such as 2160h, 90m or 1h30m")
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # more days than a timedelta holds (Go's own limit is about 290 years)
        raise DurationError(f"{text!r} is longer than any duration can be") from None


def format_duration(value: timedelta) -> str:
    """Format a timedelta as the shortest whole-unit Go duration (``2160h``, ``90m``, ``45s``)."""
    total = int(value.total_seconds())
    if total % 3600 == 0:
        return f"{total // 3600}h"
    if total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"
