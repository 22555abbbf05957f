"""Does an object as read already hold everything a desired manifest says? (No write when nothing changed.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _empty(value: Any) -> bool:
    return value is None or value in ({}, [])


def contains(observed: Any, desired: Any) -> bool:
    """True when every field of `desired` is in `observed` with the same value.

    The API server adds defaults, never removes what was applied, so a subset match is "nothing to do";
    an empty desired value matches a field the server leaves out. Lists match element by element.
    """
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return _empty(desired) and observed is None
        return all(contains(observed[k], v) if k in observed else _empty(v) for k, v in desired.items())
    if isinstance(desired, list):
        if observed is None:
            return desired == []
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)
