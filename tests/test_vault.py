"""End-to-end tests of the vault: sessions, policy, encryption, blind indexes, erasure and audit.

Everything goes through the public API (``Vault``/``Session``); the private backend is used only
to look at or damage what is stored, never to bypass a check.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

import strategies
from ownervault import (
    Actor,
    EnvKey,
    KeyFileKey,
    PassphraseKey,
    RecordView,
    Session,
    Vault,
    ViewMode,
    crypto,
    sealing,
)
from ownervault.bundle import verify_bundle
from ownervault.exceptions import (
    FieldNotDisclosedError,
    IntegrityError,
    KeyExhaustedError,
    PolicyDeniedError,
    RecordNotFoundError,
    StaleRecordError,
    SubjectErasedError,
    UnknownFieldError,
    ValidationError,
    VaultExistsError,
    VaultFormatError,
    VaultNotFoundError,
    WrongKeyError,
)
from ownervault.records import (
    RECORD_TYPES,
    Complaint,
    FeeAccount,
    OwnerProfile,
    Record,
    Unit,
    Vehicle,
    normalise,
)
from ownervault.storage.base import Backend
from ownervault.testing import (
    FAST_ARGON2,
    FrozenClock,
    InMemoryKey,
    grant_roles,
    record_assessments,
)

#: Every test here that uses a vault runs on the embedded SQLCipher store and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlcipher", "postgres")

#: Record types shipped with ownervault (other tests may register their own).
SHIPPED_TYPES = sorted(
    n for n, c in RECORD_TYPES.items() if c.__module__ == "ownervault.records.types"
)

#: Who may create each shipped record type under the default policy pack.
CREATORS: dict[str, tuple[str, str]] = {
    "owner_profile": ("front_desk", "owner_registration"),
    "unit": ("front_desk", "owner_registration"),
    "vehicle": ("front_desk", "owner_registration"),
    "contract": ("front_desk", "owner_registration"),
    "renovation_application": ("front_desk", "renovation_approval"),
    "complaint": ("front_desk", "complaint_handling"),
    "fee_account": ("finance", "fee_collection"),
    "payment": ("finance", "fee_collection"),
}

PHONE = "13812345678"


# --------------------------------------------------------------------------- helpers


class LeakCheck:
    """Collects personal values and secrets, and every object whose text must not show them."""

    #: Fields whose values are enumerations ("male", "passport"), not identifying text.
    ENUM_FIELDS = frozenset({"gender", "id_type", "household_role", "status", "relation"})

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.objects: list[object] = []

    def secret(self, *values: object) -> None:
        """Remember values that must never appear in a message or repr."""
        for value in values:
            if value is not None and str(value):
                self.secrets.add(str(value))

    def record(self, record: Record) -> Record:
        """Remember every personal value of a record (and its subject id); return it."""
        self.secret(record.subject_id)
        for name, spec in record.field_specs().items():
            value = getattr(record, name)
            if spec.classification.encrypted and name not in self.ENUM_FIELDS:
                self.secret(value.isoformat() if isinstance(value, _dt.date) else value)
        return record

    def watch(self, *objects: object) -> None:
        """Check these objects' ``str``/``repr`` at the end of the test."""
        self.objects.extend(objects)

    @contextmanager
    def raises(self, exc_type: type[BaseException], **kwargs: Any) -> Iterator[Any]:
        """``pytest.raises`` that also watches the raised exception."""
        with pytest.raises(exc_type, **kwargs) as info:
            yield info
        self.objects.append(info.value)

    def texts(self, obj: object) -> list[str]:
        """Every text form of ``obj`` a log or traceback could show."""
        out = [str(obj), repr(obj)]
        if isinstance(obj, BaseException):
            out.extend(repr(arg) for arg in obj.args)
        return out

    def check(self, *extra: str) -> None:
        """Fail if a watched object's text (or an ``extra`` text) contains a secret."""
        for text in [t for obj in self.objects for t in self.texts(obj)] + list(extra):
            found = sorted(s for s in self.secrets if s in text)
            assert not found, f"secret or personal value shown in {text[:120]!r}"


@pytest.fixture
def leaks() -> Iterator[LeakCheck]:
    """A LeakCheck verified when the test ends."""
    check = LeakCheck()
    yield check
    check.check()


def _count(vault: Vault, sql: str, *params: object) -> int:
    return int(vault._kernel.backend._execute(sql, params).fetchone()[0])


def _tokens(vault: Vault, record_ids: list[str]) -> int:
    """Blind-index tokens stored for these records."""
    marks = ",".join("?" * len(record_ids))
    return _count(
        vault, f"SELECT count(*) FROM blind_index WHERE record_id IN ({marks})", *record_ids
    )


def _sealed(vault: Vault, record_id: str) -> bytes:
    """The stored sealed blob (every field envelope of the record, packed)."""
    row = vault._kernel.backend._execute(
        "SELECT sealed FROM records WHERE record_id = ?", (record_id,)
    )
    return bytes(row.fetchone()[0])


def _deny_entries(vault: Vault, start: int = 0) -> list[dict[str, Any]]:
    return [e for e in vault.audit.entries(start) if e["decision"] == "deny"]


def _aad_field(aad: bytes) -> tuple[str, str, str]:
    """(record type, record id, field) from field associated data (length-prefixed parts)."""
    parts: list[bytes] = []
    at = 0
    while at < len(aad):
        size = int.from_bytes(aad[at : at + 4], "big")
        parts.append(aad[at + 4 : at + 4 + size])
        at += 4 + size
    return parts[3].decode(), parts[4].decode(), parts[5].decode()


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every (record type, record id, field) decrypted with a subject key during the test."""
    calls: list[tuple[str, str, str]] = []
    original, original_bodies = crypto.FieldKey.decrypt, crypto.FieldKey.open_bodies

    def spy(self: crypto.FieldKey, envelope: bytes, *, aad: bytes) -> bytes:
        calls.append(_aad_field(aad))
        return original(self, envelope, aad=aad)

    def spy_bodies(
        self: crypto.FieldKey, bodies: Sequence[tuple[bytes, bytes]], *, ident: bytes
    ) -> list[bytes]:
        calls.extend(_aad_field(field_aad) for field_aad, _ in bodies)
        return original_bodies(self, bodies, ident=ident)

    monkeypatch.setattr(crypto.FieldKey, "decrypt", spy)
    monkeypatch.setattr(crypto.FieldKey, "open_bodies", spy_bodies)
    return calls


def _put(vault: Vault, actor: Actor, purpose: str, *records: Record) -> list[str]:
    with vault.session(actor, purpose) as session:
        return session.put_many(list(records))


def _years_ago(today: _dt.date, years: int) -> _dt.date:
    return today.replace(year=today.year - years)


# --------------------------------------------------------------------------- round trip


def test_strategies_cover_every_field() -> None:
    """The shared record strategies draw every field of every shipped record type."""
    assert set(strategies.RECORD_FIELDS) == set(SHIPPED_TYPES) == set(CREATORS)
    for name in SHIPPED_TYPES:
        expected = {"subject_id", *RECORD_TYPES[name].field_specs()}
        assert set(strategies.RECORD_FIELDS[name]) == expected, name


@pytest.mark.parametrize("record_type", SHIPPED_TYPES)
def test_round_trip_every_record_type(record_type: str, vault: Vault, dpo: Actor) -> None:
    """Any valid record reads back equal, every field shown in full, to a subject-access read."""
    role, purpose = CREATORS[record_type]
    writing = Actor("writer-01", roles=[role])
    grant_roles(vault, writing)
    record_assessments(vault)
    writer = vault.session(writing, purpose)
    reader = vault.session(dpo, "subject_access_request")
    cls = RECORD_TYPES[record_type]

    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(record=strategies.records(record_type))
    def check(record: Record) -> None:
        rid = writer.put(record)
        view = reader.get(cls, rid)
        assert view.subject_id == record.subject_id
        for name in cls.field_specs():
            expected = getattr(record, name)
            note(f"{name}: {expected!r}")
            assert view.view_of(name) is ViewMode.FULL
            assert view.get(name) == expected
            if expected is not None:
                assert type(view[name]) is type(expected)
                assert str(view[name]) == str(expected)
            if isinstance(expected, _dt.datetime):
                assert view[name].utcoffset() == expected.utcoffset()

    check()
    assert vault.audit.verify() == vault.audit.size()


# --------------------------------------------------------------------------- keys and files


def test_wrong_passphrase_is_refused(
    new_location: Callable[[], Path | str], leaks: LeakCheck
) -> None:
    """A vault made with one passphrase refuses another with WrongKeyError."""
    leaks.secret("correct horse battery staple", "tr0ub4dor&3")
    path = new_location()
    Vault.create(
        path, key=PassphraseKey("correct horse battery staple", argon2=FAST_ARGON2)
    ).close()
    with leaks.raises(WrongKeyError):
        Vault.open(path, key=PassphraseKey("tr0ub4dor&3", argon2=FAST_ARGON2))
    Vault.open(path, key=PassphraseKey("correct horse battery staple")).close()


def test_wrong_key_file_is_refused(
    tmp_path: Path, new_location: Callable[[], Path | str], leaks: LeakCheck
) -> None:
    """A vault made with one key file refuses a different key file with WrongKeyError."""
    right = KeyFileKey.generate(tmp_path / "right.key")
    wrong = KeyFileKey.generate(tmp_path / "wrong.key")
    leaks.secret(right.path.read_text().strip(), wrong.path.read_text().strip())
    location = new_location()
    Vault.create(location, key=right).close()
    with leaks.raises(WrongKeyError):
        Vault.open(location, key=wrong)
    leaks.watch(right, wrong)


def test_env_key_opens_a_key_file_vault(
    tmp_path: Path,
    new_location: Callable[[], Path | str],
    monkeypatch: pytest.MonkeyPatch,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    leaks: LeakCheck,
) -> None:
    """An EnvKey holding a key file's text opens the vault created with that key file."""
    key_file = KeyFileKey.generate(tmp_path / "root.key")
    text = key_file.path.read_text()
    leaks.secret(text.strip())
    owner = leaks.record(make_owner())
    location = new_location()
    with Vault.create(location, key=key_file) as vault:
        grant_roles(vault, clerk)
        record_assessments(vault)
        (rid,) = _put(vault, clerk, "owner_registration", owner)
    monkeypatch.setenv("OWNERVAULT_TEST_ROOT_KEY", text)
    env_key = EnvKey("OWNERVAULT_TEST_ROOT_KEY")
    leaks.watch(env_key, key_file)
    with (
        Vault.open(location, key=env_key) as vault,
        vault.session(clerk, "owner_registration") as session,
    ):
        assert session.get(OwnerProfile, rid)["phone"] == owner.phone


@pytest.mark.embedded_only("vault directories; tests/test_postgres.py covers empty databases")
def test_open_missing_directory(tmp_path: Path, leaks: LeakCheck) -> None:
    """Opening a directory without a vault raises VaultNotFoundError."""
    with leaks.raises(VaultNotFoundError):
        Vault.open(tmp_path / "nowhere", key=InMemoryKey())
    (tmp_path / "empty").mkdir()
    with leaks.raises(VaultNotFoundError):
        Vault.open(tmp_path / "empty", key=InMemoryKey())


@pytest.mark.embedded_only("vault directories; tests/test_postgres.py covers a taken database")
def test_create_refuses_non_empty_directory(tmp_path: Path, leaks: LeakCheck) -> None:
    """Creating a vault in a directory that holds anything raises VaultExistsError."""
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with leaks.raises(VaultExistsError):
        Vault.create(tmp_path / "busy", key=InMemoryKey())
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    key = InMemoryKey()
    Vault.create(tmp_path / "v", key=key).close()
    with leaks.raises(VaultExistsError):
        Vault.create(tmp_path / "v", key=key)
    Vault.open(tmp_path / "v", key=key).close()


def _read_header(location: Path | str) -> bytes:
    """The stored header: ``vault.header`` of a directory, or meta "header" on a server."""
    if isinstance(location, Path):
        return (location / "vault.header").read_bytes()
    backend = _server(location)
    try:
        return (backend.get_meta("header") or "").encode("utf-8")
    finally:
        backend.close()


def _write_header(location: Path | str, raw: bytes) -> None:
    """Replace the stored header (with a closed vault) by ``raw``."""
    if isinstance(location, Path):
        (location / "vault.header").write_bytes(raw)
        return
    backend = _server(location)
    try:
        with backend.atomic():
            # A text column holds no NUL byte: such damage arrives as replacement characters.
            text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
            backend.set_meta("header", text)
    finally:
        backend.close()


def _server(url: str) -> Backend:
    from ownervault.storage.postgres import PostgresBackend

    return PostgresBackend(url)


def _tamper(header: dict[str, Any], how: str) -> bytes:
    if how == "truncated":
        return json.dumps(header).encode()[:-40]
    if how == "not_json":
        return b"\x00\xffnot a header"
    if how == "unknown_version":
        header["version"] = 99
    elif how == "extra_field":
        header["backdoor"] = "x"
    elif how == "missing_field":
        del header["wrapped_db_key"]
    elif how == "bad_vault_id":
        header["vault_id"] = "not-hex"
    elif how == "wrong_format":
        header["format"] = "something-else"
    return json.dumps(header).encode()


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "not_json",
        "unknown_version",
        "extra_field",
        "missing_field",
        "bad_vault_id",
        "wrong_format",
    ],
)
def test_tampered_header_is_a_format_error(
    how: str,
    vault: Vault,
    vault_location: Path | str,
    root_key: InMemoryKey,
    leaks: LeakCheck,
) -> None:
    """A damaged or unknown header raises VaultFormatError, not a crash or a wrong-key error."""
    vault.close()
    _write_header(vault_location, _tamper(json.loads(_read_header(vault_location)), how))
    with leaks.raises(VaultFormatError):
        Vault.open(vault_location, key=root_key)


def test_damaged_wrapped_key_is_refused(
    vault: Vault, vault_location: Path | str, root_key: InMemoryKey, leaks: LeakCheck
) -> None:
    """A header whose wrapped keys were altered does not open (its MAC no longer matches)."""
    vault.close()
    header = json.loads(_read_header(vault_location))
    blob = bytearray(base64.b64decode(header["wrapped_db_key"]))
    blob[-1] ^= 0x01
    header["wrapped_db_key"] = base64.b64encode(bytes(blob)).decode()
    _write_header(vault_location, json.dumps(header).encode())
    with leaks.raises((WrongKeyError, VaultFormatError, IntegrityError)):
        Vault.open(vault_location, key=root_key)


@pytest.mark.parametrize("same_root_key", [True, False])
def test_header_from_another_vault(
    same_root_key: bool,
    new_location: Callable[[], Path | str],
    vault: Vault,
    vault_location: Path | str,
    root_key: InMemoryKey,
    leaks: LeakCheck,
) -> None:
    """Another vault's header never opens this vault's database."""
    other_key = root_key if same_root_key else InMemoryKey()
    other = new_location()
    Vault.create(other, key=other_key).close()
    vault.close()
    _write_header(vault_location, _read_header(other))
    with leaks.raises((WrongKeyError, VaultFormatError)):
        Vault.open(vault_location, key=root_key)


# --------------------------------------------------------------------------- ciphertexts


@pytest.mark.parametrize("source", ["other_field", "same_subject", "other_subject"])
def test_moved_ciphertext_does_not_decrypt(
    source: str,
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """A field ciphertext copied to another field or record fails the record's integrity check
    (its binding tag covers the sealed container) before anything is decrypted."""
    victim = leaks.record(make_owner())
    sibling = leaks.record(make_owner(subject_id=victim.subject_id))
    stranger = leaks.record(make_owner())
    victim_id, sibling_id, stranger_id = _put(
        vault, clerk, "owner_registration", victim, sibling, stranger
    )
    from_record, from_field = {
        "other_field": (victim_id, "name"),
        "same_subject": (sibling_id, "phone"),
        "other_subject": (stranger_id, "phone"),
    }[source]
    parsed = sealing.Sealed.parse(_sealed(vault, victim_id))
    envelopes = dict(parsed.parts)
    envelopes["phone"] = sealing.Sealed.parse(_sealed(vault, from_record)).parts[from_field]
    vault._kernel.backend._execute(
        "UPDATE records SET sealed = ? WHERE record_id = ?",
        (attrs.evolve(parsed, parts=envelopes).pack(), victim_id),
    )
    start = vault.audit.size()
    with vault.session(dpo, "subject_access_request") as session:
        with leaks.raises(IntegrityError):
            session.get(OwnerProfile, victim_id)
        assert session.get(OwnerProfile, stranger_id)["phone"] == stranger.phone
    denials = _deny_entries(vault, start)
    assert [(e["reason"], e["record_id"]) for e in denials] == [
        ("integrity_failed", victim_id),
        ("integrity_failed", None),
    ]
    assert denials[1]["action"] == "integrity.failure"
    assert vault.audit.verify() == vault.audit.size()


def test_guard_read_decrypts_only_disclosed_fields(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    decrypted: list[tuple[str, str, str]],
) -> None:
    """A guard's read decrypts name, phone and subject id, never the ID number; its search by
    the phone it sees masked is refused before anything is decrypted."""
    owner = make_owner()
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    decrypted.clear()
    with vault.session(guard, "visitor_verification") as session:
        view = session.get(OwnerProfile, rid)
        assert {f for _, r, f in decrypted if r == rid} == {"name", "phone", "subject_id"}
        decrypted.clear()
        with pytest.raises(PolicyDeniedError, match="search_field_masked"):
            session.find(OwnerProfile, phone=owner.phone)
    assert decrypted == []
    assert "id_number" not in view


def test_denied_read_decrypts_nothing(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_fee_account: Callable[..., FeeAccount],
    clerk: Actor,
    finance: Actor,
    guard: Actor,
    engineer: Actor,
    decrypted: list[tuple[str, str, str]],
    leaks: LeakCheck,
) -> None:
    """A read the policy denies decrypts no field at all."""
    owner = leaks.record(make_owner())
    account = leaks.record(make_fee_account(owner.subject_id))
    (owner_id,) = _put(vault, clerk, "owner_registration", owner)
    (account_id,) = _put(vault, finance, "fee_collection", account)
    decrypted.clear()
    with vault.session(guard, "visitor_verification") as session, leaks.raises(PolicyDeniedError):
        session.get(FeeAccount, account_id)
    with vault.session(engineer, "repair_dispatch") as session:
        with leaks.raises(PolicyDeniedError):
            session.get(FeeAccount, account_id)
        with leaks.raises(PolicyDeniedError):
            session.find(OwnerProfile, id_number=owner.id_number)
    assert decrypted == []
    with vault.session(engineer, "repair_dispatch") as session:
        session.get(OwnerProfile, owner_id)
    assert {f for _, _, f in decrypted} == {"name", "phone", "subject_id"}


# --------------------------------------------------------------------------- masking


def test_guard_sees_masked_name_and_phone(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """Security sees 张* and 138****5678 and nothing of the ID number, as the pack says."""
    owner = leaks.record(make_owner(name="张三", phone=PHONE, id_number="11010119900307002X"))
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(guard, "visitor_verification") as session:
        view = session.get(OwnerProfile, rid)
    assert view["name"] == "张*"
    assert view["phone"] == "138****5678"
    assert view.view_of("name") is ViewMode.MASKED
    assert view.view_of("id_number") is ViewMode.HIDDEN
    assert "id_number" not in view and view.get("id_number") is None
    with leaks.raises(FieldNotDisclosedError):
        view["id_number"]
    with leaks.raises(FieldNotDisclosedError):
        _ = view.email
    leaks.watch(view)


def test_views_follow_the_attribute_protocol(
    vault: Vault, clerk: Actor, guard: Actor, leaks: LeakCheck
) -> None:
    """Unknown fields, hidden fields and empty disclosed fields behave as Python attributes do."""
    owner = leaks.record(
        OwnerProfile(subject_id="o-1", name="张三", phone=PHONE, id_number="11010119900307002X")
    )
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(guard, "visitor_verification") as session:
        guarded = session.get(OwnerProfile, rid)
    with vault.session(clerk, "owner_registration") as session:
        full = session.get(OwnerProfile, rid)
    # Unknown: neither an attribute nor a key, and the message says so for the record type.
    assert not hasattr(guarded, "no_such_field")
    assert getattr(guarded, "no_such_field", "default") == "default"
    with pytest.raises(AttributeError, match="owner_profile has no field 'no_such_field'"):
        _ = guarded.no_such_field
    with pytest.raises(KeyError, match="owner_profile has no field 'no_such_field'") as caught:
        guarded["no_such_field"]
    assert isinstance(caught.value, UnknownFieldError)
    assert "no_such_field" not in dir(guarded)
    # Hidden: FieldNotDisclosedError, a KeyError for items and an AttributeError for attributes.
    assert not hasattr(guarded, "id_number")
    assert getattr(guarded, "id_number", None) is None
    with leaks.raises(FieldNotDisclosedError) as hidden:
        _ = guarded.id_number
    assert isinstance(hidden.value, AttributeError)
    assert "is not disclosed" in str(hidden.value)
    with leaks.raises(KeyError) as hidden_item:
        guarded["id_number"]
    assert isinstance(hidden_item.value, FieldNotDisclosedError)
    assert "id_number" not in dir(guarded) and "phone" in dir(guarded)
    # Empty: disclosed to the clerk but never given a value.
    assert full.view_of("email") is ViewMode.FULL
    assert full.email is None and full["email"] is None and hasattr(full, "email")
    assert full.view_of("id_number") is ViewMode.MASKED and full.id_number is not None
    assert guarded["subject_id"] == guarded.subject_id == "o-1"
    leaks.watch(guarded, full)


def test_front_desk_and_finance_masks(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_fee_account: Callable[..., FeeAccount],
    clerk: Actor,
    finance: Actor,
) -> None:
    """Front desk sees the ID number and birth date masked; finance the address to the building."""
    owner = make_owner(id_number="11010119900307002X", birth_date=_dt.date(1990, 3, 7))
    account = make_fee_account(owner.subject_id, billing_address="阳光花园3栋2单元502室")
    (owner_id,) = _put(vault, clerk, "owner_registration", owner)
    (account_id,) = _put(vault, finance, "fee_collection", account)
    with vault.session(clerk, "owner_registration") as session:
        view = session.get(OwnerProfile, owner_id)
    assert view["id_number"] == "1101**********002X"
    assert view["birth_date"] == "1990-**-**"
    assert view["name"] == owner.name and view["phone"] == owner.phone
    with vault.session(finance, "fee_collection") as session:
        assert session.get(FeeAccount, account_id)["billing_address"] == "阳光花园3栋****"
        assert session.get(OwnerProfile, owner_id)["phone"].startswith(owner.phone[:3] + "****")


# --------------------------------------------------------------------------- find


@pytest.mark.parametrize(
    "spelling",
    [
        PHONE,
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "008613812345678",
        "8613812345678",
        "１３８１２３４５６７８",
        " 138.1234.5678 ",
    ],
)
def test_find_by_phone_any_spelling(
    spelling: str,
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    leaks: LeakCheck,
) -> None:
    """A phone written with spaces, dashes, +86 or full-width digits finds the record."""
    owner = leaks.record(make_owner(phone="+86 138-1234-5678"))
    other = leaks.record(make_owner())
    rid, _ = _put(vault, clerk, "owner_registration", owner, other)
    with vault.session(clerk, "owner_registration") as session:
        found = session.find(OwnerProfile, phone=spelling)
    assert [v.record_id for v in found] == [rid]
    assert found[0]["name"] == owner.name
    leaks.check(*(json.dumps(e, ensure_ascii=False) for e in vault.audit.entries()))


def test_find_by_emergency_phone_uses_its_own_index(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """The same number in another indexed field is only found through that field."""
    owner = make_owner(phone="13900000001", emergency_contact_phone="139 0000 0002")
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(clerk, "owner_registration") as session:
        assert session.find(OwnerProfile, phone="13900000002") == []
        assert [
            v.record_id for v in session.find(OwnerProfile, emergency_contact_phone="13900000002")
        ] == [rid]
        both = session.find(OwnerProfile, phone="13900000001", name=owner.name)
        assert [v.record_id for v in both] == [rid]
        assert session.find(OwnerProfile, phone="13900000001", name=owner.name + "X") == []


def test_find_on_hidden_field_is_denied(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """A guard searching by ID number (hidden to security) gets search_field_not_disclosed."""
    owner = leaks.record(make_owner())
    _put(vault, clerk, "owner_registration", owner)
    start = vault.audit.size()
    session = vault.session(guard, "visitor_verification")
    with leaks.raises(PolicyDeniedError) as info:
        session.find(OwnerProfile, id_number=owner.id_number)
    assert info.value.reason == "search_field_not_disclosed"
    denials = _deny_entries(vault, start)
    assert [(e["action"], e["reason"], e["fields"]) for e in denials] == [
        ("find", "search_field_not_disclosed", ["id_number"])
    ]


@pytest.mark.parametrize(
    "criteria",
    [
        {"gender": "male"},
        {"move_in_date": _dt.date(2020, 1, 1)},
        {"birth_date": "1990-03-07"},
        {"household_role": "owner"},
        {"no_such_field": "x"},
        {},
        {"phone": "   "},
    ],
)
def test_find_on_unindexed_field_is_a_validation_error(
    criteria: dict[str, Any], vault: Vault, clerk: Actor, leaks: LeakCheck
) -> None:
    """Searching a field without a blind index (or with nothing to match) is a ValidationError."""
    with vault.session(clerk, "owner_registration") as session, leaks.raises(ValidationError):
        session.find(OwnerProfile, **criteria)


# --------------------------------------------------------------------------- update


def test_stale_update_is_refused(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, leaks: LeakCheck
) -> None:
    """Of two sessions that read version 1, the second to update gets StaleRecordError."""
    owner = leaks.record(make_owner())
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    other = Actor("clerk-02", roles=["front_desk"])
    grant_roles(vault, other)
    record_assessments(vault)
    with (
        vault.session(clerk, "owner_registration") as first,
        vault.session(other, "owner_registration") as second,
    ):
        read_first = first.get(OwnerProfile, rid)
        read_second = second.get(OwnerProfile, rid)
        assert read_first.version == read_second.version == 1
        ref = first.update(read_first, phone="13900000001")
        assert ref.version == 2
        leaks.secret("13900000009")
        with leaks.raises(StaleRecordError):
            second.update(read_second, phone="13900000009")
        again = second.get(OwnerProfile, rid)
    assert again.version == 2
    assert again["phone"] == "13900000001"
    stale = [e for e in _deny_entries(vault) if e["reason"] == "stale_version"]
    assert [e["record_id"] for e in stale] == [rid]


def test_update_of_unwritable_field_is_denied(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    engineer: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """An engineer may change a complaint's status but not its content; a guard no profile."""
    owner = leaks.record(make_owner())
    (owner_id,) = _put(vault, clerk, "owner_registration", owner)
    complaint = Complaint(subject_id=owner.subject_id, category="repair", content="厨房漏水")
    (complaint_id,) = _put(vault, clerk, "complaint_handling", complaint)
    with vault.session(engineer, "repair_dispatch") as session:
        view = session.get(Complaint, complaint_id)
        with leaks.raises(PolicyDeniedError) as info:
            session.update(view, content="已修好", status="resolved")
        assert info.value.reason == "field_not_writable"
        assert session.get(Complaint, complaint_id)["content"] == "厨房漏水"
        ref = session.update(view, status="resolved")
        assert session.get(Complaint, complaint_id)["status"] == "resolved"
        assert ref.version == 2
    with vault.session(guard, "visitor_verification") as session:
        view = session.get(OwnerProfile, owner_id)
        with leaks.raises(PolicyDeniedError) as info:
            session.update(view, phone="13900000001")
        assert info.value.reason == "no_rule"
    with vault.session(clerk, "owner_registration") as session:
        assert session.get(OwnerProfile, owner_id)["phone"] == owner.phone


def test_blind_index_follows_an_updated_phone(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """After a phone update the new number finds the record and the old one no longer does."""
    owner = make_owner()
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(clerk, "owner_registration") as session:
        session.update(session.get(OwnerProfile, rid), phone="139-0000-0001")
        assert session.find(OwnerProfile, phone=owner.phone) == []
        assert [v.record_id for v in session.find(OwnerProfile, phone="13900000001")] == [rid]
        session.update(session.get(OwnerProfile, rid), phone=None)
        assert session.find(OwnerProfile, phone="13900000001") == []
        assert "phone" not in session.get(OwnerProfile, rid)
    tokens = _count(
        vault, "SELECT count(*) FROM blind_index WHERE record_id = ? AND field = 'phone'", rid
    )
    assert tokens == 0


# --------------------------------------------------------------------------- erasure


def test_erase_subject_crypto_shreds_everything(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """Erasure destroys the data key, ciphertexts and index tokens; other owners are untouched."""
    owner = leaks.record(make_owner())
    neighbour = leaks.record(make_owner())
    their_unit = leaks.record(make_unit(neighbour.subject_id))
    ids = _put(
        vault,
        clerk,
        "owner_registration",
        owner,
        leaks.record(make_unit(owner.subject_id)),
        neighbour,
        their_unit,
    )
    mine, theirs = ids[:2], ids[2:]
    assert _tokens(vault, mine) > 0
    their_tokens = _tokens(vault, theirs)
    their_sealed = [_sealed(vault, rid) for rid in theirs]

    with vault.session(dpo, "erasure_request") as session:
        result = session.erase_subject(owner.subject_id)
    leaks.watch(result)
    assert result.records == 2 and result.index_tokens > 0

    state, wrapped = vault._kernel.backend._execute(
        "SELECT state, wrapped FROM keys WHERE key_id = ?", (bytes.fromhex(result.key_id),)
    ).fetchone()
    assert (state, wrapped) == ("destroyed", None)
    assert _tokens(vault, mine) == 0
    assert [_sealed(vault, rid) for rid in mine] == [b"", b""]
    assert _count(vault, "SELECT count(*) FROM records WHERE erased = 1 AND clear = '{}'") == 2
    assert _count(vault, "SELECT count(*) FROM subjects WHERE subject_ref IS NULL") == 1
    assert _tokens(vault, theirs) == their_tokens
    assert [_sealed(vault, rid) for rid in theirs] == their_sealed

    with vault.session(clerk, "owner_registration") as session:
        with leaks.raises(SubjectErasedError):
            session.get(OwnerProfile, mine[0])
        with leaks.raises(SubjectErasedError):
            session.get(Unit, mine[1])
        assert session.find(OwnerProfile, phone=owner.phone) == []
        assert session.find(OwnerProfile, email=owner.email) == []
        assert [v.record_id for v in session.find(OwnerProfile, phone=neighbour.phone)] == [
            theirs[0]
        ]
        assert session.get(OwnerProfile, theirs[0])["name"] == neighbour.name
    with vault.session(dpo, "subject_access_request") as session:
        assert session.get(Unit, theirs[1])["unit_number"] == their_unit.unit_number
    assert vault.key_status().subject_keys == {"active": 1, "destroyed": 1}


def test_erasure_is_refused_to_front_desk(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, leaks: LeakCheck
) -> None:
    """Front desk may neither open an erasure session nor erase in its own purposes."""
    owner = leaks.record(make_owner())
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with leaks.raises(PolicyDeniedError) as info:
        vault.session(clerk, "erasure_request")
    assert info.value.reason == "role_not_permitted_for_purpose"
    with vault.session(clerk, "owner_registration") as session:
        with leaks.raises(PolicyDeniedError) as info:
            session.erase_subject(owner.subject_id)
        assert info.value.reason == "no_rule"
        assert session.get(OwnerProfile, rid)["name"] == owner.name


def test_erasing_twice_is_not_found(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """A second erasure of the same subject (or an unknown one) raises RecordNotFoundError."""
    owner = leaks.record(make_owner())
    _put(vault, clerk, "owner_registration", owner)
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(owner.subject_id)
        with leaks.raises(RecordNotFoundError):
            session.erase_subject(owner.subject_id)
        with leaks.raises(RecordNotFoundError):
            session.erase_subject("never-registered")
    reasons = [e["reason"] for e in _deny_entries(vault) if e["action"] == "erase"]
    assert reasons == ["not_found", "not_found"]


def test_erased_subject_can_register_again(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """After erasure the same subject id starts over with a new key and no old records."""
    owner = leaks.record(make_owner())
    (old,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(owner.subject_id)
    (new,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(clerk, "owner_registration") as session:
        assert [v.record_id for v in session.find(OwnerProfile, phone=owner.phone)] == [new]
        with leaks.raises(SubjectErasedError):
            session.get(OwnerProfile, old)
    with vault.session(dpo, "erasure_request") as session:
        assert session.erase_subject(owner.subject_id).records == 1


def test_update_of_erased_record_is_audited(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """An update refused because the subject was erased leaves a deny entry in the audit log."""
    owner = leaks.record(make_owner())
    (rid,) = _put(vault, clerk, "owner_registration", owner)
    with vault.session(clerk, "owner_registration") as session:
        view = session.get(OwnerProfile, rid)
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(owner.subject_id)
    start = vault.audit.size()
    with vault.session(clerk, "owner_registration") as session, leaks.raises(SubjectErasedError):
        session.update(view, phone="13900000001")
    assert [e["reason"] for e in _deny_entries(vault, start)] == ["subject_erased"]


# --------------------------------------------------------------------------- denials and audit


def test_every_denial_is_audited_and_the_log_verifies(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_fee_account: Callable[..., FeeAccount],
    clerk: Actor,
    guard: Actor,
    finance: Actor,
    engineer: Actor,
    dpo: Actor,
    admin: Actor,
    leaks: LeakCheck,
) -> None:
    """Each refused operation of a mixed workload leaves one deny entry with its reason code."""
    owners = [leaks.record(make_owner()) for _ in range(4)]
    child = leaks.record(make_owner(birth_date=_years_ago(_dt.date(2026, 1, 1), 10)))
    ids = _put(vault, clerk, "owner_registration", *owners, child)
    account = leaks.record(make_fee_account(owners[0].subject_id))
    (account_id,) = _put(vault, finance, "fee_collection", account)
    expected: Counter[str] = Counter()

    def denied(
        reason: str, fn: Callable[[], object], exc: type[Exception] = PolicyDeniedError
    ) -> None:
        with leaks.raises(exc) as info:
            fn()
        if isinstance(info.value, PolicyDeniedError):
            assert info.value.reason == reason
        expected[reason] += 1

    denied("role_not_permitted_for_purpose", lambda: vault.session(guard, "fee_collection"))
    denied("purpose_prohibited", lambda: vault.session(clerk, "commercial_marketing"))
    denied("unknown_purpose", lambda: vault.session(clerk, "curiosity"))
    # A role the pack does not know can never be granted: the grant check refuses first.
    denied("no_grants", lambda: vault.session(Actor("x-01", roles=["janitor"]), "repair_dispatch"))
    denied(
        "role_not_granted",
        lambda: vault.session(Actor(clerk.actor_id, roles=["janitor"]), "repair_dispatch"),
    )
    with vault.session(guard, "visitor_verification") as session:
        session.get(OwnerProfile, ids[0])
        denied("record_type_not_in_purpose", lambda: session.get(FeeAccount, account_id))
        denied(
            "search_field_not_disclosed", lambda: session.find(OwnerProfile, email=owners[1].email)
        )
        denied("minor_data_not_permitted", lambda: session.get(OwnerProfile, ids[-1]))
        denied("not_found", lambda: session.get(OwnerProfile, "0" * 32), RecordNotFoundError)
        view = session.get(OwnerProfile, ids[1])
        denied("no_rule", lambda: session.update(view, status="moved_out"))
        denied("no_rule", lambda: session.put(leaks.record(make_owner())))
    with vault.session(finance, "fee_collection") as session:
        denied("no_rule", lambda: session.put(leaks.record(make_owner())))
        plate = Vehicle(subject_id=owners[0].subject_id, plate="京A12345")
        denied("record_type_not_in_purpose", lambda: session.put(plate))
        fee_view = session.get(FeeAccount, account_id)
        session.update(fee_view, balance="12.50")
        denied("stale_version", lambda: session.update(fee_view, balance="0.00"), StaleRecordError)
    with vault.session(engineer, "repair_dispatch") as session:
        denied("no_rule", lambda: session.erase_subject(owners[2].subject_id))
    with vault.session(admin, "vault_administration") as session:
        denied("record_type_not_in_purpose", lambda: session.get(OwnerProfile, ids[0]))
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(owners[3].subject_id)
        denied(
            "not_found", lambda: session.erase_subject(owners[3].subject_id), RecordNotFoundError
        )
    with vault.session(clerk, "owner_registration") as session:
        denied("subject_erased", lambda: session.get(OwnerProfile, ids[3]), SubjectErasedError)
        session.put(make_owner())
        assert session.get(OwnerProfile, ids[-1])["name"] == child.name

    entries = list(vault.audit.entries())
    assert Counter(e["reason"] for e in entries if e["decision"] == "deny") == expected
    assert all(e["reason"] == "" for e in entries if e["decision"] == "allow")
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert vault.audit.verify() == len(entries) == vault.audit.size()
    leaks.check(*(json.dumps(e, ensure_ascii=False) for e in entries))
    raw = json.dumps(entries, ensure_ascii=False)
    for owner in [*owners, child]:
        for value in (owner.name, owner.phone, owner.id_number, owner.subject_id, owner.email):
            assert value not in raw


# --------------------------------------------------------------------------- minors


def test_minor_is_hidden_from_security(
    vault: Vault,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    finance: Actor,
    decrypted: list[tuple[str, str, str]],
    leaks: LeakCheck,
) -> None:
    """A 10-year-old's profile is denied to visitor verification but open to registration."""
    today = clock.now().date()
    child = leaks.record(make_owner(birth_date=_years_ago(today, 10) - _dt.timedelta(days=30)))
    (rid,) = _put(vault, clerk, "owner_registration", child)
    decrypted.clear()
    start = vault.audit.size()
    with vault.session(guard, "visitor_verification") as session:
        with leaks.raises(PolicyDeniedError) as info:
            session.get(OwnerProfile, rid)
        assert info.value.reason == "minor_data_not_permitted"
    with vault.session(finance, "fee_collection") as session:
        assert session.find(OwnerProfile, phone=child.phone) == []
    assert {f for _, _, f in decrypted} <= {"minor_until"}
    reasons = [(e["action"], e["reason"]) for e in _deny_entries(vault, start)]
    assert reasons == [("read", "minor_data_not_permitted"), ("find", "minor_data_not_permitted")]
    with vault.session(clerk, "owner_registration") as session:
        view = session.get(OwnerProfile, rid)
        assert view["name"] == child.name
        assert view["birth_date"] == f"{child.birth_date.year}-**-**"
    with vault.session(guard, "emergency_contact") as session:
        assert session.get(OwnerProfile, rid)["phone"] == child.phone


def test_minor_becomes_visible_at_fourteen(
    vault: Vault,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """Once the clock passes the 14th birthday, visitor verification may read the profile."""
    born = _dt.date(2015, 6, 1)
    (rid,) = _put(vault, clerk, "owner_registration", leaks.record(make_owner(birth_date=born)))
    clock.set(_dt.datetime(2029, 5, 31, 23, 0, tzinfo=_dt.UTC))
    with vault.session(guard, "visitor_verification") as session, leaks.raises(PolicyDeniedError):
        session.get(OwnerProfile, rid)
    clock.set(_dt.datetime(2029, 6, 1, 0, 0, tzinfo=_dt.UTC))
    with vault.session(guard, "visitor_verification") as session:
        assert session.get(OwnerProfile, rid)["household_role"] == "owner"


def test_minor_subject_protects_other_records(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    clerk: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """A child's unit record is also withheld from visitor verification."""
    child = leaks.record(make_owner(birth_date=_dt.date(2016, 2, 29)))
    unit = leaks.record(make_unit(child.subject_id))
    _, unit_id = _put(vault, clerk, "owner_registration", child, unit)
    session = vault.session(guard, "visitor_verification")
    with leaks.raises(PolicyDeniedError) as info:
        session.get(Unit, unit_id)
    assert info.value.reason == "minor_data_not_permitted"


def test_far_future_birth_date_is_handled(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    guard: Actor,
    leaks: LeakCheck,
) -> None:
    """A birth date near date.max is refused cleanly or stored and protected as a minor's."""
    owner = leaks.record(make_owner(birth_date=_dt.date(9990, 1, 1)))
    try:
        (rid,) = _put(vault, clerk, "owner_registration", owner)
    except ValidationError as exc:
        leaks.watch(exc)
        return
    session = vault.session(guard, "visitor_verification")
    with leaks.raises(PolicyDeniedError) as info:
        session.get(OwnerProfile, rid)
    assert info.value.reason == "minor_data_not_permitted"


# --------------------------------------------------------------------------- key limits


def test_keys_near_their_limit_are_rotated_automatically(
    vault_location: Path | str, clock: FrozenClock, clerk: Actor
) -> None:
    """Data keys and KEKs nearing their invocation limit are replaced and nothing is lost."""
    vault = Vault.create(vault_location, key=InMemoryKey(), clock=clock, max_key_invocations=40)
    grant_roles(vault, clerk)
    record_assessments(vault)
    try:
        with vault.session(clerk, "owner_registration") as session:
            # Each record costs two encryptions (name and subject id) under its subject's key;
            # re-keying a subject re-encrypts all of its records under the new key.
            ids = [session.put(OwnerProfile(subject_id="s-full", name="王五")) for _ in range(20)]
            ids += [session.put(OwnerProfile(subject_id=f"s-{n}", name="孙七")) for n in range(40)]
            names = [view.name for view in session.get_many(OwnerProfile, ids)]
        assert names == ["王五"] * 20 + ["孙七"] * 40
        states = [(k.kind.value, k.state.value) for k in vault.keys.inventory()]
        assert ("kek", "decrypt-only") in states
        assert vault.key_status().subject_keys.get("decrypt-only", 0) >= 1
        assert vault.audit.verify() == vault.audit.size()
    finally:
        vault.close()


def test_key_invocation_limit_stores_nothing_partial(
    vault_location: Path | str, clock: FrozenClock, clerk: Actor, leaks: LeakCheck
) -> None:
    """A write too big for even a fresh key raises KeyExhaustedError and leaves no trace."""
    vault = Vault.create(vault_location, key=InMemoryKey(), clock=clock, max_key_invocations=2)
    grant_roles(vault, clerk)
    record_assessments(vault)
    try:
        session = vault.session(clerk, "owner_registration")

        def snapshot() -> tuple[int, int, int, int]:
            return (
                _count(vault, "SELECT count(*) FROM records"),
                _count(vault, "SELECT count(*) FROM blind_index"),
                _count(vault, "SELECT count(*) FROM subjects"),
                vault.audit.size(),
            )

        before = snapshot()
        # Name, phone and subject id: three encryptions under a key allowed two.
        with leaks.raises(KeyExhaustedError):
            session.put(OwnerProfile(subject_id="s-new", name="赵六", phone="13800138000"))
        assert snapshot() == before
        assert session.find(OwnerProfile, phone="13800138000") == []
        assert vault.audit.verify() == vault.audit.size()
        session.close()
    finally:
        vault.close()


# --------------------------------------------------------------------------- reprs


def test_reprs_show_no_secret_or_personal_value(
    tmp_path: Path,
    vault_location: Path | str,
    monkeypatch: pytest.MonkeyPatch,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
    clerk: Actor,
    dpo: Actor,
    leaks: LeakCheck,
) -> None:
    """Vaults, sessions, views, records, key providers and errors print no secret or value."""
    passphrase = "长城 长城 secret passphrase 42"
    leaks.secret(passphrase)
    owner = leaks.record(make_owner())
    unit = leaks.record(make_unit(owner.subject_id))
    account = leaks.record(make_fee_account(owner.subject_id))
    key = PassphraseKey(passphrase, argon2=FAST_ARGON2)
    key_file = KeyFileKey.generate(tmp_path / "k.key")
    monkeypatch.setenv("OWNERVAULT_TEST_KEY", key_file.path.read_text())
    leaks.secret(key_file.path.read_text().strip())
    leaks.watch(key, key_file, EnvKey("OWNERVAULT_TEST_KEY"), InMemoryKey(), owner, unit, account)

    with Vault.create(vault_location, key=key) as vault:
        grant_roles(vault, clerk, dpo)
        record_assessments(vault)
        raw = vault._kernel.header
        root = key.load_root(raw.provider_params)
        leaks.secret(*(raw.unwrap(root, slot).hex() for slot in ("db", "keyring", "signing")))
        session = vault.session(clerk, "owner_registration")
        rid, _ = session.put_many([owner, unit])
        view = session.get(OwnerProfile, rid)
        with vault.session(dpo, "subject_access_request") as reader:
            full = reader.get(OwnerProfile, rid)
        assert full["id_number"] == owner.id_number
        leaks.watch(vault, session, view, full, full.ref, vault.key_status(), vault._kernel.backend)
        with leaks.raises(ValidationError):
            OwnerProfile(subject_id=owner.subject_id, name=owner.name * 201)
        with leaks.raises(ValidationError):
            OwnerProfile(subject_id=owner.subject_id, name=owner.name, birth_date=owner.phone)
        with leaks.raises(ValidationError):
            session.update(view, phone=owner.phone * 40)
        with leaks.raises(ValidationError):
            session.find(OwnerProfile, birth_date=owner.birth_date)
        with leaks.raises(UnknownFieldError):
            full["no_such_field"]
        session.close()
    with leaks.raises(WrongKeyError):
        Vault.open(vault_location, key=PassphraseKey(passphrase + "!", argon2=FAST_ARGON2))
    with leaks.raises(WrongKeyError):
        Vault.open(vault_location, key=key_file)
    with leaks.raises(VaultExistsError):
        Vault.create(vault_location, key=key)
    assert isinstance(session, Session) and isinstance(view, RecordView)


# --------------------------------------------------------------------------- state machine

_CLERK = Actor("clerk-sm", roles=["front_desk"])
_DPO = Actor("dpo-sm", roles=["compliance_officer"])
_SUBJECTS = ["subject-a", "subject-b", "业主-丙", "subject-d"]
_PHONES = ["13800000001", "13800000002", "13900000003", "15000000004"]


class VaultMachine(RuleBasedStateMachine):
    """The vault against a dict of live records: put, get, update, find by phone, erase."""

    records = Bundle("records")
    #: Where each example's vault goes (the test sets it for the backend under test).
    new_location: Callable[[], Path | str] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ownervault-sm-"))
        factory = type(self).new_location
        location = self.dir / "v" if factory is None else factory()
        self.vault = Vault.create(location, key=InMemoryKey(), clock=FrozenClock())
        grant_roles(self.vault, _CLERK, _DPO)
        record_assessments(self.vault)
        self.clerk = self.vault.session(_CLERK, "owner_registration")
        self.reader = self.vault.session(_DPO, "subject_access_request")
        self.eraser = self.vault.session(_DPO, "erasure_request")
        self.audit = self.vault.audit.size()
        self.model: dict[str, dict[str, Any]] = {}
        self.live: set[str] = set()
        self.leaks = LeakCheck()

    def _live_ids(self) -> set[str]:
        return {rid for rid, m in self.model.items() if not m["erased"]}

    @rule(
        target=records,
        subject=st.sampled_from(_SUBJECTS),
        name=st.text(strategies.CJK, min_size=1, max_size=12),
        phone=st.sampled_from(_PHONES),
    )
    def put(self, subject: str, name: str, phone: str) -> str:
        rid = self.clerk.put(
            self.leaks.record(OwnerProfile(subject_id=subject, name=name, phone=phone))
        )
        self.audit += 1
        self.model[rid] = {"subject": subject, "name": name, "phone": phone, "erased": False}
        self.live.add(subject)
        return rid

    @rule(rid=records)
    def get(self, rid: str) -> None:
        expected = self.model[rid]
        self.audit += 1
        if expected["erased"]:
            with self.leaks.raises(SubjectErasedError):
                self.reader.get(OwnerProfile, rid)
            return
        view = self.reader.get(OwnerProfile, rid)
        assert (view.subject_id, view["name"], view["phone"]) == (
            expected["subject"],
            expected["name"],
            expected["phone"],
        )

    @rule(rid=records, phone=st.sampled_from(_PHONES))
    def update_phone(self, rid: str, phone: str) -> None:
        expected = self.model[rid]
        self.audit += 1
        if expected["erased"]:
            with self.leaks.raises(SubjectErasedError):
                self.clerk.get(OwnerProfile, rid)
            return
        view = self.clerk.get(OwnerProfile, rid)
        ref = self.clerk.update(view, phone=f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}")
        self.audit += 1
        assert ref.version == view.version + 1
        expected["phone"] = f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"

    @rule(phone=st.sampled_from(_PHONES), data=st.data())
    def find_by_phone(self, phone: str, data: st.DataObject) -> None:
        spelling = data.draw(strategies.phone_spellings(phone))
        found = self.clerk.find(OwnerProfile, phone=spelling)
        want = {
            rid for rid in self._live_ids() if normalise("phone", self.model[rid]["phone"]) == phone
        }
        self.audit += len(found) + 1
        assert {v.record_id for v in found} == want
        for view in found:
            assert view["name"] == self.model[view.record_id]["name"]

    @rule(subject=st.sampled_from(_SUBJECTS))
    def erase(self, subject: str) -> None:
        self.audit += 1
        if subject not in self.live:
            with self.leaks.raises(RecordNotFoundError):
                self.eraser.erase_subject(subject)
            return
        result = self.eraser.erase_subject(subject)
        mine = [r for r in self._live_ids() if self.model[r]["subject"] == subject]
        assert result.records == len(mine)
        for rid in mine:
            self.model[rid]["erased"] = True
        self.live.discard(subject)

    @invariant()
    def audit_size_matches(self) -> None:
        assert self.vault.audit.size() == self.audit

    def teardown(self) -> None:
        try:
            assert self.vault.audit.verify() == self.audit
            self.leaks.check(
                *(json.dumps(e, ensure_ascii=False) for e in self.vault.audit.entries())
            )
        finally:
            self.vault.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def test_vault_matches_a_simple_model(new_location: Callable[[], Path | str]) -> None:
    """Random sequences of put, get, update, find and erase agree with an in-memory model."""
    machine = type(
        "VaultMachineHere", (VaultMachine,), {"new_location": staticmethod(new_location)}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_access_history_returns_exactly_one_subjects_entries(vault: Vault, dpo: Actor) -> None:
    """The database-side byte search finds the subject's entries and no one else's."""
    clerk = Actor("clerk-01", roles=["front_desk"])
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(
            [
                OwnerProfile(subject_id=f"owner-{i}", name="张三", phone=f"1380000{i:04d}")
                for i in range(5)
            ]
        )
        s.get(OwnerProfile, ids[2])
        s.get_many(OwnerProfile, ids)
    pseudonym = vault._kernel.backend.get_records([ids[2]])[0].pseudonym
    expected = [e for e in vault.audit.entries() if e.get("subject") == pseudonym]
    with vault.session(dpo, "subject_access_request") as s:
        history = s.access_history("owner-2")
    assert history == expected
    assert [e["action"] for e in history] == ["create", "read", "read"]


def test_a_filtered_audit_export_verifies_on_every_backend(
    vault: Vault, dpo: Actor, tmp_path: Path
) -> None:
    """Proofs from streamed leaf hashes, entries pre-filtered by their actor's bytes."""
    clerk = Actor("clerk-01", roles=["front_desk"])
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(
            [
                OwnerProfile(subject_id=f"owner-{i}", name="李四", phone=f"1390000{i:04d}")
                for i in range(40)
            ]
        )
        for rid in ids[::3]:
            s.get(OwnerProfile, rid)
    expected = [e["seq"] for e in vault.audit.entries_where(actor="clerk-01")]
    summary = vault.export_audit(tmp_path / "bundle", actor=dpo, actor_id="clerk-01")
    report = verify_bundle(summary.path, [vault.verifier_key])
    assert report.integrity.ok, report.integrity.message
    assert summary.entries == len(expected) > 40
    lines = (summary.path / "entries.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == expected
