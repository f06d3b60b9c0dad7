"""Records list their blind-index tokens (schema version 7; the index by record id went in 8).

A record's ``tokens`` column names its ``blind_index`` rows, so an update, a deletion, an
erasure and an index-key rotation delete them by key. These tests hold the column to the
index through every write, on both backends, and show what happens when the column is damaged:
nothing is left behind, and ``check --deep`` names what no record lists.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.records import OwnerProfile
from ownervault.storage import schema
from ownervault.storage.sql_tokens import listed_tokens, pack_tokens
from ownervault.testing import grant_roles, record_assessments
from test_audit_index import _sql

pytestmark = pytest.mark.backends("sqlcipher", "postgres")


def _index(vault: Vault) -> set[tuple[bytes, str, str]]:
    """Every blind-index row (token, record id, field)."""
    return {
        (bytes(t), str(r), str(f))
        for t, r, f in _sql(vault, "SELECT token, record_id, field FROM blind_index")
    }


def _listed(vault: Vault) -> set[tuple[bytes, str, str]]:
    """Every token the live records list, as index rows."""
    out: set[tuple[bytes, str, str]] = set()
    for record_id, column in _sql(vault, "SELECT record_id, tokens FROM records WHERE erased = 0"):
        tokens = listed_tokens(column)
        assert tokens is not None
        out |= {(token, str(record_id), field) for field, token in tokens.items()}
    return out


def test_the_index_by_record_is_gone(vault: Vault) -> None:
    """A new vault has no index of blind-index rows by record id."""
    (blind,) = [t for t in schema.tables_at(schema.SCHEMA_VERSION) if t.name == "blind_index"]
    assert blind.indexes == ()
    assert "blind_index_record" not in schema.expected_objects("sqlite")["index"]


def test_every_write_keeps_the_lists_and_the_index_equal(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> None:
    """Puts, updates (a changed, a removed and an added indexed field), a deletion and an
    erasure: after each, the tokens the live records list are exactly the index's rows, and
    searches find what they should."""
    owners = [make_owner() for _ in range(4)]
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(owners[:3])
        ids.append(s.put(owners[3]))
    assert _listed(vault) == _index(vault) and len(_index(vault)) >= 4 * 3
    with vault.session(clerk, "owner_registration") as s:
        view = s.get(OwnerProfile, ids[0])
        s.update(view, phone="13912345678", email=None)
        view = s.get(OwnerProfile, ids[1])
        s.update(view, email="new-owner@example.com", name=owners[1].name)
        assert [v.record_id for v in s.find(OwnerProfile, phone="13912345678")] == [ids[0]]
        assert s.find(OwnerProfile, phone=owners[0].phone) == []
        assert [v.record_id for v in s.find(OwnerProfile, email="new-owner@example.com")] == [
            ids[1]
        ]
    assert _listed(vault) == _index(vault)
    with vault.session(dpo, "erasure_request") as s:
        s.erase_subject(owners[2].subject_id)
    assert _listed(vault) == _index(vault)
    assert {r for _, r, _ in _index(vault)} == {ids[0], ids[1], ids[3]}
    assert _sql(vault, "SELECT tokens FROM records WHERE record_id = ?", (ids[2],)) == [(None,)]
    assert vault.check(deep=True).ok


def test_an_index_key_rotation_rewrites_the_lists(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """Re-indexing under a new index key replaces every row and every list, and nothing of
    the old key's tokens stays behind."""
    owners = [make_owner() for _ in range(3)]
    with vault.session(clerk, "owner_registration") as s:
        s.put_many(owners)
    before = _index(vault)
    admin = Actor("admin-01", roles=["admin"])
    job = vault.keys.rotate_index_key(actor=admin)
    assert vault.keys.run(job.job_id, actor=admin).finished
    after = _index(vault)
    assert _listed(vault) == after
    assert {t for t, _, _ in before}.isdisjoint({t for t, _, _ in after})
    with vault.session(clerk, "owner_registration") as s:
        assert len(s.find(OwnerProfile, phone=owners[1].phone)) == 1


def test_a_damaged_list_leaves_nothing_behind(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> None:
    """With a record's list overwritten outside the vault, an update reads its rows back
    from the index and keeps the unchanged fields searchable, and an erasure still deletes
    every row of the owner's records."""
    owner = make_owner()
    with vault.session(clerk, "owner_registration") as s:
        (rid,) = s.put_many([owner])
    _sql(vault, "UPDATE records SET tokens = ? WHERE record_id = ?", (b"\x07damaged", rid))
    with vault.session(clerk, "owner_registration") as s:
        s.update(s.get(OwnerProfile, rid), phone="13811112222")
        assert [v.record_id for v in s.find(OwnerProfile, phone="13811112222")] == [rid]
        assert s.find(OwnerProfile, phone=owner.phone) == []
        assert [v.record_id for v in s.find(OwnerProfile, name=owner.name)] == [rid]
    assert _listed(vault) == _index(vault)
    _sql(vault, "UPDATE records SET tokens = ? WHERE record_id = ?", (b"", rid))
    with vault.session(dpo, "erasure_request") as s:
        s.erase_subject(owner.subject_id)
    assert _index(vault) == set()


def test_check_names_index_rows_no_record_lists(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """A row added to the index behind the vault (the record does not list it) and a list
    that names a row the index lacks are both named by the deep check, on that record."""
    a, b = make_owner(), make_owner()
    with vault.session(clerk, "owner_registration") as s:
        rid_a, rid_b = s.put_many([a, b])
    ((token_a,),) = _sql(
        vault, "SELECT token FROM blind_index WHERE record_id = ? AND field = 'phone'", (rid_a,)
    )
    _sql(
        vault,
        "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, 'email')",
        (token_a, rid_b),
    )
    ((column,),) = _sql(vault, "SELECT tokens FROM records WHERE record_id = ?", (rid_a,))
    listed = listed_tokens(column)
    assert listed is not None
    _sql(
        vault,
        "UPDATE records SET tokens = ? WHERE record_id = ?",
        (pack_tokens({**listed, "phone": bytes(16)}), rid_a),
    )
    report = vault.check(deep=True)
    index = sorted((f.row, f.problem) for f in report.damage if f.kind == "index")
    assert [row for row, _ in index] == sorted([rid_a, rid_a, rid_b]), report.lines()
    assert any("does not list it" in problem for row, problem in index if row == rid_b)


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_a_version_1_vault_gets_its_lists_from_its_index(
    tmp_path: Path, clerk: Actor, dpo: Actor
) -> None:
    """The committed schema-version-1 vault, opened: each live record lists exactly its index
    rows (version 7's step), the index by record id is gone (version 8's), and an erasure
    deletes the erased owner's rows by the lists."""
    source = Path(__file__).parent / "fixtures" / "vault-v1"
    shutil.copytree(source / "vault", tmp_path / "v")
    with Vault.open(tmp_path / "v", key=KeyFileKey(source / "root.key")) as vault:
        names = {row[0] for row in _sql(vault, "SELECT name FROM sqlite_master")}
        assert "blind_index_record" not in names
        rows = _index(vault)
        assert rows and _listed(vault) == rows
        grant_roles(vault, clerk, dpo)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as s:
            (found,) = s.find(OwnerProfile, phone="13800000002")
        with vault.session(dpo, "erasure_request") as s:
            s.erase_subject(found.subject_id)
        erased = {str(r) for (r,) in _sql(vault, "SELECT record_id FROM records WHERE erased = 1")}
        assert found.record_id in erased
        assert _listed(vault) == _index(vault) == {r for r in rows if r[1] not in erased}
        assert vault.check(deep=True).ok
