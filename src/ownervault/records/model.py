"""Record model: field classifications, normalisers for blind indexes, and the record base class.

A record is a pydantic model about one subject. Every field except ``subject_id`` carries a
:class:`FieldSpec` in its ``Annotated`` metadata that says how it is classified and, optionally,
how it is normalised for equality search through a blind index::

    class ParkingPermit(ov.records.Record):
        record_type: ClassVar[str] = "parking_permit"
        plate: Annotated[str, ov.records.personal(index="plate")]
        zone: Annotated[str, ov.records.internal()]

``personal`` and ``sensitive`` fields are encrypted one by one under the subject's data key;
``public`` and ``internal`` fields are stored in the clear inside the encrypted database file.
All data of a minor under 14 is treated as sensitive (PIPL Art 28/31): see
:meth:`Record.minor_until`.

Construction errors and ``repr`` never show a personal or sensitive value.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

import attrs
import pydantic

from ..exceptions import ConfigurationError, ValidationError
from .validation import STORED_CONTEXT_KEY

__all__ = [
    "NORMALISERS",
    "RECORD_TYPES",
    "Classification",
    "FieldSpec",
    "Record",
    "internal",
    "normalise",
    "personal",
    "public",
    "record_type_named",
    "sensitive",
]


class Classification(StrEnum):
    """How protected a field is (GB/T 35273 / PIPL Art 28 categories)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"

    @property
    def encrypted(self) -> bool:
        """Whether fields of this class are encrypted under the subject's data key."""
        return self in (Classification.PERSONAL, Classification.SENSITIVE)


# --------------------------------------------------------------------------- normalisation

_NON_DIGITS = re.compile(r"\D+")
_SPACES = re.compile(r"\s+")
_PLATE_SEPARATORS = re.compile(r"[\s.·•\-]+")


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _stable(fn: Callable[[str], str], value: str) -> str:
    """Apply ``fn`` until the value stops changing, so normalising twice changes nothing."""
    for _ in range(8):
        again = fn(value)
        if again == value:
            break
        value = again
    return value


def _phone_once(digits: str) -> str:
    if digits.startswith("0086"):
        return digits[4:]
    if digits.startswith("86") and len(digits) == 13:
        return digits[2:]
    return digits


def _phone(value: str) -> str:
    return _stable(_phone_once, _NON_DIGITS.sub("", _nfkc(value)))


def _id_number(value: str) -> str:
    return _stable(lambda v: _SPACES.sub("", _nfkc(v)).upper(), value)


def _plate(value: str) -> str:
    return _stable(lambda v: _PLATE_SEPARATORS.sub("", _nfkc(v)).upper(), value)


def _email(value: str) -> str:
    return _nfkc(value).strip().lower()


def _text(value: str) -> str:
    return _SPACES.sub(" ", _nfkc(value)).strip()


def _digits(value: str) -> str:
    return _NON_DIGITS.sub("", _nfkc(value))


#: Normalisers for blind indexes, by name. The same function runs on stored values and queries.
NORMALISERS: Final[Mapping[str, Callable[[str], str]]] = {
    "phone": _phone,  # digits only; drops a leading +86 / 0086
    "id_number": _id_number,  # NFKC, no whitespace, upper case (trailing X)
    "plate": _plate,  # NFKC, upper case, no spaces, dots, middle dots or hyphens
    "email": _email,  # NFKC, trimmed, lower case
    "text": _text,  # NFKC, whitespace collapsed and trimmed
    "digits": _digits,  # digits only (bank accounts, certificate numbers)
}


def normalise(normaliser: str, value: object) -> str:
    """Normalise ``value`` for a blind index with the named normaliser."""
    try:
        fn = NORMALISERS[normaliser]
    except KeyError:
        raise ConfigurationError(f"unknown normaliser {normaliser!r}") from None
    return fn(value if isinstance(value, str) else str(value))


# --------------------------------------------------------------------------- field specs


@attrs.frozen
class FieldSpec:
    """Classification (and optional blind-index normaliser) attached to a record field."""

    classification: Classification
    index: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.index is not None:
            if self.index not in NORMALISERS:
                raise ConfigurationError(f"unknown normaliser {self.index!r}")
            if not self.classification.encrypted:
                raise ConfigurationError("blind indexes are only for personal or sensitive fields")


def public() -> FieldSpec:
    """A field anyone may see (a community's name)."""
    return FieldSpec(Classification.PUBLIC)


def internal() -> FieldSpec:
    """Operational data that is not about a person (a record's status, a fee rate)."""
    return FieldSpec(Classification.INTERNAL)


def personal(*, index: str | None = None) -> FieldSpec:
    """Personal information (个人信息); encrypted under the subject's data key."""
    return FieldSpec(Classification.PERSONAL, index)


def sensitive(*, index: str | None = None) -> FieldSpec:
    """Sensitive personal information (敏感个人信息, PIPL Art 28): encrypted, named by rules."""
    return FieldSpec(Classification.SENSITIVE, index)


# --------------------------------------------------------------------------- record base

_RECORD_TYPE_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_IDENT_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: Registry of record types by name, filled as subclasses are defined.
RECORD_TYPES: dict[str, type[Record]] = {}

SubjectId = Annotated[str, pydantic.Field(min_length=1, max_length=128)]


def _error_parts(exc: pydantic.ValidationError, field: str = "record") -> list[str]:
    """Each pydantic error as ``field (kind)``: the field and error type only, never the input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(x) for x in err["loc"]) or field
        parts.append(f"{loc} ({err['type']})")
    return parts


def _safe_errors(exc: pydantic.ValidationError, field: str = "record") -> str:
    """Describe a pydantic error by field and error type only (pydantic quotes input values)."""
    return ", ".join(_error_parts(exc, field))


class Record(pydantic.BaseModel):
    """Base class of every record: a typed document about one subject.

    Subclasses set ``record_type`` and annotate every field with a :class:`FieldSpec`. Values are
    validated by pydantic; errors name the fields and the kind of problem, never the value.
    """

    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, validate_default=True, hide_input_in_errors=True
    )

    record_type: ClassVar[str] = ""
    _specs: ClassVar[dict[str, FieldSpec]] = {}
    _adapters: ClassVar[dict[str, pydantic.TypeAdapter[Any]]]
    _loaders: ClassVar[dict[tuple[str, ...], type[pydantic.BaseModel]]]

    subject_id: SubjectId

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"invalid {type(self).record_type or type(self).__name__}: {_safe_errors(exc)}"
            ) from None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not _RECORD_TYPE_RE.match(cls.record_type):
            raise ConfigurationError(f"{cls.__name__}.record_type must be a lower-case identifier")
        existing = RECORD_TYPES.get(cls.record_type)
        same_class = existing is not None and (existing.__module__, existing.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if existing is not None and not same_class:
            raise ConfigurationError(f"record type {cls.record_type!r} is already defined")
        specs: dict[str, FieldSpec] = {}
        for name, info in cls.model_fields.items():
            if name == "subject_id":
                continue
            found = [m for m in info.metadata if isinstance(m, FieldSpec)]
            if len(found) != 1:
                raise ConfigurationError(
                    f"{cls.__name__}.{name} needs exactly one classification "
                    "(public(), internal(), personal() or sensitive())"
                )
            if not _IDENT_RE.match(name):
                raise ConfigurationError(f"{cls.__name__}.{name}: field names are identifiers")
            specs[name] = found[0]
        cls._specs = specs
        RECORD_TYPES[cls.record_type] = cls

    @classmethod
    def field_specs(cls) -> Mapping[str, FieldSpec]:
        """Classification of every field except ``subject_id``, in declaration order."""
        return cls._specs

    @classmethod
    def field_adapter(cls, name: str) -> pydantic.TypeAdapter[Any]:
        """A cached validator/serialiser for one field, with the field's constraints."""
        adapters: dict[str, pydantic.TypeAdapter[Any]] = cls._own_cache("_adapters")
        adapter = adapters.get(name)
        if adapter is None:
            adapter = adapters[name] = pydantic.TypeAdapter(cls._field_type(name))
        return adapter

    @classmethod
    def _field_type(cls, name: str) -> Any:
        """A field's annotation with its constraints (what one value of it is checked against)."""
        info = cls.model_fields[name]
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        return annotation

    @classmethod
    def _own_cache(cls, attribute: str) -> dict[Any, Any]:
        """A cache kept on this record class itself, never one inherited from its base."""
        cache: dict[Any, Any] | None = cls.__dict__.get(attribute)
        if cache is None:
            cache = {}
            setattr(cls, attribute, cache)
        return cache

    @classmethod
    def validate_field(cls, name: str, value: object) -> object:
        """Validate one field's value (used by updates); errors name the field only."""
        if name not in cls._specs:
            raise ValidationError(f"{cls.record_type} has no field {name!r}")
        try:
            return cls.field_adapter(name).validate_python(value)
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"invalid {cls.record_type}.{name}: {_safe_errors(exc, name)}"
            ) from None

    @classmethod
    def load_field(cls, name: str, value: object) -> object:
        """A stored field's JSON value back in its Python type, without write-time checks.

        Reads use it: a value is checked when it is written, and one stored under older rules
        (a phone number the current rules refuse) still reads. Errors name the field only.
        """
        try:
            return cls.field_adapter(name).validate_python(
                value, context={STORED_CONTEXT_KEY: True}
            )
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"invalid {cls.record_type}.{name}: {_safe_errors(exc, name)}"
            ) from None

    @classmethod
    def load_fields(cls, values: Mapping[str, object], names: Sequence[str]) -> dict[str, object]:
        """:meth:`load_field` of each of ``names`` that ``values`` holds, in one validation.

        A read shows several fields of each record: one pydantic call for them all, with the
        same types, constraints and context as :meth:`load_field`, costs a fraction of one
        call per field. On a failure each field is loaded on its own, so the error names the
        first one that fails, as :meth:`load_field` would.
        """
        given = {name: values[name] for name in names if name in values}
        if not given:  # a read that shows every field masked, or none of these is stored
            return {}
        try:
            loaded = cls._loader(tuple(names)).model_validate(
                given, context={STORED_CONTEXT_KEY: True}
            )
        except pydantic.ValidationError as exc:
            for name, value in given.items():
                cls.load_field(name, value)
            raise ValidationError(f"invalid {cls.record_type}: {_safe_errors(exc)}") from None
        fields = loaded.__dict__
        return {name: fields[name] for name in given}

    @classmethod
    def _loader(cls, names: tuple[str, ...]) -> type[pydantic.BaseModel]:
        """A model of these fields, each typed as :meth:`field_adapter` types it and left out
        when not given (cached: reads ask for the few sets their decisions show)."""
        loaders: dict[tuple[str, ...], type[pydantic.BaseModel]] = cls._own_cache("_loaders")
        loader = loaders.get(names)
        if loader is None:
            # A default is never validated: a field not given is left out, as it was absent.
            fields: dict[str, Any] = {name: (cls._field_type(name), None) for name in names}
            loader = loaders[names] = pydantic.create_model(
                f"{cls.__name__}Stored",
                __config__=pydantic.ConfigDict(hide_input_in_errors=True),
                **fields,
            )
        return loader

    @classmethod
    def problems(cls, values: Mapping[str, object]) -> frozenset[str]:
        """What is wrong with a whole record's values, as ``field (kind)`` strings; empty if valid.

        Checks every field and the rules between fields (an ID number against its type), as
        constructing the record would. Updates use it on the record as it would be after the
        change, so an update cannot make a record invalid.
        """
        try:
            # pydantic's own __init__: this class's __init__ turns the error into a message.
            pydantic.BaseModel.__init__(cls.__new__(cls), **values)
        except pydantic.ValidationError as exc:
            return frozenset(_error_parts(exc))
        return frozenset()

    def minor_until(self) -> _dt.date | None:
        """The date the subject turns 14 if this record shows a birth date, else None."""
        return None

    def __repr__(self) -> str:
        shown = []
        for name, spec in self.field_specs().items():
            value = getattr(self, name)
            if value is None:
                continue
            shown.append(
                f"{name}=<{spec.classification.value}>"
                if spec.classification.encrypted
                else f"{name}={value!r}"
            )
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__


def record_type_named(name: str) -> type[Record]:
    """Look up a record class by its ``record_type``."""
    try:
        return RECORD_TYPES[name]
    except KeyError:
        raise ValidationError(f"unknown record type {name!r}") from None
