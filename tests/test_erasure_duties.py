"""Erasure on request when a law keeps some of the owner's records (PIPL Art 47 para 2).

An owner with a fee account (an accounting record kept 30 years) asks to be erased: shredding
them is refused, and ``erase_allowed`` deletes every other record with a receipt, keeps the
accounting record, restricts the owner to storage and starts the kept record's clock.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault.checkpoint import verify_note
from ownervault.cli import main
from ownervault.exceptions import PolicyDeniedError, RecordNotFoundError, RetentionDutyError
from ownervault.records import FeeAccount, OwnerProfile, Unit
from ownervault.testing import FrozenClock, grant_roles, record_assessments

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
FINANCE = ov.Actor("finance-01", roles=["finance"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])


def _register(
    vault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
    subject_id: str,
    *,
    fees: bool,
) -> None:
    with vault.session(CLERK, "owner_registration") as s:
        s.put_many([make_owner(subject_id=subject_id), make_unit(subject_id=subject_id)])
    if fees:
        with vault.session(FINANCE, "fee_collection") as s:
            s.put(make_fee_account(subject_id=subject_id))


@pytest.mark.parametrize(
    ("fees", "shredded", "kept_types"),
    [
        (False, True, set()),  # nothing a law keeps: the owner is erased as on request
        (True, False, {"fee_account"}),  # an accounting record: kept, the rest deleted
    ],
)
def test_erasure_keeps_what_a_law_keeps(
    vault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
    fees: bool,
    shredded: bool,
    kept_types: set[str],
) -> None:
    _register(vault, make_owner, make_unit, make_fee_account, "owner-1", fees=fees)
    with vault.session(DPO, "erasure_request") as s:
        if fees:
            with pytest.raises(RetentionDutyError) as refused:
                s.erase_subject("owner-1")
            assert refused.value.reason == "legal_retention_duty"
            assert "会计档案管理办法" in refused.value.basis
        result = s.erase_allowed("owner-1")
    assert result.erased is shredded
    assert {k.record_type for k in result.kept} == kept_types
    assert {d.record_type for d in result.deleted} == {"owner_profile", "unit"}
    for deletion in result.deleted:
        verify_note(deletion.receipt, [vault.verifier_key])
    entries = list(vault.audit.entries())
    if fees:
        refusal = next(e for e in entries if e["action"] == "erase" and e["decision"] == "deny")
        assert (refusal["reason"], refusal["record_type"]) == (
            "legal_retention_duty",
            "fee_account",
        )
        restrict = [e for e in entries if e["action"] == "subject.restrict"][-1]
        assert restrict["detail"]["cause"] == "legal_retention_duty"
        # What is kept is only stored: fee collection no longer reaches it.
        with vault.session(FINANCE, "fee_collection") as s, pytest.raises(PolicyDeniedError) as no:
            s.get(FeeAccount, result.kept[0].record_id)
        with vault.session(DPO, "subject_access_request") as s:
            export = s.export_subject("owner-1", verify_identity=lambda _: True)
        assert [r.record_type for r in export.records] == ["fee_account"]
        assert no.value.reason in ("restricted", "storage_only")
    else:
        with (
            vault.session(DPO, "subject_access_request") as s,
            pytest.raises(RecordNotFoundError),
        ):
            s.export_subject("owner-1", verify_identity=lambda _: True)
    assert vault.audit.verify() == vault.audit.size()


def test_the_kept_record_goes_when_its_duty_ends(
    vault: ov.Vault,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> None:
    """The erasure ends the relationship for retention, so the fee account's 30 years run from
    the end of that accounting year and the sweep then erases the owner."""
    _register(vault, make_owner, make_unit, make_fee_account, "owner-1", fees=True)
    with vault.session(DPO, "erasure_request") as s:
        (kept,) = s.erase_allowed("owner-1").kept
        # From the first day after the accounting year's end (Asia/Shanghai), 30 years on.
        assert kept.until.startswith("2056-12-31T16:00:00")
    clock.advance(_dt.timedelta(days=366 * 31))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert len(report.erased) == 1


def test_cli_erase_keep_required(
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> None:
    key = tmp_path / "root.key"
    path = tmp_path / "v"
    with ov.Vault.create(path, key=ov.KeyFileKey.generate(key)) as vault:
        grant_roles(vault, CLERK, FINANCE, DPO)
        record_assessments(vault)
        _register(vault, make_owner, make_unit, make_fee_account, "owner-1", fees=True)
    base = ["subject", "erase", str(path), "owner-1", "--as", "dpo-01", "--key-file", str(key)]
    refused = CliRunner().invoke(main, base)
    assert refused.exit_code == 4 and "legal_retention_duty" not in refused.output
    assert "must be kept" in refused.output and "Traceback" not in refused.output
    done = CliRunner().invoke(main, [*base, "--keep-required", "--receipt", str(tmp_path / "r")])
    assert done.exit_code == 0, done.output
    assert "kept fee_account" in done.output and "the owner is restricted" in done.output
    assert len(list((tmp_path / "r").glob("*.txt"))) == 2
