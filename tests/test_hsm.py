"""Tests for ownervault.hsm: a vault whose root key lives in a PKCS#11 token (SoftHSM2).

The module fixture builds private SoftHSM2 tokens under a temporary ``SOFTHSM2_CONF``. Without
SoftHSM2 or python-pkcs11 these tests skip locally and fail under CI (``CI`` set).
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ownervault import Actor, Vault
from ownervault.exceptions import (
    DecryptionError,
    KeyProviderError,
    VaultFormatError,
    WrongKeyError,
)
from ownervault.hsm import MECHANISM, Pkcs11Key
from ownervault.keys import VaultHeader
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, grant_roles, record_assessments

TOKEN = "ownervault-test"
OTHER_TOKEN = "ownervault-other"
PIN = "1234"
SO_PIN = "5678"
WRONG_PIN = "wrong-pin-7319"
MODULE_CANDIDATES = (
    os.environ.get("OWNERVAULT_TEST_PKCS11_MODULE", ""),
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
CONTEXT = VaultHeader.context("5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e0f", "db")


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the PKCS#11 tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Path of the SoftHSM2 module, with two fresh tokens under a private SOFTHSM2_CONF."""
    util = shutil.which("softhsm2-util")
    if util is None:
        _unavailable("softhsm2-util is not installed (apt-get install softhsm2)")
    path = next((c for c in MODULE_CANDIDATES if c and Path(c).is_file()), None)
    if path is None:
        _unavailable("the SoftHSM2 PKCS#11 module libsofthsm2.so was not found")
    try:
        import pkcs11
    except ImportError:
        _unavailable("python-pkcs11 is not installed (pip install 'ownervault[hsm]')")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        for label in (TOKEN, OTHER_TOKEN):
            command = [util, "--init-token", "--free", "--label", label]
            subprocess.run(
                [*command, "--pin", PIN, "--so-pin", SO_PIN],
                check=True,
                capture_output=True,
            )
        # SoftHSM2 reads its configuration and token list in C_Initialize: start afresh in case
        # this process loaded the module earlier.
        pkcs11.lib(path).reinitialize()
        yield path


@pytest.fixture
def provider(module: str) -> Pkcs11Key:
    """A provider for the test token with a key label of its own."""
    return Pkcs11Key(module, token_label=TOKEN, pin=PIN, key_label=f"root-{uuid.uuid4().hex}")


def _clone(key: Pkcs11Key, **changes: Any) -> Pkcs11Key:
    """The same provider settings with some changed (a second, independent object)."""
    settings: dict[str, Any] = {
        "token_label": key.token_label,
        "pin": PIN,
        "key_label": key.key_label,
    }
    settings.update(changes)
    return Pkcs11Key(key.module, **settings)


def _token_key_attributes(module: str, label: str) -> dict[Any, Any]:
    import pkcs11
    from pkcs11 import Attribute

    token = pkcs11.lib(module).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN) as session:
        key = session.get_key(label=label)
        attrs = key.get_attributes(
            [
                Attribute.EXTRACTABLE,
                Attribute.SENSITIVE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.VALUE_LEN,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
                Attribute.WRAP,
                Attribute.UNWRAP,
                Attribute.SIGN,
                Attribute.VERIFY,
                Attribute.DERIVE,
            ]
        )
        try:
            attrs["value"] = key[Attribute.VALUE]
        except pkcs11.exceptions.AttributeSensitive:
            attrs["value"] = None
        return attrs


def _no_pin_in(exc: BaseException, *pins: str) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc.args)
    for pin in pins:
        assert pin not in text


# --------------------------------------------------------------------------- vault round trip


def test_vault_round_trip_with_pkcs11_key(
    tmp_path: Path,
    provider: Pkcs11Key,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
) -> None:
    """A vault created with a Pkcs11Key stores records and reopens with a new Pkcs11Key."""
    owners = [make_owner() for _ in range(3)]
    with Vault.create(tmp_path / "v", key=provider, clock=FrozenClock()) as vault:
        grant_roles(vault, clerk)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            ids = session.put_many(owners)
            assert session.get(OwnerProfile, ids[0])["phone"] == owners[0].phone
    with (
        Vault.open(tmp_path / "v", key=_clone(provider), clock=FrozenClock()) as vault,
        vault.session(clerk, "owner_registration") as session,
    ):
        for rid, owner in zip(ids, owners, strict=True):
            assert session.get(OwnerProfile, rid)["phone"] == owner.phone


def test_pin_env_opens_the_vault(
    tmp_path: Path, provider: Pkcs11Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider reading its PIN from an environment variable opens a vault made with the PIN."""
    Vault.create(tmp_path / "v", key=provider).close()
    monkeypatch.setenv("OWNERVAULT_TEST_HSM_PIN", PIN)
    by_env = Pkcs11Key(
        provider.module,
        token_label=TOKEN,
        pin_env="OWNERVAULT_TEST_HSM_PIN",
        key_label=provider.key_label,
    )
    Vault.open(tmp_path / "v", key=by_env).close()
    monkeypatch.delenv("OWNERVAULT_TEST_HSM_PIN")
    with pytest.raises(KeyProviderError, match="OWNERVAULT_TEST_HSM_PIN is not set"):
        Vault.open(tmp_path / "v", key=by_env)


def test_header_params_hold_labels_and_mechanism_only(tmp_path: Path, provider: Pkcs11Key) -> None:
    """The vault header records the token and key labels and the mechanism, and no PIN."""
    Vault.create(tmp_path / "v", key=provider).close()
    header = json.loads((tmp_path / "v" / "vault.header").read_text())
    assert header["provider"] == "pkcs11"
    assert header["provider_params"] == {
        "token_label": TOKEN,
        "key_label": provider.key_label,
        "mechanism": MECHANISM,
    }
    random_fields = (
        "vault_id",
        "keyring_key_id",
        "wrapped_db_key",
        "wrapped_keyring_key",
        "wrapped_signing_key",
    )
    for name in random_fields:
        header.pop(name)  # random bytes, which may spell any short PIN by chance
    assert PIN not in json.dumps(header)


# --------------------------------------------------------------------------- wrong keys and PINs


def test_wrong_pin_is_a_key_provider_error_without_the_pin(
    tmp_path: Path, provider: Pkcs11Key
) -> None:
    """A rejected PIN raises KeyProviderError naming the token but never either PIN."""
    Vault.create(tmp_path / "v", key=provider).close()
    wrong = _clone(provider, pin=WRONG_PIN)
    with pytest.raises(KeyProviderError, match="PIN for PKCS#11 token 'ownervault-test'") as info:
        Vault.open(tmp_path / "v", key=wrong)
    _no_pin_in(info.value, WRONG_PIN, PIN)
    with pytest.raises(KeyProviderError) as info:
        wrong.create_root()
    _no_pin_in(info.value, WRONG_PIN, PIN)


def test_another_key_on_the_same_token_does_not_open_the_vault(
    tmp_path: Path, provider: Pkcs11Key
) -> None:
    """Another existing key raises WrongKeyError; a label with no key raises KeyProviderError."""
    Vault.create(tmp_path / "v", key=provider).close()
    other = _clone(provider, key_label=f"other-{uuid.uuid4().hex}")
    Vault.create(tmp_path / "w", key=other).close()
    with pytest.raises(WrongKeyError):
        Vault.open(tmp_path / "v", key=other)
    with pytest.raises(KeyProviderError, match="has no key labelled 'absent'"):
        Vault.open(tmp_path / "v", key=_clone(provider, key_label="absent"))


def test_a_key_with_the_same_label_on_another_token_does_not_open_the_vault(
    tmp_path: Path, provider: Pkcs11Key
) -> None:
    """The same key label on another token is another key, so the vault raises WrongKeyError."""
    Vault.create(tmp_path / "v", key=provider).close()
    elsewhere = _clone(provider, token_label=OTHER_TOKEN)
    elsewhere.create_root()
    with pytest.raises(WrongKeyError):
        Vault.open(tmp_path / "v", key=elsewhere)


def test_missing_token_module_or_library_is_a_key_provider_error(
    tmp_path: Path, provider: Pkcs11Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing token, PKCS#11 module or python-pkcs11 raises a one-line KeyProviderError."""
    with pytest.raises(KeyProviderError, match="no PKCS#11 token labelled 'nowhere'"):
        _clone(provider, token_label="nowhere").create_root()
    missing = tmp_path / "libmissing.so"
    with pytest.raises(KeyProviderError, match="does not exist"):
        Pkcs11Key(missing, token_label=TOKEN, pin=PIN).create_root()
    not_a_module = tmp_path / "libnotamodule.so"
    not_a_module.write_bytes(b"not an ELF file")
    with pytest.raises(KeyProviderError, match="cannot load PKCS#11 module"):
        Pkcs11Key(not_a_module, token_label=TOKEN, pin=PIN).create_root()
    monkeypatch.setitem(sys.modules, "pkcs11", None)
    with pytest.raises(KeyProviderError, match="needs python-pkcs11") as info:
        provider.create_root()
    assert "\n" not in str(info.value)


def test_constructor_rejects_bad_settings(module: str) -> None:
    """Neither or both of pin and pin_env, an empty PIN or an over-long token label are refused."""
    with pytest.raises(KeyProviderError, match="exactly one"):
        Pkcs11Key(module, token_label=TOKEN)
    with pytest.raises(KeyProviderError, match="exactly one"):
        Pkcs11Key(module, token_label=TOKEN, pin=PIN, pin_env="X")
    with pytest.raises(KeyProviderError, match="empty"):
        Pkcs11Key(module, token_label=TOKEN, pin="")
    with pytest.raises(KeyProviderError, match="longer than 32 bytes"):
        Pkcs11Key(module, token_label="x" * 33, pin=PIN)


def test_invalid_header_params_are_a_format_error(provider: Pkcs11Key) -> None:
    """Header params with an unknown mechanism, missing or extra entries raise VaultFormatError."""
    _, params = provider.create_root()
    for bad in (
        {**params, "mechanism": "CKM_AES_CBC"},
        {"token_label": TOKEN, "key_label": provider.key_label},
        {**params, "pin": PIN},
        {**params, "key_label": 7},
    ):
        with pytest.raises(VaultFormatError):
            provider.load_root(bad)


# --------------------------------------------------------------------------- wrapping


def test_wrap_is_randomised_and_bound_to_its_context(provider: Pkcs11Key) -> None:
    """Wrapping twice differs, both unwrap, and another context or a flipped bit fails."""
    root, params = provider.create_root()
    material = os.urandom(32)
    first = root.wrap(material, context=CONTEXT)
    second = root.wrap(material, context=CONTEXT)
    assert first != second
    assert len(first) == 1 + 12 + 32 + 16 and first[0] == 0x01
    assert material not in first and material not in second
    reloaded = provider.load_root(params)
    assert reloaded.unwrap(first, context=CONTEXT) == material
    assert root.unwrap(second, context=CONTEXT) == material
    other_slot = VaultHeader.context("5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e0f", "keyring")
    with pytest.raises(DecryptionError):
        root.unwrap(first, context=other_slot)
    for position in (0, 1, 13, len(first) - 1):
        tampered = bytearray(first)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            root.unwrap(bytes(tampered), context=CONTEXT)
    for cut in (0, 1, 28, len(first) - 1):
        with pytest.raises(DecryptionError):
            root.unwrap(first[:cut], context=CONTEXT)


def test_create_root_reuses_a_key_with_its_label(provider: Pkcs11Key) -> None:
    """Calling create_root twice keeps one key: each root unwraps what the other wrapped."""
    first, _ = provider.create_root()
    second, _ = _clone(provider).create_root()
    material = os.urandom(32)
    assert second.unwrap(first.wrap(material, context=CONTEXT), context=CONTEXT) == material
    import pkcs11
    from pkcs11 import Attribute

    token = pkcs11.lib(provider.module).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN) as session:
        assert len(list(session.get_objects({Attribute.LABEL: provider.key_label}))) == 1


def test_root_key_never_leaves_the_token(provider: Pkcs11Key) -> None:
    """The root key object is a private, persistent, sensitive, never-extractable AES-256 key."""
    provider.create_root()
    attrs = _token_key_attributes(provider.module, provider.key_label)
    from pkcs11 import Attribute

    assert attrs[Attribute.EXTRACTABLE] is False
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.NEVER_EXTRACTABLE] is True
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    assert attrs[Attribute.TOKEN] is True and attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.VALUE_LEN] == 32
    assert attrs[Attribute.ENCRYPT] is True and attrs[Attribute.DECRYPT] is True
    for unused in (Attribute.WRAP, Attribute.UNWRAP, Attribute.SIGN, Attribute.VERIFY):
        assert attrs[unused] is False
    assert attrs[Attribute.DERIVE] is False
    assert attrs["value"] is None


def test_an_extractable_key_with_the_label_is_refused(provider: Pkcs11Key) -> None:
    """An existing extractable key with the provider's label is refused, not used."""
    import pkcs11
    from pkcs11 import Attribute, KeyType

    token = pkcs11.lib(provider.module).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN, rw=True) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=provider.key_label,
            store=True,
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(KeyProviderError, match="extractable or not sensitive"):
        provider.create_root()


# --------------------------------------------------------------------------- no secrets leak


def test_repr_shows_labels_and_never_the_pin(provider: Pkcs11Key) -> None:
    """The provider's and root key's repr name module, token and key, never the PIN."""
    root, _ = provider.create_root()
    for text in (repr(provider), repr(root), str(provider)):
        assert provider.module in text and TOKEN in text and provider.key_label in text
        assert PIN not in text.replace(provider.key_label, "")
    assert "<redacted>" in repr(provider)
    by_env = _clone(provider, pin=None, pin_env="SOME_VARIABLE")
    assert "pin_env='SOME_VARIABLE'" in repr(by_env)


def test_provider_and_root_refuse_pickling(provider: Pkcs11Key) -> None:
    """Neither the provider nor its root key can be pickled or copied."""
    root, _ = provider.create_root()
    for obj in (provider, root):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(obj)
        with pytest.raises(TypeError):
            copy.copy(obj)
