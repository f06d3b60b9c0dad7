"""What reads and writes hand back: a record's reference and a session's view of a record.

A :class:`RecordView` holds only the fields a decision disclosed, full or masked; its ``repr``
names fields and views, never values.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..exceptions import FieldNotDisclosedError
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

    Hidden fields are absent; asking for one raises :class:`FieldNotDisclosedError`.
    ``repr`` shows field names and their view, never values.
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
        try:
            return self.values[field]
        except KeyError:
            raise FieldNotDisclosedError(
                f"field {field!r} of {self.record_type} {self.record_id} is not disclosed"
            ) from None

    def __getattr__(self, field: str) -> object:
        if field.startswith("_"):
            raise AttributeError(field)
        return self[field]

    def __contains__(self, field: object) -> bool:
        return field in self.values

    def get(self, field: str, default: object = None) -> object:
        """The field's value (full or masked) or ``default`` if it is not disclosed."""
        return self.values.get(field, default)

    def view_of(self, field: str) -> ViewMode:
        """How the field is shown: full, masked or hidden."""
        view = self.views.get(field)
        return ViewMode.HIDDEN if view is None else view.mode

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}:{self.view_of(name).value}" for name in self.views)
        return f"RecordView({self.record_type} {self.record_id} v{self.version}; {shown})"

    __str__ = __repr__
