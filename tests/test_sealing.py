"""Sealed records: the v2 layout every write makes, the v1 layout older vaults hold, and the
updates and re-encryptions that turn one into the other (``docs/formats.md``).

The byte layout and the associated data are checked against the format description with an
independent AES-GCM, and every kind of damage is refused with the one DecryptionError.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ownervault import Actor, KeyFileKey, Vault, crypto, sealing
from ownervault.exceptions import DecryptionError, ValidationError
from ownervault.records import OwnerProfile
from ownervault.testing import grant_roles, record_assessments

VAULT_ID = "vault-under-test"
FIELDS = {"name": b'"\xe6\x9e\x97\xe6\x96\xb0"', "phone": b'"13900000000"', "email": b'"a@b.cn"'}
FIXTURES = Path(__file__).parent / "fixtures"
#: Known-answer sealed records (``tests/vectors/make_vectors.py``).
SEALED_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "field_envelope_v1.json").read_text(encoding="utf-8")
)["sealed_record_v2"]


def _key(material: bytes | None = None) -> crypto.FieldKey:
    return crypto.FieldKey(material or os.urandom(32), key_id=crypto.new_key_id())


def _record(record_id: str = "rec-1", vault_id: str = VAULT_ID) -> bytes:
    return crypto.record_aad(vault_id, "owner_profile", record_id)


def _v1(key: crypto.FieldKey, record_id: str = "rec-1") -> bytes:
    """A record as vaults sealed it before: field envelopes v1 in the v1 container."""
    return sealing.pack_sealed(
        {
            name: key.encrypt(
                value,
                aad=crypto.field_aad(
                    vault_id=VAULT_ID,
                    record_type="owner_profile",
                    record_id=record_id,
                    field=name,
                    key_id=key.key_id,
                ),
            )
            for name, value in FIELDS.items()
        }
    )


def _fields(blob: bytes, at: int) -> list[tuple[str, bytes]]:
    """The (name, part) pairs of a container from ``at``, read as the format says."""
    out = []
    while at < len(blob):
        size = blob[at]
        name = blob[at + 1 : at + 1 + size].decode()
        at += 1 + size
        length = int.from_bytes(blob[at : at + 4], "big")
        out.append((name, blob[at + 4 : at + 4 + length]))
        at += 4 + length
    return out


# --------------------------------------------------------------------------- layout


def test_a_sealed_record_v2_is_laid_out_and_encrypted_as_the_format_says() -> None:
    """Version, key id, HKDF commitment, then name-ordered bodies of nonce and AES-256-GCM under
    the HKDF encryption key, each with a field envelope's associated data and the version."""
    material = os.urandom(32)
    key = _key(material)
    blob = sealing.seal(key, _record(), FIELDS)
    commitment = crypto.derive_key(material, info=b"ownervault key commitment v1")
    assert blob[0] == 0x02
    assert blob[1:17] == key.key_id
    assert blob[17:49] == commitment
    aead = AESGCM(crypto.derive_key(material, info=b"ownervault field encryption v1"))
    parts = _fields(blob, 49)
    assert [name for name, _ in parts] == sorted(FIELDS)
    for name, body in parts:
        aad = crypto.field_aad(
            vault_id=VAULT_ID,
            record_type="owner_profile",
            record_id="rec-1",
            field=name,
            key_id=key.key_id,
        ) + crypto.encode_context(b"\x02")
        assert aead.decrypt(body[:12], body[12:], aad) == FIELDS[name]
    assert len({body[:12] for _, body in parts}) == len(parts)


def test_a_v2_record_stores_the_key_id_and_commitment_once() -> None:
    """Against the v1 layout: 49 bytes fewer per field (version, key id, commitment), 48 more
    once (key id and commitment in the header)."""
    key = _key()
    assert len(_v1(key)) - len(sealing.seal(key, _record(), FIELDS)) == 49 * len(FIELDS) - 48


def test_open_fields_returns_the_fields_asked_for_that_the_record_has() -> None:
    key = _key()
    sealed = sealing.Sealed.parse(sealing.seal(key, _record(), FIELDS))
    assert sealed.version == sealing.SEALED_FORMAT_V2 and sealed.key_id == key.key_id
    assert sealing.open_fields(key, sealed, _record()) == FIELDS
    assert sealing.open_fields(key, sealed, _record(), ["phone", "id_number"]) == {
        "phone": FIELDS["phone"]
    }
    assert sealing.Sealed.parse(sealed.pack()) == sealed


def test_a_v2_field_is_bound_to_its_vault_record_field_and_key() -> None:
    key = _key()
    blob = sealing.seal(key, _record(), FIELDS)
    sealed = sealing.Sealed.parse(blob)
    for record in (_record("rec-2"), _record(vault_id="other-vault")):
        with pytest.raises(DecryptionError):
            sealing.open_fields(key, sealed, record, ["name"])
    with pytest.raises(DecryptionError):
        sealing.open_fields(_key(), sealed, _record(), ["name"])
    moved = attrs.evolve(sealed, parts={**sealed.parts, "phone": sealed.parts["email"]})
    with pytest.raises(DecryptionError):
        sealing.open_fields(key, moved, _record(), ["phone"])


def _damaged_v2(key: crypto.FieldKey) -> dict[str, bytes]:
    good = sealing.seal(key, _record(), FIELDS)
    sealed = sealing.Sealed.parse(good)
    phone = sealed.parts["phone"]

    def with_phone(body: bytes) -> bytes:
        return attrs.evolve(sealed, parts={**sealed.parts, "phone": body}).pack()

    other = sealing.Sealed.parse(sealing.seal(_key(), _record(), FIELDS))
    return {
        "version": b"\x03" + good[1:],
        "header only, cut": good[:30],
        "truncated": good[:-5],
        "trailing": good + b"\x00",
        "key id": good[:1] + bytes([good[1] ^ 1]) + good[2:],
        "commitment": good[:20] + bytes([good[20] ^ 1]) + good[21:],
        "tag": with_phone(phone[:-1] + bytes([phone[-1] ^ 1])),
        "nonce": with_phone(bytes([phone[0] ^ 1]) + phone[1:]),
        "short body": with_phone(phone[:27]),
        "another key's body": with_phone(other.parts["phone"]),
        "another key's header": good[:1] + other.ident + good[49:],
        "moved field": with_phone(sealed.parts["email"]),
        "duplicate": good[:49] + 2 * (b"\x05phone" + len(phone).to_bytes(4, "big") + phone),
        "cut in a name": good[:49] + b"\x05pho",
    }


@pytest.mark.parametrize(
    "damage",
    [
        "version",
        "header only, cut",
        "truncated",
        "trailing",
        "key id",
        "commitment",
        "tag",
        "nonce",
        "short body",
        "another key's body",
        "another key's header",
        "moved field",
        "duplicate",
        "cut in a name",
    ],
)
def test_every_damage_to_a_v2_record_raises_the_one_decryption_error(damage: str) -> None:
    key = _key()
    blob = _damaged_v2(key)[damage]
    with pytest.raises(DecryptionError) as raised:
        sealing.open_fields(key, sealing.Sealed.parse(blob), _record())
    assert str(raised.value) == "decryption failed"
    with pytest.raises(DecryptionError):
        sealing.reseal(key, blob, _key(), record_aad=_record())


def test_pack_sealed_refuses_a_field_name_it_cannot_write_every_time() -> None:
    """An empty name or one longer than 255 bytes is refused, on every call (a refused name is
    not remembered as written), in both layouts."""
    key = _key()
    for _ in range(2):
        for name in ("", "x" * 256, "名" * 86):
            with pytest.raises(ValidationError):
                sealing.pack_sealed({name: b"x"})
            with pytest.raises(ValidationError):
                sealing.seal(key, _record(), {name: b"x"})
    longest = sealing.pack_sealed({"x" * 255: b"x"})
    assert sealing.unpack_sealed(longest) == {"x" * 255: b"x"}


_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
_RECORDS = st.dictionaries(_NAMES.filter(lambda n: len(n.encode()) < 256), st.binary(), max_size=6)
_KEY = _key()


@settings(max_examples=60, deadline=None)
@given(fields=_RECORDS)
def test_any_record_seals_and_opens_again(fields: dict[str, bytes]) -> None:
    blob = sealing.seal(_KEY, _record(), fields)
    sealed = sealing.Sealed.parse(blob)
    assert sealed.pack() == blob
    assert sealing.open_fields(_KEY, sealed, _record()) == fields


@settings(max_examples=60, deadline=None)
@given(fields=_RECORDS.filter(bool), data=st.data())
def test_any_single_bit_flip_of_a_v2_record_is_refused(
    fields: dict[str, bytes], data: st.DataObject
) -> None:
    """A flipped bit anywhere (header, a name, a length or a body) never opens: the container
    no longer parses, names other fields, or fails a check, each as the one DecryptionError."""
    blob = bytearray(sealing.seal(_KEY, _record(), fields))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    try:
        sealed = sealing.Sealed.parse(bytes(blob))
        opened = sealing.open_fields(_KEY, sealed, _record())
    except DecryptionError:
        return
    raise AssertionError(f"a damaged record opened: {sorted(opened)}")


# --------------------------------------------------------------------------- known answers


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with no salt, 32 bytes, written from RFC 5869 with the standard library."""
    prk = hmac.digest(bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def _part(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw


@pytest.mark.parametrize("v", SEALED_VECTORS, ids=[v["name"] for v in SEALED_VECTORS])
def test_a_reference_seals_and_opens_the_vector_records(v: dict[str, Any]) -> None:
    """Built from the format description alone (HKDF from RFC 5869, AES-GCM, the layout tables),
    each vector's container comes out byte for byte, and opens field by field."""
    key, key_id = bytes.fromhex(v["key"]), bytes.fromhex(v["key_id"])
    aead = AESGCM(_hkdf(key, b"ownervault field encryption v1"))
    head = bytes([2]) + key_id + _hkdf(key, b"ownervault key commitment v1")
    chunks = [head]
    for f in v["fields"]:
        name = f["field"].encode()
        aad = b"".join(
            _part(p)
            for p in (
                b"ownervault field v1",
                b"\x01",
                v["vault_id"].encode(),
                v["record_type"].encode(),
                v["record_id"].encode(),
                name,
                key_id,
                b"\x02",
            )
        )
        assert aad.hex() == f["aad"]
        nonce, plaintext = bytes.fromhex(f["nonce"]), bytes.fromhex(f["plaintext"])
        body = nonce + aead.encrypt(nonce, plaintext, aad)
        assert body.hex() == f["body"]
        assert aead.decrypt(body[:12], body[12:], aad) == plaintext
        chunks += [bytes([len(name)]), name, _part(body)]
    assert b"".join(chunks).hex() == v["sealed"]


@pytest.mark.parametrize("v", SEALED_VECTORS, ids=[v["name"] for v in SEALED_VECTORS])
def test_the_library_opens_the_vector_records(v: dict[str, Any]) -> None:
    key = crypto.FieldKey(bytes.fromhex(v["key"]), key_id=bytes.fromhex(v["key_id"]))
    record_aad = crypto.record_aad(v["vault_id"], v["record_type"], v["record_id"])
    sealed = sealing.Sealed.parse(bytes.fromhex(v["sealed"]))
    assert sealing.open_fields(key, sealed, record_aad) == {
        f["field"]: bytes.fromhex(f["plaintext"]) for f in v["fields"]
    }
    assert sealed.pack().hex() == v["sealed"]
    other = crypto.record_aad(v["vault_id"], v["record_type"], "another-record")
    with pytest.raises(DecryptionError):
        sealing.open_fields(key, sealed, other)


# --------------------------------------------------------------------------- v1, updates


def test_a_v1_record_still_opens_field_by_field() -> None:
    key = _key()
    sealed = sealing.Sealed.parse(_v1(key))
    assert sealed.version == sealing.SEALED_FORMAT_V1 and sealed.ident == b""
    assert sealed.key_id == key.key_id
    assert sealing.open_fields(key, sealed, _record()) == FIELDS
    assert sealing.Sealed.parse(sealed.pack()) == sealed
    with pytest.raises(DecryptionError):
        sealing.open_fields(key, sealed, _record("rec-2"), ["name"])
    with pytest.raises(DecryptionError):
        sealing.open_fields(_key(), sealed, _record(), ["name"])


def test_an_update_of_a_v2_record_seals_only_the_changed_fields() -> None:
    key = _key()
    sealed = sealing.Sealed.parse(sealing.seal(key, _record(), FIELDS))
    blob, encrypted = sealing.update(
        key, sealed, _record(), {"phone": b'"13911111111"', "email": None, "zz": b'"new"'}
    )
    assert encrypted == 2
    after = sealing.Sealed.parse(blob)
    assert after.ident == sealed.ident
    assert after.parts["name"] == sealed.parts["name"]  # kept byte for byte
    assert sealing.open_fields(key, after, _record()) == {
        "name": FIELDS["name"],
        "phone": b'"13911111111"',
        "zz": b'"new"',
    }
    with pytest.raises(DecryptionError):
        sealing.update(_key(), sealed, _record(), {"phone": b'"1"'})


def test_an_update_of_a_v1_record_seals_it_whole_as_v2() -> None:
    key = _key()
    blob, encrypted = sealing.update(
        key, sealing.Sealed.parse(_v1(key)), _record(), {"phone": b'"13911111111"'}
    )
    assert encrypted == len(FIELDS)
    after = sealing.Sealed.parse(blob)
    assert after.version == sealing.SEALED_FORMAT_V2
    assert sealing.open_fields(key, after, _record()) == {**FIELDS, "phone": b'"13911111111"'}


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_reseal_moves_every_field_under_the_new_key_as_v2(layout: str) -> None:
    old, new = _key(), _key()
    blob = _v1(old) if layout == "v1" else sealing.seal(old, _record(), FIELDS)
    resealed, count = sealing.reseal(old, blob, new, record_aad=_record())
    assert count == len(FIELDS)
    sealed = sealing.Sealed.parse(resealed)
    assert sealed.version == sealing.SEALED_FORMAT_V2 and sealed.key_id == new.key_id
    assert sealing.open_fields(new, sealed, _record()) == FIELDS
    with pytest.raises(DecryptionError):
        sealing.open_fields(old, sealed, _record(), ["name"])
    with pytest.raises(DecryptionError):
        sealing.reseal(old, blob, new, record_aad=_record("rec-2"))
    # Fresh nonces: re-sealing again gives other ciphertexts of the same values.
    again, _ = sealing.reseal(old, blob, new, record_aad=_record())
    nonces = [b[:12] for s in (resealed, again) for b in sealing.Sealed.parse(s).parts.values()]
    assert len(set(nonces)) == len(nonces) == 2 * len(FIELDS)


# --------------------------------------------------------------------------- in a vault


def _layouts(vault: Vault) -> list[int]:
    rows = vault._kernel.backend._execute(
        "SELECT sealed FROM records WHERE erased = 0 ORDER BY record_id"
    ).fetchall()
    return [bytes(sealed)[0] for (sealed,) in rows]


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_a_vault_of_v1_records_reads_them_and_writes_v2(tmp_path: Path) -> None:
    """The committed schema-version-1 vault's records are v1 containers: they read as before,
    an updated one is written as v2, and a re-encryption leaves only v2 records."""
    path = tmp_path / "vault-v1"
    shutil.copytree(FIXTURES / "vault-v1" / "vault", path)
    dpo = Actor("dpo-01", roles=["compliance_officer"])
    clerk = Actor("clerk-01", roles=["front_desk"])
    admin = Actor("admin-01", roles=["admin"])
    with Vault.open(path, key=KeyFileKey(FIXTURES / "vault-v1" / "root.key")) as vault:
        assert set(_layouts(vault)) == {sealing.SEALED_FORMAT_V1}
        grant_roles(vault, dpo, clerk, admin)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            (view,) = session.find(OwnerProfile, phone="13800000002")
            session.update(view, email="fx2@example.cn")
            assert session.get(OwnerProfile, view.record_id)["email"] == "fx2@example.cn"
            assert session.get(OwnerProfile, view.record_id)["name"] == view["name"]
        assert sorted(_layouts(vault)).count(sealing.SEALED_FORMAT_V2) == 1
        job = vault.keys.reencrypt_subjects(actor=admin)
        vault.keys.run(job.job_id, actor=admin)
        assert set(_layouts(vault)) == {sealing.SEALED_FORMAT_V2}
        with vault.session(dpo, "subject_access_request") as session:
            for owner in ("fx-owner-1", "fx-owner-2", "fx-child-3"):
                assert session.export_subject(owner, verify_identity=lambda _: True).records
        assert vault.check(deep=True).ok
