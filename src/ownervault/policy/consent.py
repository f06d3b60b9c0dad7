"""Consent: the ledger's records and the pure rules that turn them into a live/dead answer.

The ledger is append-only: a grant, a withdrawal and an expiry are facts at a time, never
overwritten. The state of (subject, purpose) at time *t* is found by replaying the facts up to
*t* (:func:`consent_state`):

* no grant yet -> ``missing``; latest fact a withdrawal -> ``withdrawn``;
* latest fact a grant whose ``expires_at`` is not after *t* -> ``expired``;
* a live grant given under another notice, or for fewer fields than the purpose now needs ->
  ``reconsent_required`` (PIPL Art 14: a change of purpose or scope needs fresh consent). The
  notice is compared by its content hash (``notice_hash``); a grant recorded before grants
  carried the hash is compared by its version, which for such a grant was itself a content
  hash of the notice (``n`` and 16 hex digits), so it stays live exactly while the notice
  text it was given on is unchanged;
* otherwise ``live``.

Sensitive fields (and all data of a minor under 14) additionally need a *separate* consent
(PIPL Art 29); a minor's consent must come from a guardian (PIPL Art 31).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

import attrs

__all__ = ["ConsentRecord", "ConsentState", "ConsentStatus", "consent_state"]


class ConsentStatus(StrEnum):
    """What the ledger says about one subject and purpose at one moment."""

    LIVE = "live"
    MISSING = "missing"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    RECONSENT_REQUIRED = "reconsent_required"


@attrs.frozen
class ConsentRecord:
    """One fact in the consent ledger. Holds no personal value: subjects by pseudonym,
    evidence by reference (a hash or document id), never the document itself."""

    consent_id: str
    subject: str
    purpose: str
    event: Literal["grant", "withdraw"]
    at: str
    actor: str
    channel: str
    evidence: str
    notice_version: str | None = None
    fields: tuple[str, ...] = ()
    separate: bool = False
    given_by: Literal["subject", "guardian"] = "subject"
    expires_at: str | None = None
    #: SHA-256 of the notice the grant was given on (None for a withdrawal, and for a grant
    #: recorded before grants carried it).
    notice_hash: str | None = None
    #: The record's binding tag, chained to the subject's previous consent record; made and
    #: checked by the vault, never compared as part of the record's value.
    binding: bytes | None = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen
class ConsentState:
    """The replayed state, with the record that decided it."""

    status: ConsentStatus
    separate: bool = False
    record: ConsentRecord | None = None

    @property
    def live(self) -> bool:
        """Whether processing under consent may go ahead."""
        return self.status is ConsentStatus.LIVE

    @property
    def record_ids(self) -> tuple[str, ...]:
        """Ids of the ledger records behind this state (for explanations)."""
        return () if self.record is None else (self.record.consent_id,)


def _time(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _same_notice(record: ConsentRecord, version: str | None, digest: str | None) -> bool:
    """Whether a grant was given on the notice now in force: by hash when both have one."""
    if record.notice_hash is not None and digest is not None:
        return record.notice_hash == digest
    return record.notice_version == version


def consent_state(
    records: Iterable[ConsentRecord],
    *,
    at: _dt.datetime,
    notice_version: str | None,
    fields: frozenset[str],
    notice_hash: str | None = None,
) -> ConsentState:
    """Replay ledger records (of one subject and purpose, in order) up to ``at``.

    Args:
        records: the subject's records for the purpose, oldest first.
        at: the moment asked about (aware).
        notice_version: the purpose's current notice version.
        fields: the purpose's current field set (``record_type.field`` names).
        notice_hash: the purpose's current notice hash; a grant carrying a hash is compared
            on it, any other on ``notice_version``.
    """
    latest: ConsentRecord | None = None
    for record in records:
        if _time(record.at) <= at:
            latest = record
    if latest is None:
        return ConsentState(ConsentStatus.MISSING)
    if latest.event == "withdraw":
        return ConsentState(ConsentStatus.WITHDRAWN, record=latest)
    if latest.expires_at is not None and _time(latest.expires_at) <= at:
        return ConsentState(ConsentStatus.EXPIRED, record=latest)
    if not _same_notice(latest, notice_version, notice_hash) or not fields <= frozenset(
        latest.fields
    ):
        return ConsentState(ConsentStatus.RECONSENT_REQUIRED, record=latest)
    return ConsentState(ConsentStatus.LIVE, separate=latest.separate, record=latest)
