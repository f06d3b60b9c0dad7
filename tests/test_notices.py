"""Privacy notices (PIPL Art 17; GDPR Art 13-14), the controller and its protection officer.

Runs on both backends: the consent tests record and replay the notice hash in each store.

Covers: ``policy check`` refusing a notice that lacks what the law asks for (file and line), a
purpose without a notice, retention and categories that do not match their purpose, a text
changed under an old hash, sensitive processing without an officer; consents and their audit
entries carrying the notice's version and hash, and re-consent keyed on the hash; the shipped
notices; ``policy notice`` and the completed processing register.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault.cli import main as cli_main
from ownervault.exceptions import PolicyError
from ownervault.policy import (
    Actor,
    LegalBasis,
    default_policy_dir,
    load_policy,
    notice_hash,
    processing_record,
)
from ownervault.policy.consent import ConsentRecord, ConsentStatus, consent_state
from ownervault.policy.notices import ELEMENTS, duration_text
from ownervault.records import RECORD_TYPES, Classification, OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

CLERK = Actor("clerk-01", roles=["front_desk"])
EVIDENCE = "ab" * 32
T0 = _dt.datetime(2026, 1, 1, 9, tzinfo=_dt.UTC)
EVENTS_FIELDS = frozenset(
    {"owner_profile.name", "owner_profile.phone", "owner_profile.email", "owner_profile.status"}
)


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli_main, list(args))


# --------------------------------------------------------------------------- pack editing


def _copy_pack(tmp_path: Path) -> Path:
    folder = tmp_path / "pack"
    shutil.copytree(default_policy_dir(), folder)
    return folder


def _drop(file: str, table: str, key: str) -> Callable[[Path], None]:
    """Remove ``key = ...`` from ``[table]`` of ``file``."""

    def edit(folder: Path) -> None:
        path = folder / file
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        start = lines.index(f"[{table}]\n")
        for i in range(start + 1, len(lines)):
            if lines[i].startswith("["):
                break
            if lines[i].startswith(f"{key} = "):
                del lines[i]
                path.write_text("".join(lines), encoding="utf-8")
                return
        raise AssertionError(f"no {key} in [{table}]")

    return edit


def _sub(file: str, old: str, new: str) -> Callable[[Path], None]:
    """Replace the first ``old`` of ``file`` with ``new``."""

    def edit(folder: Path) -> None:
        path = folder / file
        text = path.read_text(encoding="utf-8")
        assert old in text, old
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def _drop_table(file: str, table: str) -> Callable[[Path], None]:
    """Remove ``[table]`` and its sub-tables from ``file``."""

    def edit(folder: Path) -> None:
        path = folder / file
        kept: list[str] = []
        skipping = False
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.startswith("["):
                skipping = line.startswith((f"[{table}]", f"[{table}."))
            if not skipping:
                kept.append(line)
        path.write_text("".join(kept), encoding="utf-8")

    return edit


# (case, edit, file named, text of the line named, words of the message). Each row is a notice
# or pack that does not tell owners what the law asks, or does not match its purpose.
BROKEN: list[tuple[str, Callable[[Path], None], str, str, tuple[str, ...]]] = [
    (
        "no purposes (Art 17(1)(2))",
        _drop("notices.toml", "notices.owner_registration.zh", "purposes"),
        "notices.toml", "[notices.owner_registration.zh]", ("lacks 'purposes'", "(zh)"),
    ),
    (
        "no processing methods (Art 17(1)(2))",
        _drop("notices.toml", "notices.fee_collection.en", "methods"),
        "notices.toml", "[notices.fee_collection.en]", ("lacks 'methods'", "(en)"),
    ),
    (
        "no categories (Art 17(1)(2))",
        _drop("notices.toml", "notices.repair_dispatch.zh", "categories"),
        "notices.toml", "[notices.repair_dispatch.zh]", ("lacks 'categories'",),
    ),
    (
        "no retention period (Art 17(1)(2))",
        _drop("notices.toml", "notices.complaint_handling.en", "retention"),
        "notices.toml", "[notices.complaint_handling.en]", ("lacks 'retention'",),
    ),
    (
        "no way to exercise rights (Art 17(1)(3))",
        _drop("notices.toml", "defaults.zh", "rights"),
        "notices.toml", "[notices.", ("lacks 'rights'", "PIPL Art 17(1)(3)"),
    ),
    (
        "no controller and contact (Art 17(1)(1))",
        _drop("notices.toml", "defaults.en", "controller"),
        "notices.toml", "[notices.", ("lacks 'controller'", "(en)"),
    ),
    (
        "ID numbers without necessity and impact (Art 30)",
        _drop("notices.toml", "notices.owner_registration.en", "sensitive"),
        "notices.toml", "[notices.owner_registration.en]", ("lacks 'sensitive'", "Art 30"),
    ),
    (
        "bank accounts without necessity and impact (Art 30)",
        _drop("notices.toml", "notices.fee_collection.zh", "sensitive"),
        "notices.toml", "[notices.fee_collection.zh]", ("lacks 'sensitive'", "Art 30"),
    ),
    (
        "consent without how to withdraw (Art 15)",
        _drop("notices.toml", "notices.community_events.en", "withdrawal"),
        "notices.toml", "[notices.community_events.en]", ("lacks 'withdrawal'", "Art 15"),
    ),
    (
        "controller text without the controller's name",
        _sub("notices.toml", "Controller: Example Property Services Co., Ltd.,", "Controller:"),
        "notices.toml", 'controller = "Controller:', ("controller's name",),
    ),
    (
        "controller text without a contact",
        _sub(
            "notices.toml",
            "电话：400-000-0000；电子邮箱：privacy@example.com。",
            "",
        ),
        "notices.toml", "controller = ", ("phone or email",),
    ),
    (
        "retention that is not the purpose's",
        _sub("notices.toml", 'retention = "P3Y"\ncategories = ["owner_profile", "unit", "fee', (
            'retention = "P2Y"\ncategories = ["owner_profile", "unit", "fee'
        )),
        "notices.toml", 'retention = "P2Y"', ("P2Y", "fee_collection", "P3Y"),
    ),
    (
        "retention text that does not state the period",
        _sub("notices.toml", "自缴费记录产生之日起保存3年", "自缴费记录产生之日起保存三年"),
        "notices.toml", "retention = ", ("does not state the period", "P3Y", "3年"),
    ),
    (
        "categories that leave out a record type the purpose processes",
        _sub("notices.toml", '"fee_account", "payment", "contract"]', '"fee_account", "contract"]'),
        "notices.toml", "categories = [", ("'payment'", "fee_collection"),
    ),
    (
        "a purpose without a notice",
        _drop_table("notices.toml", "notices.vault_administration"),
        "purposes.toml", "[purposes.vault_administration]", ("has no notice", "Art 17"),
    ),
    (
        "a purpose served by two notices",
        _sub("notices.toml", 'purposes = ["breach_notification"]',
             'purposes = ["breach_notification", "consent_management"]'),
        "notices.toml", "purposes = [", ("served by notices",),
    ),
    (
        "a text changed under the old version and hash",
        _sub("notices.toml", "收取物业费：计费", "收取物业费和停车费：计费"),
        "notices.toml", "sha256 = ", ("does not match the sha256", "raise the version"),
    ),
    (
        "an element the law does not know (a typo)",
        _sub("notices.toml", "[notices.visitor_verification.en]\npurposes",
             "[notices.visitor_verification.en]\npurpose"),
        "notices.toml", "purpose = ", ("purpose", "Extra inputs"),
    ),
    (
        "sensitive processing without a protection officer (Art 52)",
        _drop_table("controller.toml", "controller.officer"),
        "controller.toml", "[controller]", ("protection officer", "Art 52"),
    ),
    (
        "a controller without a contact",
        _sub("controller.toml", 'phone = "400-000-0000"\nemail = "privacy@example.com"\n', ""),
        "controller.toml", "[controller]", ("phone or an email",),
    ),
    (
        "an inline notice beside notices.toml",
        _sub("purposes.toml", "[purposes.community_events.fields]",
             '[purposes.community_events.notice]\nzh = "旧"\nen = "old"\n'
             "[purposes.community_events.fields]"),
        "purposes.toml", "[purposes.community_events.notice]", ("inline",),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "edit", "file", "line_text", "words"), BROKEN, ids=[row[0] for row in BROKEN]
)
def test_policy_check_refuses_a_notice_the_law_would_not_accept(
    tmp_path: Path,
    case: str,
    edit: Callable[[Path], None],
    file: str,
    line_text: str,
    words: tuple[str, ...],
) -> None:
    """Each broken pack is refused with the file, the line and what is missing or wrong."""
    folder = _copy_pack(tmp_path)
    edit(folder)
    with pytest.raises(PolicyError) as caught:
        load_policy(folder)
    error = caught.value
    assert error.file == str(folder / file), case
    assert error.line is not None
    line = (folder / file).read_text(encoding="utf-8").splitlines()[error.line - 1]
    assert line.startswith(line_text), (case, line)
    for word in words:
        assert word in str(error), (case, str(error))
    result = _run("policy", "check", str(folder))
    assert result.exit_code == 5
    assert f"{file}:{error.line}:" in result.stderr


# --------------------------------------------------------------------------- shipped pack


def test_every_shipped_purpose_has_a_notice_that_matches_it() -> None:
    """The default pack gives every purpose a notice in both languages with every element the
    law asks for, its retention and categories, and states the sensitive data's necessity."""
    policy = load_policy()
    assert policy.controller is not None and policy.controller.officer is not None
    for pid, spec in policy.purposes.items():
        notice = policy.notice(pid)
        assert (spec.notice_version, spec.notice_hash) == (notice.version, notice.sha256)
        assert notice.retention == spec.retention
        assert {rt for rt, names in spec.fields.items() if names} <= set(notice.categories)
        for lang in ("zh", "en"):
            elements = notice.elements(lang)  # type: ignore[arg-type]
            for key in ("controller", "purposes", "methods", "categories", "retention", "rights"):
                assert elements.get(key), (pid, lang, key)
        sensitive = any(
            RECORD_TYPES[rt].field_specs()[f].classification is Classification.SENSITIVE
            for rt, names in spec.fields.items()
            for f in names
        )
        if sensitive:
            assert notice.zh["sensitive"] and notice.en["sensitive"], pid
        if spec.legal_basis is LegalBasis.CONSENT:
            assert notice.zh["withdrawal"] and notice.en["withdrawal"], pid
        assert notice.sha256 == notice_hash(
            notice.purposes, notice.retention, notice.categories, notice.zh, notice.en
        )
    assert "证件号码" in policy.notice("owner_registration").zh["sensitive"]
    assert "银行账号" in policy.notice("fee_collection").zh["sensitive"]
    assert "bank account" in policy.notice("fee_collection").en["sensitive"]
    assert _run("policy", "check").exit_code == 0


def test_a_pack_without_notices_loads_but_policy_check_refuses_it(tmp_path: Path) -> None:
    """A pack from before controller.toml and notices.toml loads (its consent notices inline)
    so that vaults keep opening, but ``policy check`` names what is missing."""
    folder = tmp_path / "old"
    folder.mkdir()
    for name in ("purposes.toml", "roles.toml", "rules.toml"):
        shutil.copy(default_policy_dir() / name, folder / name)
    _sub(
        "purposes.toml",
        "[purposes.community_events.fields]",
        '[purposes.community_events.notice]\nzh = "社区活动"\nen = "Community events"\n'
        "[purposes.community_events.fields]",
    )(folder)
    policy = load_policy(folder)
    events = policy.notice("community_events")
    assert events.inline and re.fullmatch(r"n[0-9a-f]{16}", events.version)
    assert policy.controller is None
    with pytest.raises(PolicyError, match="no notice"):
        policy.notice("fee_collection")
    result = _run("policy", "check", str(folder))
    assert result.exit_code == 5 and "controller.toml" in result.stderr
    shutil.copy(default_policy_dir() / "controller.toml", folder / "controller.toml")
    result = _run("policy", "check", str(folder))
    assert (
        result.exit_code == 5 and "notices.toml" in result.stderr and "no notice" in result.stderr
    )


# --------------------------------------------------------------------------- CLI and register


def test_cli_policy_notice_prints_the_notice_in_one_or_both_languages() -> None:
    """``policy notice`` prints every element's heading and text, the version and the hash."""
    notice = load_policy().notice("fee_collection")
    zh = _run("policy", "notice", "fee_collection", "--lang", "zh")
    assert zh.exit_code == 0, zh.output
    assert "物业费收缴" in zh.stdout and "Fee collection" not in zh.stdout
    for key in ("controller", "purposes", "methods", "categories", "retention", "rights"):
        assert ELEMENTS[key][0] in zh.stdout and notice.zh[key] in zh.stdout
    assert f"sha256 {notice.sha256}" in zh.stdout
    both = _run("policy", "notice", "fee_collection")
    assert "Fee collection" in both.stdout and "物业费收缴" in both.stdout
    as_json = json.loads(_run("policy", "notice", "fee_collection", "--format", "json").stdout)
    assert (as_json["version"], as_json["sha256"]) == (notice.version, notice.sha256)
    unknown = _run("policy", "notice", "no_such_purpose")
    assert unknown.exit_code == 2 and "no purpose" in unknown.output


def test_processing_register_names_controller_officer_notices_and_measures() -> None:
    """The record of processing activities has the controller, the officer, each purpose's
    notice version and hash, the security measures, its recipients, cross-border transfers and
    whether it needs an impact assessment; the markdown says the same."""
    policy = load_policy()
    record = processing_record(policy)
    assert record["controller"]["name_en"] == "Example Property Services Co., Ltd."
    assert record["officer"]["email"] == "dpo@example.com"
    assert {m["id"] for m in record["security_measures"]} >= {
        "field_encryption",
        "blind_indexes",
        "audit_log",
        "access_control",
    }
    for item in record["purposes"]:
        assert {"recipients", "cross_border", "assessment"} <= item.keys()
        assert item["cross_border"] is (
            item["purpose"] in policy.purposes and policy.purposes[item["purpose"]].cross_border
        )
        if item["prohibited"]:
            continue
        spec = policy.purposes[item["purpose"]]
        assert item["notice"] == {
            "id": spec.notice_id,
            "version": spec.notice_version,
            "sha256": spec.notice_hash,
        }
    as_json = json.loads(_run("policy", "ropa", "--format", "json").stdout)
    assert as_json == json.loads(json.dumps(record, ensure_ascii=False))
    markdown = _run("policy", "ropa").stdout
    assert "## Personal information protection officer" in markdown
    assert "## Security measures" in markdown
    fees = policy.purposes["fee_collection"]
    row = next(line for line in markdown.splitlines() if line.startswith("| fee_collection ("))
    assert f"fee_collection v{fees.notice_version} (sha256 {fees.notice_hash[:16]})" in row
    assert "required: sensitive" in row
    repairs = next(line for line in markdown.splitlines() if line.startswith("| repair_dispatch ("))
    assert "repair_contractor (entrusted_processor)" in repairs
    assert "## Cross-border transfers" in markdown
    assert record["cross_border_transfers"] == []


# --------------------------------------------------------------------------- consents


def _owner(subject_id: str) -> OwnerProfile:
    return OwnerProfile(
        subject_id=subject_id,
        name="张伟",
        phone="13800138000",
        id_type="resident_id",
        id_number="110101198003070025",
        email=f"{subject_id}@example.com",
        birth_date=_dt.date(1980, 3, 7),
    )


def _grant(vault: ov.Vault, subject_id: str, **kw: Any) -> ConsentRecord:
    with vault.session(CLERK, "consent_management") as s:
        record: ConsentRecord = s.grant_consent(
            subject_id, "community_events", channel="paper", evidence=EVIDENCE, **kw
        )
        return record


def _reads_email(vault: ov.Vault, subject_id: str) -> str:
    """The decision's reason for reading the subject's profile for community events."""
    return str(vault.explain(CLERK, "community_events", "owner_profile", subject_id)["reason"])


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return _copy_pack(tmp_path)


def _reopen(vault: ov.Vault, location: Path | str, key: InMemoryKey, folder: Path) -> ov.Vault:
    clock = FrozenClock()
    vault.close()
    return ov.Vault.open(location, key=key, policy=folder, clock=clock)


def _rewrite_events_notice(folder: Path, old: str, new: str, version: int) -> str:
    """Change the community_events notice (text and/or version) and record its new hash."""
    path = folder / "notices.toml"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("[notices.community_events]\n", 1)
    body, tail = rest.split("[notices.owner_rights]\n", 1)
    body = body.replace(old, new, 1)
    body = re.sub(r"version = \d+", f"version = {version}", body, count=1)
    path.write_text(
        head + "[notices.community_events]\n" + body + "[notices.owner_rights]\n" + tail
    )
    try:
        load_policy(folder)
    except PolicyError as exc:
        digest = re.search(r'sha256 = "([0-9a-f]{64})"', str(exc))
        assert digest is not None, str(exc)
        body = re.sub(r'sha256 = "[0-9a-f]{64}"', f'sha256 = "{digest.group(1)}"', body, count=1)
        path.write_text(
            head + "[notices.community_events]\n" + body + "[notices.owner_rights]\n" + tail
        )
    return load_policy(folder).notice("community_events").sha256


def test_grant_and_its_audit_entry_carry_the_notice_version_and_hash(
    vault: ov.Vault,
) -> None:
    """A grant records the version and SHA-256 of the notice shown; the ledger reads them back
    and the consent.grant audit entry names both (and no personal value)."""
    with vault.session(CLERK, "owner_registration") as s:
        s.put(_owner("owner-1"))
    notice = vault.notice("community_events")
    record = _grant(vault, "owner-1")
    assert (record.notice_version, record.notice_hash) == (notice.version, notice.sha256)
    with vault.session(CLERK, "consent_management") as s:
        assert s.consents("owner-1") == [record]
    (entry,) = [e for e in vault.audit.entries() if e["action"] == "consent.grant"]
    assert entry["detail"]["notice_version"] == notice.version
    assert entry["detail"]["notice_hash"] == notice.sha256
    assert "owner-1" not in json.dumps(list(vault.audit.entries()), ensure_ascii=False)
    with vault.session(CLERK, "consent_management") as s:
        s.withdraw_consent("owner-1", "community_events", channel="app")
    withdrawal = [e for e in vault.audit.entries() if e["action"] == "consent.withdraw"][-1]
    assert "notice_hash" not in withdrawal["detail"]
    assert vault.check(deep=True).ok


def test_a_grant_on_another_notice_version_carries_no_hash_and_is_not_live(
    vault: ov.Vault,
) -> None:
    """Only the notice in force has a known hash: a grant said to be given on another version
    records none, and asks for re-consent."""
    with vault.session(CLERK, "owner_registration") as s:
        s.put(_owner("owner-1"))
    record = _grant(vault, "owner-1", notice_version="0")
    assert (record.notice_version, record.notice_hash) == ("0", None)
    assert _reads_email(vault, "owner-1") == "consent_reconsent_required"


# (case, how the notice changes, version after, consent still live?). Consents are keyed on
# the notice's hash: what owners were told, not the number on it.
EVENTS_OLD, EVENTS_NEW = "邀请您参加社区活动", "邀请您参加社区活动和志愿服务"
RECONSENT: list[tuple[str, tuple[str, str] | None, int, bool]] = [
    ("unchanged", None, 1, True),
    ("renumbered, same text", ("", ""), 2, True),
    ("text changed, version raised", (EVENTS_OLD, EVENTS_NEW), 2, False),
    ("text changed, version kept", (EVENTS_OLD, EVENTS_NEW), 1, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "change", "version", "live"), RECONSENT, ids=[r[0] for r in RECONSENT]
)
def test_reconsent_is_keyed_on_the_notice_hash(
    vault: ov.Vault,
    vault_location: Path | str,
    root_key: InMemoryKey,
    pack: Path,
    case: str,
    change: tuple[str, str] | None,
    version: int,
    live: bool,
) -> None:
    """A consent stays live while the notice's content is the one it was given on."""
    with vault.session(CLERK, "owner_registration") as s:
        s.put(_owner("owner-1"))
    granted = _grant(vault, "owner-1")
    assert _reads_email(vault, "owner-1") == "allowed"
    if change is not None:
        _rewrite_events_notice(pack, *change, version)
    reopened = _reopen(vault, vault_location, root_key, pack)
    try:
        expected = "allowed" if live else "consent_reconsent_required"
        assert _reads_email(reopened, "owner-1") == expected, case
        assert reopened.notice("community_events").version == str(version)
        # The owner's copy of their data says the same, and which notice they consented on.
        dpo = Actor("dpo-01", roles=["compliance_officer"])
        with reopened.session(dpo, "subject_access_request") as s:
            copy = s.export_subject("owner-1", verify_identity=lambda _subject: True)
        (events,) = [p for p in copy.purposes if p.purpose == "community_events"]
        assert events.consent_status == ("live" if live else "reconsent_required"), case
        assert copy.consents[0].notice_hash == granted.notice_hash
    finally:
        reopened.close()


def _record(version: str | None, digest: str | None) -> ConsentRecord:
    return ConsentRecord(
        consent_id="cns_1",
        subject="sub_1",
        purpose="community_events",
        event="grant",
        at="2026-01-01T08:00:00Z",
        actor="clerk-01",
        channel="paper",
        evidence=EVIDENCE,
        notice_version=version,
        fields=tuple(sorted(EVENTS_FIELDS)),
        notice_hash=digest,
    )


H1, H2 = "1" * 64, "2" * 64
LEGACY = "n300627028626c7dd"

# (case, grant's version and hash, notice now in force (version, hash), status). A grant from
# before grants carried a hash is compared on its version, itself a content hash of the inline
# notice: live while that text is in force, re-consent once the pack moves to notices.toml.
UPGRADE: list[tuple[str, tuple[str | None, str | None], tuple[str, str], ConsentStatus]] = [
    ("same hash", ("1", H1), ("1", H1), ConsentStatus.LIVE),
    ("same hash, renumbered", ("1", H1), ("2", H1), ConsentStatus.LIVE),
    ("other hash, same number", ("1", H1), ("1", H2), ConsentStatus.RECONSENT_REQUIRED),
    ("legacy grant, inline notice unchanged", (LEGACY, None), (LEGACY, H1), ConsentStatus.LIVE),
    ("legacy grant, inline notice changed", (LEGACY, None), ("n" + "0" * 16, H1),
     ConsentStatus.RECONSENT_REQUIRED),
    ("legacy grant, notice moved to notices.toml", (LEGACY, None), ("1", H1),
     ConsentStatus.RECONSENT_REQUIRED),
    ("grant without any notice", (None, None), ("1", H1), ConsentStatus.RECONSENT_REQUIRED),
]  # fmt: skip


@pytest.mark.parametrize(("case", "grant", "now", "status"), UPGRADE, ids=[r[0] for r in UPGRADE])
def test_consent_state_compares_notices_by_hash_and_legacy_grants_by_version(
    case: str,
    grant: tuple[str | None, str | None],
    now: tuple[str, str],
    status: ConsentStatus,
) -> None:
    """Replaying the ledger keys re-consent on the notice hash; old grants replay as before."""
    state = consent_state(
        [_record(*grant)],
        at=T0,
        notice_version=now[0],
        notice_hash=now[1],
        fields=EVENTS_FIELDS,
    )
    assert state.status is status, case


def test_legacy_grant_stays_live_under_the_unchanged_inline_notice(
    tmp_path: Path, root_key: InMemoryKey
) -> None:
    """A vault whose pack still has the inline consent notice keeps a grant given on it live
    (the grant's ``n...`` version is that notice's content hash)."""
    folder = tmp_path / "inline"
    folder.mkdir()
    for name in ("purposes.toml", "roles.toml", "rules.toml"):
        shutil.copy(default_policy_dir() / name, folder / name)
    _sub(
        "purposes.toml",
        "[purposes.community_events.fields]",
        '[purposes.community_events.notice]\nzh = "社区活动邀请"\nen = "Community events"\n'
        "[purposes.community_events.fields]",
    )(folder)
    location = tmp_path / "vault"
    vault = ov.Vault.create(location, key=root_key, policy=folder, clock=FrozenClock())
    try:
        grant_roles(vault, CLERK)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as s:
            s.put(_owner("owner-1"))
        record = _grant(vault, "owner-1")
        notice = vault.notice("community_events")
        assert record.notice_version == notice.version and notice.inline
        assert _reads_email(vault, "owner-1") == "allowed"
    finally:
        vault.close()
    moved = ov.Vault.open(location, key=root_key, clock=FrozenClock())
    try:
        assert _reads_email(moved, "owner-1") == "consent_reconsent_required"
    finally:
        moved.close()


@pytest.mark.parametrize(
    ("duration", "lang", "parts"),
    [
        ("P5Y", "zh", ("5年",)),
        ("P1Y", "en", ("1 year",)),
        ("P30D", "en", ("30 days",)),
        ("P1Y6M", "zh", ("1年", "6个月")),
    ],
)
def test_retention_is_stated_as_owners_read_it(
    duration: str, lang: str, parts: tuple[str, ...]
) -> None:
    """The period a notice's retention text must state, in its language."""
    assert duration_text(duration, lang) == parts  # type: ignore[arg-type]


# The consent notice of the default pack before notices.toml: the version-1 vault's grants
# were given on it (version n300627028626c7dd).
OLD_EVENTS_NOTICE = {
    "zh": "我们将使用您的姓名、手机号码和电子邮箱向您发送社区活动邀请。"
    "此项为可选，拒绝不影响物业服务；您可随时撤回同意。",
    "en": "We use your name, mobile number and email to invite you to community events. This is "
    "optional: refusing does not affect property services, and you can withdraw at any time.",
}


@pytest.mark.embedded_only("the committed version-1 vault")
def test_an_upgraded_vault_replays_its_old_grants(tmp_path: Path) -> None:
    """A vault from before notice hashes is upgraded to schema 4 and checks clean; its grants
    (no hash, an ``n...`` version) stay live under the unchanged inline notice and ask for
    re-consent once the pack's notice moved to notices.toml with new content."""
    from ownervault import KeyFileKey

    fixtures = Path(__file__).parent / "fixtures" / "vault-v1"
    path = tmp_path / "v1"
    shutil.copytree(fixtures / "vault", path)
    key = KeyFileKey(fixtures / "root.key")
    old_pack = tmp_path / "old-pack"
    old_pack.mkdir()
    for name in ("purposes.toml", "roles.toml", "rules.toml"):
        shutil.copy(default_policy_dir() / name, old_pack / name)
    zh, en = (json.dumps(OLD_EVENTS_NOTICE[lang], ensure_ascii=False) for lang in ("zh", "en"))
    _sub(
        "purposes.toml",
        "[purposes.community_events.fields]",
        f"[purposes.community_events.notice]\nzh = {zh}\nen = {en}\n"
        "[purposes.community_events.fields]",
    )(old_pack)
    assert load_policy(old_pack).notice("community_events").version == "n300627028626c7dd"

    def replay(vault: ov.Vault) -> ConsentStatus:
        grant_roles(vault, CLERK)
        with vault.session(CLERK, "consent_management") as s:
            records = s.consents("fx-owner-2")
        assert [(r.notice_version, r.notice_hash) for r in records] == [("n300627028626c7dd", None)]
        spec = vault.policy.purposes["community_events"]
        state = consent_state(
            records,
            at=_dt.datetime.now(_dt.UTC),
            notice_version=spec.notice_version,
            notice_hash=spec.notice_hash,
            fields=spec.field_names,
        )
        assert vault.check(deep=True).ok
        return state.status

    with ov.Vault.open(path, key=key, policy=old_pack) as vault:
        assert replay(vault) is ConsentStatus.LIVE
    with ov.Vault.open(path, key=key) as vault:
        assert replay(vault) is ConsentStatus.RECONSENT_REQUIRED
