"""The register of recipients: ``recipients.toml``, who may receive owners' data and on what terms.

PIPL Art 21-25 and GDPR Art 28/30 ask a controller to know every party it hands personal
information to: an entrusted processor (受托人, Art 21) under a written agreement, another
processor (Art 23), the owners' committee (业主委员会), an authority with a lawful request, or the
public (Art 25). Each entry of the register names the recipient, its type, the purposes it may
receive data for, the fields per record type (never more than the purpose needs), how they are
shown (a masker per field), how long the recipient keeps them, where it is (anything outside
mainland China is a cross-border transfer, which needs a recorded transfer mechanism), and its
contact. :func:`load_recipients` validates the file against the loaded purposes and reports
errors with file and line; :class:`Recipient` is the loaded value the vault checks every
disclosure against.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final

import attrs
import pydantic

from ..records import MASKERS, RECORD_TYPES
from .files import ISO_DURATION, PackFile
from .model import LegalBasis

__all__ = [
    "DOMESTIC_REGIONS",
    "RECIPIENTS_FILE",
    "Recipient",
    "RecipientType",
    "RecipientsFile",
    "load_recipients",
]

#: The register's file name in a policy pack (optional: a pack without it has no recipients).
RECIPIENTS_FILE: Final = "recipients.toml"

#: Locations that are not a cross-border transfer under PIPL (mainland China).
DOMESTIC_REGIONS: Final = frozenset({"CN"})

_IDENT = r"^[a-z][a-z0-9_]{0,62}$"
_Ident = Annotated[str, pydantic.Field(pattern=_IDENT)]


class RecipientType(StrEnum):
    """What kind of party receives the data."""

    #: 受托人: processes on the controller's behalf under an entrustment agreement (PIPL Art 21).
    ENTRUSTED_PROCESSOR = "entrusted_processor"
    #: Another personal information processor (PIPL Art 23).
    THIRD_PARTY = "third_party"
    #: 业主委员会: the owners' committee, a separate body (PIPL Art 23).
    OWNERS_COMMITTEE = "owners_committee"
    #: An authority's lawful request (PIPL Art 13(3), GDPR Art 6(1)(c)).
    GOVERNMENT = "government"
    #: Making data public, e.g. the notice board (PIPL Art 25).
    PUBLIC = "public"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class _Title(_Strict):
    zh: str = pydantic.Field(min_length=1)
    en: str = pydantic.Field(min_length=1)


class _Agreement(_Strict):
    """The entrustment agreement (PIPL Art 21): what it fixes, by reference to the document."""

    reference: str = pydantic.Field(min_length=1)
    signed: _dt.date
    expires: _dt.date | None = None
    purpose: str = pydantic.Field(min_length=1)
    period: str = pydantic.Field(min_length=1)
    method: str = pydantic.Field(min_length=1)
    categories: str = pydantic.Field(min_length=1)
    security_measures: str = pydantic.Field(min_length=1)


class RecipientModel(_Strict):
    """One ``[recipients.<id>]`` entry of ``recipients.toml``."""

    name: _Title
    type: RecipientType
    purposes: list[_Ident] = pydantic.Field(min_length=1)
    #: Record type -> field names the recipient may receive.
    fields: dict[_Ident, list[str]]
    #: ``record_type.field`` -> masker: how that field is handed over (default: in full).
    masks: dict[str, str] = {}
    retention: str
    #: ISO 3166-1 alpha-2 code; with ``region`` for a part of it (``CN`` + ``HK`` is Hong Kong).
    country: str = pydantic.Field(pattern=r"^[A-Z]{2}$")
    region: str = ""
    #: How a transfer outside mainland China is made lawful (PIPL Art 38): ``standard_contract``,
    #: ``certification`` or ``security_assessment``, with its reference.
    transfer_mechanism: str = ""
    contact: str = pydantic.Field(min_length=1)
    agreement: _Agreement | None = None
    description: str = ""

    @pydantic.field_validator("retention")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if not ISO_DURATION.match(value):
            raise ValueError("retention must be an ISO 8601 duration such as P1Y or P30D")
        return value


class RecipientsFile(_Strict):
    """``recipients.toml``."""

    recipients: dict[_Ident, RecipientModel] = {}


@attrs.frozen
class Recipient:
    """A loaded entry of the register of recipients."""

    recipient_id: str
    name_zh: str
    name_en: str
    type: RecipientType
    purposes: frozenset[str]
    #: Record type -> the fields it may receive.
    fields: Mapping[str, frozenset[str]]
    #: ``record_type.field`` -> the masker applied when handing the field over.
    masks: Mapping[str, str]
    retention: str
    country: str
    region: str
    transfer_mechanism: str
    contact: str
    agreement_reference: str = ""
    agreement_signed: _dt.date | None = None
    agreement_expires: _dt.date | None = None
    description: str = ""

    @property
    def cross_border(self) -> bool:
        """Whether handing data to this recipient leaves mainland China (PIPL Art 38)."""
        return self.country not in DOMESTIC_REGIONS or self.region not in ("", "CN")

    @property
    def location(self) -> str:
        """``CN``, ``CN-HK``, ``SG``..."""
        return f"{self.country}-{self.region}" if self.region else self.country

    @property
    def field_names(self) -> frozenset[str]:
        """Every field it may receive, as ``record_type.field``."""
        return frozenset(f"{rt}.{f}" for rt, names in self.fields.items() for f in names)

    def agreement_in_force(self, today: _dt.date) -> bool:
        """Whether a recorded entrustment agreement covers ``today``."""
        if not self.agreement_reference or self.agreement_signed is None:
            return False
        if self.agreement_signed > today:
            return False
        return self.agreement_expires is None or today <= self.agreement_expires

    def summary(self) -> dict[str, Any]:
        """The entry as plain data (for ``ownervault policy recipients`` and the register)."""
        return {
            "recipient": self.recipient_id,
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "type": self.type.value,
            "purposes": sorted(self.purposes),
            "fields": sorted(self.field_names),
            "masks": dict(sorted(self.masks.items())),
            "retention": self.retention,
            "location": self.location,
            "cross_border": self.cross_border,
            "transfer_mechanism": self.transfer_mechanism or None,
            "agreement": self.agreement_reference or None,
            "agreement_signed": self.agreement_signed.isoformat()
            if self.agreement_signed
            else None,
            "agreement_expires": self.agreement_expires.isoformat()
            if self.agreement_expires
            else None,
            "contact": self.contact,
        }


def load_recipients(
    pack: PackFile,
    purposes: Mapping[str, tuple[LegalBasis, Mapping[str, frozenset[str]]]],
) -> dict[str, Recipient]:
    """Validate ``recipients.toml`` against the pack's purposes and build the register.

    Args:
        pack: the parsed file.
        purposes: purpose id -> (legal basis, record type -> fields it needs).

    Raises:
        PolicyError: with file and line: an unknown purpose, record type, field or masker, a
            field no listed purpose needs, a ``public`` recipient for a purpose not based on
            consent, or a cross-border recipient without a ``transfer_mechanism``.
    """
    doc = pack.validate(RecipientsFile)
    out: dict[str, Recipient] = {}
    for rid, rm in doc.recipients.items():
        at: list[object] = ["recipients", rid]
        for i, pid in enumerate(rm.purposes):
            if pid not in purposes:
                raise pack.error(
                    [*at, "purposes", i], f"recipient {rid!r} names an unknown purpose {pid!r}"
                )
            if rm.type is RecipientType.PUBLIC and purposes[pid][0] is not LegalBasis.CONSENT:
                raise pack.error(
                    [*at, "purposes", i],
                    f"recipient {rid!r} makes data public, which needs the owner's separate "
                    f"consent (PIPL Art 25): purpose {pid!r} is not based on consent",
                )
        fields: dict[str, frozenset[str]] = {}
        for rtype, names in rm.fields.items():
            record_cls = RECORD_TYPES.get(rtype)
            if record_cls is None:
                raise pack.error([*at, "fields", rtype], f"unknown record type {rtype!r}")
            specs = record_cls.field_specs()
            for i, name in enumerate(names):
                if name not in specs:
                    raise pack.error(
                        [*at, "fields", rtype, i],
                        f"recipient {rid!r}: unknown field {name!r} of record type {rtype!r}",
                    )
                if not any(name in purposes[p][1].get(rtype, frozenset()) for p in rm.purposes):
                    raise pack.error(
                        [*at, "fields", rtype, i],
                        f"recipient {rid!r}: none of its purposes needs {rtype}.{name}",
                    )
            fields[rtype] = frozenset(names)
        names_all = {f"{rt}.{f}" for rt, ns in fields.items() for f in ns}
        for qualified, masker in rm.masks.items():
            if qualified not in names_all:
                raise pack.error(
                    [*at, "masks", qualified],
                    f"recipient {rid!r} masks {qualified!r}, a field it does not receive",
                )
            if masker not in MASKERS:
                raise pack.error([*at, "masks", qualified], f"unknown masker {masker!r}")
        agreement = rm.agreement
        recipient = Recipient(
            recipient_id=rid,
            name_zh=rm.name.zh,
            name_en=rm.name.en,
            type=rm.type,
            purposes=frozenset(rm.purposes),
            fields=fields,
            masks=dict(rm.masks),
            retention=rm.retention,
            country=rm.country,
            region=rm.region,
            transfer_mechanism=rm.transfer_mechanism.strip(),
            contact=rm.contact,
            agreement_reference=agreement.reference if agreement else "",
            agreement_signed=agreement.signed if agreement else None,
            agreement_expires=agreement.expires if agreement else None,
            description=rm.description,
        )
        if recipient.cross_border and not recipient.transfer_mechanism:
            raise pack.error(
                [*at, "country"],
                f"recipient {rid!r} is outside mainland China ({recipient.location}): record "
                "its transfer_mechanism (PIPL Art 38)",
            )
        if agreement is not None and agreement.expires and agreement.expires < agreement.signed:
            raise pack.error(
                [*at, "agreement", "expires"],
                f"recipient {rid!r}: the agreement expires before it was signed",
            )
        out[rid] = recipient
    return out


def purposes_with_recipients(
    recipients: Mapping[str, Recipient],
) -> dict[str, frozenset[RecipientType]]:
    """Purpose -> the types of recipient that may receive data for it."""
    found: dict[str, set[RecipientType]] = {}
    for recipient in recipients.values():
        for pid in recipient.purposes:
            found.setdefault(pid, set()).add(recipient.type)
    return {pid: frozenset(types) for pid, types in sorted(found.items())}
