"""A read looks its records and their owners up in one statement (``Backend.read_records``).

Gets, finds and ``get_many`` read each record with its subject and the subject's key state,
joined. The join must give what reading the records and then their subjects gave: erased
records without a subject, a subject whose key row is gone as no subject at all (the read is
refused as for an erased owner), missing ids left out, and any number of ids.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ownervault import Actor, Vault
from ownervault.exceptions import SubjectErasedError
from ownervault.records import OwnerProfile
from test_audit_index import _sql

pytestmark = pytest.mark.backends("sqlcipher", "postgres")


def test_records_come_with_their_live_subjects(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> None:
    """Every stored id comes back (an erased record too, flagged), a missing one does not; the
    subjects are exactly the live records' owners, as a lookup by pseudonym reads them."""
    owners = [make_owner() for _ in range(3)]
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(owners)
    with vault.session(dpo, "erasure_request") as s:
        s.erase_subject(owners[2].subject_id)
    backend = vault._kernel.backend
    with backend.atomic(concurrent=True):
        records, subjects = backend.read_records([*ids, "0" * 32])
        alone = {r.pseudonym: backend.subject(r.pseudonym) for r in records}
    by_id = {r.record_id: r for r in records}
    assert set(by_id) == set(ids)
    assert [by_id[i].erased for i in ids] == [False, False, True]
    live = {by_id[ids[0]].pseudonym, by_id[ids[1]].pseudonym}
    assert set(subjects) == live
    assert all(subjects[p] == alone[p] for p in live)


def test_more_ids_than_one_statement_takes(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """Ids are read 500 to a statement: 1,001 of them (repeats included) all come back."""
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many([make_owner() for _ in range(501)])
    wanted = ids + ids[:500]
    backend = vault._kernel.backend
    with backend.atomic(concurrent=True):
        records, subjects = backend.read_records(wanted)
    assert {r.record_id for r in records} == set(ids)
    assert set(subjects) == {r.pseudonym for r in records}
    with vault.session(clerk, "owner_registration") as s:
        views = s.get_many(OwnerProfile, wanted)
    assert [v.record_id for v in views] == wanted


def test_a_subject_whose_key_row_is_gone_is_not_read(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """An operator deletes an owner's key row with the foreign keys off: the record reads as
    having no live subject, and a get is refused as for an erased owner, with nothing shown."""
    with vault.session(clerk, "owner_registration") as s:
        rid = s.put(make_owner())
    (key_id,) = _sql(vault, "SELECT s.key_id FROM subjects s JOIN records r USING (pseudonym)")[0]
    if vault.embedded:
        backend = vault._kernel.backend
        backend._execute("PRAGMA foreign_keys = OFF")  # outside a transaction, where it applies
        try:
            _sql(vault, "DELETE FROM keys WHERE key_id = ?", (key_id,))
        finally:
            backend._execute("PRAGMA foreign_keys = ON")
    else:
        _sql(vault, "ALTER TABLE keys DISABLE TRIGGER ALL")
        _sql(vault, "DELETE FROM keys WHERE key_id = ?", (key_id,))
        _sql(vault, "ALTER TABLE keys ENABLE TRIGGER ALL")
    backend = vault._kernel.backend
    with backend.atomic(concurrent=True):
        records, subjects = backend.read_records([rid])
    assert [r.record_id for r in records] == [rid] and subjects == {}
    with vault.session(clerk, "owner_registration") as s, pytest.raises(SubjectErasedError):
        s.get(OwnerProfile, rid)
