"""Freshness: tying each record's current row to its last write in the audit log.

A binding tag proves a row is one the vault wrote, not that it is the latest one: someone who
can change the database could write back a record's own earlier row. So every write's audit
entry carries the record's version and a digest of its sealed container (``detail.version``,
``detail.sealed``), and a re-encryption, which re-seals a subject's records under a new key
without changing their versions, logs a ``key.rekey`` entry naming each record, its version and
its new digest. ``check --deep`` replays these entries and compares them with the live rows
(:func:`expected_records`); the audit log itself is protected by its Merkle tree and the
anchored checkpoints.

Digests are SHA-256 of ciphertext, truncated to 128 bits: they say nothing about any value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ..audit import AuditEntry
from ..policy import Actor
from ..storage import RecordRow
from .rekey import Rekeyed

__all__ = [
    "DELETE_ACTION",
    "REKEY_ACTION",
    "WRITE_ACTIONS",
    "Expected",
    "expected_records",
    "rekey_entries",
    "sealed_digest",
    "write_detail",
]

#: Audit actions that write a record's row, with its version and digest in the detail.
WRITE_ACTIONS: Final = frozenset({"create", "update"})
#: The audit action of a subject's re-encryption under a new data key.
REKEY_ACTION: Final = "key.rekey"
#: The audit action of one record's deletion (``Session.delete``, the retention sweep).
DELETE_ACTION: Final = "record.delete"
_DIGEST_BYTES: Final = 16


def sealed_digest(sealed: bytes) -> str:
    """The hex digest of a sealed container that audit entries carry (128 bits of SHA-256)."""
    return hashlib.sha256(sealed).digest()[:_DIGEST_BYTES].hex()


def write_detail(row: RecordRow) -> dict[str, str | int | bool | None]:
    """The freshness part of a write's audit entry: the record's version and digest."""
    return {"version": row.version, "sealed": sealed_digest(row.sealed)}


def rekey_entries(actor: Actor, purpose: str, rekeyed: Iterable[Rekeyed]) -> list[AuditEntry]:
    """One ``key.rekey`` entry per subject: the new key, and each record's version and digest.

    ``records`` is ``record_id:version:digest`` for each re-sealed record, ``;``-separated.
    """
    return [
        AuditEntry(
            action=REKEY_ACTION,
            actor=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            decision="allow",
            subject=item.subject.pseudonym,
            detail={
                "key_id": item.key.key_id.hex(),
                "from": item.old_key_id.hex(),
                "records": ";".join(
                    f"{r.record_id}:{r.version}:{sealed_digest(r.sealed)}" for r in item.records
                ),
            },
        )
        for item in rekeyed
    ]


@attrs.frozen
class Expected:
    """A record's state as the audit log last recorded it."""

    version: int
    sealed: str | None
    erased: bool = False
    seq: int = 0


def expected_records(entries: Iterable[Mapping[str, Any]]) -> dict[str, Expected]:
    """Replay the audit log: every record's last logged state, by record id.

    Writes (``create``, ``update``) set a record's version and digest; a ``key.rekey`` entry
    sets those of each record it names; a ``record.delete`` entry marks its record erased (gone),
    an ``erase`` entry every record of its subject. Entries written before freshness was
    recorded carry no digest: their records are expected at that version with any digest
    (``sealed`` None).
    """
    expected: dict[str, Expected] = {}
    owners: dict[str, set[str]] = {}
    for entry in entries:
        action = entry.get("action")
        if entry.get("decision") != "allow":
            continue
        detail = entry.get("detail") or {}
        seq = int(entry.get("seq", 0))
        if action in WRITE_ACTIONS and entry.get("record_id"):
            record_id = str(entry["record_id"])
            version = detail.get("version")
            previous = expected.get(record_id)
            if version is None:
                # A write logged before versions were: it made the next version.
                version = 1 if previous is None else previous.version + 1
            sealed = detail.get("sealed")
            expected[record_id] = Expected(int(version), sealed if sealed else None, seq=seq)
            if entry.get("subject"):
                owners.setdefault(str(entry["subject"]), set()).add(record_id)
        elif action == REKEY_ACTION and detail.get("records"):
            for item in str(detail["records"]).split(";"):
                record_id, version, digest = item.split(":")
                expected[record_id] = Expected(int(version), digest, seq=seq)
        elif action == DELETE_ACTION and entry.get("record_id"):
            # One record deleted (its row is gone): a missing row is what the log expects.
            record_id = str(entry["record_id"])
            old = expected.get(record_id, Expected(0, None))
            expected[record_id] = Expected(old.version + 1, None, erased=True, seq=seq)
        elif action == "erase" and entry.get("subject"):
            for record_id in owners.get(str(entry["subject"]), set()):
                old = expected[record_id]
                expected[record_id] = Expected(old.version + 1, None, erased=True, seq=seq)
    return expected
