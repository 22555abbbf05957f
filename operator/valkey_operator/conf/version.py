"""The Valkey version an image runs, read from its tag, and the directives each version understands."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

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
    "tls-auth-clients-user": (9, 0),
}


def supports(version: Version, directive: str) -> bool:
    return version >= SINCE.get(directive, BASELINE)


Release = tuple[int, int, int]
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_release(text: str) -> Release | None:
    """(major, minor, patch) from `9.1.2` (INFO server's valkey_version) or a tag `8.1.2-alpine`; None when
    the patch is not named."""
    match = _RELEASE.match(text.strip())
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def image_release(image: str) -> Release | None:
    """The release an image's tag names to the patch (`valkey/valkey:8.1.2`), else None (`9.1`, a digest)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" not in last:
        return None
    return parse_release(last.split(":", 1)[1])


@dataclass(frozen=True)
class Advisory:
    """A known vulnerability and, per release line (major, minor), the first patch that fixes it. A line
    older than every fixed one has no fix of its own; a line between them is not named by the advisory
    and is not flagged."""

    cve: str
    what: str
    fixed: Mapping[Version, int]

    def affects(self, release: Release) -> bool:
        line = release[:2]
        if line in self.fixed:
            return release[2] < self.fixed[line]
        return line < min(self.fixed)

    def fixed_in(self) -> str:
        return " and ".join(f"{a}.{b}.{p}" for (a, b), p in sorted(self.fixed.items(), reverse=True))


ADVISORIES = (Advisory("CVE-2026-56684", "a TLS vulnerability", {(9, 1): 1, (8, 1): 9}),)


def advisories(release: Release) -> list[Advisory]:
    return [a for a in ADVISORIES if a.affects(release)]
