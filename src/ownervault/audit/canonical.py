"""Canonical JSON: the exact bytes an audit entry is stored and hashed as."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NoReturn, cast

from ..exceptions import ValidationError

__all__ = ["FloatInJSON", "canonical_json", "field_fragment", "loads_without_floats"]


def _no_floats(value: object) -> None:
    """Raise :class:`ValidationError` if ``value`` holds a float anywhere.

    The exact types JSON values come in are told apart by ``type``: checking each against the
    ``Mapping`` ABC cost more than parsing the entry (verifying a log re-checks every stored
    entry this way). Anything else is checked as it always was.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is dict:
        for item in cast(dict[str, object], value).values():
            _no_floats(item)
    elif kind is list or kind is tuple:
        for item in cast(list[object], value):
            _no_floats(item)
    elif isinstance(value, float):
        raise ValidationError("audit entries may not contain floating-point numbers")
    elif isinstance(value, Mapping):
        for item in value.values():
            _no_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _no_floats(item)


class FloatInJSON(Exception):
    """A JSON text holds a floating-point number (or NaN or Infinity), which no canonical
    entry does; raised while it is parsed (:func:`loads_without_floats`)."""


def _float_found(text: str) -> NoReturn:
    del text  # the number itself is never quoted
    raise FloatInJSON


def loads_without_floats(raw: bytes | str) -> Any:
    """``json.loads``, stopping at the first float (or NaN or Infinity) with
    :class:`FloatInJSON`: what :func:`canonical_json` would refuse, found by the parser instead
    of by a walk of every value afterwards. Anything else not JSON raises ``ValueError``."""
    return json.loads(raw, parse_float=_float_found, parse_constant=_float_found)


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
