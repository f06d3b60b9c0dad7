"""What reads and writes hand back: a record's reference and a session's view of a record.

A :class:`RecordView` holds only the fields a decision disclosed, full or masked; its ``repr``
names fields and views, never values. It follows Python's attribute protocol: ``view.phone``
and ``view["phone"]`` give a disclosed field (``None`` when it has no value), raise
:class:`FieldNotDisclosedError` for a hidden one and :class:`UnknownFieldError` for a name the
record type does not have; both are ``AttributeError`` and ``KeyError``, so ``hasattr`` and
``getattr(view, name, default)`` work as usual.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..exceptions import FieldNotDisclosedError, UnknownFieldError
from ..policy import FieldView, ViewMode

__all__ = ["RecordRef", "RecordView"]


@attrs.frozen
class RecordRef:
    """A record id with the version it was at; pass it to ``Session.update``."""

    record_type: str
    record_id: str
    version: int


@attrs.frozen(repr=False)
class RecordView:
    """What a session may see of one record: disclosed fields, full or masked.

    ``view.field`` and ``view["field"]`` return a disclosed field's value (``None`` when the
    record has none); a field the decision hides raises :class:`FieldNotDisclosedError`, a name
    the record type does not have raises :class:`UnknownFieldError`. Both are ``KeyError`` and
    ``AttributeError``. ``repr`` shows field names and their view, never values.
    """

    record_type: str
    record_id: str
    version: int
    subject_id: str
    values: Mapping[str, object]
    views: Mapping[str, FieldView]
    created_at: str
    updated_at: str

    @property
    def ref(self) -> RecordRef:
        """This record at this version."""
        return RecordRef(self.record_type, self.record_id, self.version)

    def __getitem__(self, field: str) -> object:
        if field in self.values:
            return self.values[field]
        if field == "subject_id":
            return self.subject_id
        view = self.views.get(field)
        error: FieldNotDisclosedError | UnknownFieldError
        if view is None:
            error = UnknownFieldError(f"{self.record_type} has no field {field!r}")
        elif view.mode is ViewMode.HIDDEN:
            error = FieldNotDisclosedError(
                f"field {field!r} of {self.record_type} {self.record_id} is not disclosed"
            )
        else:
            return None  # disclosed, but the record holds no value for it
        # What AttributeError's "did you mean" hint reads (through __dir__).
        error.name, error.obj = field, self
        raise error

    def __getattr__(self, field: str) -> object:
        if field.startswith("_"):
            raise AttributeError(field, name=field, obj=self)
        return self[field]

    def __dir__(self) -> list[str]:
        disclosed = (name for name, view in self.views.items() if view.mode is not ViewMode.HIDDEN)
        return sorted({*super().__dir__(), *disclosed})

    def __contains__(self, field: object) -> bool:
        return field in self.values

    def get(self, field: str, default: object = None) -> object:
        """The field's value (full or masked), or ``default`` if it is hidden, unknown or empty."""
        return self.values.get(field, default)

    def view_of(self, field: str) -> ViewMode:
        """How the field is shown: full, masked or hidden."""
        view = self.views.get(field)
        return ViewMode.HIDDEN if view is None else view.mode

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}:{self.view_of(name).value}" for name in self.views)
        return f"RecordView({self.record_type} {self.record_id} v{self.version}; {shown})"

    __str__ = __repr__
