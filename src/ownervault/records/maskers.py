"""Maskers: how a field is shown when a decision discloses it ``masked``.

Each masker takes the field's JSON text form and returns the masked string; policy rules name
them as ``masked:<masker>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from ..exceptions import ValidationError

__all__ = ["MASKERS", "mask"]


def _mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1)


def _mask_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) == 11:
        return f"{digits[:3]}****{digits[-4:]}"
    return "*" * max(len(digits) - 4, 4) + digits[-4:] if len(digits) > 4 else "****"


def _mask_id_number(value: str) -> str:
    """Identity document numbers, decided by length (the masker sees only the value).

    18 characters or more (resident IDs, residence permits): the first four (province and city
    of registration, shared by everyone registered there) and the last four. Shorter numbers
    (passports, Hong Kong/Macau permits, old 15-digit IDs) show at most a third: 9 to 17
    characters the first (which says what kind of document it is) and the last two; 8 or
    fewer (Taiwan permits, short passport numbers) nothing.
    """
    compact = "".join(value.split()).upper()
    size = len(compact)
    if size >= 18:
        return compact[:4] + "*" * (size - 8) + compact[-4:]
    if size >= 9:
        return compact[:1] + "*" * (size - 3) + compact[-2:]
    return "*" * size


def _mask_last4(value: str) -> str:
    compact = "".join(ch for ch in value if ch.isalnum())
    return "****" + compact[-4:] if len(compact) > 4 else "****"


_BUILDING_MARK = re.compile(r"^.*?(?:号楼|栋|幢|座|building\s*\S+)", re.IGNORECASE)


def _mask_address(value: str) -> str:
    match = _BUILDING_MARK.match(value)
    if match:
        return match.group(0) + "****"
    return value[: len(value) // 3] + "****"


def _mask_email(value: str) -> str:
    local, sep, domain = value.partition("@")
    if not sep:
        return _mask_name(value)
    return f"{local[:1]}***@{domain}"


def _mask_plate(value: str) -> str:
    compact = "".join(value.split())
    if len(compact) <= 3:
        return "*" * len(compact)
    return compact[:2] + "*" * (len(compact) - 3) + compact[-1:]


def _mask_date(value: str) -> str:
    return value[:4] + "-**-**" if len(value) >= 4 else "****"


def _mask_redact(value: str) -> str:
    return "***"


#: Maskers by name; each takes the field's JSON text form and returns the masked string.
MASKERS: Final[Mapping[str, Callable[[str], str]]] = {
    "name": _mask_name,  # 张三 -> 张*
    "phone": _mask_phone,  # 13800138000 -> 138****8000
    # 11010119900307002X -> 1101**********002X; E12345678 -> E******78
    "id_number": _mask_id_number,
    "bank_account": _mask_last4,  # ****1234
    "last4": _mask_last4,
    "address": _mask_address,  # up to the building: 阳光花园3栋****
    "email": _mask_email,  # z***@example.com
    "plate": _mask_plate,  # 京A1234X -> 京A*****X
    "date": _mask_date,  # 1990-03-07 -> 1990-**-**
    "redact": _mask_redact,  # ***
}


def mask(masker: str, value: object) -> str:
    """Apply the named masker to a field value."""
    fn = MASKERS.get(masker)
    if fn is None:
        raise ValidationError(f"unknown masker {masker!r}")
    return fn(value if isinstance(value, str) else str(value))
