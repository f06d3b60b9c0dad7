"""Handover to a successor company (Property Management Regulations Art 38-39, Civil Code
Art 949, PIPL Art 22 and 47): package, receipt, erasure of every owner, certificate."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault import Actor, Vault, crypto, handover
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    DecryptionError,
    HandoverError,
    PolicyDeniedError,
    SubjectErasedError,
    VaultHandedOverError,
)
from ownervault.handover import process
from ownervault.records import FeeAccount, OwnerProfile, Unit
from ownervault.records.logs import GateEvent
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

CLERK = Actor("clerk-01", roles=["front_desk"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
ADMIN = Actor("admin-01", roles=["admin"])
SUCCESSOR = "新城物业服务有限公司"
EVIDENCE = hashlib.sha256(b"signed paper form").hexdigest()
RECEIVED = "2026-01-02T10:00:00.000000Z"
#: Fields whose values identify an owner (enum-like fields such as status are left out).
PERSONAL = frozenset(
    {
        "name",
        "phone",
        "email",
        "id_number",
        "emergency_contact_name",
        "emergency_contact_phone",
        "ownership_certificate_number",
        "account_number",
        "billing_address",
    }
)


def _populate(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> dict[str, dict[str, OwnerProfile | Unit | FeeAccount]]:
    """Three owners: one with a consent, one under legal hold, one restricted with a request."""
    owners: dict[str, dict[str, OwnerProfile | Unit | FeeAccount]] = {}
    with vault.session(CLERK, "owner_registration") as s:
        for _ in range(3):
            profile = make_owner()
            unit = make_unit(profile.subject_id)
            s.put(profile)
            s.put(unit)
            owners[profile.subject_id] = {"owner_profile": profile, "unit": unit}
    first, second, third = owners
    account = make_fee_account(first)
    with vault.session(Actor("finance-01", roles=["finance"]), "fee_collection") as s:
        s.put(account)
    owners[first]["fee_account"] = account
    gate = GateEvent(
        subject_id=first,
        subject_kind="resident",
        gate_id="north-1",
        direction="in",
        at=_dt.datetime(2025, 12, 31, 22, 5, tzinfo=_dt.UTC),
        method="card",
    )
    gate_system = Actor("gate-01", roles=["gate_system"])
    grant_roles(vault, gate_system)
    record_assessments(vault)
    with vault.session(gate_system, "access_control") as s:
        s.put(gate)
    owners[first]["gate_event"] = gate
    with vault.session(CLERK, "consent_management") as s:
        s.grant_consent(first, "community_events", channel="paper", evidence=EVIDENCE)
    with vault.session(DPO, "subject_rights") as s:
        s.hold(second, reason="case 2026-01", until=_dt.datetime(2027, 1, 1, tzinfo=_dt.UTC))
        s.restrict(third, ["fee_collection"])
        s.open_request(third, "access")
        s.record_disclosure(first, recipient="市住建局", fields=["name", "phone"])
    return owners


@pytest.fixture
def owners(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> dict[str, dict[str, OwnerProfile | Unit | FeeAccount]]:
    return _populate(vault, make_owner, make_unit, make_fee_account)


@pytest.fixture
def keys() -> handover.RecipientKeys:
    return handover.new_recipient_keys()


def _prepare(vault: Vault, keys: handover.RecipientKeys) -> bytes:
    _, package = vault.handover.prepare(
        actor=DPO, approver=ADMIN, recipient=SUCCESSOR, recipient_key=keys.box_public
    )
    return package


def _receipt(vault: Vault, package: bytes, keys: handover.RecipientKeys) -> str:
    contents = handover.open_package(
        package, private_key=keys.box_private, vault_key=vault.verifier_key
    )
    return handover.sign_receipt(contents, signing_key=keys.signing_private, received_at=RECEIVED)


def _personal_values(owners: dict[str, dict[str, Any]]) -> list[str]:
    values = []
    for records in owners.values():
        for record in records.values():
            for name, value in record.model_dump(mode="json").items():
                if name in PERSONAL and isinstance(value, str) and len(value) >= 2:
                    values.append(value)
    return values


# --------------------------------------------------------------------------- happy path


def test_handover_end_to_end(
    vault: Vault, owners: dict[str, dict[str, Any]], keys: handover.RecipientKeys
) -> None:
    summary, package = vault.handover.prepare(
        actor=DPO, approver=ADMIN, recipient=SUCCESSOR, recipient_key=keys.box_public
    )
    assert summary.counts == {
        "owners": 3,
        "records": 8,
        "consents": 1,
        "legal_holds": 1,
        "open_requests": 1,
        "disclosures": 1,
        "restricted": 1,
    }
    # The successor reads every record back, every field in full, sensitive ones included.
    contents = handover.open_package(
        package, private_key=keys.box_private, vault_key=vault.verifier_key
    )
    got = {o["subject_id"]: o for o in contents.owners}
    assert set(got) == set(owners)
    for subject_id, records in owners.items():
        by_type = {r["record_type"]: r["fields"] for r in got[subject_id]["records"]}
        assert set(by_type) == set(records)
        for record_type, record in records.items():
            expected = record.model_dump(mode="json", exclude={"subject_id"})
            assert {k: v for k, v in expected.items() if v is not None} == {
                k: v for k, v in by_type[record_type].items() if v is not None
            }
    first, second, third = owners
    assert [c["purpose"] for c in got[first]["consents"]] == ["community_events"]
    assert [h["reason"] for h in got[second]["legal_holds"]] == ["case 2026-01"]
    assert json.loads(got[third]["restricted_to"]) == ["fee_collection"]
    assert [r["kind"] for r in got[third]["open_requests"]] == ["access"]
    assert [(d["recipient"], d["fields"]) for d in got[first]["disclosures"]] == [
        ("市住建局", ["name", "phone"])
    ]
    assert contents.purposes["handover"]["legal_basis"] == "legal_obligation"

    receipt = handover.sign_receipt(
        contents, signing_key=keys.signing_private, received_at=RECEIVED
    )
    result = vault.handover.complete(receipt, actor=DPO, approver=ADMIN)
    assert result.owners_erased == 3 and not result.resumed
    assert len(result.erasures) == 3
    for erasure in result.erasures:
        erasure.verify([vault.verifier_key])
    cert = handover.verify_certificate(result.certificate, vault_key=vault.verifier_key)
    assert (cert.package_id, cert.recipient, cert.owners_erased, cert.records) == (
        summary.package_id,
        SUCCESSOR,
        3,
        8,
    )
    assert cert.manifest_digest == contents.manifest_digest
    assert vault.handover.state == "complete"
    assert vault.handover.certificate() == result.certificate


def test_after_completion_every_owner_is_erased_and_the_log_verifies(
    vault: Vault, owners: dict[str, dict[str, Any]], keys: handover.RecipientKeys, tmp_path: Path
) -> None:
    package = _prepare(vault, keys)
    result = vault.handover.complete(_receipt(vault, package, keys), actor=DPO, approver=ADMIN)
    with vault.session(DPO, "subject_access_request") as s:
        for subject_id in owners:
            with pytest.raises((SubjectErasedError, ov.exceptions.RecordNotFoundError)):
                s.export_subject(subject_id, verify_identity=lambda _: True)
    status = vault.key_status()
    assert status.subject_keys == {"destroyed": len(owners)} and status.records == 0
    size = vault.audit.verify()
    cert = handover.verify_certificate(result.certificate, vault_key=vault.verifier_key)
    assert cert.audit_size <= size
    erased = [
        e
        for e in vault.audit.entries_where(action="erase", decision="allow")
        if e["detail"]["cause"] == "handover"
    ]
    assert len(erased) == len(owners)
    # Each erasure is in the erasure ledger too, so a restored backup erases the owners again.
    assert (vault.path / "erasures.ledger").read_text().count("\n") == len(owners)
    actions = [e["action"] for e in vault.audit.entries()]
    assert actions.index("handover.prepare") < actions.index("handover.receipt")
    assert actions.index("handover.receipt") < actions.index("handover.complete")
    # The vault takes no new data, but its audit log stays readable and exportable.
    with vault.session(CLERK, "owner_registration") as s, pytest.raises(VaultHandedOverError):
        s.put(OwnerProfile(subject_id="owner-new", name="新业主"))
    with vault.session(CLERK, "consent_management") as s, pytest.raises(VaultHandedOverError):
        s.grant_consent(next(iter(owners)), "community_events", channel="app", evidence=EVIDENCE)
    with pytest.raises(VaultHandedOverError):
        _prepare(vault, keys)
    bundle = vault.export_audit(tmp_path / "bundle", actor=DPO)
    assert bundle is not None
    report = vault.check(deep=True)
    assert report.ok, report


# --------------------------------------------------------------------------- refusals


def _flip_payload(package: bytes) -> bytes:
    doc = json.loads(package)
    raw = bytearray(base64.b64decode(doc["payload"]))
    raw[-1] ^= 1
    doc["payload"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc).encode()


def _edit(package: bytes, **members: Any) -> bytes:
    return json.dumps({**json.loads(package), **members}).encode()


def _resign(receipt: str, keys: handover.RecipientKeys, **members: Any) -> str:
    """A receipt with ``members`` changed, signed again by the successor (a valid signature)."""
    from ownervault.handover.formats import _receipt_message

    seed = crypto.ed25519_load_private_pem(keys.signing_private)
    signer = crypto.ed25519_public_key(seed).hex()
    doc = {**json.loads(receipt), "successor_key": signer, **members}
    body = {k: v for k, v in doc.items() if k != "signature"}
    doc["signature"] = crypto.ed25519_sign(seed, _receipt_message(body)).hex()
    return json.dumps(doc)


@pytest.fixture
def other_vault(tmp_path: Path) -> Any:
    other = Vault.create(tmp_path / "other", key=InMemoryKey(), clock=FrozenClock())
    grant_roles(other, CLERK, DPO, ADMIN)
    record_assessments(other)
    try:
        yield other
    finally:
        other.close()


Case = Callable[[Vault, bytes, handover.RecipientKeys, Any], object]


def _open(vault: Vault, package: bytes, keys: handover.RecipientKeys) -> object:
    return handover.open_package(
        package, private_key=keys.box_private, vault_key=vault.verifier_key
    )


def _complete(vault: Vault, receipt: str) -> object:
    return vault.handover.complete(receipt, actor=DPO, approver=ADMIN)


def _receipt_from_other_vault(v: Vault, p: bytes, k: handover.RecipientKeys, o: Vault) -> object:
    with o.session(CLERK, "owner_registration") as s:
        s.put(OwnerProfile(subject_id="other-1", name="别处业主"))
    return _complete(v, _receipt(o, _prepare(o, k), k))


def _receipt_for_other_package(v: Vault, p: bytes, k: handover.RecipientKeys, o: Vault) -> object:
    second = _receipt(v, _prepare(v, k), k)
    digest = json.loads(second)["manifest_digest"]
    return _complete(v, _resign(_receipt(v, p, k), k, manifest_digest=digest))


def _vault_changed(v: Vault, p: bytes, k: handover.RecipientKeys, o: Vault) -> object:
    receipt = _receipt(v, p, k)
    with v.session(CLERK, "owner_registration") as s:
        s.put(OwnerProfile(subject_id="late-owner", name="晚到业主"))
    return _complete(v, receipt)


def _unpinned_successor(v: Vault, p: bytes, k: handover.RecipientKeys, o: Vault) -> object:
    pinned = handover.new_recipient_keys()

    return v.handover.complete(
        _receipt(v, p, k),
        actor=DPO,
        approver=ADMIN,
        successor_key=crypto.ed25519_load_public_pem(pinned.signing_public),
    )


REFUSALS: list[tuple[str, Case, type[Exception], str]] = [
    # The successor must only accept what the outgoing vault signed, for it, intact.
    (
        "wrong recipient key",
        lambda v, p, k, o: _open(v, p, handover.new_recipient_keys()),
        HandoverError,
        "wrong_recipient_key",
    ),
    (
        "altered payload",
        lambda v, p, k, o: _open(v, _flip_payload(p), k),
        HandoverError,
        "package_signature",
    ),
    (
        "altered counts",
        lambda v, p, k, o: _open(v, _edit(p, counts={"owners": 0}), k),
        HandoverError,
        "package_signature",
    ),
    (
        "recipient renamed",
        lambda v, p, k, o: _open(v, _edit(p, recipient="另一家公司"), k),
        HandoverError,
        "package_signature",
    ),
    (
        "not a package",
        lambda v, p, k, o: _open(v, b"[1, 2]", k),
        HandoverError,
        "package_malformed",
    ),
    (
        "wrong vault key pinned",
        lambda v, p, k, o: handover.open_package(
            p, private_key=k.box_private, vault_key=o.verifier_key
        ),
        HandoverError,
        "vault_key_mismatch",
    ),
    (
        "package claims another vault's key",
        lambda v, p, k, o: handover.open_package(
            _edit(p, vault_key=o.verifier_key), private_key=k.box_private, vault_key=o.verifier_key
        ),
        HandoverError,
        "package_signature",
    ),
    # The outgoing company erases only on a receipt for exactly what it packaged.
    (
        "altered receipt",
        lambda v, p, k, o: _complete(
            v, json.dumps({**json.loads(_receipt(v, p, k)), "counts": {"owners": 99}})
        ),
        HandoverError,
        "receipt_signature",
    ),
    (
        "receipt by an unpinned successor key",
        _unpinned_successor,
        HandoverError,
        "receipt_signature",
    ),
    ("receipt from another vault", _receipt_from_other_vault, HandoverError, "receipt_other_vault"),
    (
        "receipt for a package never prepared",
        lambda v, p, k, o: _complete(v, _resign(_receipt(v, p, k), k, package_id="0" * 32)),
        HandoverError,
        "receipt_unknown_package",
    ),
    ("receipt for another package", _receipt_for_other_package, HandoverError, "receipt_mismatch"),
    ("vault changed after the package", _vault_changed, HandoverError, "vault_changed"),
    ("not a receipt", lambda v, p, k, o: _complete(v, "{}"), HandoverError, "receipt_malformed"),
    # Two people, each allowed the action: the compliance officer and an approving admin.
    (
        "no approver",
        lambda v, p, k, o: v.handover.complete(_receipt(v, p, k), actor=DPO, approver=None),
        PolicyDeniedError,
        "approval_required",
    ),
    (
        "officer approves own handover",
        lambda v, p, k, o: v.handover.prepare(
            actor=DPO, approver=DPO, recipient=SUCCESSOR, recipient_key=k.box_public
        ),
        PolicyDeniedError,
        "approver_is_actor",
    ),
    (
        "front desk prepares",
        lambda v, p, k, o: v.handover.prepare(
            actor=CLERK, approver=ADMIN, recipient=SUCCESSOR, recipient_key=k.box_public
        ),
        PolicyDeniedError,
        "role_not_permitted",
    ),
]


@pytest.mark.parametrize(
    ("case", "error", "reason"),
    [pytest.param(c, e, r, id=name) for name, c, e, r in REFUSALS],
)
def test_refusals(
    vault: Vault,
    owners: dict[str, dict[str, Any]],
    keys: handover.RecipientKeys,
    other_vault: Vault,
    case: Case,
    error: type[Exception],
    reason: str,
) -> None:
    package = _prepare(vault, keys)
    with pytest.raises(error) as raised:
        case(vault, package, keys, other_vault)
    assert getattr(raised.value, "reason", None) == reason
    for value in _personal_values(owners):
        assert value not in str(raised.value)
    # Nothing was erased and the vault still takes data: the handover did not start.
    assert vault.handover.state is None
    with vault.session(DPO, "subject_access_request") as s:
        for subject_id in owners:
            s.export_subject(subject_id, verify_identity=lambda _: True)


# --------------------------------------------------------------------------- nothing is lost


def test_prepare_is_repeatable_and_changes_nothing(
    vault: Vault, owners: dict[str, dict[str, Any]], keys: handover.RecipientKeys
) -> None:
    first = _prepare(vault, keys)
    second = _prepare(vault, keys)
    a = _open(vault, first, keys)
    b = _open(vault, second, keys)
    assert isinstance(a, handover.HandoverContents) and isinstance(b, handover.HandoverContents)
    assert a.package_id != b.package_id
    assert a.manifest["records"] == b.manifest["records"]
    # Either package may be the one received; the older one too.
    result = vault.handover.complete(_receipt(vault, first, keys), actor=DPO, approver=ADMIN)
    assert result.package_id == a.package_id and result.owners_erased == len(owners)


def test_interrupted_shredding_is_finished_by_running_complete_again(
    vault: Vault,
    owners: dict[str, dict[str, Any]],
    keys: handover.RecipientKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receipt = _receipt(vault, _prepare(vault, keys), keys)
    other_package_receipt = _receipt(vault, _prepare(vault, keys), keys)
    real = process.erase_pseudonym
    calls = {"n": 0}

    def crash_after_one(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies mid-way
        return real(*args, **kwargs)

    monkeypatch.setattr(process, "erase_pseudonym", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        vault.handover.complete(receipt, actor=DPO, approver=ADMIN)
    monkeypatch.setattr(process, "erase_pseudonym", real)
    assert vault.handover.state == "shredding"
    # Only the receipt recorded when the handover began may finish it.
    other_signer = handover.new_recipient_keys()
    with pytest.raises(HandoverError) as raised:
        vault.handover.complete(_resign(receipt, other_signer), actor=DPO, approver=ADMIN)
    assert raised.value.reason == "receipt_mismatch"
    # Nor may a receipt for another package prepared before it.
    with pytest.raises(HandoverError) as raised:
        vault.handover.complete(other_package_receipt, actor=DPO, approver=ADMIN)
    assert raised.value.reason == "other_handover"
    with vault.session(CLERK, "owner_registration") as s, pytest.raises(VaultHandedOverError):
        s.put(OwnerProfile(subject_id="owner-new", name="新业主"))
    result = vault.handover.complete(receipt, actor=DPO, approver=ADMIN)
    assert result.resumed and len(result.erasures) == len(owners) - 1
    assert result.owners_erased == len(owners)
    # Once complete, the same receipt gives back the same certificate.
    again = vault.handover.complete(receipt, actor=DPO, approver=ADMIN)
    assert again.certificate == result.certificate and again.erasures == ()
    assert vault.audit.verify() > 0


# --------------------------------------------------------------------------- no plaintext


def test_no_personal_value_outside_the_ciphertext(
    vault: Vault, owners: dict[str, dict[str, Any]], keys: handover.RecipientKeys
) -> None:
    package = _prepare(vault, keys)
    result = vault.handover.complete(_receipt(vault, package, keys), actor=DPO, approver=ADMIN)
    audit = b"".join(row.entry for row in vault.audit.rows())
    texts = [package, audit, result.certificate.encode(), _receipt(vault, package, keys).encode()]
    for value in _personal_values(owners) + list(owners):
        forms = {value.encode("utf-8"), json.dumps(value).encode("ascii")[1:-1]}
        for text in texts:
            for form in forms:
                assert form not in text


# --------------------------------------------------------------------------- command line


def _run(*args: object) -> str:
    result = CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_handover(
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> None:
    path, key_file = tmp_path / "vault", tmp_path / "root.key"
    with Vault.create(path, key=ov.KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, CLERK, DPO, ADMIN, Actor("finance-01", roles=["finance"]))
        record_assessments(vault)
        owners = _populate(vault, make_owner, make_unit, make_fee_account)
        vkey = vault.verifier_key
    successor = tmp_path / "successor"
    _run("handover", "keygen", "--out", successor)
    package = tmp_path / "handover.pkg"
    out = _run(
        "handover", "prepare", path, "--to", SUCCESSOR,
        "--recipient-key", successor / "recipient.pub.pem", "--out", package,
        "--as", DPO.actor_id, "--approver", ADMIN.actor_id, "--key-file", key_file, "-q",
    )  # fmt: skip
    assert "owners 3" in out
    received = tmp_path / "received"
    _run(
        "handover", "open", package, "--key", successor / "recipient.pem",
        "--signing-key", successor / "signing.pem", "--vault-key", vkey, "--out", received,
    )  # fmt: skip
    got = json.loads((received / "owners.json").read_text(encoding="utf-8"))
    assert {o["subject_id"] for o in got["owners"]} == set(owners)
    certificate = tmp_path / "handover.cert"
    out = _run(
        "handover", "complete", path, "--receipt", received / "receipt.json",
        "--certificate", certificate, "--successor-key", successor / "signing.pub.pem",
        "--as", DPO.actor_id, "--approver", ADMIN.actor_id,
        "--key-file", key_file, "-q",
    )  # fmt: skip
    assert "3 owners erased" in out
    assert "valid" in _run("handover", "verify", certificate, "--vault-key", vkey)
    bad = CliRunner().invoke(
        cli_main,
        ["handover", "verify", str(certificate), "--vault-key", str(tmp_path / "nokey")],
    )
    assert bad.exit_code == 1 and "not signed by that vault key" in bad.output


# --------------------------------------------------------------------------- recipient box


def _box_case(change: Callable[[bytes, bytes, bytes], tuple[bytes, bytes, bytes]]) -> None:
    private = crypto.x25519_generate()
    box = crypto.box_seal(crypto.x25519_public_key(private), b"owners", context=b"pkg-1")
    key, sealed, context = change(private, box, b"pkg-1")
    crypto.box_open(key, sealed, context=context)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda k, b, c: (crypto.x25519_generate(), b, c), id="another key"),
        pytest.param(lambda k, b, c: (k, b, b"pkg-2"), id="another package's context"),
        pytest.param(lambda k, b, c: (k, b[:-1] + bytes([b[-1] ^ 1]), c), id="flipped tag"),
        pytest.param(lambda k, b, c: (k, b[:40], c), id="truncated"),
        pytest.param(lambda k, b, c: (k, bytes([2]) + b[1:], c), id="unknown version"),
        pytest.param(lambda k, b, c: (k, b[:1] + bytes(32) + b[33:], c), id="low-order point"),
    ],
)
def test_recipient_box_refuses(
    change: Callable[[bytes, bytes, bytes], tuple[bytes, bytes, bytes]],
) -> None:
    with pytest.raises(DecryptionError):
        _box_case(change)


def test_recipient_box_round_trip() -> None:
    private = crypto.x25519_generate()
    box = crypto.box_seal(crypto.x25519_public_key(private), "业主".encode(), context=b"p")
    assert crypto.box_open(private, box, context=b"p") == "业主".encode()
    assert box[0] == crypto.BOX_FORMAT_V1 and len(box) == 1 + 32 + 12 + 6 + 16
