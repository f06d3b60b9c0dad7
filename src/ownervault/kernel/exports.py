"""Exporting the audit log for compliance officers: the export audited, signed and written.

A subject filter is given as the subject's id and turned into their pseudonym here; the id
never reaches the bundle. The export is audited before anything is written, then a checkpoint
is signed (and anchored) and the entries it covers are exported (:mod:`ownervault.audit.bundle`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

from ..audit import AuditEntry, format_time
from ..audit.bundle import AuditFilter, BundleSummary, export_bundle
from ..exceptions import RecordNotFoundError, ValidationError
from ..policy import Actor
from .authority import authorise
from .core import Kernel

__all__ = ["export_audit", "iso_bound"]


def iso_bound(value: str | None) -> str | None:
    """A time bound given by a user (an ISO 8601 date or date-time, UTC unless it says
    otherwise) in the audit entries' time format; None stays None.

    Raises:
        ValidationError: ``value`` is not an ISO 8601 date or date-time.
    """
    if value is None:
        return None
    try:
        moment = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("time bounds must be ISO 8601 dates or date-times") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return format_time(moment)


def export_audit(
    kernel: Kernel,
    out: Path,
    *,
    actor: Actor,
    since: str | None,
    until: str | None,
    actor_id: str | None,
    subject_id: str | None,
    progress: Callable[[int, int], None] | None,
) -> BundleSummary:
    """Audit the export, sign a checkpoint and write the bundle (see ``Vault.export_audit``).

    Raises:
        RecordNotFoundError: ``subject_id`` names no live subject.
        ValidationError: a time bound is not ISO 8601.
    """
    authorise(kernel, actor, "audit.export", purpose="audit_export")
    pseudonym: str | None = None
    if subject_id is not None:
        subject = kernel.keys.lookup_subject(subject_id)
        if subject is None:
            raise RecordNotFoundError("no live subject with that id")
        pseudonym = subject.pseudonym
    audit_filter = AuditFilter(
        since=iso_bound(since), until=iso_bound(until), actor=actor_id, subject=pseudonym
    )
    entry = AuditEntry(
        action="audit.export",
        actor=actor.actor_id,
        roles=actor.roles,
        purpose="audit_export",
        decision="allow",
        subject=pseudonym,
        detail={
            "since": audit_filter.since,
            "until": audit_filter.until,
            "actor_filter": actor_id,
        },
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=kernel.clock.now())
    note = kernel.checkpoint()
    return export_bundle(
        kernel.audit,
        out,
        note=note,
        vkey=kernel.verifier_key,
        origin=kernel.log_origin,
        audit_filter=audit_filter,
        now=kernel.clock.now(),
        sign=kernel.sign_note,
        progress=progress,
    )
