"""Records: what the vault stores about a subject, and how each field is classified.

Owns the record model (:class:`Record`, :class:`FieldSpec`, classifications), the normalisers
behind blind indexes, the maskers that decisions apply, the property-management record set and
a synthetic community for demos. Imports only :mod:`ownervault.exceptions`.
"""

from .logs import (
    GateDirection,
    GateEvent,
    GateMethod,
    ParkingEvent,
    VisitorEntry,
    VisitPurpose,
)
from .maskers import MASKERS, mask
from .model import (
    NORMALISERS,
    RECORD_TYPES,
    Classification,
    FieldSpec,
    Record,
    internal,
    normalise,
    personal,
    public,
    record_type_named,
    sensitive,
)
from .types import (
    Complaint,
    Contract,
    FeeAccount,
    Gender,
    HouseholdRole,
    IdType,
    LongText,
    Money,
    OwnerProfile,
    Payment,
    RenovationApplication,
    ShortText,
    Unit,
    Vehicle,
)

__all__ = [
    "MASKERS",
    "NORMALISERS",
    "RECORD_TYPES",
    "Classification",
    "Complaint",
    "Contract",
    "FeeAccount",
    "FieldSpec",
    "GateDirection",
    "GateEvent",
    "GateMethod",
    "Gender",
    "HouseholdRole",
    "IdType",
    "LongText",
    "Money",
    "OwnerProfile",
    "ParkingEvent",
    "Payment",
    "Record",
    "RenovationApplication",
    "ShortText",
    "Unit",
    "Vehicle",
    "VisitPurpose",
    "VisitorEntry",
    "internal",
    "mask",
    "normalise",
    "personal",
    "public",
    "record_type_named",
    "sensitive",
]
