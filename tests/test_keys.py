"""Tests for ownervault.keys: root key providers, the vault header, key states and the key cache."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import pickle
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ownervault import crypto
from ownervault.exceptions import (
    CryptoError,
    IntegrityError,
    KeyProviderError,
    KeyStateError,
    VaultFormatError,
    WrongKeyError,
)
from ownervault.keys import (
    KEY_TEXT_PREFIX,
    TRANSITIONS,
    USES,
    EnvKey,
    KeyCache,
    KeyFileKey,
    KeyState,
    LocalRootKey,
    PassphraseKey,
    VaultHeader,
    check_transition,
    check_use,
    decode_key_text,
    encode_key_text,
    recovered,
)
from ownervault.testing import FAST_ARGON2, InMemoryKey

PASSPHRASE = "correct horse battery 电池 staple"
MATERIAL = bytes(range(32))
MATERIAL_TEXT = encode_key_text(MATERIAL)
VAULT_ID = "5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e0f"
ENV_VAR = "OWNERVAULT_TEST_KEYS_ROOT"

A, D, C, X = KeyState.ACTIVE, KeyState.DECRYPT_ONLY, KeyState.COMPROMISED, KeyState.DESTROYED


def _secret_forms(secret: bytes | str) -> list[str]:
    """Textual forms a secret could leak in: itself, hex, base64 and the key-text encoding."""
    if isinstance(secret, str):
        return [secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode()]
    b64 = base64.b64encode(secret).decode()
    return [secret.hex(), secret.hex()[:16], b64, b64[:12], repr(secret)[2:20]]


def _roundtrip(writer: Any, reader: Any) -> None:
    """A key wrapped under ``writer`` unwraps under ``reader`` (same root key)."""
    blob = writer.wrap(b"k" * 32, context=b"ctx")
    assert reader.unwrap(blob, context=b"ctx") == b"k" * 32


# --------------------------------------------------------------------------- PassphraseKey


def test_passphrase_create_then_load_opens_same_root() -> None:
    """A root created from a passphrase is re-derived from the header params and opens its blobs."""
    provider = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2)
    root, params = provider.create_root()
    assert provider.kind == "passphrase"
    assert params["kdf"] == "argon2id"
    assert (params["memory_kib"], params["iterations"], params["lanes"]) == (64, 1, 1)
    assert len(base64.b64decode(str(params["salt"]), validate=True)) == 16
    _roundtrip(root, PassphraseKey(PASSPHRASE).load_root(params))


def test_passphrase_params_survive_json() -> None:
    """The params a passphrase root returns are plain JSON and load back after a JSON round trip."""
    provider = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2)
    root, params = provider.create_root()
    reloaded = json.loads(json.dumps(dict(params)))
    _roundtrip(root, provider.load_root(reloaded))


def test_passphrase_salt_is_fresh_per_vault() -> None:
    """Two vaults made with the same passphrase get different salts and different roots."""
    provider = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2)
    root_a, params_a = provider.create_root()
    root_b, params_b = provider.create_root()
    assert params_a["salt"] != params_b["salt"]
    with pytest.raises(WrongKeyError):
        _roundtrip(root_a, root_b)


def test_passphrase_wrong_phrase_is_wrong_key() -> None:
    """Another passphrase derives another root, whose unwrap raises WrongKeyError."""
    root, params = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2).create_root()
    blob = root.wrap(b"k" * 32, context=b"ctx")
    other = PassphraseKey(PASSPHRASE + "!").load_root(params)
    with pytest.raises(WrongKeyError) as excinfo:
        other.unwrap(blob, context=b"ctx")
    assert str(excinfo.value) == "the key does not open this vault"


@pytest.mark.parametrize("bad", ["", None, b"bytes", 12])
def test_passphrase_refuses_empty_or_non_text(bad: Any) -> None:
    """An empty or non-string passphrase is refused with KeyProviderError."""
    with pytest.raises(KeyProviderError):
        PassphraseKey(bad)


def _good_params() -> dict[str, object]:
    return {
        "kdf": "argon2id",
        "salt": base64.b64encode(b"0123456789abcdef").decode(),
        "memory_kib": 64,
        "iterations": 1,
        "lanes": 1,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"kdf": "scrypt"},
        {"kdf": None},
        {"salt": "not base64!"},
        {"salt": 16},
        {"memory_kib": 4},
        {"memory_kib": 4 * 1024 * 1024 + 1},
        {"iterations": 0},
        {"iterations": 65},
        {"lanes": 0},
        {"lanes": 65},
        {"extra": 1},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_passphrase_damaged_params_are_format_errors(change: dict[str, object]) -> None:
    """Damaged or out-of-range KDF parameters in the header raise VaultFormatError."""
    params = {**_good_params(), **change}
    with pytest.raises(VaultFormatError):
        PassphraseKey(PASSPHRASE).load_root(params)


@pytest.mark.parametrize("missing", sorted(_good_params()))
def test_passphrase_missing_param_is_format_error(missing: str) -> None:
    """A header missing any KDF parameter raises VaultFormatError."""
    params = _good_params()
    del params[missing]
    with pytest.raises(VaultFormatError):
        PassphraseKey(PASSPHRASE).load_root(params)


@pytest.mark.parametrize("salt", ["", "AAAA", "AAAAAAAAAA=="])
def test_passphrase_short_salt_is_format_error(salt: str) -> None:
    """A header salt too short for Argon2id (< 8 bytes) raises VaultFormatError."""
    with pytest.raises(VaultFormatError):
        PassphraseKey(PASSPHRASE).load_root({**_good_params(), "salt": salt})


def test_passphrase_non_ascii_salt_is_format_error() -> None:
    """A header salt holding non-ASCII text raises VaultFormatError like any other bad salt."""
    with pytest.raises(VaultFormatError):
        PassphraseKey(PASSPHRASE).load_root({**_good_params(), "salt": "盐盐盐盐"})


def test_passphrase_memory_below_lanes_minimum_is_format_error() -> None:
    """Header costs with memory_kib below 8*lanes raise VaultFormatError like other bad params."""
    with pytest.raises(VaultFormatError):
        PassphraseKey(PASSPHRASE).load_root({**_good_params(), "memory_kib": 8, "lanes": 2})


# --------------------------------------------------------------------------- KeyFileKey


def test_keyfile_generate_mode_and_content(tmp_path: Path) -> None:
    """generate writes a 0600 file holding 'ownervault-key-v1:<base64 of 32 bytes>'."""
    path = tmp_path / "root.key"
    old = os.umask(0o022)
    try:
        provider = KeyFileKey.generate(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="ascii")
    assert text.startswith(KEY_TEXT_PREFIX) and text.endswith("\n")
    assert len(decode_key_text(text, source="test")) == 32
    assert provider.path == path
    assert provider.kind == "key"


def test_keyfile_generate_gives_fresh_keys(tmp_path: Path) -> None:
    """Two generated key files hold different keys and derive different roots."""
    a = KeyFileKey.generate(tmp_path / "a.key")
    b = KeyFileKey.generate(tmp_path / "b.key")
    assert (tmp_path / "a.key").read_text() != (tmp_path / "b.key").read_text()
    with pytest.raises(WrongKeyError):
        _roundtrip(a.create_root()[0], b.load_root({}))


def test_keyfile_generate_refuses_overwrite(tmp_path: Path) -> None:
    """generate refuses an existing path (KeyProviderError naming it) and leaves it untouched."""
    path = tmp_path / "root.key"
    path.write_text("precious", encoding="ascii")
    with pytest.raises(KeyProviderError) as excinfo:
        KeyFileKey.generate(path)
    assert str(path) in str(excinfo.value)
    assert path.read_text(encoding="ascii") == "precious"


def test_keyfile_create_and_load_open_same_root(tmp_path: Path) -> None:
    """A key file's create_root stores no params and load_root re-derives the same root."""
    provider = KeyFileKey.generate(tmp_path / "root.key")
    root, params = provider.create_root()
    assert dict(params) == {}
    _roundtrip(root, KeyFileKey(tmp_path / "root.key").load_root(params))


def test_keyfile_missing_names_path(tmp_path: Path) -> None:
    """A missing key file raises KeyProviderError naming the path."""
    path = tmp_path / "absent.key"
    with pytest.raises(KeyProviderError) as excinfo:
        KeyFileKey(path).load_root({})
    assert str(path) in str(excinfo.value)


_VALID_B64 = MATERIAL_TEXT[len(KEY_TEXT_PREFIX) :]

GARBLED = {
    "no_prefix": _VALID_B64,
    "wrong_prefix": "ownervault-key-v2:" + _VALID_B64,
    "bad_base64": KEY_TEXT_PREFIX + "!!" + _VALID_B64[2:],
    "short_key": KEY_TEXT_PREFIX + base64.b64encode(MATERIAL[:31]).decode(),
    "long_key": KEY_TEXT_PREFIX + base64.b64encode(MATERIAL + b"\x00").decode(),
    "prefix_only": KEY_TEXT_PREFIX,
    "empty": "",
    "embedded_space": KEY_TEXT_PREFIX + _VALID_B64[:10] + " " + _VALID_B64[10:],
}


@pytest.mark.parametrize("text", list(GARBLED.values()), ids=list(GARBLED))
def test_keyfile_garbled_names_path_not_text(tmp_path: Path, text: str) -> None:
    """A garbled key file raises KeyProviderError naming the path but not the file's text."""
    path = tmp_path / "root.key"
    path.write_text(text, encoding="ascii")
    with pytest.raises(KeyProviderError) as excinfo:
        KeyFileKey(path).load_root({})
    message = str(excinfo.value)
    assert str(path) in message
    assert _VALID_B64[:12] not in message and _VALID_B64[-12:] not in message
    assert repr(excinfo.value).count(_VALID_B64[:12]) == 0
    assert excinfo.value.__cause__ is None


def test_keyfile_non_ascii_or_unreadable_names_path(tmp_path: Path) -> None:
    """A non-ASCII key file or a directory in its place raises KeyProviderError naming the path."""
    path = tmp_path / "root.key"
    path.write_bytes(KEY_TEXT_PREFIX.encode() + "密钥".encode())
    with pytest.raises(KeyProviderError) as excinfo:
        KeyFileKey(path).load_root({})
    assert str(path) in str(excinfo.value) and "密钥" not in str(excinfo.value)
    directory = tmp_path / "dir.key"
    directory.mkdir()
    with pytest.raises(KeyProviderError) as excinfo:
        KeyFileKey(directory).load_root({})
    assert str(directory) in str(excinfo.value)


def test_keyfile_tolerates_surrounding_whitespace(tmp_path: Path) -> None:
    """Key text with CRLF or surrounding blanks still loads to the same root."""
    path = tmp_path / "root.key"
    path.write_text(f"  {MATERIAL_TEXT}\r\n", encoding="ascii")
    _roundtrip(KeyFileKey(path).load_root({}), _raw_root())


def _raw_root() -> LocalRootKey:
    """The root key that key files and variables derive from MATERIAL (HKDF, documented info)."""
    return LocalRootKey(crypto.derive_key(MATERIAL, info=b"ownervault root key v1"))


# --------------------------------------------------------------------------- EnvKey


def test_envkey_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset or empty variable raises KeyProviderError naming the variable."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(KeyProviderError) as excinfo:
        EnvKey(ENV_VAR).load_root({})
    assert ENV_VAR in str(excinfo.value)
    monkeypatch.setenv(ENV_VAR, "")
    with pytest.raises(KeyProviderError) as excinfo:
        EnvKey(ENV_VAR).create_root()
    assert ENV_VAR in str(excinfo.value)


BAD_ENV = {k: v for k, v in GARBLED.items() if v} | {"passphrase_like": "s3cr3t-passw0rd"}


@pytest.mark.parametrize("value", list(BAD_ENV.values()), ids=list(BAD_ENV))
def test_envkey_bad_value_hides_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """A bad variable value raises KeyProviderError naming the variable but never the value."""
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(KeyProviderError) as excinfo:
        EnvKey(ENV_VAR).load_root({})
    message = str(excinfo.value)
    assert ENV_VAR in message
    assert value not in message
    for marker in (_VALID_B64[:12], _VALID_B64[-12:], "s3cr3t"):
        assert marker not in message
    assert excinfo.value.__cause__ is None


def test_envkey_non_ascii_value_is_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable holding non-ASCII text after the prefix raises KeyProviderError."""
    monkeypatch.setenv(ENV_VAR, KEY_TEXT_PREFIX + "密钥")
    with pytest.raises(KeyProviderError):
        EnvKey(ENV_VAR).load_root({})


def test_keyfile_and_env_share_kind_and_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Key files and variables are the same kind ('key') and the same text opens the same root."""
    path = tmp_path / "root.key"
    path.write_text(MATERIAL_TEXT + "\n", encoding="ascii")
    monkeypatch.setenv(ENV_VAR, MATERIAL_TEXT)
    file_provider, env_provider = KeyFileKey(path), EnvKey(ENV_VAR)
    assert file_provider.kind == env_provider.kind == "key"
    file_root, file_params = file_provider.create_root()
    env_root, env_params = env_provider.create_root()
    assert dict(file_params) == dict(env_params) == {}
    _roundtrip(file_root, env_provider.load_root(file_params))
    _roundtrip(env_root, file_provider.load_root(env_params))
    _roundtrip(file_root, _raw_root())


def test_key_text_round_trip() -> None:
    """encode_key_text and decode_key_text are inverse; only 32-byte keys are encoded."""
    assert decode_key_text(encode_key_text(MATERIAL), source="x") == MATERIAL
    with pytest.raises(CryptoError):
        encode_key_text(MATERIAL[:31])


# --------------------------------------------------------------------------- provider hygiene


def _providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    path = tmp_path / "root.key"
    path.write_text(MATERIAL_TEXT, encoding="ascii")
    monkeypatch.setenv(ENV_VAR, MATERIAL_TEXT)
    passphrase = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2)
    return [
        passphrase,
        KeyFileKey(path),
        EnvKey(ENV_VAR),
        InMemoryKey(MATERIAL),
        LocalRootKey(MATERIAL),
        passphrase.create_root()[0],
        KeyFileKey(path).load_root({}),
        EnvKey(ENV_VAR).load_root({}),
    ]


def test_provider_reprs_hide_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider or root key repr/str contains the passphrase, key text or key bytes."""
    secrets: list[bytes | str] = [PASSPHRASE, "电池", MATERIAL_TEXT, _VALID_B64, MATERIAL]
    secrets.append(crypto.derive_key(MATERIAL, info=b"ownervault root key v1"))
    for provider in _providers(tmp_path, monkeypatch):
        for text in (repr(provider), str(provider)):
            for secret in secrets:
                for form in _secret_forms(secret):
                    assert form not in text, (type(provider).__name__, form)


def test_providers_refuse_pickle_and_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provider and root key refuses pickling (all protocols), copy and deepcopy."""
    for provider in _providers(tmp_path, monkeypatch):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError):
                pickle.dumps(provider, protocol=protocol)
        with pytest.raises(TypeError):
            copy.copy(provider)
        with pytest.raises(TypeError):
            copy.deepcopy(provider)


# --------------------------------------------------------------------------- VaultHeader


#: Header slots, read from the model: every ``wrapped_<slot>_key`` field is one wrapped key.
SLOTS = tuple(
    name.removeprefix("wrapped_").removesuffix("_key")
    for name in VaultHeader.model_fields
    if name.startswith("wrapped_") and name.endswith("_key")
)


def _slot_material(slot: str) -> bytes:
    return slot.encode().ljust(32, b".")


def _header(root: Any = None, vault_id: str = VAULT_ID, **overrides: Any) -> VaultHeader:
    root = root or LocalRootKey(MATERIAL)

    def wrap(slot: str) -> str:
        blob = root.wrap(_slot_material(slot), context=VaultHeader.context(vault_id, slot))
        return base64.b64encode(blob).decode()

    fields: dict[str, Any] = {
        "format": "ownervault-header",
        "version": 1,
        "vault_id": vault_id,
        "created_at": "2026-01-01T09:00:00Z",
        "provider": "memory",
        "provider_params": {},
        "keyring_key_id": "ab" * 16,
    }
    fields.update({f"wrapped_{slot}_key": wrap(slot) for slot in SLOTS})
    fields.update(overrides)
    return VaultHeader(**fields)


def test_header_round_trip_and_unwrap(tmp_path: Path) -> None:
    """dumps/loads round-trips a header, and the right root unwraps every slot."""
    assert {"db", "keyring"} <= set(SLOTS)
    header = _header()
    raw = header.dumps()
    assert raw.endswith(b"\n")
    loaded = VaultHeader.loads(raw, path=tmp_path / "vault.header")
    assert loaded == header
    root = LocalRootKey(MATERIAL)
    for slot in SLOTS:
        assert loaded.unwrap(root, slot) == _slot_material(slot)  # type: ignore[arg-type]
    assert set(json.loads(raw)) == {
        "format",
        "version",
        "vault_id",
        "created_at",
        "provider",
        "provider_params",
        "keyring_key_id",
        "pending_db_key",
        *(f"wrapped_{slot}_key" for slot in SLOTS),
    }


def _damaged() -> dict[str, bytes]:
    good = json.loads(_header().dumps())
    cases = {
        "not_json": b"this is not json",
        "empty": b"",
        "truncated": _header().dumps()[:40],
        "not_utf8": b"\xff\xfe{}",
        "array": b"[]",
        "null": b"null",
    }
    changes: dict[str, dict[str, object]] = {
        "version_2": {"version": 2},
        "mac_in_version_1": {"mac": "ab" * 32},
        "bad_mac": {"version": 2, "mac": "not hex"},
        "version_0": {"version": 0},
        "version_string": {"version": "1"},
        "other_format": {"format": "something-else"},
        "bad_vault_id": {"vault_id": "XYZ"},
        "bad_keyring_key_id": {"keyring_key_id": "ab" * 15},
        "empty_provider": {"provider": ""},
        "params_not_object": {"provider_params": []},
        "extra_field": {"surprise": True},
    }
    for name, change in changes.items():
        cases[name] = json.dumps({**good, **change}).encode()
    # pending_db_key is optional: it only exists while the page key is being replaced.
    for field in (f for f in good if f != "pending_db_key"):
        cases[f"missing_{field}"] = json.dumps(
            {k: v for k, v in good.items() if k != field}
        ).encode()
    return cases


DAMAGED = _damaged()


@pytest.mark.parametrize("raw", list(DAMAGED.values()), ids=list(DAMAGED))
def test_header_loads_rejects_damage(raw: bytes, tmp_path: Path) -> None:
    """A damaged header or an unknown version raises VaultFormatError naming the file."""
    path = tmp_path / "vault.header"
    with pytest.raises(VaultFormatError) as excinfo:
        VaultHeader.loads(raw, path=path)
    assert str(path) in str(excinfo.value)


def test_header_unwrap_with_wrong_root_is_wrong_key() -> None:
    """Unwrapping either slot with another root raises WrongKeyError."""
    header = _header()
    for slot in SLOTS:
        with pytest.raises(WrongKeyError) as excinfo:
            header.unwrap(LocalRootKey(bytes(32)), slot)  # type: ignore[arg-type]
        assert str(excinfo.value) == "the key does not open this vault"


KEYRING = bytes(range(100, 132))


def test_sealed_header_round_trips_and_its_mac_covers_every_field(tmp_path: Path) -> None:
    """A sealed header is version 2 with a MAC that survives dumps/loads; a change to any other
    field, or a check under another keyring key, raises IntegrityError naming the header."""
    unsealed = _header(pending_db_key=_header().wrapped_db_key).model_copy(
        update={"pending_page_hmac": "HMAC_SHA256"}
    )
    assert unsealed.check_mac(KEYRING, path="h") is False
    sealed = unsealed.sealed(KEYRING)
    assert (sealed.version, sealed.authenticated) == (2, True)
    loaded = VaultHeader.loads(sealed.dumps(), path=tmp_path / "vault.header")
    assert loaded == sealed
    assert loaded.check_mac(KEYRING, path="h") is True
    document = json.loads(sealed.dumps())
    other = _header(root=LocalRootKey(bytes(32)), vault_id="ab" * 16)
    changes = {
        "vault_id": "ab" * 16,
        "created_at": "2020-01-01T00:00:00Z",
        "provider": "keyfile",
        "provider_params": {"label": "other"},
        "keyring_key_id": "cd" * 16,
        "wrapped_db_key": other.wrapped_db_key,
        "wrapped_keyring_key": other.wrapped_keyring_key,
        "wrapped_signing_key": other.wrapped_signing_key,
        "pending_db_key": None,
        "pending_page_hmac": None,  # dropped from the stored fields, as it was never written
    }
    assert set(changes) == set(document) - {"format", "version", "mac"}
    for field, value in changes.items():
        changed = VaultHeader.model_validate({**document, field: value})
        with pytest.raises(IntegrityError, match="h failed its integrity check") as caught:
            changed.check_mac(KEYRING, path="h")
        assert caught.value.table == "header", field
    with pytest.raises(IntegrityError):
        loaded.check_mac(bytes(32), path="h")


def test_header_slots_are_bound_to_role_and_vault() -> None:
    """A slot's blob cannot be opened as another slot (db as keyring), nor under another vault."""
    good = _header()
    root = LocalRootKey(MATERIAL)
    for source, target in itertools.permutations(SLOTS, 2):
        blob = getattr(good, f"wrapped_{source}_key")
        swapped = good.model_copy(update={f"wrapped_{target}_key": blob})
        with pytest.raises(WrongKeyError):
            swapped.unwrap(root, target)  # type: ignore[arg-type]
    moved = good.model_copy(update={"vault_id": "0" * 32})
    for slot in SLOTS:
        with pytest.raises(WrongKeyError):
            moved.unwrap(root, slot)  # type: ignore[arg-type]
    assert VaultHeader.context(VAULT_ID, "db") == crypto.encode_context(
        "ownervault header v1", VAULT_ID, "db"
    )


@pytest.mark.parametrize("blob", ["not base64!", "", "AAAA"])
def test_header_unwrap_garbled_blob_is_wrong_key(blob: str) -> None:
    """A slot that is not base64 or too short to be a wrapped key raises WrongKeyError."""
    header = _header(wrapped_db_key=blob)
    with pytest.raises(WrongKeyError):
        header.unwrap(LocalRootKey(MATERIAL), "db")


def test_header_unwrap_non_ascii_blob_is_wrong_key() -> None:
    """A slot holding non-ASCII text raises WrongKeyError like any other unreadable blob."""
    header = _header(wrapped_db_key="密钥")
    with pytest.raises(WrongKeyError):
        header.unwrap(LocalRootKey(MATERIAL), "db")


# --------------------------------------------------------------------------- key states

#: NIST SP 800-57 Part 1 lifecycle as this project applies it, written out pair by pair.
EXPECTED_TRANSITIONS: dict[tuple[KeyState, KeyState], bool] = {
    (A, A): False,
    (A, D): True,
    (A, C): True,
    (A, X): True,
    (D, A): False,
    (D, D): False,
    (D, C): True,
    (D, X): True,
    (C, A): False,
    (C, D): False,
    (C, C): False,
    (C, X): True,
    (X, A): False,
    (X, D): False,
    (X, C): False,
    (X, X): False,
}

EXPECTED_USES: dict[tuple[KeyState, str], bool] = {
    (A, "encrypt"): True,
    (A, "decrypt"): True,
    (D, "encrypt"): False,
    (D, "decrypt"): True,
    (C, "encrypt"): False,
    (C, "decrypt"): True,
    (X, "encrypt"): False,
    (X, "decrypt"): False,
}


def test_expected_tables_cover_every_pair() -> None:
    """The expected tables list every (old, new) state pair and every (state, use) pair."""
    assert set(EXPECTED_TRANSITIONS) == set(itertools.product(KeyState, KeyState))
    assert set(EXPECTED_USES) == set(itertools.product(KeyState, ("encrypt", "decrypt")))
    assert set(KeyState) == {A, D, C, X}
    assert set(TRANSITIONS) == set(USES) == set(KeyState)


@pytest.mark.parametrize(
    ("old", "new"), list(EXPECTED_TRANSITIONS), ids=lambda s: s.value if s else ""
)
def test_transition_table(old: KeyState, new: KeyState) -> None:
    """check_transition allows exactly the NIST SP 800-57 transitions of the expected table."""
    allowed = EXPECTED_TRANSITIONS[(old, new)]
    assert (new in TRANSITIONS[old]) is allowed
    if allowed:
        check_transition("k1", old, new)
    else:
        with pytest.raises(KeyStateError) as excinfo:
            check_transition("k1", old, new)
        assert str(excinfo.value) == f"key k1 cannot go from {old.value} to {new.value}"


@pytest.mark.parametrize(("state", "use"), list(EXPECTED_USES), ids=str)
def test_use_matrix(state: KeyState, use: str) -> None:
    """check_use lets only active keys encrypt and destroyed keys do nothing."""
    if EXPECTED_USES[(state, use)]:
        check_use("k1", state, use)  # type: ignore[arg-type]
    else:
        with pytest.raises(KeyStateError) as excinfo:
            check_use("k1", state, use)  # type: ignore[arg-type]
        assert str(excinfo.value) == f"key k1 is {state.value} and cannot {use}"


def test_no_path_leads_back_to_active() -> None:
    """No sequence of allowed transitions returns a demoted key to active; destroyed is terminal."""
    for start in (D, C, X):
        reachable, frontier = set(), {start}
        while frontier:
            state = frontier.pop()
            for nxt in TRANSITIONS[state]:
                if nxt not in reachable:
                    reachable.add(nxt)
                    frontier.add(nxt)
        assert A not in reachable
    assert TRANSITIONS[X] == frozenset()
    assert all(state not in TRANSITIONS[state] for state in KeyState)


_RANK = {A: 0, D: 1, C: 2, X: 3}


class KeyLifecycle(RuleBasedStateMachine):
    """Random transition attempts against a model: a key only ever moves strictly forward."""

    def __init__(self) -> None:
        super().__init__()
        self.state = A
        self.history = [A]

    @rule(new=st.sampled_from(list(KeyState)))
    def transition(self, new: KeyState) -> None:
        model_allows = _RANK[new] > _RANK[self.state]
        try:
            check_transition("k", self.state, new)
        except KeyStateError:
            assert not model_allows, (self.state, new)
        else:
            assert model_allows, (self.state, new)
            self.state = new
            self.history.append(new)

    @rule(use=st.sampled_from(["encrypt", "decrypt"]))
    def use(self, use: str) -> None:
        model_allows = self.state is A if use == "encrypt" else self.state is not X
        try:
            check_use("k", self.state, use)  # type: ignore[arg-type]
        except KeyStateError:
            assert not model_allows
        else:
            assert model_allows

    @invariant()
    def never_reactivated(self) -> None:
        assert A not in self.history[1:]
        assert self.history == sorted(self.history, key=_RANK.__getitem__)


KeyLifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)
TestKeyLifecycle = KeyLifecycle.TestCase
TestKeyLifecycle.__doc__ = "Random transition sequences always agree with the forward-only model."


# --------------------------------------------------------------------------- KeyCache


def _fk(n: int) -> crypto.FieldKey:
    return crypto.FieldKey(bytes([n % 256]) * 32, key_id=n.to_bytes(16, "big"))


def test_cache_evicts_least_recently_used() -> None:
    """A full cache evicts the least recently used key; get and re-put count as uses."""
    cache = KeyCache(capacity=3)
    a, b, c, d, e = (_fk(i) for i in range(5))
    for key in (a, b, c):
        cache.put(key)
    assert cache.get(a.key_id) is a  # order now b, c, a
    cache.put(d)  # evicts b
    assert cache.get(b.key_id) is None
    assert [cache.get(k.key_id) is k for k in (a, c, d)] == [True, True, True]  # order a, c, d
    cache.put(a)  # refresh a: order c, d, a
    cache.put(e)  # evicts c
    assert cache.get(c.key_id) is None
    assert len(cache) == 3
    assert {k for k in (a, d, e) if cache.get(k.key_id) is k} == {a, d, e}


def test_cache_put_replaces_same_key_id() -> None:
    """Putting a key under an id already cached replaces it without growing the cache."""
    cache = KeyCache(capacity=2)
    first = _fk(1)
    second = crypto.FieldKey(bytes(32), key_id=first.key_id)
    cache.put(first)
    cache.put(second)
    assert len(cache) == 1 and cache.get(first.key_id) is second


def test_cache_discard_and_clear() -> None:
    """discard forgets one key (unknown ids are ignored) and clear forgets all."""
    cache = KeyCache(capacity=10)
    keys = [_fk(i) for i in range(4)]
    for key in keys:
        cache.put(key)
    cache.discard(keys[0].key_id)
    cache.discard(b"\x00" * 16)
    assert cache.get(keys[0].key_id) is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and all(cache.get(k.key_id) is None for k in keys)


def test_cache_capacity_must_be_positive() -> None:
    """A cache needs room for at least one key; its repr shows only size and capacity."""
    with pytest.raises(ValueError):
        KeyCache(capacity=0)
    cache = KeyCache(capacity=1)
    cache.put(_fk(7))
    assert repr(cache) == "<KeyCache size=1 capacity=1>"


def test_cache_thread_safety_smoke() -> None:
    """Eight threads putting, getting and discarding concurrently never break the cache."""
    cache = KeyCache(capacity=32)
    keys = [_fk(i) for i in range(128)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            barrier.wait()
            for step in range(2000):
                key = keys[(seed * 31 + step * 7) % len(keys)]
                cache.put(key)
                got = cache.get(key.key_id)
                assert got is None or got is key
                if step % 13 == 0:
                    cache.discard(keys[(seed + step) % len(keys)].key_id)
                assert len(cache) <= 32
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 32
    for key in keys:
        got = cache.get(key.key_id)
        assert got is None or got is key


class _PausingDict(OrderedDict[bytes, Any]):
    """An ordered dict that stops inside each insertion until the test lets it go on."""

    def __init__(self, items: OrderedDict[bytes, Any]) -> None:
        self.inserted = threading.Event()
        self.proceed = threading.Event()
        self.armed = False
        super().__init__(items)
        self.armed = True

    def __setitem__(self, key: bytes, value: Any) -> None:
        super().__setitem__(key, value)
        if self.armed:
            self.inserted.set()
            assert self.proceed.wait(10)


def test_cache_size_read_during_a_put_never_exceeds_the_capacity() -> None:
    """len() and repr() taken during a put into a full cache never exceed the capacity."""
    cache = KeyCache(capacity=2)
    cache.put(_fk(1))
    cache.put(_fk(2))
    paused = _PausingDict(cache._items)
    cache._items = paused
    seen: list[object] = []
    writer = threading.Thread(target=cache.put, args=(_fk(3),))
    writer.start()
    try:
        assert paused.inserted.wait(10)
        reader = threading.Thread(target=lambda: seen.extend([len(cache), repr(cache)]))
        reader.start()
        # The reader either has its answer at once or waits for the put to finish.
        reader.join(0.2)
    finally:
        paused.proceed.set()
    writer.join(10)
    reader.join(10)
    assert seen[0] <= 2
    assert "size=2 " in str(seen[1])
    assert len(cache) == 2


@pytest.mark.parametrize(
    ("pending_page_hmac", "staged", "expected"),
    [
        ("HMAC_SHA256", False, "HMAC_SHA256"),  # swapped: the new file's MAC is taken
        ("HMAC_SHA256", True, None),  # not swapped: the old file keeps its own
        (None, False, None),  # a rotation that named no MAC: the new file has the old one's
    ],
)
def test_recovery_takes_the_page_mac_of_the_file_in_place(
    tmp_path: Path, pending_page_hmac: str | None, staged: bool, expected: str | None
) -> None:
    old = _header()
    pending = old.model_copy(
        update={"pending_db_key": "bmV3", "pending_page_hmac": pending_page_hmac}
    )
    if staged:
        (tmp_path / "vault.db.rekey").write_bytes(b"")
    header = recovered(tmp_path, pending)
    assert header.pending_db_key is None and header.pending_page_hmac is None
    assert header.page_hmac == expected
    assert header.wrapped_db_key == (old.wrapped_db_key if staged else "bmV3")
