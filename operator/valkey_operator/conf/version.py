"""The Valkey version an image runs, read from its tag, and the directives each version understands."""

from __future__ import annotations

import re

Version = tuple[int, int]

# Valkey 7.2 is the oldest the operator supports; an unreadable tag gets its directive set.
BASELINE: Version = (7, 2)
_TAG = re.compile(r"^v?(\d+)\.(\d+)(?:[.\-].*)?$")


def image_version(image: str) -> Version | None:
    """(major, minor) from `repo/valkey:8.1.2-alpine`, or None for `latest`, digests and unknown tags."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _TAG.match(last.split(":", 1)[1])
    if not match:
        # Tags such as "8" or "9-bookworm" name only a major version: assume its first minor.
        major = re.match(r"^v?(\d+)(?:-.*)?$", last.split(":", 1)[1])
        return (int(major.group(1)), 0) if major else None
    return int(match.group(1)), int(match.group(2))


def effective_version(image: str) -> Version:
    """The version whose directives are emitted: the image's, or the safe common baseline."""
    found = image_version(image)
    return found if found is not None and found >= BASELINE else BASELINE


# Directives newer than the baseline, and the version that introduced them.
SINCE: dict[str, Version] = {
    "hide-user-data-from-log": (8, 0),
    "tls-auto-reload-interval": (9, 1),
}


def supports(version: Version, directive: str) -> bool:
    return version >= SINCE.get(directive, BASELINE)
