"""More owners' rights: explanations of the processing rules (PIPL Art 48, GDPR Art 15(1)(h)/22),
objections by legal basis (PIPL Art 44, GDPR Art 21), a deceased owner's close relatives and the
owner's arrangement (PIPL Art 49), and breach notices that neither a restriction nor an objection
can stop (PIPL Art 57, GDPR Art 34); the ``ownervault subject`` commands for them.

The vaults here use the shipped pack plus two purposes the shipped pack lacks, one on
``public_interest`` and one on ``already_public``, and the incident contacts a notice needs.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    ConsentRequiredError,
    PolicyDeniedError,
    ValidationError,
)
from ownervault.kernel.limits import parse_limits
from ownervault.keys import KeyFileKey
from ownervault.notifiers import Notification
from ownervault.policy import NEVER_BLOCKED_PURPOSES, RIGHTS_PURPOSES, default_policy_dir
from ownervault.records import OwnerProfile, Unit
from ownervault.rights import KIN_RELATIONS, NEXT_OF_KIN_ACTIONS, REQUEST_KINDS, render_export_html
from ownervault.rights.explanation import render_explanation_text
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
GUARD = ov.Actor("guard-01", roles=["security"])
MANAGER = ov.Actor("manager-01", roles=["manager"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])
ADMIN = ov.Actor("admin-01", roles=["admin"])
ACTORS = (CLERK, GUARD, MANAGER, DPO, ADMIN)


def digest(text: str) -> str:
    """A SHA-256 hex digest standing for a document kept outside the vault."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


GROUNDS = digest("owner's signed letter objecting to the processing")
DECISION = digest("compliance officer's written assessment of compelling grounds")
PROOF = digest("death certificate and household register page")
ARRANGED = digest("owner's signed arrangement for their data after death")

EXTRA_PURPOSES = """

[purposes.community_safety]
title = { zh = "社区安全公告", en = "Community safety notices" }
description = "Telling residents about public-health and safety measures in the community."
legal_basis = "public_interest"
retention = "P1Y"
[purposes.community_safety.fields]
owner_profile = ["name", "phone", "status"]

[purposes.published_directory]
title = { zh = "业主委员会公示名录", en = "Published committee directory" }
description = "Owners' committee members' names as the owners published them."
legal_basis = "already_public"
retention = "P1Y"
[purposes.published_directory.fields]
owner_profile = ["name", "status"]
"""

EXTRA_RULES = """

[[rules]]
id = "front-desk.safety.profile"
roles = ["front_desk"]
purpose = "community_safety"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "masked:name"
phone = "full"
status = "full"

[[rules]]
id = "front-desk.directory.profile"
roles = ["front_desk"]
purpose = "published_directory"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "full"
status = "full"
"""

CONTACTS = """
[controller]
name_zh = "阳光物业服务有限公司"
name_en = "Sunshine Property Services"

[dpo]
name = "个人信息保护办公室"
phone = "400-000-0000"
email = "privacy@sunshine-property.example"

"""


def write_pack(folder: Path) -> Path:
    """The shipped pack, two more purposes for front desk, and incident contacts."""
    folder.mkdir(parents=True, exist_ok=True)
    source = default_policy_dir()
    for name in ("detectors.toml",):
        (folder / name).write_text((source / name).read_text(encoding="utf-8"))
    purposes = (source / "purposes.toml").read_text(encoding="utf-8")
    # No notices.toml here: the consent purpose carries its notice inline, as packs from
    # before notices.toml do.
    purposes = purposes.replace(
        "[purposes.community_events.fields]",
        '[purposes.community_events.notice]\nzh = "社区活动邀请"\nen = "Event invitations"\n'
        "[purposes.community_events.fields]",
    )
    (folder / "purposes.toml").write_text(purposes + EXTRA_PURPOSES, encoding="utf-8")
    rules = (source / "rules.toml").read_text(encoding="utf-8")
    (folder / "rules.toml").write_text(rules + EXTRA_RULES, encoding="utf-8")
    roles = (source / "roles.toml").read_text(encoding="utf-8")
    # Front desk also acts for the two extra purposes: added at the end of its list.
    start = roles.index("purposes = [", roles.index("[roles.front_desk]"))
    end = roles.index("\n]", start)
    roles = roles[:end] + '\n    "community_safety",\n    "published_directory",' + roles[end:]
    # Property managers may also record objections here (not override them).
    manager = '"emergency_contact", "fee_collection"]'
    assert roles.count(manager) == 1
    roles = roles.replace(manager, '"emergency_contact", "fee_collection", "subject_rights"]')
    (folder / "roles.toml").write_text(roles, encoding="utf-8")
    incident = (source / "incident.toml").read_text(encoding="utf-8")
    start, end = incident.index("[controller]"), incident.index("[deadlines.cac]")
    (folder / "incident.toml").write_text(
        incident[:start] + textwrap.dedent(CONTACTS) + incident[end:], encoding="utf-8"
    )
    return folder


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return write_pack(tmp_path / "pack")


@pytest.fixture
def pvault(tmp_path: Path, pack: Path, clock: FrozenClock) -> Iterator[ov.Vault]:
    """A vault on the extended pack, closed after the test."""
    vault = ov.Vault.create(tmp_path / "vault", key=InMemoryKey(), policy=pack, clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    try:
        yield vault
    finally:
        vault.close()


def register(vault: ov.Vault, owner: OwnerProfile, unit: Unit | None = None) -> str:
    """Store an owner's profile (and unit) as the front desk; the profile's record id."""
    with vault.session(CLERK, "owner_registration") as s:
        rid = s.put(owner)
        if unit is not None:
            s.put(unit)
    return rid


def consent(vault: ov.Vault, subject_id: str, purpose: str = "community_events") -> None:
    with vault.session(CLERK, "consent_management") as s:
        s.grant_consent(subject_id, purpose, channel="app", evidence=digest("consent form"))


def read_reason(vault: ov.Vault, actor: ov.Actor, purpose: str, rid: str) -> str:
    """``allowed`` when ``actor`` may read the profile for ``purpose``, else why not."""
    with vault.session(actor, purpose) as s:
        try:
            s.get(OwnerProfile, rid)
        except (PolicyDeniedError, ConsentRequiredError) as exc:
            return str(exc.reason)
    return "allowed"


def personal_values(owner: OwnerProfile) -> list[str]:
    return [
        str(v)
        for v in (owner.name, owner.phone, owner.email, owner.id_number)
        if v is not None and len(str(v)) > 3
    ]


# --------------------------------------------------------------------------- objections

#: (purpose, its legal basis, who reads it, effect of the objection, the read afterwards)
OBJECTION_CASES = [
    # PIPL Art 15 / GDPR Art 7(3), 21(3): on consent an objection is a withdrawal.
    ("community_events", "consent", CLERK, "withdrawn", "consent_withdrawn"),
    # PIPL Art 13(1)(5) / GDPR Art 21(1): public interest stops unless compelling grounds.
    ("community_safety", "public_interest", CLERK, "objected", "objected"),
    # PIPL Art 13(1)(6), 27: already-public data, the owner refuses explicitly.
    ("published_directory", "already_public", CLERK, "objected", "objected"),
    # PIPL Art 13(1)(2) / GDPR Art 6(1)(b): necessary for the contract, answered, continues.
    ("owner_registration", "contract", CLERK, "answered", "allowed"),
    # PIPL Art 13(1)(3) / GDPR Art 6(1)(c): a legal obligation continues.
    ("renovation_approval", "legal_obligation", MANAGER, "answered", "allowed"),
    # PIPL Art 13(1)(4) / GDPR Art 6(1)(d): vital interests continue.
    ("emergency_contact", "vital_interest", GUARD, "answered", "allowed"),
]


@pytest.mark.parametrize(
    ("purpose", "basis", "reader", "effect", "after"),
    OBJECTION_CASES,
    ids=[c[0] for c in OBJECTION_CASES],
)
def test_objection_by_legal_basis(
    pvault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    purpose: str,
    basis: str,
    reader: ov.Actor,
    effect: str,
    after: str,
) -> None:
    owner = make_owner()
    rid = register(pvault, owner)
    consent(pvault, owner.subject_id)
    assert read_reason(pvault, reader, purpose, rid) == "allowed"
    with pvault.session(DPO, "subject_rights") as s:
        result = s.object_to(owner.subject_id, purpose, grounds=GROUNDS)
    assert (result.legal_basis, result.effect) == (basis, effect)
    assert result.request.kind == "objection" and result.request.status == "completed"
    assert result.request.outcome == result.response
    if effect == "answered":
        assert "continues" in result.response and "necessary" in result.response
    assert read_reason(pvault, reader, purpose, rid) == after
    # Recorded: who, when, which purpose, the grounds' digest; never the objection's text.
    entry = [e for e in pvault.audit.entries() if e["action"] == "subject.object"][-1]
    assert entry["actor"] == DPO.actor_id and entry["time"]
    assert entry["detail"]["objected_purpose"] == purpose
    assert entry["detail"]["grounds"] == GROUNDS
    assert entry["detail"]["request_id"] == result.request.request_id
    # The owner's other processing goes on: registration is never caught by the objection.
    if purpose != "owner_registration":
        assert read_reason(pvault, CLERK, "owner_registration", rid) == "allowed"
    # The subject row, the consent ledger and the log still agree.
    assert pvault.check(deep=True).ok


def test_objection_withdrawal_is_in_the_consent_ledger(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    owner = make_owner()
    register(pvault, owner)
    consent(pvault, owner.subject_id)
    with pvault.session(DPO, "subject_rights") as s:
        result = s.object_to(owner.subject_id, "community_events", grounds=GROUNDS, channel="app")
    with pvault.session(CLERK, "consent_management") as s:
        ledger = s.consents(owner.subject_id)
    assert [(r.event, r.evidence) for r in ledger][-1] == ("withdraw", GROUNDS)
    assert ledger[-1].consent_id == result.consent_id
    # The owner may consent again later; the objection does not stand in the way.
    consent(pvault, owner.subject_id)
    rid = pvault._kernel.backend.records_of_subject(ledger[-1].subject)[0].record_id
    assert read_reason(pvault, CLERK, "community_events", rid) == "allowed"


def test_compelling_grounds_override_and_a_new_objection(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    owner = make_owner()
    rid = register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s:
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
        with pytest.raises(ValidationError, match="no upheld objection"):
            s.override_objection(owner.subject_id, "community_events", grounds=DECISION)
        s.override_objection(owner.subject_id, "community_safety", grounds=DECISION)
    assert read_reason(pvault, CLERK, "community_safety", rid) == "allowed"
    entry = [e for e in pvault.audit.entries() if e["action"] == "subject.override"][-1]
    assert entry["detail"]["grounds"] == DECISION and entry["actor"] == DPO.actor_id
    with pvault.session(DPO, "subject_rights") as s:
        explained = s.explain_processing(owner.subject_id)
    assert explained.objections == {"community_safety": "overridden"}
    # A new objection refuses the purpose again until a new decision.
    with pvault.session(DPO, "subject_rights") as s:
        again = s.object_to(owner.subject_id, "community_safety", grounds=digest("second"))
    assert again.effect == "objected"
    assert read_reason(pvault, CLERK, "community_safety", rid) == "objected"


def test_only_the_pack_s_roles_override_and_objections_to_owner_serving_purposes_refused(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    owner = make_owner()
    register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s:
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
        for purpose in sorted(NEVER_BLOCKED_PURPOSES):
            with pytest.raises(ValidationError, match="serves the owner"):
                s.object_to(owner.subject_id, purpose, grounds=GROUNDS)
        with pytest.raises(ValidationError, match="SHA-256"):
            s.object_to(owner.subject_id, "community_safety", grounds="I just do not like it")
        with pytest.raises(ValidationError, match="unknown purpose"):
            s.object_to(owner.subject_id, "no_such_purpose", grounds=GROUNDS)
    with pvault.session(CLERK, "owner_registration") as s, pytest.raises(PolicyDeniedError):
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
    # Overriding is the admin action objection.override: a manager who may record objections
    # in this pack is refused, and the refusal is audited.
    with (
        pvault.session(MANAGER, "subject_rights") as s,
        pytest.raises(PolicyDeniedError) as caught,
    ):
        s.override_objection(owner.subject_id, "community_safety", grounds=DECISION)
    assert caught.value.reason == "role_not_permitted"
    refusal = [e for e in pvault.audit.entries() if e["action"] == "objection.override"][-1]
    assert (refusal["decision"], refusal["actor"]) == ("deny", MANAGER.actor_id)
    assert not [e for e in pvault.audit.entries() if e["action"] == "subject.override"]


def test_restriction_and_objection_live_together(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A restriction keeps an objection (and the reverse); lifting one leaves the other."""
    owner = make_owner()
    rid = register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s:
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
        s.restrict(owner.subject_id, ["owner_registration", "community_safety"])
    assert read_reason(pvault, CLERK, "community_safety", rid) == "objected"
    assert read_reason(pvault, CLERK, "published_directory", rid) == "restricted"
    with pvault.session(DPO, "subject_rights") as s:
        s.restrict(owner.subject_id, None)
    assert read_reason(pvault, CLERK, "published_directory", rid) == "allowed"
    assert read_reason(pvault, CLERK, "community_safety", rid) == "objected"
    # The export still shows the restriction as a list of purposes (here: none).
    with pvault.session(DPO, "subject_access_request") as s:
        export = s.export_subject(owner.subject_id, verify_identity=lambda _s: True)
    assert export.restricted_to is None


def test_deep_check_sees_an_objection_rolled_back(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    owner = make_owner()
    register(pvault, owner)
    backend = pvault._kernel.backend
    with pvault.session(DPO, "subject_rights") as s:
        s.restrict(owner.subject_id, ["owner_registration"])
    pseudonym = backend.scan_subjects("", 10)[0].pseudonym
    before = backend.subject(pseudonym)
    with pvault.session(DPO, "subject_rights") as s:
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
    assert pvault.check(deep=True).ok
    # Put back the older, validly tagged row: the objection vanishes, the log still has it.
    assert before is not None
    with backend.atomic():
        backend.update_subjects([before])
    report = pvault.check(deep=True)
    assert not report.ok
    assert any("objections" in f.problem for f in report.findings)


# --------------------------------------------------------------------------- next of kin

#: (owner's arrangement, proof, relation, action) -> outcome (PIPL Art 49)
KIN_CASES = [
    # No arrangement: close relatives may access, copy, correct and delete.
    (None, PROOF, "child", "copy", "done"),
    (None, PROOF, "spouse", "correction", "done"),
    (None, PROOF, "parent", "erasure", "done"),
    # The owner refused every next-of-kin request in their lifetime: refused at once.
    ((), PROOF, "child", "open", "refused"),
    # The owner allowed access and copies only.
    (("access", "copy"), PROOF, "sibling", "access", "done"),
    (("access", "copy"), PROOF, "sibling", "erasure", "deceased_arrangement"),
    (("access", "copy"), PROOF, "sibling", "correction", "deceased_arrangement"),
    (("correction",), PROOF, "grandchild", "correction", "done"),
    # No proof (a digest of the certificate and the relationship) or no close relation.
    (None, "a photo of the certificate", "child", "open", "invalid"),
    (None, PROOF, "friend", "open", "invalid"),
]

#: Requester ids the vault refuses to audit: they look personal, or are not an id.
BAD_REQUESTERS = ["13800138000", "110101198504151229", "kin@example.com", "张三", ""]


@pytest.mark.parametrize(
    ("arrangement", "proof", "relation", "action", "outcome"),
    KIN_CASES,
    ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in KIN_CASES],
)
def test_next_of_kin(
    pvault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    arrangement: tuple[str, ...] | None,
    proof: str,
    relation: str,
    action: str,
    outcome: str,
) -> None:
    owner = make_owner()
    rid = register(pvault, owner)
    if arrangement is not None:
        with pvault.session(DPO, "subject_rights") as s:
            s.record_arrangement(owner.subject_id, arrangement, evidence=ARRANGED)
    with pvault.session(DPO, "subject_rights") as s:
        if outcome == "invalid":
            with pytest.raises(ValidationError):
                s.open_next_of_kin(
                    owner.subject_id, requester="kin-7", relation=relation, proof=proof
                )
            return
        request = s.open_next_of_kin(
            owner.subject_id, requester="kin-7", relation=relation, proof=proof
        )
    assert request.kind == "next_of_kin"
    opened = [e for e in pvault.audit.entries() if e["action"] == "subject.next_of_kin"][-1]
    assert opened["detail"] == {
        "request_id": request.request_id,
        "step": "open",
        "requester": "kin-7",
        "relation": relation,
        "proof": proof,
    }
    if action == "open":
        assert outcome == "refused"
        assert request.status == "refused" and "PIPL Art 49" in request.outcome
        assert opened["decision"] == "deny" and opened["reason"] == "deceased_arrangement"
        return
    assert request.status == "open"
    purpose = {
        "access": "subject_access_request",
        "copy": "subject_access_request",
        "correction": "correction_request",
        "erasure": "erasure_request",
    }[action]

    def run() -> None:
        with pvault.session(DPO, purpose) as s:
            if action in ("access", "copy"):
                document = s.next_of_kin_export(
                    request.request_id,
                    owner.subject_id,
                    verify_identity=lambda _s: True,
                    action="access" if action == "access" else "copy",
                )
                assert document.records[0].fields["name"] == owner.name
            elif action == "correction":
                view = s.get(OwnerProfile, rid)
                s.next_of_kin_correct(request.request_id, view, evidence=proof, status="moved_out")
            else:
                result = s.next_of_kin_erase(request.request_id, owner.subject_id)
                assert result.receipt and request.request_id in result.receipt

    if outcome == "deceased_arrangement":
        with pytest.raises(PolicyDeniedError) as caught:
            run()
        assert caught.value.reason == "deceased_arrangement"
    else:
        run()
    last = [e for e in pvault.audit.entries() if e["action"] == "subject.next_of_kin"][-1]
    assert last["detail"] == {"request_id": request.request_id, "step": action}
    assert last["decision"] == ("allow" if outcome == "done" else "deny")


@pytest.mark.parametrize("requester", BAD_REQUESTERS)
def test_next_of_kin_requester_is_an_application_id(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile], requester: str
) -> None:
    owner = make_owner()
    register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s, pytest.raises(ValidationError):
        s.open_next_of_kin(owner.subject_id, requester=requester, relation="child", proof=PROOF)
    assert not [e for e in pvault.audit.entries() if e["action"] == "subject.next_of_kin"]


def test_next_of_kin_request_must_be_open_and_for_that_owner(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    deceased, other = make_owner(), make_owner()
    register(pvault, deceased)
    register(pvault, other)
    with pvault.session(DPO, "subject_rights") as s:
        with pytest.raises(ValidationError, match="owner's id"):
            s.open_next_of_kin(
                deceased.subject_id, requester=other.subject_id, relation="child", proof=PROOF
            )
        request = s.open_next_of_kin(
            deceased.subject_id, requester="kin-1", relation="child", proof=PROOF
        )
        plain = s.open_request(deceased.subject_id, "access")
    with pvault.session(DPO, "subject_access_request") as s:
        for request_id, subject_id in (
            (request.request_id, other.subject_id),
            (plain.request_id, deceased.subject_id),
            ("req_missing", deceased.subject_id),
        ):
            with pytest.raises(ValidationError, match="no open next-of-kin request"):
                s.next_of_kin_export(request_id, subject_id, verify_identity=lambda _s: True)
    with pvault.session(DPO, "subject_rights") as s:
        s.close_request(request.request_id, status="completed", outcome="copy given")
    with (
        pvault.session(DPO, "subject_access_request") as s,
        pytest.raises(ValidationError, match="no open"),
    ):
        s.next_of_kin_export(
            request.request_id, deceased.subject_id, verify_identity=lambda _s: True
        )


def test_arrangement_values_and_removal(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    owner = make_owner()
    register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s:
        with pytest.raises(ValidationError, match="unknown next-of-kin action"):
            s.record_arrangement(owner.subject_id, ["publish"], evidence=ARRANGED)
        with pytest.raises(ValidationError, match="SHA-256"):
            s.record_arrangement(owner.subject_id, ["access"], evidence="signed")
        made = s.record_arrangement(owner.subject_id, ["copy", "access"], evidence=ARRANGED)
        assert made is not None and made.next_of_kin == ("access", "copy")
        assert s.explain_processing(owner.subject_id).next_of_kin == ["access", "copy"]
        assert s.record_arrangement(owner.subject_id, None, evidence=ARRANGED) is None
        assert s.explain_processing(owner.subject_id).next_of_kin is None
    entry = next(e for e in pvault.audit.entries() if e["action"] == "subject.arrangement")
    assert entry["detail"]["next_of_kin"] == "access,copy"
    assert entry["detail"]["evidence"] == ARRANGED
    assert pvault.check(deep=True).ok


# --------------------------------------------------------------------------- explanation

#: (what happened to the owner, the purpose looked at) -> its status in the explanation
EXPLAIN_CASES = [
    ("nothing", "owner_registration", "allowed"),
    ("nothing", "community_events", "consent_missing"),
    ("consented", "community_events", "allowed"),
    ("restricted", "fee_collection", "restricted"),
    ("objected", "community_safety", "objected"),
    ("restricted", "subject_access_request", "allowed"),
    ("objected", "breach_notification", "allowed"),
]


@pytest.mark.parametrize(("history", "purpose", "status"), EXPLAIN_CASES)
def test_explanation_status(
    pvault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    history: str,
    purpose: str,
    status: str,
) -> None:
    owner = make_owner()
    register(pvault, owner, make_unit(owner.subject_id))
    with pvault.session(DPO, "subject_rights") as s:
        if history == "consented":
            consent(pvault, owner.subject_id)
        elif history == "restricted":
            s.restrict(owner.subject_id, ["owner_registration"])
        elif history == "objected":
            s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
        explained = s.explain_processing(owner.subject_id)
    by_purpose = {p.purpose: p for p in explained.purposes}
    assert by_purpose[purpose].status == status


def test_explanation_contents(
    pvault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
) -> None:
    owner = make_owner()
    register(pvault, owner, make_unit(owner.subject_id))
    consent(pvault, owner.subject_id)
    with pvault.session(DPO, "subject_rights") as s:
        request = s.open_request(owner.subject_id, "explanation")
        explained = s.explain_processing(owner.subject_id, request_id=request.request_id)
    assert explained.format == "ownervault-processing-explanation"
    assert explained.record_types == {"owner_profile": 1, "unit": 1}
    by_purpose = {p.purpose: p for p in explained.purposes}
    registration = by_purpose["owner_registration"]
    assert registration.legal_basis == "contract" and registration.retention == "P5Y"
    assert registration.sources == ["audit_trail", "records"]
    assert registration.audited_accesses >= 2 and registration.last_access
    desk = {a.record_type: a for a in registration.access if a.role == "front_desk"}
    assert desk["owner_profile"].fields["id_number"] == "masked:id_number"
    assert desk["owner_profile"].fields["name"] == "full"
    assert {"read", "create", "update"} <= set(desk["owner_profile"].actions)
    # Purposes that cover their records but never touched them are listed from the records.
    fees = by_purpose["fee_collection"]
    assert fees.sources == ["records"] and fees.audited_accesses == 0
    assert by_purpose["community_events"].consent_status == "live"
    # Nothing personal in the document: it is made without decrypting a field.
    text = json.dumps(explained.model_dump(mode="json"), ensure_ascii=False)
    for value in personal_values(owner):
        assert value not in text
    assert all(not a.significant_effect for a in explained.automated_decisions)
    # Audited, and the explanation request is answered.
    entry = [e for e in pvault.audit.entries() if e["action"] == "subject.explain"][-1]
    assert entry["detail"] == {"request_id": request.request_id, "purposes": len(by_purpose)}
    with pvault.session(DPO, "subject_rights") as s:
        closed = [
            r for r in pvault._kernel.backend.requests() if r.request_id == request.request_id
        ]
        assert closed[0].status == "completed"
        with pytest.raises(ValidationError, match="no open explanation request"):
            s.explain_processing(owner.subject_id, request_id=request.request_id)
    with pvault.session(CLERK, "owner_registration") as s, pytest.raises(PolicyDeniedError):
        s.explain_processing(owner.subject_id)


def test_request_kinds_and_constants() -> None:
    assert {"explanation", "objection", "next_of_kin"} <= set(REQUEST_KINDS)
    assert RIGHTS_PURPOSES | {"breach_notification", "handover"} == NEVER_BLOCKED_PURPOSES
    assert set(NEXT_OF_KIN_ACTIONS) == {"access", "copy", "correction", "erasure"}
    assert "spouse" in KIN_RELATIONS and "friend" not in KIN_RELATIONS
    # An older vault's plain restriction list still reads as a restriction.
    assert parse_limits('["fee_collection"]').blocks("repair_dispatch") == "restricted"
    assert parse_limits(None).blocks("repair_dispatch") is None


# --------------------------------------------------------------------------- breach notices


@pytest.mark.parametrize("limit", ["restricted", "objected"])
def test_restricted_or_objecting_owner_still_gets_the_breach_notice(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile], limit: str
) -> None:
    """PIPL Art 57 / GDPR Art 34: the notice serves the owner; a restriction cannot stop it."""
    owners = [make_owner() for _ in range(2)]
    for owner in owners:
        register(pvault, owner)
    limited = owners[0]
    with pvault.session(DPO, "subject_rights") as s:
        if limit == "restricted":
            s.restrict(limited.subject_id, ["owner_registration"])
        else:
            s.object_to(limited.subject_id, "community_safety", grounds=GROUNDS)
            s.restrict(limited.subject_id, ["owner_registration", "community_safety"])
    incident = pvault.incidents.open(
        kind="leak",
        title="Printed owner list left in the lobby",
        actor=DPO,
        exposure="plaintext",
        subject_ids=[o.subject_id for o in owners],
        cause="A printout was left unattended",
    )
    pvault.incidents.update(incident.incident_id, actor=DPO, measures_taken=["Printout shredded"])
    pvault.incidents.notify(incident.incident_id, actor=DPO)
    seen: list[Notification] = []
    report = pvault.incidents.dispatch(
        actor=DPO, hooks={n: seen.append for n in ("oncall", "regulator", "owner_mail")}
    )
    assert (report.delivered, report.dead, report.pending) == (4, 0, 0)
    phones = {n.recipient.phone for n in seen if n.recipient is not None}
    assert phones == {o.phone for o in owners}
    denied = [
        e
        for e in pvault.audit.entries()
        if e["purpose"] == "breach_notification" and e["decision"] == "deny"
    ]
    assert denied == []


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_vault(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A vault on the shipped pack under a key file with two owners; the CLI runs as the
    compliance officer."""
    key_file, path = tmp_path / "root.key", tmp_path / "vault"
    with ov.Vault.create(path, key=KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        for n in (1, 2):
            register(
                vault, OwnerProfile(subject_id=f"owner-{n}", name="测试业主", phone="13800138000")
            )
    return path, key_file, ["--as", DPO.actor_id, "--key-file", str(key_file)]


def _run(*args: Any, code: int = 0) -> Any:
    result = CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_cli_explain_object_arrangement_next_of_kin(
    cli_vault: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    path, _, opts = cli_vault
    text = _run("subject", "explain", path, "owner-1", *opts).output
    assert "Owner registration" in text and "legal basis: contract" in text
    document = json.loads(
        _run("subject", "explain", path, "owner-1", "--format", "json", *opts).output
    )
    assert document["format"] == "ownervault-processing-explanation"
    letter = tmp_path / "objection.pdf"
    letter.write_bytes(b"%PDF- synthetic objection letter")
    out = _run(
        "subject", "object", path, "owner-1", "community_events", "--grounds-file", letter, *opts
    ).output
    assert "withdrawn (consent)" in out
    out = _run("subject", "object", path, "owner-1", "fee_collection", "--grounds", GROUNDS, *opts)
    assert "answered (contract)" in out.output and "necessary" in out.output
    decision = tmp_path / "decision.pdf"
    decision.write_bytes(b"%PDF- synthetic assessment")
    refused = _run(
        "subject",
        "override-objection",
        path,
        "owner-1",
        "community_events",
        "--grounds-file",
        decision,
        *opts,
        code=1,
    )
    assert "no upheld objection" in refused.output
    _run(
        "subject", "arrangement", path, "owner-2", "--refuse-all", "--evidence-file", letter, *opts
    )
    proof = tmp_path / "proof.pdf"
    proof.write_bytes(b"%PDF- synthetic certificate")
    refused = _run(
        "subject",
        "next-of-kin",
        path,
        "owner-2",
        "--requester",
        "kin-2",
        "--relation",
        "child",
        "--proof-file",
        proof,
        *opts,
        code=1,
    )
    assert "refused" in refused.output
    opened = _run(
        "subject",
        "next-of-kin",
        path,
        "owner-1",
        "--requester",
        "kin-1",
        "--relation",
        "spouse",
        "--proof-file",
        proof,
        *opts,
    ).output
    request_id = opened.split()[1]
    copy = tmp_path / "copy.json"
    _run(
        "subject",
        "kin-export",
        path,
        request_id,
        "owner-1",
        "--out",
        copy,
        "--identity-verified-by",
        "dpo-01, certificate seen",
        *opts,
    )
    assert json.loads(copy.read_text(encoding="utf-8"))["records"]
    erased = _run("subject", "kin-erase", path, request_id, "owner-1", *opts).output
    assert erased.startswith("erased 1 records")


def test_explanation_names_the_controller_officer_notices_and_recipients(
    vault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
) -> None:
    """Under the shipped pack an explanation says who processes the data and whom to ask
    (PIPL Art 17, 50, 52), which notice explains each purpose and who may receive the data."""
    owner = make_owner()
    register(vault, owner, make_unit(owner.subject_id))
    with vault.session(DPO, "subject_rights") as s:
        explained = s.explain_processing(owner.subject_id)
    assert explained.controller is not None and explained.controller["name_en"]
    assert explained.officer is not None and explained.officer["email"]
    by_purpose = {p.purpose: p for p in explained.purposes}
    registration = vault.policy.purposes["owner_registration"]
    assert by_purpose["owner_registration"].notice == {
        "id": registration.notice_id,
        "version": registration.notice_version,
        "sha256": registration.notice_hash,
    }
    assert "repair_contractor" in by_purpose["repair_dispatch"].recipients
    text = render_explanation_text(explained)
    assert explained.controller["name_en"] in text and "may be given to: repair_contractor" in text


def test_the_owner_export_shows_objections_and_the_arrangement(
    pvault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """PIPL Art 45: the owner's copy says what they objected to and what they arranged."""
    owner = make_owner()
    register(pvault, owner)
    with pvault.session(DPO, "subject_rights") as s:
        s.object_to(owner.subject_id, "community_safety", grounds=GROUNDS)
        s.record_arrangement(owner.subject_id, ["access"], evidence=ARRANGED)
    with pvault.session(DPO, "subject_access_request") as s:
        document = s.export_subject(owner.subject_id, verify_identity=lambda _: True)
    assert document.objections == {"community_safety": "objected"}
    assert document.next_of_kin == ["access"]
    page = render_export_html(document)
    assert "objection: community_safety" in page and "Restriction, objections" in page
