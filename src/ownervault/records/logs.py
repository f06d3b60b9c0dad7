"""The logs a property office keeps at its gates: visitors, gate passages and parking.

Each class is a :class:`~ownervault.records.Record` registered under its ``record_type``, like
the rest of the record set; the policy pack names them under ``visitor_registration``,
``access_control`` and ``parking_management`` (see ``docs/policies.md``).

Classification choices (GB/T 35273-2020 Annex B lists "行踪轨迹", a person's whereabouts, as
sensitive personal information):

* A visitor's arrival and departure are **personal**: one visit, at one gate, kept for days. A
  visitor log is not a trail; it is what the guard needs in clear to do their job.
* A gate passage time and a parking entry/exit time are **sensitive**: these logs accumulate,
  per resident and per plate, into exactly the record of when someone leaves and comes home
  that Annex B calls 行踪轨迹, and a leak endangers their home's safety (PIPL Art 28). A rule
  must name them one by one; a wildcard never releases them.
* Which gate, which direction, how the gate was opened, a parking space and the kind of visit
  are **internal** (stored in the clear): none of them says who without the person's fields.

**No biometric data is stored here.** :class:`GateEvent` records that a gate was opened by face
recognition (``method = "face"``), never the face image, feature vector or template: the
gate system keeps those (with the separate consent PIPL Art 29 requires, and with a card, QR
code or guard as an alternative, as the Supreme People's Court's 2021 face-recognition
provisions require of property services), and a record with any extra field is refused.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, ClassVar, Literal

from .model import Record, internal, personal, sensitive
from .types import IdType, Money, ShortText

__all__ = [
    "GateDirection",
    "GateEvent",
    "GateMethod",
    "ParkingEvent",
    "VisitPurpose",
    "VisitorEntry",
]

VisitPurpose = Literal["guest", "delivery", "contractor", "service", "official", "other"]
GateDirection = Literal["in", "out"]
#: How a gate was opened. ``face`` says only that face recognition was used: no face image or
#: template is ever stored in the vault.
GateMethod = Literal["card", "face", "qr", "guard"]


class VisitorEntry(Record):
    """A visitor log entry (访客登记).

    The subject is the visitor, who is not an owner: ``subject_id`` is whatever identifies the
    visit at the gate (a visit pass or QR pass number), never the host's id. The ID document is
    optional: record the full number only where a local rule requires it, otherwise the last
    four characters or nothing.
    """

    record_type: ClassVar[str] = "visitor_entry"

    visitor_name: Annotated[ShortText, personal(index="text")]
    phone: Annotated[ShortText | None, personal(index="phone")] = None
    id_type: Annotated[IdType | None, personal()] = None
    id_number: Annotated[ShortText | None, sensitive(index="id_number")] = None
    host_community: Annotated[ShortText, internal()]
    host_building: Annotated[ShortText | None, internal()] = None
    host_unit_number: Annotated[ShortText | None, personal()] = None
    #: The host owner's subject id, when the visit is booked by the owner; who visits whom is
    #: personal to both.
    host_subject_id: Annotated[ShortText | None, personal()] = None
    visit_purpose: Annotated[VisitPurpose, internal()] = "guest"
    plate: Annotated[ShortText | None, personal(index="plate")] = None
    arrived_at: Annotated[_dt.datetime, personal()]
    left_at: Annotated[_dt.datetime | None, personal()] = None


class GateEvent(Record):
    """One passage through a pedestrian or vehicle gate (门禁通行记录).

    The subject is the resident or visitor the gate recognised (their card, QR pass or, for a
    guard's manual opening, the person the guard names).
    """

    record_type: ClassVar[str] = "gate_event"

    subject_kind: Annotated[Literal["resident", "visitor"], internal()]
    gate_id: Annotated[ShortText, internal()]
    direction: Annotated[GateDirection, internal()]
    at: Annotated[_dt.datetime, sensitive()]
    method: Annotated[GateMethod, internal()]


class ParkingEvent(Record):
    """A vehicle's stay in the car park (停车进出记录).

    The subject is the vehicle's registered owner, or for a visiting vehicle the parking ticket
    or visit pass number.
    """

    record_type: ClassVar[str] = "parking_event"

    plate: Annotated[ShortText, personal(index="plate")]
    entered_at: Annotated[_dt.datetime, sensitive()]
    left_at: Annotated[_dt.datetime | None, sensitive()] = None
    space: Annotated[ShortText | None, internal()] = None
    fee: Annotated[Money | None, personal()] = None
