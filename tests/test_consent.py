"""Consent: the pure replay rules, enforcement at decrypt time, conditions, explain and the CLI.

Custom policy packs are written into ``tmp_path`` by :func:`write_pack`; the default pack is used
where the shipped purposes (``community_events``, ``owner_registration``...) are the point.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ownervault as ov
from ownervault import crypto
from ownervault.audit import format_time
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    AccessDeniedError,
    ConsentRequiredError,
    PolicyDeniedError,
    RecordNotFoundError,
    ValidationError,
)
from ownervault.policy import Actor, Policy, default_policy_dir, load_policy
from ownervault.policy.consent import ConsentRecord, ConsentStatus, consent_state
from ownervault.records import OwnerProfile, Unit
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

T0 = _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)
EVIDENCE = hashlib.sha256(b"signed consent form, scanned").hexdigest()
FIELDS = frozenset({"owner_profile.name", "owner_profile.phone", "owner_profile.email"})
NOTICE = "n0000000000000001"
OLD_NOTICE = "n0000000000000000"


# --------------------------------------------------------------------------- local fixtures


@pytest.fixture
def decrypts(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every field a data key opened (``FieldKey.decrypt`` of an envelope, ``open_bodies`` of a
    sealed record's bodies), by associated data (a body's without the key id: clear it before
    the operation measured)."""
    calls: list[bytes] = []
    original, original_bodies = crypto.FieldKey.decrypt, crypto.FieldKey.open_bodies

    def counting(self: crypto.FieldKey, envelope: bytes, *, aad: bytes) -> bytes:
        calls.append(aad)
        return original(self, envelope, aad=aad)

    def counting_bodies(
        self: crypto.FieldKey, bodies: Sequence[tuple[bytes, bytes]], *, ident: bytes
    ) -> list[bytes]:
        calls.extend(field_aad for field_aad, _ in bodies)
        return original_bodies(self, bodies, ident=ident)

    monkeypatch.setattr(crypto.FieldKey, "decrypt", counting)
    monkeypatch.setattr(crypto.FieldKey, "open_bodies", counting_bodies)
    return calls


def _owner(subject_id: str, **overrides: Any) -> OwnerProfile:
    values: dict[str, Any] = {
        "subject_id": subject_id,
        "name": "张伟",
        "phone": "13800138000",
        "id_type": "resident_id",
        "id_number": "11010119800307005X",
        "email": f"{subject_id}@example.com",
        "birth_date": _dt.date(1980, 3, 7),
    }
    values.update(overrides)
    return OwnerProfile(**values)


CLERK = Actor("clerk-01", roles=["front_desk"])


def _register(vault: ov.Vault, *records: ov.Record, actor: Actor = CLERK) -> list[str]:
    purpose = "registration" if "registration" in vault.policy.purposes else "owner_registration"
    with vault.session(actor, purpose) as s:
        return s.put_many(list(records))


def _grant(vault: ov.Vault, subject_id: str, purpose: str, actor: Actor, **kw: Any) -> Any:
    manager = "consent_management"
    kw.setdefault("channel", "paper")
    kw.setdefault("evidence", EVIDENCE)
    with vault.session(actor, manager) as s:
        return s.grant_consent(subject_id, purpose, **kw)


def _withdraw(vault: ov.Vault, subject_id: str, purpose: str, actor: Actor) -> Any:
    manager = "consent_management"
    with vault.session(actor, manager) as s:
        return s.withdraw_consent(subject_id, purpose, channel="app")


# --------------------------------------------------------------------------- custom pack

_PURPOSES = """
[purposes.registration]
title = {{ zh = "登记", en = "Registration" }}
legal_basis = "contract"
retention = "P5Y"
contract_necessary = true
[purposes.registration.fields]
owner_profile = ["*"]
unit = ["*"]

[purposes.newsletter]
title = {{ zh = "社区通讯", en = "Newsletter" }}
legal_basis = "consent"
retention = "P1Y"
[purposes.newsletter.notice]
zh = "我们使用您的姓名和手机号码发送社区通讯（{notice}）。"
en = "We use your name and mobile number to send the newsletter ({notice})."
[purposes.newsletter.fields]
owner_profile = ["name", "phone", "status"{extra}]

[purposes.outreach]
title = {{ zh = "健康关怀", en = "Health outreach" }}
legal_basis = "consent"
separate_consent = true
retention = "P1Y"
[purposes.outreach.notice]
zh = "我们使用您的姓名、手机号码和身份证号码提供关怀服务（{notice}）。"
en = "We use your name, mobile number and ID number for outreach ({notice})."
[purposes.outreach.fields]
owner_profile = ["name", "phone", "id_number", "status"{extra}]

[purposes.statutory]
title = {{ zh = "法定报送", en = "Statutory reporting" }}
legal_basis = "legal_obligation"
retention = "P3Y"
contract_necessary = true
[purposes.statutory.fields]
owner_profile = ["name", "phone", "id_number", "status"]

[purposes.rescue]
title = {{ zh = "紧急救援", en = "Rescue" }}
legal_basis = "vital_interest"
retention = "P30D"
[purposes.rescue.fields]
owner_profile = ["name", "phone", "id_number", "status"]

[purposes.area_service]
title = {{ zh = "片区服务", en = "Area service" }}
legal_basis = "contract"
retention = "P1Y"
contract_necessary = true
[purposes.area_service.fields]
owner_profile = ["name", "phone", "status"]

[purposes.office_hours]
title = {{ zh = "工作时间服务", en = "Office hours service" }}
legal_basis = "contract"
retention = "P1Y"
contract_necessary = true
[purposes.office_hours.fields]
owner_profile = ["name", "phone", "status"]

[purposes.consent_management]
title = {{ zh = "同意管理", en = "Consent management" }}
legal_basis = "legal_obligation"
retention = "P3Y"
[purposes.consent_management.fields]

[prohibited.data_sale]
title = {{ zh = "数据出售", en = "Data sale" }}
reason = "Never sold."
"""

_ROLES = """
[roles.clerk]
title = { zh = "客服", en = "Clerk" }
purposes = ["registration", "newsletter", "outreach", "statutory", "rescue", "area_service",
            "office_hours", "consent_management"]

# Who grants the roles above (the vault keeps who holds which): it uses no owner data.
[roles.security_admin]
title = { zh = "安全管理员", en = "Security administrator" }
purposes = []

[roles.compliance_officer]
title = { zh = "个人信息保护负责人", en = "Compliance officer" }
purposes = []

[admin_actions]
"grant.add" = ["security_admin"]
"grant.list" = ["security_admin"]
"assessment.add" = ["compliance_officer"]
"assessment.list" = ["compliance_officer"]
"""

_RULES = """
[[rules]]
id = "reg.profile"
roles = ["clerk"]
purpose = "registration"
record = "owner_profile"
actions = ["read", "create"]
minors = true
write = ["*"]
[rules.fields]
"*" = "full"
id_number = "full"

[[rules]]
id = "reg.unit"
roles = ["clerk"]
purpose = "registration"
record = "unit"
actions = ["read", "create"]
minors = true
write = ["*"]
[rules.fields]
"*" = "full"

[[rules]]
id = "newsletter.profile"
roles = ["clerk"]
purpose = "newsletter"
record = "owner_profile"
actions = ["read"]
minors = {minors}
[rules.fields]
name = "full"
phone = "full"
status = "full"

[[rules]]
id = "outreach.profile"
roles = ["clerk"]
purpose = "outreach"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "full"
phone = "full"
id_number = "full"
status = "full"

[[rules]]
id = "statutory.profile"
roles = ["clerk"]
purpose = "statutory"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "full"
phone = "full"
id_number = "full"
status = "full"

[[rules]]
id = "rescue.profile"
roles = ["clerk"]
purpose = "rescue"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "full"
phone = "full"
id_number = "full"
status = "full"

[[rules]]
id = "area.profile"
roles = ["clerk"]
purpose = "area_service"
record = "owner_profile"
actions = ["read"]
scope = "community"
[rules.fields]
name = "full"
phone = "full"
status = "full"

[[rules]]
id = "hours.profile"
roles = ["clerk"]
purpose = "office_hours"
record = "owner_profile"
actions = ["read"]
hours = "08:00-18:00"
timezone = "Asia/Shanghai"
[rules.fields]
name = "full"
phone = "full"
status = "full"
"""


def write_pack(
    folder: Path, *, notice: str = "v1", extra: Sequence[str] = (), minors: bool = False
) -> Path:
    """Write the custom pack; ``notice`` changes both consent notices, ``extra`` grows their
    field sets, ``minors`` lets the newsletter rule apply to children under 14."""
    folder.mkdir(parents=True, exist_ok=True)
    extra_text = "".join(f', "{name}"' for name in extra)
    (folder / "purposes.toml").write_text(
        _PURPOSES.format(notice=notice, extra=extra_text), encoding="utf-8"
    )
    (folder / "roles.toml").write_text(_ROLES, encoding="utf-8")
    (folder / "rules.toml").write_text(
        _RULES.replace("{minors}", "true" if minors else "false"), encoding="utf-8"
    )
    return folder


def relaxed(policy: Policy) -> Policy:
    """The same pack with no purpose demanding a separate consent (a pack from before the
    demand was added), so that a plain consent can be recorded for any consent purpose."""
    purposes = {pid: attrs.evolve(p, separate_consent=False) for pid, p in policy.purposes.items()}
    return attrs.evolve(policy, purposes=purposes)


STAFF = Actor("clerk-01", roles=["clerk"])
ELSEWHERE = Actor("clerk-02", roles=["clerk"], communities=["锦绣华庭"])
#: The custom pack's staff; every vault under it grants each its role.
CUSTOM_STAFF = (STAFF, ELSEWHERE)


@pytest.fixture
def pack(tmp_path: Path) -> Policy:
    """The custom pack, loaded."""
    return load_policy(write_pack(tmp_path / "pack"))


@pytest.fixture
def custom_vault(
    tmp_path: Path, pack: Policy, root_key: InMemoryKey, clock: FrozenClock
) -> Iterator[ov.Vault]:
    """An empty vault under the custom pack, on the shared frozen clock (2026-01-01 09:00 UTC)."""
    assert clock.now() == T0
    created = ov.Vault.create(tmp_path / "cv", key=root_key, policy=pack, clock=clock)
    grant_roles(created, *CUSTOM_STAFF)
    record_assessments(created)
    try:
        yield created
    finally:
        created.close()


# =========================================================================== consent_state


def _rec(
    event: str = "grant",
    at: _dt.datetime = T0,
    *,
    notice: str | None = NOTICE,
    fields: Sequence[str] = tuple(sorted(FIELDS)),
    separate: bool = False,
    expires: _dt.datetime | None = None,
    n: int = 0,
) -> ConsentRecord:
    return ConsentRecord(
        consent_id=f"cns_{n:04d}",
        subject="sub_x",
        purpose="community_events",
        event=event,  # type: ignore[arg-type]
        at=format_time(at),
        actor="clerk-01",
        channel="paper",
        evidence=EVIDENCE,
        notice_version=notice if event == "grant" else None,
        fields=tuple(fields) if event == "grant" else (),
        separate=separate if event == "grant" else False,
        expires_at=format_time(expires) if expires is not None else None,
    )


H = _dt.timedelta(hours=1)

Row = tuple[str, list[ConsentRecord], _dt.datetime, str, bool, int | None]
STATE_TABLE: list[Row] = [
    # id, records, asked at, status, separate, index of the deciding record
    ("empty-ledger", [], T0, ConsentStatus.MISSING, False, None),
    ("grant-in-future", [_rec(at=T0 + H)], T0, ConsentStatus.MISSING, False, None),
    ("live", [_rec()], T0, ConsentStatus.LIVE, False, 0),
    ("live-separate", [_rec(separate=True)], T0 + H, ConsentStatus.LIVE, True, 0),
    ("live-superset-fields", [_rec(fields=[*FIELDS, "unit.unit_number"])], T0, "live", False, 0),
    ("withdrawn", [_rec(), _rec("withdraw", T0 + H, n=1)], T0 + H, "withdrawn", False, 1),
    ("withdrawal-not-yet", [_rec(), _rec("withdraw", T0 + H, n=1)], T0, "live", False, 0),
    ("regranted", [_rec(), _rec("withdraw", T0 + H, n=1), _rec(at=T0 + 2 * H, n=2)], T0 + 3 * H,
     "live", False, 2),
    ("expired-at-instant", [_rec(expires=T0 + H)], T0 + H, ConsentStatus.EXPIRED, False, 0),
    ("not-yet-expired", [_rec(expires=T0 + H)], T0 + H / 2, ConsentStatus.LIVE, False, 0),
    ("old-notice", [_rec(notice=OLD_NOTICE)], T0, "reconsent_required", False, 0),
    ("fields-grew", [_rec(fields=["owner_profile.name"])], T0, "reconsent_required", False, 0),
    ("expired-beats-old-notice", [_rec(notice=OLD_NOTICE, expires=T0 + H)], T0 + 2 * H,
     "expired", False, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("records", "at", "status", "separate", "index"),
    [pytest.param(*row[1:], id=row[0]) for row in STATE_TABLE],
)
def test_consent_state_table(
    records: list[ConsentRecord],
    at: _dt.datetime,
    status: str,
    separate: bool,
    index: int | None,
) -> None:
    """Each ledger shape replays to its documented status, separate flag and deciding record."""
    state = consent_state(records, at=at, notice_version=NOTICE, fields=FIELDS)
    assert state.status == ConsentStatus(status)
    assert state.live is (state.status is ConsentStatus.LIVE)
    assert state.separate is separate
    assert state.record == (None if index is None else records[index])
    assert state.record_ids == (() if index is None else (records[index].consent_id,))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[ConsentRecord], _dt.datetime]:
    """A ledger of grants and withdrawals at strictly increasing times, and a moment to ask."""
    count = draw(st.integers(0, 8))
    moment = T0
    records: list[ConsentRecord] = []
    interesting = [T0 - _dt.timedelta(seconds=1)]
    for n in range(count):
        moment += _dt.timedelta(seconds=draw(st.integers(1, 3600)))
        interesting.append(moment)
        if draw(st.booleans()):
            records.append(_rec("withdraw", moment, n=n))
            continue
        expires = None
        if draw(st.booleans()):
            expires = moment + _dt.timedelta(seconds=draw(st.integers(1, 7200)))
            interesting.append(expires)
        fields = draw(
            st.sampled_from(
                [sorted(FIELDS), sorted(FIELDS)[:-1], [*sorted(FIELDS), "unit.unit_number"], []]
            )
        )
        records.append(
            _rec(
                "grant",
                moment,
                notice=draw(st.sampled_from([NOTICE, OLD_NOTICE, None])),
                fields=fields,
                separate=draw(st.booleans()),
                expires=expires,
                n=n,
            )
        )
    at = draw(
        st.one_of(
            st.sampled_from(interesting),
            st.integers(-10, 40_000).map(lambda s: T0 + _dt.timedelta(seconds=s)),
        )
    )
    return records, at


def _reference(records: list[ConsentRecord], at: _dt.datetime) -> tuple[str, bool, str | None]:
    """An independent model: the last event at or before ``at`` decides."""
    parse = _dt.datetime.fromisoformat
    past = [r for r in records if parse(r.at) <= at]
    if not past:
        return "missing", False, None
    last = past[-1]
    if last.event == "withdraw":
        return "withdrawn", False, last.consent_id
    if last.expires_at is not None and at >= parse(last.expires_at):
        return "expired", False, last.consent_id
    if last.notice_version != NOTICE or any(f not in last.fields for f in FIELDS):
        return "reconsent_required", False, last.consent_id
    return "live", last.separate, last.consent_id


@settings(max_examples=300, deadline=None)
@given(histories())
def test_consent_state_matches_reference_model(
    history: tuple[list[ConsentRecord], _dt.datetime],
) -> None:
    """For any grant/withdraw history and any moment, consent_state agrees with a naive model."""
    records, at = history
    state = consent_state(records, at=at, notice_version=NOTICE, fields=FIELDS)
    status, separate, deciding = _reference(records, at)
    assert state.status.value == status
    assert state.separate is separate
    assert state.record_ids == (() if deciding is None else (deciding,))


# =========================================================================== decision table

STATES = ("none", "live", "live_separate", "withdrawn", "expired", "reconsent", "field_grew")


def _arrange(
    state: str, tmp_path: Path, key: InMemoryKey, clock: FrozenClock
) -> tuple[ov.Vault, str]:
    """A vault under the custom pack with one adult owner whose ledger for both consent
    purposes (newsletter, outreach) is in ``state``; returns the open vault and the record id."""
    pack_dir = write_pack(tmp_path / "pack-v1")
    policy = load_policy(pack_dir)
    path = tmp_path / "vault"
    vault = ov.Vault.create(path, key=key, policy=policy, clock=clock)
    grant_roles(vault, *CUSTOM_STAFF)
    record_assessments(vault)
    (rid,) = _register(vault, _owner("owner-1"), actor=STAFF)
    if state == "live":
        vault.close()
        vault = ov.Vault.open(path, key=key, policy=relaxed(policy), clock=clock)
    for purpose in ("newsletter", "outreach"):
        if state == "none":
            continue
        expires = clock.now() + H if state == "expired" else None
        _grant(vault, "owner-1", purpose, STAFF, separate=state != "live", expires_at=expires)
        if state == "withdrawn":
            _withdraw(vault, "owner-1", purpose, STAFF)
    if state == "expired":
        clock.advance(2 * H)
    later = {
        "live": pack_dir,
        "reconsent": write_pack(tmp_path / "pack-v2", notice="v2"),
        "field_grew": write_pack(tmp_path / "pack-grown", extra=["email"]),
    }.get(state)
    if later is not None:
        vault.close()
        vault = ov.Vault.open(path, key=key, policy=later, clock=clock)
        record_assessments(vault)  # a purpose whose fields grew is assessed again
    return vault, rid


NOT_NEEDED = "the purpose does not need this field"
GRANTED = "granted by rule"
SEPARATE = "separate_consent_required"
# (consent purpose, state) -> ConsentRequiredError reason, or (phone view, id_number view) as
# (mode, field reason). phone is a personal field, id_number a sensitive one.
Outcome = str | tuple[tuple[str, str], tuple[str, str]]
CONSENT_TABLE: dict[tuple[str, str], Outcome] = {
    ("newsletter", "none"): "consent_missing",
    ("newsletter", "live"): (("full", GRANTED), ("hidden", NOT_NEEDED)),
    ("newsletter", "live_separate"): (("full", GRANTED), ("hidden", NOT_NEEDED)),
    ("newsletter", "withdrawn"): "consent_withdrawn",
    ("newsletter", "expired"): "consent_expired",
    ("newsletter", "reconsent"): "consent_reconsent_required",
    ("newsletter", "field_grew"): "consent_reconsent_required",
    ("outreach", "none"): "consent_missing",
    ("outreach", "live"): (("full", GRANTED), ("hidden", SEPARATE)),
    ("outreach", "live_separate"): (("full", GRANTED), ("full", GRANTED)),
    ("outreach", "withdrawn"): "consent_withdrawn",
    ("outreach", "expired"): "consent_expired",
    ("outreach", "reconsent"): "consent_reconsent_required",
    ("outreach", "field_grew"): "consent_reconsent_required",
}
# Purposes on other legal bases ignore the ledger: both classifications shown, in every state.
for _purpose in ("registration", "statutory", "rescue"):
    for _state in STATES:
        CONSENT_TABLE[(_purpose, _state)] = (("full", GRANTED), ("full", GRANTED))

BASIS = {
    "newsletter": "consent",
    "outreach": "consent",
    "registration": "contract",
    "statutory": "legal_obligation",
    "rescue": "vital_interest",
}


@pytest.mark.parametrize(
    ("purpose", "state"),
    [pytest.param(p, s, id=f"{BASIS[p]}:{p}-{s}") for p, s in CONSENT_TABLE],
)
def test_legal_basis_consent_state_classification_table(
    purpose: str,
    state: str,
    tmp_path: Path,
    root_key: InMemoryKey,
    decrypts: list[bytes],
) -> None:
    """Legal basis x consent state x classification gives the tabled error or field views,
    and a consent refusal happens before any field is decrypted."""
    clock = FrozenClock(T0)
    vault, rid = _arrange(state, tmp_path, root_key, clock)
    expected = CONSENT_TABLE[(purpose, state)]
    try:
        assert vault.policy.purposes[purpose].legal_basis.value == BASIS[purpose]
        with vault.session(STAFF, purpose) as s:
            decrypts.clear()
            if isinstance(expected, str):
                with pytest.raises(ConsentRequiredError) as caught:
                    s.get(OwnerProfile, rid)
                assert isinstance(caught.value, AccessDeniedError)
                assert caught.value.reason == expected
                assert decrypts == []  # the owner is an adult: nothing at all was decrypted
                last = list(vault.audit.entries())[-1]
                assert (last["action"], last["decision"], last["reason"]) == (
                    "read",
                    "deny",
                    expected,
                )
                assert last["fields"] == []
            else:
                view = s.get(OwnerProfile, rid)
                assert decrypts, "an allowed read decrypts the disclosed fields"
                for field, (mode, why) in zip(("phone", "id_number"), expected, strict=True):
                    assert view.view_of(field).value == mode, field
                    assert view.views[field].reason == why, field
                    assert (field in view) is (mode == "full")
                if expected[0][0] == "full":
                    assert view["phone"] == "13800138000"
                if expected[1][0] == "full":
                    assert view["id_number"] == "11010119800307005X"
    finally:
        vault.close()


def test_non_separate_grant_refused_for_separate_purpose(custom_vault: ov.Vault) -> None:
    """A purpose with separate_consent = true refuses a plain consent at grant time."""
    _register(custom_vault, _owner("owner-1"), actor=STAFF)
    with pytest.raises(ValidationError, match="separate"):
        _grant(custom_vault, "owner-1", "outreach", STAFF)
    record = _grant(custom_vault, "owner-1", "outreach", STAFF, separate=True)
    assert record.separate and record.fields == (
        "owner_profile.id_number",
        "owner_profile.name",
        "owner_profile.phone",
        "owner_profile.status",
    )


# =========================================================================== withdrawal


def test_withdrawal_denies_open_session_and_leaves_earlier_audit_untouched(
    vault: ov.Vault, clerk: Actor
) -> None:
    """A withdrawal stops reads in a session opened before it; earlier entries stay byte-equal."""
    (rid,) = _register(vault, _owner("owner-1"))
    _grant(vault, "owner-1", "community_events", clerk)
    with vault.session(clerk, "community_events") as reader:
        assert reader.get(OwnerProfile, rid)["phone"] == "13800138000"
        assert reader.get(OwnerProfile, rid)["email"] == "owner-1@example.com"
        size = vault.audit.size()
        before = [(r.seq, bytes(r.entry), bytes(r.leaf_hash)) for r in vault.audit.rows()]
        reads = [e for e in vault.audit.entries() if e["action"] == "read"]
        assert [e["decision"] for e in reads] == ["allow", "allow"]
        _withdraw(vault, "owner-1", "community_events", clerk)
        with pytest.raises(ConsentRequiredError) as caught:
            reader.get(OwnerProfile, rid)
        assert caught.value.reason == "consent_withdrawn"
    after = [(r.seq, bytes(r.entry), bytes(r.leaf_hash)) for r in vault.audit.rows(0, size)]
    assert after == before
    assert vault.audit.verify() == vault.audit.size() > size
    actions = [e["action"] for e in vault.audit.entries(size)]
    assert "consent.withdraw" in actions


def test_owner_without_optional_consent_still_gets_contract_processing(
    vault: ov.Vault, clerk: Actor
) -> None:
    """Refusing every optional consent leaves contract-necessary processing working (PIPL 16)."""
    (rid,) = _register(vault, _owner("owner-1"))
    assert vault.policy.purposes["owner_registration"].contract_necessary
    with vault.session(clerk, "owner_registration") as s:
        view = s.get(OwnerProfile, rid)
        assert view["name"] == "张伟" and view["phone"] == "13800138000"
    with vault.session(clerk, "community_events") as s, pytest.raises(ConsentRequiredError) as c:
        s.get(OwnerProfile, rid)
    assert c.value.reason == "consent_missing"
    with vault.session(clerk, "consent_management") as s:
        assert s.consents("owner-1") == []


# =========================================================================== minors

MINOR_BORN = _dt.date(2016, 1, 1)  # ten years old on the default FrozenClock day


def test_minor_needs_guardian_and_default_events_rule_excludes_minors(
    vault: ov.Vault, clerk: Actor
) -> None:
    """A minor's own consent is refused, a guardian's is recorded, and the default
    community_events rule (minors = false) still refuses a child's data."""
    (rid,) = _register(vault, _owner("child-1", birth_date=MINOR_BORN, id_number=None))
    with pytest.raises(ValidationError, match="guardian"):
        _grant(vault, "child-1", "community_events", clerk)
    record = _grant(vault, "child-1", "community_events", clerk, given_by="guardian", separate=True)
    assert record.given_by == "guardian"
    with vault.session(clerk, "community_events") as s, pytest.raises(PolicyDeniedError) as caught:
        s.get(OwnerProfile, rid)
    assert caught.value.reason == "minor_data_not_permitted"
    assert not isinstance(caught.value, ConsentRequiredError)


def test_minor_guardian_separate_consent_under_rule_with_minors(
    tmp_path: Path, root_key: InMemoryKey
) -> None:
    """With minors = true, a guardian's separate consent discloses a child's fields and a plain
    one hides every encrypted field (separate_consent_required) but not internal ones."""
    policy = load_policy(write_pack(tmp_path / "pack", minors=True))
    with ov.Vault.create(tmp_path / "v", key=root_key, policy=policy, clock=FrozenClock(T0)) as v:
        grant_roles(v, *CUSTOM_STAFF)
        record_assessments(v)
        plain, separate = _register(
            v,
            _owner("child-1", birth_date=MINOR_BORN, id_number=None),
            _owner("child-2", birth_date=MINOR_BORN, id_number=None),
            actor=STAFF,
        )
        _grant(v, "child-1", "newsletter", STAFF, given_by="guardian")
        _grant(v, "child-2", "newsletter", STAFF, given_by="guardian", separate=True)
        with v.session(STAFF, "newsletter") as s:
            shown = s.get(OwnerProfile, separate)
            assert (shown["name"], shown["phone"], shown["status"]) == (
                "张伟",
                "13800138000",
                "active",
            )
            hidden = s.get(OwnerProfile, plain)
        for field in ("name", "phone"):
            assert hidden.view_of(field) is ov.ViewMode.HIDDEN
            assert hidden.views[field].reason == SEPARATE
            assert field not in hidden
        assert hidden["status"] == "active"
        encrypted = [
            name
            for name, spec in OwnerProfile.field_specs().items()
            if spec.classification.encrypted
        ]
        assert not set(encrypted) & set(hidden.values)


# =========================================================================== grant validation


@pytest.mark.parametrize(
    ("purpose", "kwargs", "error", "reason"),
    [
        pytest.param("owner_registration", {}, ValidationError, None, id="contract-purpose"),
        pytest.param("emergency_contact", {}, ValidationError, None, id="vital-interest-purpose"),
        pytest.param(
            "community_events", {"evidence": "signed-form.pdf"}, ValidationError, None, id="name"
        ),
        pytest.param(
            "community_events", {"evidence": EVIDENCE[:-1]}, ValidationError, None, id="63-hex"
        ),
        pytest.param(
            "community_events", {"evidence": "g" * 64}, ValidationError, None, id="non-hex"
        ),
        pytest.param("community_events", {"channel": "carrier_pigeon"}, ValidationError, None),
        pytest.param(
            "community_events",
            {"expires_at": T0 - _dt.timedelta(days=1)},
            ValidationError,
            None,
            id="expired-already",
        ),
        pytest.param(
            "community_events", {"expires_at": T0}, ValidationError, None, id="expires-now"
        ),
        pytest.param(
            "community_events",
            {"expires_at": _dt.datetime(2027, 1, 1)},
            ValidationError,
            None,
            id="naive-expiry",
        ),
        pytest.param(
            "commercial_marketing", {}, PolicyDeniedError, "purpose_prohibited", id="prohibited"
        ),
        pytest.param("no_such_purpose", {}, PolicyDeniedError, "unknown_purpose", id="unknown"),
    ],
)
def test_grant_validation(
    vault: ov.Vault,
    clerk: Actor,
    purpose: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    reason: str | None,
) -> None:
    """A grant with a wrong purpose, evidence, channel or expiry is refused and not recorded."""
    _register(vault, _owner("owner-1"))
    with pytest.raises(error) as caught:
        _grant(vault, "owner-1", purpose, clerk, **kwargs)
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]
    with vault.session(clerk, "consent_management") as s:
        assert s.consents("owner-1") == []


def test_grant_for_unknown_subject_is_not_found(vault: ov.Vault, clerk: Actor) -> None:
    """Consent for a subject id that has no records raises RecordNotFoundError."""
    _register(vault, _owner("owner-1"))
    with pytest.raises(RecordNotFoundError):
        _grant(vault, "nobody", "community_events", clerk)


def test_grant_records_evidence_channel_notice_and_fields(vault: ov.Vault, clerk: Actor) -> None:
    """A grant stores the evidence digest, channel, current notice version and field set."""
    _register(vault, _owner("owner-1"))
    expires = T0 + _dt.timedelta(days=365)
    record = _grant(
        vault, "owner-1", "community_events", clerk, channel="wechat", expires_at=expires
    )
    spec = vault.policy.purposes["community_events"]
    assert record.consent_id.startswith("cns_") and record.subject.startswith("sub_")
    assert (record.event, record.channel, record.evidence) == ("grant", "wechat", EVIDENCE)
    assert record.notice_version == spec.notice_version
    assert record.fields == tuple(sorted(spec.field_names))
    assert record.expires_at == format_time(expires)
    assert record.actor == clerk.actor_id and record.given_by == "subject"
    with vault.session(clerk, "consent_management") as s:
        assert s.consents("owner-1") == [record]
    grants = [e for e in vault.audit.entries() if e["action"] == "consent.grant"]
    assert grants[-1]["detail"]["consent_id"] == record.consent_id
    assert "owner-1" not in json.dumps(list(vault.audit.entries()), ensure_ascii=False)


def test_consent_changes_need_a_role_allowed_consent_management(
    vault: ov.Vault, engineer: Actor
) -> None:
    """A role that may not act for consent_management cannot grant or withdraw consents."""
    _register(vault, _owner("owner-1"))
    assert "consent_management" not in vault.policy.roles["engineering"]
    with vault.session(engineer, "repair_dispatch") as s:
        with pytest.raises(AccessDeniedError):
            s.grant_consent("owner-1", "community_events", channel="app", evidence=EVIDENCE)
        with pytest.raises(AccessDeniedError):
            s.withdraw_consent("owner-1", "community_events", channel="app")


def test_session_for_prohibited_purpose_is_refused_and_audited(
    vault: ov.Vault, clerk: Actor
) -> None:
    """Opening a session for commercial_marketing raises purpose_prohibited and is audited."""
    with pytest.raises(PolicyDeniedError) as caught:
        vault.session(clerk, "commercial_marketing")
    assert caught.value.reason == "purpose_prohibited"
    last = list(vault.audit.entries())[-1]
    assert (last["action"], last["decision"], last["reason"], last["purpose"]) == (
        "session.open",
        "deny",
        "purpose_prohibited",
        "commercial_marketing",
    )


# =========================================================================== find


def test_find_under_consent_purpose_returns_only_live_consents(
    vault: ov.Vault, clerk: Actor, clock: FrozenClock, decrypts: list[bytes]
) -> None:
    """find under community_events returns only owners with live consent and decrypts nothing
    of the others (a shared family phone matches all four)."""
    owners = [_owner(f"owner-{n}") for n in range(4)]  # same phone for all
    ids = dict(zip([o.subject_id for o in owners], _register(vault, *owners), strict=True))
    _grant(vault, "owner-0", "community_events", clerk)
    _grant(vault, "owner-1", "community_events", clerk)
    _withdraw(vault, "owner-1", "community_events", clerk)
    _grant(vault, "owner-3", "community_events", clerk, expires_at=clock.now() + H)
    clock.advance(2 * H)
    with vault.session(clerk, "community_events") as s:
        size = vault.audit.size()
        decrypts.clear()
        hits = s.find(OwnerProfile, phone="138 0013 8000")
    assert [h.record_id for h in hits] == [ids["owner-0"]]
    assert hits[0].subject_id == "owner-0"
    others = [ids[f"owner-{n}"].encode() for n in (1, 2, 3)]
    assert decrypts and not any(rid in aad for aad in decrypts for rid in others)
    denials = {
        e["record_id"]: e["reason"]
        for e in vault.audit.entries(size)
        if e["action"] == "find" and e["decision"] == "deny"
    }
    assert denials == {
        ids["owner-1"]: "consent_withdrawn",
        ids["owner-2"]: "consent_missing",
        ids["owner-3"]: "consent_expired",
    }


# =========================================================================== conditions


def _two_communities(vault: ov.Vault) -> dict[str, str]:
    inside, outside = _owner("inside"), _owner("outside")
    ids = _register(
        vault,
        inside,
        Unit(subject_id="inside", community="阳光花园", building="3栋", unit_number="2-1201"),
        outside,
        Unit(subject_id="outside", community="翠湖苑", building="1栋", unit_number="1-0101"),
        actor=STAFF,
    )
    return {"inside": ids[0], "outside": ids[2]}


SCOPED = Actor("clerk-01", roles=["clerk"], communities=["阳光花园"])


def test_community_scope_allows_inside_and_denies_outside(custom_vault: ov.Vault) -> None:
    """A scope = "community" rule lets an actor read owners of its community only."""
    ids = _two_communities(custom_vault)
    with custom_vault.session(SCOPED, "area_service") as s:
        assert s.get(OwnerProfile, ids["inside"])["phone"] == "13800138000"
        with pytest.raises(PolicyDeniedError) as caught:
            s.get(OwnerProfile, ids["outside"])
        assert caught.value.reason == "outside_scope"
    with custom_vault.session(ELSEWHERE, "area_service") as s, pytest.raises(PolicyDeniedError):
        s.get(OwnerProfile, ids["inside"])


def test_find_never_returns_out_of_scope_owners(custom_vault: ov.Vault) -> None:
    """find under a scoped rule never returns an owner outside the actor's communities."""
    ids = _two_communities(custom_vault)
    with custom_vault.session(SCOPED, "area_service") as s:
        try:
            hits = s.find(OwnerProfile, phone="13800138000")
        except PolicyDeniedError:
            hits = []
    assert ids["outside"] not in {h.record_id for h in hits}
    assert "outside" not in {h.subject_id for h in hits}


def test_find_returns_in_scope_owners(custom_vault: ov.Vault) -> None:
    """find under a scoped rule returns the owners inside the actor's communities."""
    ids = _two_communities(custom_vault)
    with custom_vault.session(SCOPED, "area_service") as s:
        hits = s.find(OwnerProfile, phone="13800138000")
    assert [h.record_id for h in hits] == [ids["inside"]]


def test_time_window_in_local_time(custom_vault: ov.Vault, clock: FrozenClock) -> None:
    """hours = 08:00-18:00 in Asia/Shanghai allows at 10:00 local and denies at 02:00 local,
    re-evaluated within one open session."""
    (rid,) = _register(custom_vault, _owner("owner-1"), actor=STAFF)
    clock.set(_dt.datetime(2026, 1, 5, 2, 0, tzinfo=_dt.UTC))  # 10:00 in Shanghai
    with custom_vault.session(STAFF, "office_hours") as s:
        assert s.get(OwnerProfile, rid)["name"] == "张伟"
        clock.set(_dt.datetime(2026, 1, 4, 18, 0, tzinfo=_dt.UTC))  # 02:00 in Shanghai
        with pytest.raises(PolicyDeniedError) as caught:
            s.get(OwnerProfile, rid)
        assert caught.value.reason == "outside_time_window"
        clock.set(_dt.datetime(2026, 1, 5, 9, 59, tzinfo=_dt.UTC))  # 17:59 in Shanghai
        assert s.get(OwnerProfile, rid)["phone"] == "13800138000"
        clock.set(_dt.datetime(2026, 1, 5, 10, 0, tzinfo=_dt.UTC))  # 18:00: end is exclusive
        with pytest.raises(PolicyDeniedError):
            s.get(OwnerProfile, rid)


def test_time_window_decided_again_in_each_new_session(
    custom_vault: ov.Vault, clock: FrozenClock
) -> None:
    """Sessions share the kernel's cached decisions, never one with a time window: a request
    at 02:00 local is refused though one at 10:00 was allowed the same way."""
    (rid,) = _register(custom_vault, _owner("owner-1"), actor=STAFF)
    for hour_utc, allowed in ((2, True), (18, False), (3, True)):
        day = 4 if hour_utc == 18 else 5
        clock.set(_dt.datetime(2026, 1, day, hour_utc, 0, tzinfo=_dt.UTC))
        with custom_vault.session(STAFF, "office_hours") as s:
            if allowed:
                assert s.get(OwnerProfile, rid)["name"] == "张伟"
            else:
                with pytest.raises(PolicyDeniedError) as caught:
                    s.get(OwnerProfile, rid)
                assert caught.value.reason == "outside_time_window"


# =========================================================================== explain


def test_explain_with_subject_matches_ledger_and_holds_no_personal_value(
    vault: ov.Vault, clerk: Actor
) -> None:
    """explain gives per-field views with rule ids, the legal basis and the consent state with
    the deciding ledger record; it is JSON-serialisable and audited, with no personal value."""
    owner = _owner("owner-1")
    _register(vault, owner)
    before = vault.explain(clerk, "community_events", "owner_profile", "owner-1")
    assert before["allowed"] is False and before["reason"] == "consent_missing"
    assert before["consent"] == {"status": "missing", "separate": False, "records": []}
    assert all(v["view"] == "hidden" for v in before["fields"].values())

    first = _grant(vault, "owner-1", "community_events", clerk)
    second = _grant(vault, "owner-1", "community_events", clerk, separate=True)
    explained = vault.explain(clerk, "community_events", "owner_profile", "owner-1")
    assert explained["allowed"] is True and explained["legal_basis"] == "consent"
    assert explained["rules"] == ["events.profile"]
    assert explained["consent"] == {
        "status": "live",
        "separate": True,
        "records": [second.consent_id],
    }
    assert first.consent_id not in json.dumps(explained)
    fields = explained["fields"]
    assert fields["name"] == {
        "view": "masked:name",
        "rules": ["events.profile"],
        "reason": GRANTED,
        "search": False,
        "search_reason": "shown masked; no matching rule grants search",
    }
    assert fields["phone"]["view"] == "full" and fields["email"]["view"] == "full"
    assert fields["phone"]["search"] is True
    assert fields["id_number"] == {
        "view": "hidden",
        "rules": [],
        "reason": NOT_NEEDED,
        "search": False,
        "search_reason": "not shown",
    }
    assert explained["subject"].startswith("sub_")
    last = list(vault.audit.entries())[-1]
    assert (last["action"], last["subject"]) == ("policy.explain", explained["subject"])

    _withdraw(vault, "owner-1", "community_events", clerk)
    withdrawn = vault.explain(clerk, "community_events", "owner_profile", "owner-1")
    assert withdrawn["reason"] == "consent_withdrawn"
    with vault.session(clerk, "consent_management") as s:
        ledger = s.consents("owner-1")
    assert withdrawn["consent"]["records"] == [ledger[-1].consent_id]

    text = json.dumps([before, explained, withdrawn], ensure_ascii=False)
    for value in ("owner-1", owner.name, owner.phone, owner.email, owner.id_number, "1980-03-07"):
        assert value not in text


def test_explain_without_subject_and_for_contract_purpose(vault: ov.Vault, clerk: Actor) -> None:
    """Without a subject explain shows the policy alone; a contract purpose carries no consent."""
    policy_only = vault.explain(clerk, "community_events", "owner_profile")
    assert policy_only["allowed"] is True and policy_only["subject"] is None
    assert "consent" not in policy_only and policy_only["legal_basis"] == "consent"
    json.dumps(policy_only)
    _register(vault, _owner("owner-1"))
    contract = vault.explain(clerk, "owner_registration", "owner_profile", "owner-1")
    assert contract["legal_basis"] == "contract" and "consent" not in contract
    assert contract["fields"]["id_number"]["view"] == "masked:id_number"
    assert contract["fields"]["id_number"]["rules"] == ["front-desk.registration.profile"]
    with pytest.raises(RecordNotFoundError):
        vault.explain(clerk, "community_events", "owner_profile", "nobody")


# =========================================================================== CLI


@pytest.fixture
def cli_vault(tmp_path: Path) -> tuple[Path, Path, str]:
    """A vault under a key file with two owners; returns (vault path, key file, record id)."""
    key_file = tmp_path / "k"
    path = tmp_path / "v"
    with ov.Vault.create(path, key=ov.KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, CLERK)
        record_assessments(vault)
        rid, _ = _register(vault, _owner("owner-1"), _owner("owner-2", phone="13900139000"))
    return path, key_file, rid


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli_main, list(args), catch_exceptions=False)


def test_cli_consent_grant_list_withdraw_and_explain(
    cli_vault: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """consent grant (evidence hashed from a file), list, withdraw and policy explain --subject
    work end to end and agree with the ledger."""
    path, key_file, _ = cli_vault
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF- signed consent form of owner-1")
    common = ["--key-file", str(key_file), "--as", "clerk-01"]
    granted = _run(
        "consent", "grant", str(path), "owner-1", "--purpose", "community_events",
        "--channel", "paper", "--evidence-file", str(form), *common,
    )  # fmt: skip
    assert granted.exit_code == 0, granted.output
    match = re.fullmatch(
        r"recorded consent (cns_[0-9a-f]{32}) \(notice (\S+), sha256 ([0-9a-f]{64})\)\n",
        granted.stdout,
    )
    assert match is not None
    consent_id = match.group(1)
    events_spec = load_policy().purposes["community_events"]
    assert (match.group(2), match.group(3)) == (events_spec.notice_version, events_spec.notice_hash)

    with (
        ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault,
        vault.session(CLERK, "consent_management") as s,
    ):
        (record,) = s.consents("owner-1")
    assert record.evidence == hashlib.sha256(form.read_bytes()).hexdigest()
    assert (record.consent_id, record.channel, record.actor) == (consent_id, "paper", "clerk-01")

    listed = _run("consent", "list", str(path), "owner-1", *common)
    assert listed.exit_code == 0 and consent_id in listed.stdout and "grant" in listed.stdout

    explain_args = [
        "policy", "explain", str(path), "--actor", "clerk-01", "--role", "front_desk",
        "--purpose", "community_events", "--subject", "owner-1", "--key-file", str(key_file),
    ]  # fmt: skip
    explained = _run(*explain_args)
    assert explained.exit_code == 0, explained.output
    data = json.loads(explained.stdout)
    assert data["consent"] == {"status": "live", "separate": False, "records": [consent_id]}
    assert data["allowed"] is True and data["fields"]["phone"]["view"] == "full"
    assert "13800138000" not in explained.stdout and "owner-1" not in explained.stdout

    withdrawn = _run(
        "consent", "withdraw", str(path), "owner-1", "--purpose", "community_events",
        "--channel", "app", *common,
    )  # fmt: skip
    assert withdrawn.exit_code == 0 and withdrawn.stdout.startswith("recorded withdrawal cns_")
    listed = _run("consent", "list", str(path), "owner-1", *common)
    assert "withdraw" in listed.stdout and consent_id in listed.stdout
    after = json.loads(_run(*explain_args).stdout)
    assert after["allowed"] is False and after["consent"]["status"] == "withdrawn"


def test_cli_consent_errors_are_one_line(cli_vault: tuple[Path, Path, str]) -> None:
    """A refused grant prints one error line and no traceback, with the documented exit code."""
    path, key_file, _ = cli_vault
    common = ["--key-file", str(key_file), "--as", "clerk-01"]
    bad = _run(
        "consent", "grant", str(path), "owner-1", "--purpose", "owner_registration",
        "--channel", "paper", "--evidence", EVIDENCE, *common,
    )  # fmt: skip
    assert bad.exit_code == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("ownervault: error: ")
    prohibited = _run(
        "consent", "grant", str(path), "owner-1", "--purpose", "commercial_marketing",
        "--channel", "paper", "--evidence", EVIDENCE, *common,
    )  # fmt: skip
    assert prohibited.exit_code == 4 and "purpose_prohibited" in prohibited.stderr
    assert "Traceback" not in bad.output + prohibited.output


def test_cli_consent_list_of_an_owner_without_consents_says_so(
    cli_vault: tuple[Path, Path, str],
) -> None:
    """consent list for a registered owner with an empty ledger says so and exits 0."""
    path, key_file, _ = cli_vault
    listed = _run(
        "consent", "list", str(path), "owner-2", "--key-file", str(key_file), "--as", "clerk-01"
    )
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == "no consents recorded for this owner\n"
    assert listed.stderr == ""


def test_cli_policy_explain_refuses_a_purpose_or_role_the_pack_does_not_have(
    cli_vault: tuple[Path, Path, str],
) -> None:
    """policy explain exits with the usage code for an unknown purpose or role, not with 0."""
    path, key_file, _ = cli_vault
    common = ["policy", "explain", str(path), "--actor", "clerk-01", "--key-file", str(key_file)]
    typo = _run(*common, "--role", "front_desk", "--purpose", "owner_registraton")
    assert typo.exit_code == 2
    assert "no purpose 'owner_registraton'" in typo.stderr and typo.stdout == ""
    role = _run(*common, "--role", "frontdesk", "--purpose", "owner_registration")
    assert role.exit_code == 2 and "no role 'frontdesk'" in role.stderr
    # A prohibited purpose is one the pack knows: explaining its refusal is what was asked.
    prohibited = _run(*common, "--role", "front_desk", "--purpose", "commercial_marketing")
    assert prohibited.exit_code == 0
    assert json.loads(prohibited.stdout)["reason"] == "purpose_prohibited"


def test_cli_policy_ropa_markdown_and_json() -> None:
    """policy ropa prints one markdown row per purpose (prohibited included) and valid JSON."""
    policy = load_policy()
    markdown = _run("policy", "ropa")
    assert markdown.exit_code == 0
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| ")]
    body = rows[1:]  # after the header row
    assert len(body) == len(policy.purposes) + len(policy.prohibited)
    for pid in policy.purposes:
        assert sum(row.startswith(f"| {pid} (") for row in body) == 1, pid
    assert any(row.startswith("| commercial_marketing | **prohibited**") for row in body), (
        markdown.stdout
    )
    events = next(row for row in body if row.startswith("| community_events ("))
    assert "| consent |" in events and policy.purposes["community_events"].notice_version in events

    as_json = _run("policy", "ropa", "--format", "json")
    register = json.loads(as_json.stdout)["purposes"]
    assert [item["purpose"] for item in register if item["prohibited"] is None] == sorted(
        policy.purposes
    )
    assert {item["purpose"]: item["legal_basis"] for item in register}["commercial_marketing"] == (
        "prohibited"
    )
    by_id = {item["purpose"]: item for item in register}
    assert by_id["owner_registration"]["contract_necessary"] is True
    assert by_id["community_events"]["contract_necessary"] is False


def test_cli_policy_check_broken_pack_one_line_with_file_and_line(tmp_path: Path) -> None:
    """policy check on a broken pack exits 5 with one 'file:line:' error line and no traceback."""
    broken = tmp_path / "broken"
    shutil.copytree(default_policy_dir(), broken)
    rules = broken / "rules.toml"
    lines = rules.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "masked:id_number" in line)
    lines[number - 1] = lines[number - 1].replace("masked:id_number", "masked:nope")
    rules.write_text("".join(lines), encoding="utf-8")
    result = _run("policy", "check", str(broken))
    assert result.exit_code == 5
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"rules.toml:{number}:" in result.stderr and "unknown masker" in result.stderr
    assert "Traceback" not in result.output
    assert _run("policy", "check").exit_code == 0


def test_cli_module_entry_point_has_every_policy_command() -> None:
    """`python -m ownervault.cli policy ropa` works like the ownervault script."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ownervault.cli", "policy", "ropa", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)
