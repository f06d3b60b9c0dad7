"""Canonical JSON: the exact bytes an audit entry is stored and hashed as."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ..exceptions import ValidationError

__all__ = ["canonical_json", "field_fragment"]


def _no_floats(value: object) -> None:
    if isinstance(value, float):
        raise ValidationError("audit entries may not contain floating-point numbers")
    if isinstance(value, Mapping):
        for item in value.values():
            _no_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _no_floats(item)


_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def field_fragment(key: str, value: str) -> bytes:
    """The exact bytes ``"key":value`` occupy in a canonical entry whose ``key`` is ``value``."""
    return _ENCODER.encode({key: value})[1:-1].encode("utf-8")


def canonical_json(value: Mapping[str, Any], *, checked: bool = False) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8, floats refused.

    ``checked=True`` skips the float scan for values already known to hold none (audit entries
    validate their contents when they are built).
    """
    if not checked:
        _no_floats(value)
    return _ENCODER.encode(value).encode("utf-8")
