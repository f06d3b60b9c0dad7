"""The property-management record set: owner profiles, units, vehicles, applications and fees.

Each class is a :class:`~ownervault.records.Record` registered under its ``record_type``; the
policy pack names these types and their fields.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

import pydantic

from .model import Record, internal, personal, sensitive
from .validation import Phone, check_id_number

__all__ = [
    "Complaint",
    "Contract",
    "FeeAccount",
    "Gender",
    "HouseholdRole",
    "IdType",
    "LongText",
    "Money",
    "OwnerProfile",
    "Payment",
    "Phone",
    "RenovationApplication",
    "ShortText",
    "Unit",
    "Vehicle",
]

Gender = Literal["male", "female", "other", "undisclosed"]
IdType = Literal["resident_id", "passport", "hk_macau_permit", "taiwan_permit", "foreign_permit"]
HouseholdRole = Literal["owner", "co_owner", "spouse", "child", "parent", "tenant", "other"]
Money = Annotated[Decimal, pydantic.Field(max_digits=14, decimal_places=2)]
ShortText = Annotated[str, pydantic.Field(min_length=1, max_length=200)]
LongText = Annotated[str, pydantic.Field(min_length=1, max_length=4000)]


class OwnerProfile(Record):
    """An owner's (业主) or household member's profile.

    ``id_number`` is checked against ``id_type`` (see :mod:`ownervault.records.validation`):
    a resident ID needs a valid birth date segment and check character, and so does a number of
    no stated type shaped like one. Phones must be numbers the phone normaliser understands.
    """

    record_type: ClassVar[str] = "owner_profile"

    name: Annotated[ShortText, personal(index="text")]
    gender: Annotated[Gender | None, personal()] = None
    phone: Annotated[Phone | None, personal(index="phone")] = None
    id_type: Annotated[IdType | None, personal()] = None
    id_number: Annotated[ShortText | None, sensitive(index="id_number")] = None
    email: Annotated[ShortText | None, personal(index="email")] = None
    birth_date: Annotated[_dt.date | None, personal()] = None
    household_role: Annotated[HouseholdRole, internal()] = "owner"
    emergency_contact_name: Annotated[ShortText | None, personal()] = None
    emergency_contact_phone: Annotated[Phone | None, personal(index="phone")] = None
    move_in_date: Annotated[_dt.date | None, personal()] = None
    status: Annotated[Literal["active", "moved_out"], internal()] = "active"

    @pydantic.field_validator("id_number")
    @classmethod
    def _id_number_matches_type(
        cls, value: str | None, info: pydantic.ValidationInfo
    ) -> str | None:
        if value is None:
            return None
        return check_id_number(info.data.get("id_type"), value)

    def minor_until(self) -> _dt.date | None:
        """The date the subject turns 14; ``date.max`` for a child of unknown birth date.

        A household member recorded as a ``child`` without a birth date is treated as under 14
        until a birth date shows otherwise (PIPL Art 28/31: fail closed).
        """
        if self.birth_date is None:
            return _dt.date.max if self.household_role == "child" else None
        born = self.birth_date
        if born.year + 14 > _dt.MAXYEAR:
            return _dt.date.max
        try:
            return born.replace(year=born.year + 14)
        except ValueError:
            # Born on 29 February: the protective choice is the day after 28 February.
            return _dt.date(born.year + 14, 3, 1)


class Unit(Record):
    """A unit (房屋) and the subject's relation to it."""

    record_type: ClassVar[str] = "unit"

    community: Annotated[ShortText, internal()]
    building: Annotated[ShortText, internal()]
    unit_number: Annotated[ShortText, personal()]
    floor_area: Annotated[
        Decimal | None, internal(), pydantic.Field(max_digits=9, decimal_places=2)
    ] = None
    ownership_certificate_number: Annotated[ShortText | None, sensitive(index="id_number")] = None
    relation: Annotated[Literal["owner", "tenant"], internal()] = "owner"


class Vehicle(Record):
    """A registered vehicle and parking space."""

    record_type: ClassVar[str] = "vehicle"

    plate: Annotated[ShortText, personal(index="plate")]
    parking_space: Annotated[ShortText | None, internal()] = None
    vehicle_model: Annotated[ShortText | None, personal()] = None


class RenovationApplication(Record):
    """A renovation (装修) application for a unit."""

    record_type: ClassVar[str] = "renovation_application"

    unit_number: Annotated[ShortText, personal()]
    description: Annotated[LongText, personal()]
    contractor_name: Annotated[ShortText | None, personal()] = None
    contractor_phone: Annotated[Phone | None, personal(index="phone")] = None
    start_date: Annotated[_dt.date | None, internal()] = None
    end_date: Annotated[_dt.date | None, internal()] = None
    status: Annotated[Literal["submitted", "approved", "rejected", "completed"], internal()] = (
        "submitted"
    )


class Complaint(Record):
    """A complaint or repair request (投诉/报修)."""

    record_type: ClassVar[str] = "complaint"

    category: Annotated[
        Literal["repair", "noise", "hygiene", "security", "fee", "other"], internal()
    ]
    content: Annotated[LongText, personal()]
    location: Annotated[ShortText | None, sensitive()] = None
    status: Annotated[Literal["open", "in_progress", "resolved", "closed"], internal()] = "open"


class Contract(Record):
    """A property service or lease contract."""

    record_type: ClassVar[str] = "contract"

    contract_number: Annotated[ShortText, personal(index="text")]
    contract_type: Annotated[Literal["property_service", "lease", "parking"], internal()]
    start_date: Annotated[_dt.date, internal()]
    end_date: Annotated[_dt.date | None, internal()] = None
    monthly_fee: Annotated[Money | None, personal()] = None


class FeeAccount(Record):
    """A property-fee account (物业费账户)."""

    record_type: ClassVar[str] = "fee_account"

    account_number: Annotated[ShortText, personal(index="text")]
    billing_address: Annotated[ShortText, personal()]
    balance: Annotated[Money, personal()] = Decimal("0.00")
    fee_rate: Annotated[Money | None, internal()] = None


class Payment(Record):
    """A payment into a fee account."""

    record_type: ClassVar[str] = "payment"

    amount: Annotated[Money, personal()]
    paid_at: Annotated[_dt.datetime, personal()]
    method: Annotated[Literal["bank_transfer", "wechat", "alipay", "cash", "card"], internal()]
    bank_account: Annotated[ShortText | None, sensitive(index="digits")] = None
    payer_name: Annotated[ShortText | None, personal()] = None
