"""Does an object as read already hold everything a desired manifest says? (No write when nothing changed.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from valkey_operator import names

# Maps the operator owns whole: a key it no longer applies must go, so its absence is a difference.
_OWNED_WHOLE = ("data",)
# Maps shared with others (kubectl, other controllers): only the keys under our prefix are ours.
_OWNED_PREFIXED = ("annotations", "labels")


def _empty(value: Any) -> bool:
    return value is None or value in ({}, [])


def _extra_owned_keys(key: str, observed: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    extra = set(observed) - set(desired)
    if key in _OWNED_WHOLE:
        return bool(extra)
    if key in _OWNED_PREFIXED:
        return any(k.startswith(names.ANNOTATION_PREFIX) for k in extra)
    return False


def contains(observed: Any, desired: Any, key: str = "") -> bool:
    """True when every field of `desired` is in `observed` with the same value, and no key the operator
    owns (a Secret's or ConfigMap's data, a `valkeyops.dev/` annotation or label) is left over.

    The API server adds defaults, never removes what was applied, so otherwise a subset match is "nothing
    to do"; an empty desired value matches a field the server leaves out. Lists match element by element.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return _empty(desired) and observed is None
        if _extra_owned_keys(key, observed, desired):
            return False
        # An owned map the manifest leaves out entirely (no annotations left) must hold nothing of ours.
        for k in (*_OWNED_WHOLE, *_OWNED_PREFIXED):
            if k not in desired and isinstance(observed.get(k), Mapping) and _extra_owned_keys(k, observed[k], {}):
                return False
        return all(contains(observed[k], v, k) if k in observed else _empty(v) for k, v in desired.items())
    if isinstance(desired, list):
        if observed is None:
            return desired == []
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d, key) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)
