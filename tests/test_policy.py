"""Tests for ownervault.policy: the default pack, deny by default, rule combination, lint errors
with file and line, maskers and decision explanations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ownervault as ov
from ownervault.exceptions import PolicyDeniedError, PolicyError, ValidationError
from ownervault.policy import (
    ACTIONS,
    MASKERS,
    Decision,
    FieldView,
    LegalBasis,
    Policy,
    Purpose,
    Rule,
    ViewMode,
    default_policy_dir,
    mask,
)
from ownervault.records import RECORD_TYPES, Classification
from ownervault.testing import InMemoryKey, grant_roles, record_assessments
from strategies import (
    bank_accounts,
    chinese_names,
    mobile_phones,
    phone_spellings,
    plates,
    resident_id_numbers,
    unknown_identifiers,
)

DEFAULT_PACK = Path(__file__).resolve().parents[1] / "policies"

#: The property-management record set shipped with ownervault (tests may register more types).
PROPERTY_TYPES = (
    "owner_profile",
    "unit",
    "vehicle",
    "renovation_application",
    "complaint",
    "contract",
    "fee_account",
    "payment",
)
#: The gate, car-park and visitor logs (tests/test_logs.py).
LOG_TYPES = ("visitor_entry", "gate_event", "parking_event")

_RANK = {ViewMode.FULL: 0, ViewMode.MASKED: 1, ViewMode.HIDDEN: 2}

_DEFAULT = ov.load_policy(DEFAULT_PACK)


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The default property-management pack from the repository."""
    return _DEFAULT


def view_text(view: FieldView) -> str:
    """A field view as it is written in rules.toml."""
    return f"masked:{view.masker}" if view.mode is ViewMode.MASKED else view.mode.value


def decide(
    pol: Policy,
    roles: tuple[str, ...] | list[str],
    purpose: str,
    record: str,
    action: str = "read",
    *,
    minor: bool = False,
) -> Decision:
    return pol.decide(
        ov.Actor("actor-1", roles),
        purpose,
        record,
        action,  # type: ignore[arg-type]
        minor=minor,
        record=RECORD_STATE.get(record),
    )


#: The clear fields of the record each decision is about, for rules with a ``where`` condition
#: (engineering's covers repair complaints; test_logs.py covers the others).
RECORD_STATE: dict[str, dict[str, object]] = {"complaint": {"category": "repair"}}


# =========================================================================== the default pack


def test_default_pack_loads(policy: Policy) -> None:
    """The shipped pack loads with its ten roles, its purposes and one prohibited purpose."""
    assert set(policy.roles) == {
        "front_desk",
        "finance",
        "security",
        "engineering",
        "manager",
        "compliance_officer",
        "admin",
        "security_admin",
        "emergency_responder",
        "gate_system",
    }
    assert set(policy.purposes) >= {
        "owner_registration",
        "fee_collection",
        "repair_dispatch",
        "complaint_handling",
        "renovation_approval",
        "visitor_verification",
        "emergency_contact",
        "community_events",
        "subject_access_request",
        "erasure_request",
        "vault_administration",
    }
    assert set(policy.prohibited) == {"commercial_marketing"}
    assert policy.purposes["emergency_contact"].legal_basis is LegalBasis.VITAL_INTEREST
    assert policy.purposes["visitor_verification"].retention == "P30D"
    # record = "*" rules expand to one rule per record type of their purpose.
    expanded = [r for r in policy.rules if r.rule_id == "compliance.erasure"]
    assert sorted(r.record_type for r in expanded) == sorted((*PROPERTY_TYPES, *LOG_TYPES))


def test_default_pack_is_what_load_policy_loads_without_arguments(policy: Policy) -> None:
    """load_policy() with no folder loads the same pack as the repository's policies/ folder."""
    shipped = ov.load_policy()
    assert Path(shipped.source) == default_policy_dir()
    assert [r.rule_id for r in shipped.rules] == [r.rule_id for r in policy.rules]
    assert shipped.roles == policy.roles


# Each row: roles, purpose, record type, action, minor flag, expected. ``expected`` is a deny
# reason (str) or, for an allowed decision, the exact view of the key fields listed.
DecisionRow = tuple[tuple[str, ...], str, str, str, bool, "str | Mapping[str, str]"]

DECISION_TABLE: list[DecisionRow] = [
    # --- front desk, registration
    (
        ("front_desk",),
        "owner_registration",
        "owner_profile",
        "read",
        False,
        {
            "name": "full",
            "phone": "full",
            "id_number": "masked:id_number",
            "birth_date": "masked:date",
            "email": "full",
            "emergency_contact_phone": "full",
            "household_role": "full",
        },
    ),
    (
        ("front_desk",),
        "owner_registration",
        "owner_profile",
        "read",
        True,
        {"name": "full", "id_number": "masked:id_number"},
    ),
    (
        ("front_desk",),
        "owner_registration",
        "unit",
        "read",
        False,
        {
            "unit_number": "full",
            "community": "full",
            "ownership_certificate_number": "masked:id_number",
        },
    ),
    (("front_desk",), "owner_registration", "vehicle", "read", False, {"plate": "full"}),
    (("front_desk",), "owner_registration", "contract", "create", False, {"monthly_fee": "full"}),
    (("front_desk",), "owner_registration", "contract", "update", False, "no_rule"),
    (("front_desk",), "owner_registration", "owner_profile", "erase", False, "no_rule"),
    (
        ("front_desk",),
        "owner_registration",
        "complaint",
        "read",
        False,
        "record_type_not_in_purpose",
    ),
    (
        ("front_desk",),
        "fee_collection",
        "owner_profile",
        "read",
        False,
        "role_not_permitted_for_purpose",
    ),
    # --- security
    (
        ("security",),
        "visitor_verification",
        "owner_profile",
        "read",
        False,
        {
            "name": "masked:name",
            "phone": "masked:phone",
            "id_number": "hidden",
            "birth_date": "hidden",
            "household_role": "full",
            "email": "hidden",
        },
    ),
    (
        ("security",),
        "visitor_verification",
        "owner_profile",
        "read",
        True,
        "minor_data_not_permitted",
    ),
    (
        ("security",),
        "visitor_verification",
        "vehicle",
        "read",
        False,
        {"plate": "full", "parking_space": "full", "vehicle_model": "hidden"},
    ),
    (
        ("security",),
        "visitor_verification",
        "unit",
        "read",
        False,
        {"unit_number": "full", "ownership_certificate_number": "hidden", "floor_area": "hidden"},
    ),
    (("security",), "visitor_verification", "owner_profile", "update", False, "no_rule"),
    (
        ("security",),
        "emergency_contact",
        "owner_profile",
        "read",
        True,
        {
            "name": "full",
            "phone": "full",
            "emergency_contact_name": "full",
            "emergency_contact_phone": "full",
            "id_number": "hidden",
            "email": "hidden",
        },
    ),
    # --- finance
    (
        ("finance",),
        "fee_collection",
        "owner_profile",
        "read",
        False,
        {"name": "full", "phone": "masked:phone", "id_number": "hidden", "email": "hidden"},
    ),
    (
        ("finance",),
        "fee_collection",
        "payment",
        "read",
        False,
        {
            "amount": "full",
            "paid_at": "full",
            "payer_name": "full",
            "bank_account": "masked:bank_account",
        },
    ),
    (
        ("finance",),
        "fee_collection",
        "fee_account",
        "read",
        False,
        {"account_number": "full", "balance": "full", "billing_address": "masked:address"},
    ),
    (
        ("finance",),
        "fee_collection",
        "unit",
        "read",
        False,
        {"floor_area": "full", "ownership_certificate_number": "hidden"},
    ),
    (("finance",), "fee_collection", "payment", "update", False, "no_rule"),
    # --- manager
    (
        ("manager",),
        "fee_collection",
        "fee_account",
        "read",
        False,
        {"account_number": "full", "balance": "full", "billing_address": "hidden"},
    ),
    (("manager",), "fee_collection", "payment", "read", False, "no_rule"),
    (
        ("manager",),
        "complaint_handling",
        "owner_profile",
        "read",
        False,
        {"name": "masked:name", "phone": "full", "id_number": "hidden"},
    ),
    (
        ("manager",),
        "owner_registration",
        "owner_profile",
        "read",
        False,
        "role_not_permitted_for_purpose",
    ),
    # --- engineering
    (
        ("engineering",),
        "repair_dispatch",
        "complaint",
        "read",
        False,
        {"location": "full", "content": "full", "category": "full"},
    ),
    (
        ("engineering",),
        "repair_dispatch",
        "owner_profile",
        "read",
        False,
        {"name": "masked:name", "phone": "full", "status": "hidden", "id_number": "hidden"},
    ),
    (("engineering",), "repair_dispatch", "payment", "read", False, "record_type_not_in_purpose"),
    # --- complaints, renovation, events
    (("front_desk",), "complaint_handling", "complaint", "read", False, {"location": "full"}),
    (
        ("front_desk",),
        "renovation_approval",
        "owner_profile",
        "read",
        False,
        {"name": "full", "phone": "masked:phone", "id_number": "hidden"},
    ),
    (("front_desk",), "renovation_approval", "renovation_application", "update", False, "no_rule"),
    (
        ("front_desk",),
        "community_events",
        "owner_profile",
        "read",
        False,
        {"name": "masked:name", "phone": "full", "email": "full", "id_number": "hidden"},
    ),
    # --- compliance officer
    (
        ("compliance_officer",),
        "subject_access_request",
        "owner_profile",
        "read",
        False,
        {"name": "full", "id_number": "full", "birth_date": "full", "phone": "full"},
    ),
    (
        ("compliance_officer",),
        "subject_access_request",
        "owner_profile",
        "read",
        True,
        {"id_number": "full"},
    ),
    (
        ("compliance_officer",),
        "subject_access_request",
        "unit",
        "read",
        False,
        {"ownership_certificate_number": "full", "unit_number": "full"},
    ),
    (
        ("compliance_officer",),
        "subject_access_request",
        "payment",
        "read",
        False,
        {"bank_account": "full", "amount": "full"},
    ),
    (
        ("compliance_officer",),
        "subject_access_request",
        "complaint",
        "read",
        False,
        {"location": "full"},
    ),
    (
        ("compliance_officer",),
        "subject_access_request",
        "owner_profile",
        "update",
        False,
        "no_rule",
    ),
    (("compliance_officer",), "erasure_request", "owner_profile", "read", False, "no_rule"),
    # --- unknown purposes and roles, mixed role sets
    (("front_desk",), "marketing_blast", "owner_profile", "read", False, "unknown_purpose"),
    (("janitor",), "owner_registration", "owner_profile", "read", False, "unknown_role"),
    (
        ("janitor", "front_desk"),
        "owner_registration",
        "owner_profile",
        "read",
        False,
        {"name": "full"},
    ),
    (
        ("front_desk", "finance"),
        "fee_collection",
        "owner_profile",
        "read",
        False,
        {"name": "full", "phone": "masked:phone"},
    ),
]


@pytest.mark.parametrize(
    ("roles", "purpose", "record", "action", "minor", "expected"),
    DECISION_TABLE,
    ids=[
        f"{'+'.join(r[0])}-{r[1]}-{r[2]}-{r[3]}{'-minor' if r[4] else ''}" for r in DECISION_TABLE
    ],
)
def test_default_pack_decision_table(
    policy: Policy,
    roles: tuple[str, ...],
    purpose: str,
    record: str,
    action: str,
    minor: bool,
    expected: str | Mapping[str, str],
) -> None:
    """Each (role, purpose, record type, action) of the default pack is allowed or denied as
    designed, and allowed decisions show each key field in exactly the designed view."""
    decision = decide(policy, roles, purpose, record, action, minor=minor)
    if isinstance(expected, str):
        assert not decision.allowed
        assert decision.reason == expected
        assert decision.disclosed_fields == ()
        with pytest.raises(PolicyDeniedError) as info:
            decision.require()
        assert info.value.reason == expected
    else:
        assert decision.allowed, decision.reason
        assert decision.reason == "allowed"
        decision.require()
        assert {f: view_text(decision.view(f)) for f in expected} == dict(expected)
        assert decision.legal_basis == policy.purposes[purpose].legal_basis.value


@pytest.mark.parametrize("record", PROPERTY_TYPES)
def test_compliance_officer_may_erase_every_record_type(policy: Policy, record: str) -> None:
    """The compliance officer may erase every record type for erasure_request, seeing no field."""
    for minor in (False, True):
        decision = decide(
            policy, ("compliance_officer",), "erasure_request", record, "erase", minor=minor
        )
        assert decision.allowed
        assert decision.rule_ids == ("compliance.erasure",)
        assert decision.disclosed_fields == ()
        assert decision.writable == frozenset()


@pytest.mark.parametrize("purpose", [*sorted(_DEFAULT.purposes), "nope"])
@pytest.mark.parametrize("action", ACTIONS)
def test_admin_never_reaches_owner_profiles(policy: Policy, purpose: str, action: str) -> None:
    """The administrator cannot read or change an owner profile for any purpose."""
    decision = decide(policy, ("admin",), purpose, "owner_profile", action)
    assert not decision.allowed
    assert decision.disclosed_fields == ()


@pytest.mark.parametrize(
    "roles",
    [
        (r,)
        for r in (
            "front_desk",
            "finance",
            "security",
            "engineering",
            "manager",
            "compliance_officer",
            "admin",
            "nobody",
        )
    ]
    + [("admin", "manager")],
)
@pytest.mark.parametrize("record", [*PROPERTY_TYPES, "no_such_type"])
def test_commercial_marketing_is_prohibited_for_everyone(
    policy: Policy, roles: tuple[str, ...], record: str
) -> None:
    """Every actor asking for commercial_marketing is denied with reason purpose_prohibited."""
    for action in ACTIONS:
        decision = decide(policy, roles, "commercial_marketing", record, action)
        assert (decision.allowed, decision.reason) == (False, "purpose_prohibited")
    with pytest.raises(PolicyDeniedError) as info:
        policy.purpose("commercial_marketing")
    assert info.value.reason == "purpose_prohibited"


def test_a_refused_session_names_the_purpose_and_not_an_empty_record_type(
    tmp_path: Path,
) -> None:
    """Opening a session for a prohibited purpose is refused with a message about the session."""
    clerk = ov.Actor("clerk-01", ["front_desk"])
    with ov.Vault.create(tmp_path / "v", key=InMemoryKey()) as vault:
        grant_roles(vault, clerk)  # the role is granted: the purpose is what is refused
        record_assessments(vault)
        with pytest.raises(PolicyDeniedError) as info:
            vault.session(clerk, "commercial_marketing")
    assert info.value.reason == "purpose_prohibited"
    assert str(info.value) == (
        "a session for purpose 'commercial_marketing' is denied to actor 'clerk-01': "
        "purpose_prohibited"
    )
    record = decide(_DEFAULT, ("front_desk",), "commercial_marketing", "owner_profile", "read")
    with pytest.raises(PolicyDeniedError, match=r"^read of owner_profile for purpose"):
        record.require()


def test_writable_fields_follow_the_rules(policy: Policy) -> None:
    """Writable fields are the rule's write list within the purpose (engineering: status only)."""
    engineer = decide(policy, ("engineering",), "repair_dispatch", "complaint", "update")
    assert engineer.writable == {"status"}
    manager = decide(
        policy, ("manager",), "renovation_approval", "renovation_application", "update"
    )
    assert manager.writable == {"status", "start_date", "end_date"}
    clerk = decide(policy, ("front_desk",), "owner_registration", "owner_profile", "create")
    assert clerk.writable == set(RECORD_TYPES["owner_profile"].field_specs())


def test_actor_requires_an_id_and_roles() -> None:
    """An Actor without an id or without a role name is refused with ValidationError."""
    with pytest.raises(ValidationError):
        ov.Actor("", ["front_desk"])
    with pytest.raises(ValidationError):
        ov.Actor("clerk", [])
    with pytest.raises(ValidationError):
        ov.Actor("clerk", [""])
    assert ov.Actor("clerk", ["front_desk"]).roles == ("front_desk",)


# =========================================================================== deny by default

_KNOWN_ROLES = sorted(_DEFAULT.roles)
_KNOWN_PURPOSES = [*sorted(_DEFAULT.purposes), "commercial_marketing"]

# Known names two times in three, unknown ones otherwise.
role_names = st.one_of(
    st.sampled_from(_KNOWN_ROLES), st.sampled_from(_KNOWN_ROLES), unknown_identifiers
)
purpose_names = st.one_of(
    st.sampled_from(_KNOWN_PURPOSES), st.sampled_from(_KNOWN_PURPOSES), unknown_identifiers
)
record_names = st.one_of(
    st.sampled_from(PROPERTY_TYPES), st.sampled_from(PROPERTY_TYPES), unknown_identifiers
)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[list[str], str, str, str]:
    """Roles, purpose, record type and action: either anything, or (mostly) a purpose one of
    the roles may act for, a record type it covers and an action some rule names, so that many
    decisions are allowed."""
    roles = draw(st.lists(role_names, min_size=1, max_size=3, unique=True))
    known = [r for r in roles if _DEFAULT.roles.get(r)]
    if known and draw(st.integers(0, 3)) > 0:
        role = draw(st.sampled_from(known))
        purpose = draw(st.sampled_from(sorted(_DEFAULT.roles[role])))
        covered = sorted(_DEFAULT.purposes[purpose].fields)
        record = draw(st.sampled_from(covered) if covered else record_names)
        actions = sorted(
            {
                a
                for rule in _DEFAULT.rules
                if rule.purpose == purpose and rule.record_type == record and role in rule.roles
                for a in rule.actions
            }
        )
        action = draw(st.sampled_from(actions) if actions else st.sampled_from(ACTIONS))
        return roles, purpose, record, action
    return roles, draw(purpose_names), draw(record_names), draw(st.sampled_from(ACTIONS))


@settings(max_examples=500, deadline=None)
@given(request=_requests(), minor=st.booleans())
def test_decisions_disclose_only_what_rules_grant(
    request: tuple[list[str], str, str, str], minor: bool
) -> None:
    """Every disclosed field is needed by the purpose and granted by a matching rule that names
    it (or, for non-sensitive fields, by a wildcard); denials and unknown actors get nothing."""
    roles, purpose, record, action = request
    pol = _DEFAULT
    decision = decide(pol, roles, purpose, record, action, minor=minor)
    if not any(r in pol.roles for r in roles):
        assert not decision.allowed
        assert decision.reason in {"purpose_prohibited", "unknown_purpose", "unknown_role"}
    if not decision.allowed:
        assert decision.disclosed_fields == ()
        assert decision.writable == frozenset()
        assert all(
            not decision.view(f).disclosed
            for f in RECORD_TYPES.get(record, ov.Record).field_specs()
        )
        return
    spec = pol.purposes[purpose]
    needed = spec.fields[record]
    permitted = {r for r in roles if purpose in pol.roles.get(r, frozenset())}
    matching = [
        rule
        for rule in pol.rules
        if rule.purpose == purpose
        and rule.record_type == record
        and action in rule.actions
        and rule.roles & permitted
        and (rule.minors or not minor)
    ]
    assert matching
    specs = RECORD_TYPES[record].field_specs()
    for name in decision.disclosed_fields:
        view = decision.view(name)
        sensitive = specs[name].classification is Classification.SENSITIVE
        assert name in needed
        naming = [r for r in matching if name in r.views and r.views[name].disclosed]
        wildcards = [r for r in matching if "*" in r.views and r.views["*"].disclosed]
        if sensitive:
            assert naming, f"sensitive {name} released without a rule naming it"
        else:
            assert naming or wildcards
        # No matching rule that has a say on the field is more restrictive than the result.
        for rule in matching:
            own = rule.views.get(name)
            if own is None and "*" in rule.views:
                wild = rule.views["*"]
                own = None if sensitive and wild.disclosed else wild
            if own is not None:
                assert _RANK[view.mode] >= _RANK[own.mode]
        assert set(view.rule_ids) <= {r.rule_id for r in matching}
    assert decision.writable <= needed


@settings(max_examples=150, deadline=None)
@given(roles=st.lists(unknown_identifiers, min_size=1, max_size=3), purpose=purpose_names)
def test_actor_without_known_role_gets_nothing(roles: list[str], purpose: str) -> None:
    """An actor holding only unknown role names is denied everything on every record type."""
    for record in PROPERTY_TYPES:
        for action in ACTIONS:
            decision = decide(_DEFAULT, roles, purpose, record, action, minor=False)
            assert not decision.allowed
            assert decision.fields == {}


# =========================================================================== small packs


def _title(name: str) -> str:
    return f'title = {{ zh = "{name}", en = "{name}" }}'


BASE_PURPOSES = f"""\
[purposes.registration]
{_title("registration")}
legal_basis = "contract"
retention = "P5Y"
[purposes.registration.fields]
owner_profile = ["name", "phone", "id_number", "birth_date", "status"]
unit = ["community", "building", "unit_number"]

[purposes.billing]
{_title("billing")}
legal_basis = "contract"
retention = "P3Y"
[purposes.billing.fields]
owner_profile = ["name", "phone"]
payment = ["*"]

[prohibited.marketing]
{_title("marketing")}
reason = "never"
"""

BASE_ROLES = f"""\
[roles.clerk]
{_title("clerk")}
purposes = ["registration"]

[roles.cashier]
{_title("cashier")}
purposes = ["billing", "registration"]
"""

BASE_RULES = """\
[[rules]]
id = "clerk.profile"
roles = ["clerk"]
purpose = "registration"
record = "owner_profile"
actions = ["read", "create"]
write = ["name", "phone"]
[rules.fields]
"*" = "full"
id_number = "masked:id_number"

[[rules]]
id = "cashier.payment"
roles = ["cashier"]
purpose = "billing"
record = "payment"
actions = ["read"]
[rules.fields]
"*" = "full"
bank_account = "masked:bank_account"
"""


def write_pack(
    folder: Path,
    purposes: str = BASE_PURPOSES,
    roles: str = BASE_ROLES,
    rules: str = BASE_RULES,
) -> Path:
    """Write a three-file policy pack into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("purposes.toml", purposes), ("roles.toml", roles), ("rules.toml", rules)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def rule_toml(
    rule_id: str,
    fields: Mapping[str, str],
    *,
    roles: tuple[str, ...] = ("r1",),
    purpose: str = "ops",
    record: str = "owner_profile",
    actions: tuple[str, ...] = ("read",),
    minors: bool = False,
) -> str:
    """One [[rules]] entry."""
    lines = [
        "[[rules]]",
        f'id = "{rule_id}"',
        f"roles = {json.dumps(list(roles))}",
        f'purpose = "{purpose}"',
        f'record = "{record}"',
        f"actions = {json.dumps(list(actions))}",
        f"minors = {'true' if minors else 'false'}",
        "[rules.fields]",
        *(f'"{name}" = "{view}"' for name, view in fields.items()),
    ]
    return "\n".join(lines) + "\n\n"


OPS_PURPOSES = f"""\
[purposes.ops]
{_title("ops")}
legal_basis = "contract"
retention = "P1Y"
[purposes.ops.fields]
owner_profile = ["name", "phone", "id_number", "status"]
"""

OPS_ROLES = f"""\
[roles.r1]
{_title("r1")}
purposes = ["ops"]

[roles.r2]
{_title("r2")}
purposes = ["ops"]
"""


def ops_policy(tmp_path: Path, *rules: str) -> Policy:
    """Load a pack with one purpose ``ops`` on owner profiles, roles r1 and r2, and ``rules``."""
    return ov.load_policy(write_pack(tmp_path / "pack", OPS_PURPOSES, OPS_ROLES, "".join(rules)))


def test_small_base_pack_loads(tmp_path: Path) -> None:
    """The base pack used by the lint tests is valid, so each lint test breaks exactly one thing."""
    pol = ov.load_policy(write_pack(tmp_path / "pack"))
    assert [r.rule_id for r in pol.rules] == ["clerk.profile", "cashier.payment"]
    decision = decide(pol, ("clerk",), "registration", "owner_profile")
    assert view_text(decision.view("id_number")) == "masked:id_number"
    assert decide(pol, ("clerk",), "marketing", "owner_profile").reason == "purpose_prohibited"


@pytest.mark.parametrize("order", ["a-first", "b-first"])
@pytest.mark.parametrize(
    ("view_a", "view_b", "expected"),
    [
        ("full", "masked:phone", "masked:phone"),
        ("full", "hidden", "hidden"),
        ("masked:phone", "hidden", "hidden"),
        ("full", "full", "full"),
        ("masked:phone", "masked:phone", "masked:phone"),
    ],
)
def test_most_restrictive_view_wins(
    tmp_path: Path, view_a: str, view_b: str, expected: str, order: str
) -> None:
    """When two matching rules disagree on a field, the more restrictive view wins whatever the
    order of the rules in the file."""
    rule_a = rule_toml("a", {"phone": view_a, "name": "full"}, roles=("r1",))
    rule_b = rule_toml("b", {"phone": view_b}, roles=("r2",))
    rules = (rule_a, rule_b) if order == "a-first" else (rule_b, rule_a)
    pol = ops_policy(tmp_path, *rules)
    decision = decide(pol, ("r1", "r2"), "ops", "owner_profile")
    assert decision.allowed
    assert view_text(decision.view("phone")) == expected
    assert sorted(decision.view("phone").rule_ids) == ["a", "b"]
    assert view_text(decision.view("name")) == "full"
    # Each role alone sees its own rule's view.
    assert view_text(decide(pol, ("r1",), "ops", "owner_profile").view("phone")) == view_a
    assert view_text(decide(pol, ("r2",), "ops", "owner_profile").view("phone")) == view_b


@pytest.mark.parametrize("order", ["redact-first", "name-first"])
def test_most_restrictive_masker_wins_whatever_the_order(tmp_path: Path, order: str) -> None:
    """Between masked:name and masked:redact the redacting view wins in either rule order."""
    rule_a = rule_toml("a", {"name": "masked:redact"}, roles=("r1",))
    rule_b = rule_toml("b", {"name": "masked:name"}, roles=("r2",))
    rules = (rule_a, rule_b) if order == "redact-first" else (rule_b, rule_a)
    pol = ops_policy(tmp_path, *rules)
    decision = decide(pol, ("r1", "r2"), "ops", "owner_profile")
    assert view_text(decision.view("name")) == "masked:redact"


def test_wildcard_never_releases_a_sensitive_field(tmp_path: Path) -> None:
    """A "*" = "full" rule shows every needed non-sensitive field but hides id_number."""
    pol = ops_policy(tmp_path, rule_toml("wild", {"*": "full"}))
    decision = decide(pol, ("r1",), "ops", "owner_profile")
    assert decision.allowed
    assert view_text(decision.view("name")) == "full"
    assert view_text(decision.view("phone")) == "full"
    assert view_text(decision.view("id_number")) == "hidden"
    assert "id_number" not in decision.disclosed_fields
    # Not needed by the purpose: hidden although the wildcard is full.
    assert view_text(decision.view("email")) == "hidden"


def test_wildcard_has_no_say_on_a_sensitive_field_named_elsewhere(tmp_path: Path) -> None:
    """A sensitive field named by one rule gets that rule's view; another rule's "*" = "full"
    neither widens nor blocks it."""
    pol = ops_policy(
        tmp_path,
        rule_toml("wild", {"*": "full"}, roles=("r1",)),
        rule_toml("named", {"id_number": "masked:id_number"}, roles=("r2",)),
    )
    decision = decide(pol, ("r1", "r2"), "ops", "owner_profile")
    assert view_text(decision.view("id_number")) == "masked:id_number"
    assert decision.view("id_number").rule_ids == ("named",)
    assert view_text(decision.view("name")) == "full"


def test_sensitive_field_named_explicitly_next_to_wildcard(tmp_path: Path) -> None:
    """Naming a sensitive field in the same rule as a wildcard releases it in the named view."""
    pol = ops_policy(tmp_path, rule_toml("both", {"*": "full", "id_number": "full"}))
    decision = decide(pol, ("r1",), "ops", "owner_profile")
    assert view_text(decision.view("id_number")) == "full"


def test_hidden_wildcard_restricts_other_rules(tmp_path: Path) -> None:
    """A "*" = "hidden" rule is the most restrictive view of every field it does not name."""
    pol = ops_policy(
        tmp_path,
        rule_toml("open", {"name": "full", "id_number": "full"}, roles=("r1",)),
        rule_toml("closed", {"*": "hidden", "status": "full"}, roles=("r2",)),
    )
    decision = decide(pol, ("r1", "r2"), "ops", "owner_profile")
    assert decision.allowed
    assert view_text(decision.view("name")) == "hidden"
    assert view_text(decision.view("id_number")) == "hidden"
    assert view_text(decision.view("status")) == "full"


def test_unnamed_fields_are_hidden(tmp_path: Path) -> None:
    """A field no matching rule names (and no wildcard covers) is hidden."""
    pol = ops_policy(tmp_path, rule_toml("one", {"name": "full"}))
    decision = decide(pol, ("r1",), "ops", "owner_profile")
    assert decision.disclosed_fields == ("name",)
    assert decision.view("phone").reason == "no matching rule grants this field"


def test_rule_for_other_action_or_role_does_not_match(tmp_path: Path) -> None:
    """A rule only matches its own actions and roles; otherwise the decision is no_rule."""
    pol = ops_policy(tmp_path, rule_toml("read-only", {"name": "full"}, roles=("r1",)))
    assert decide(pol, ("r1",), "ops", "owner_profile", "update").reason == "no_rule"
    assert decide(pol, ("r2",), "ops", "owner_profile", "read").reason == "no_rule"


def test_minors_false_rule_denies_minor_data(tmp_path: Path) -> None:
    """A matching rule without minors = true denies a minor's record (minor_data_not_permitted)."""
    pol = ops_policy(tmp_path, rule_toml("adults", {"name": "full"}))
    adult = decide(pol, ("r1",), "ops", "owner_profile", minor=False)
    assert adult.allowed
    child = decide(pol, ("r1",), "ops", "owner_profile", minor=True)
    assert not child.allowed
    assert child.reason == "minor_data_not_permitted"
    assert child.rule_ids == ("adults",)
    assert child.disclosed_fields == ()


def test_minors_true_rule_allows_minor_data(tmp_path: Path) -> None:
    """A rule with minors = true applies to a minor's record with the same views."""
    pol = ops_policy(tmp_path, rule_toml("kids", {"name": "masked:name"}, minors=True))
    child = decide(pol, ("r1",), "ops", "owner_profile", minor=True)
    assert child.allowed
    assert view_text(child.view("name")) == "masked:name"


def test_minors_false_rule_grants_nothing_on_minor_data(tmp_path: Path) -> None:
    """For a minor, only rules with minors = true contribute views; a minors = false rule that
    also matches releases nothing."""
    pol = ops_policy(
        tmp_path,
        rule_toml("adults", {"name": "full", "phone": "full"}, roles=("r1",)),
        rule_toml("kids", {"name": "masked:name"}, roles=("r2",), minors=True),
    )
    child = decide(pol, ("r1", "r2"), "ops", "owner_profile", minor=True)
    assert child.allowed
    assert view_text(child.view("phone")) == "hidden"


_VIEWS = st.sampled_from(["full", "hidden", "masked:name", "masked:redact"])
_FIELD_NAMES = ("*", "name", "phone", "id_number", "status")


@st.composite
def _rule_sets(draw: st.DrawFn) -> list[dict[str, str]]:
    return draw(
        st.lists(
            st.dictionaries(st.sampled_from(_FIELD_NAMES), _VIEWS, max_size=5),
            min_size=1,
            max_size=4,
        )
    )


@settings(max_examples=200, deadline=None)
@given(rule_views=_rule_sets())
def test_combined_view_mode_is_the_most_restrictive_say(rule_views: list[dict[str, str]]) -> None:
    """For any set of matching rules, each field's view mode is the most restrictive among the
    rules that have a say on it (named, or a wildcard that is hidden or the field not sensitive)."""
    specs = RECORD_TYPES["owner_profile"].field_specs()
    needed = frozenset({"name", "phone", "id_number", "status"})
    rules = tuple(
        Rule(
            rule_id=f"r{i}",
            roles=frozenset({"r"}),
            purpose="ops",
            record_type="owner_profile",
            actions=frozenset({"read"}),
            views={
                k: FieldView(
                    ViewMode(v.split(":")[0]), v.split(":")[1] if ":" in v else None, (f"r{i}",)
                )
                for k, v in views.items()
            },
            write=frozenset(),
            minors=False,
        )
        for i, views in enumerate(rule_views)
    )
    pol = Policy(
        source="memory",
        roles={"r": frozenset({"ops"})},
        role_titles={"r": ("r", "r")},
        purposes={
            "ops": Purpose(
                purpose_id="ops",
                title_zh="ops",
                title_en="ops",
                legal_basis=LegalBasis.CONTRACT,
                retention="P1Y",
                separate_consent=False,
                contract_necessary=False,
                fields={"owner_profile": needed},
            )
        },
        prohibited={},
        rules=rules,
    )
    decision = decide(pol, ("r",), "ops", "owner_profile")
    assert decision.allowed
    for name, fspec in specs.items():
        says: list[str] = []
        for views in rule_views:
            if name in views:
                says.append(views[name])
            elif "*" in views:
                wild = views["*"]
                if fspec.classification is not Classification.SENSITIVE or wild == "hidden":
                    says.append(wild)
        got = decision.view(name).mode
        if name not in needed or not says:
            assert got is ViewMode.HIDDEN
        else:
            assert got is max((ViewMode(s.split(":")[0]) for s in says), key=_RANK.__getitem__)


# =========================================================================== lint errors


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line number of the ``occurrence``-th line containing ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not found")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


NEWSLETTER = f"""
[purposes.newsletter]
{_title("newsletter")}
legal_basis = "consent"
retention = "P1Y"
[purposes.newsletter.notice]
zh = "我们使用您的姓名和证件号码寄送通讯。"
en = "We use your name and ID number to send the newsletter."
[purposes.newsletter.fields]
owner_profile = ["name", "id_number"]
"""

NEWSLETTER_WITHOUT_NOTICE = f"""
[purposes.newsletter]
{_title("newsletter")}
legal_basis = "consent"
retention = "P1Y"
[purposes.newsletter.fields]
owner_profile = ["name"]
"""

STAR_RULE = """
[[rules]]
id = "cashier.all"
roles = ["cashier"]
purpose = "billing"
record = "*"
actions = ["read"]
[rules.fields]
"*" = "full"
name = "full"
"""

# (case id, file, new text of that file, text on the offending line, a fragment of the message)
LintCase = tuple[str, str, str, str, str]

LINT_CASES: list[LintCase] = [
    (
        "unknown-role-in-rule",
        "rules.toml",
        _replace(BASE_RULES, 'roles = ["cashier"]', 'roles = ["cashier", "ghost"]'),
        '"ghost"',
        "unknown role 'ghost'",
    ),
    (
        "role-not-allowed-the-rule-purpose",
        "rules.toml",
        _replace(BASE_RULES, 'roles = ["cashier"]', 'roles = ["cashier", "clerk"]'),
        'roles = ["cashier", "clerk"]',
        "role 'clerk' may not act for 'billing'",
    ),
    (
        "unknown-purpose-in-role",
        "roles.toml",
        _replace(BASE_ROLES, '["billing", "registration"]', '["billing", "nonesuch"]'),
        '"nonesuch"',
        "unknown purpose 'nonesuch'",
    ),
    (
        "prohibited-purpose-in-role",
        "roles.toml",
        _replace(BASE_ROLES, 'purposes = ["registration"]', 'purposes = ["marketing"]'),
        '"marketing"',
        "prohibited purpose 'marketing'",
    ),
    (
        "unknown-purpose-in-rule",
        "rules.toml",
        _replace(BASE_RULES, 'purpose = "billing"', 'purpose = "bill"'),
        'purpose = "bill"',
        "unknown purpose 'bill'",
    ),
    (
        "unknown-record-type-in-purpose",
        "purposes.toml",
        _replace(BASE_PURPOSES, "unit = [", "units = ["),
        "units = [",
        "unknown record type 'units'",
    ),
    (
        "unknown-record-type-in-rule",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payments"'),
        'record = "payments"',
        "unknown record type 'payments'",
    ),
    (
        "record-type-not-in-purpose",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "unit"'),
        'record = "unit"',
        "does not cover record type 'unit'",
    ),
    (
        "unknown-field-in-rule",
        "rules.toml",
        _replace(
            BASE_RULES, 'bank_account = "masked', 'bank_acct = "full"\nbank_account = "masked'
        ),
        "bank_acct",
        "unknown field 'bank_acct'",
    ),
    (
        "unknown-field-in-purpose",
        "purposes.toml",
        _replace(BASE_PURPOSES, '["name", "phone"]', '["name", "phone", "nickname"]'),
        '"nickname"',
        "unknown field 'nickname'",
    ),
    (
        "unknown-masker",
        "rules.toml",
        _replace(BASE_RULES, '"masked:id_number"', '"masked:nope"'),
        "masked:nope",
        "unknown masker 'nope'",
    ),
    (
        "bad-retention-words",
        "purposes.toml",
        _replace(BASE_PURPOSES, 'retention = "P3Y"', 'retention = "3 years"'),
        "3 years",
        "ISO 8601",
    ),
    (
        "bad-retention-empty-period",
        "purposes.toml",
        _replace(BASE_PURPOSES, 'retention = "P3Y"', 'retention = "P"'),
        'retention = "P"',
        "ISO 8601",
    ),
    (
        "bad-retention-empty-time",
        "purposes.toml",
        _replace(BASE_PURPOSES, 'retention = "P5Y"', 'retention = "PT"'),
        'retention = "PT"',
        "ISO 8601",
    ),
    (
        "bad-retention-no-designator",
        "purposes.toml",
        _replace(BASE_PURPOSES, 'retention = "P5Y"', 'retention = "5Y"'),
        'retention = "5Y"',
        "ISO 8601",
    ),
    (
        "rule-grants-unneeded-field",
        "rules.toml",
        _replace(
            BASE_RULES,
            'id_number = "masked:id_number"',
            'id_number = "masked:id_number"\nemail = "full"',
        ),
        'email = "full"',
        "does not need field 'email'",
    ),
    (
        "rule-writes-unneeded-field",
        "rules.toml",
        _replace(BASE_RULES, 'write = ["name", "phone"]', 'write = ["name", "email"]'),
        'write = ["name", "email"]',
        "does not need field 'email'",
    ),
    (
        "duplicate-rule-id",
        "rules.toml",
        _replace(BASE_RULES, 'id = "cashier.payment"', 'id = "clerk.profile"  # again'),
        "# again",
        "duplicate rule id 'clerk.profile'",
    ),
    (
        "toml-syntax-error",
        "rules.toml",
        _replace(
            BASE_RULES,
            'bank_account = "masked:bank_account"',
            'bank_account = "masked:bank_account',
        ),
        'bank_account = "masked:bank_account',
        "invalid TOML",
    ),
    (
        "toml-duplicate-key",
        "roles.toml",
        _replace(
            BASE_ROLES, 'purposes = ["registration"]', 'purposes = ["registration"]\npurposes = []'
        ),
        "purposes = []",
        "invalid TOML",
    ),
    (
        "consent-purpose-with-sensitive-field",
        "purposes.toml",
        BASE_PURPOSES + NEWSLETTER,
        "[purposes.newsletter]",
        "separate_consent",
    ),
    (
        "consent-purpose-without-notice",
        "purposes.toml",
        BASE_PURPOSES + NEWSLETTER_WITHOUT_NOTICE,
        'legal_basis = "consent"',
        "needs a [notice]",
    ),
    (
        "unknown-time-zone",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payment"\ntimezone = "Mars/Olympus"'),
        "Mars/Olympus",
        "unknown time zone",
    ),
    (
        "hours-end-before-start",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payment"\nhours = "18:00-09:00"'),
        'hours = "18:00-09:00"',
        "hours",
    ),
    (
        "weekday-out-of-range",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payment"\nweekdays = [1, 8]'),
        "weekdays = [1, 8]",
        "weekdays",
    ),
    (
        "unknown-scope",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payment"\nscope = "street"'),
        'scope = "street"',
        "scope",
    ),
    (
        "star-record-rule-names-a-field",
        "rules.toml",
        BASE_RULES + STAR_RULE,
        'record = "*"',
        "may only name field '*'",
    ),
    (
        "write-without-create-or-update",
        "rules.toml",
        _replace(BASE_RULES, 'actions = ["read"]', 'actions = ["read"]\nwrite = ["amount"]'),
        'write = ["amount"]',
        "needs a create or update action",
    ),
    (
        "unknown-key-in-rule",
        "rules.toml",
        _replace(BASE_RULES, 'record = "payment"', 'record = "payment"\ncolour = "red"'),
        'colour = "red"',
        "colour",
    ),
    (
        "unknown-legal-basis",
        "purposes.toml",
        _replace(BASE_PURPOSES, 'legal_basis = "contract"', 'legal_basis = "whim"'),
        'legal_basis = "whim"',
        "legal_basis",
    ),
    (
        "unknown-action",
        "rules.toml",
        _replace(BASE_RULES, 'actions = ["read"]', 'actions = ["peek"]'),
        'actions = ["peek"]',
        "actions",
    ),
]


@pytest.mark.parametrize(
    ("case", "filename", "text", "needle", "fragment"), LINT_CASES, ids=[c[0] for c in LINT_CASES]
)
def test_lint_errors_name_file_and_line(
    tmp_path: Path, case: str, filename: str, text: str, needle: str, fragment: str
) -> None:
    """A broken pack fails to load with a PolicyError naming the broken file and the line of the
    offending entry."""
    folder = write_pack(tmp_path / "pack")
    (folder / filename).write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        ov.load_policy(folder)
    err = info.value
    expected_line = line_of(text, needle)
    path = str(folder / filename)
    assert err.file == path
    assert err.line == expected_line, str(err)
    assert str(err).startswith(f"{path}:{expected_line}: "), str(err)
    assert fragment in str(err)


def test_bad_view_string_is_rejected_naming_the_file_and_field(tmp_path: Path) -> None:
    """A view that is not full, hidden or masked:<masker> fails with the file and the field."""
    folder = write_pack(
        tmp_path / "pack", rules=_replace(BASE_RULES, '"masked:id_number"', '"sideways"')
    )
    with pytest.raises(PolicyError) as info:
        ov.load_policy(folder)
    message = str(info.value)
    assert message.startswith(str(folder / "rules.toml") + ":")
    assert "id_number" in message
    assert info.value.line is not None


def test_bad_view_string_names_its_own_line(tmp_path: Path) -> None:
    """A bad view string is reported at the line where that view is written."""
    text = _replace(BASE_RULES, '"masked:id_number"', '"sideways"')
    folder = write_pack(tmp_path / "pack", rules=text)
    with pytest.raises(PolicyError) as info:
        ov.load_policy(folder)
    assert info.value.line == line_of(text, '"sideways"')


@pytest.mark.parametrize("view", ["full\\n", "hidden\\n"])
def test_view_with_trailing_newline_is_a_policy_error(tmp_path: Path, view: str) -> None:
    """A view string with a trailing newline is rejected with PolicyError, not a crash."""
    text = _replace(BASE_RULES, '"masked:id_number"', f'"{view}"')
    folder = write_pack(tmp_path / "pack", rules=text)
    with pytest.raises(PolicyError):
        ov.load_policy(folder)


def test_retention_with_trailing_newline_is_rejected(tmp_path: Path) -> None:
    """A retention duration followed by a newline is not a valid ISO 8601 duration."""
    text = _replace(BASE_PURPOSES, 'retention = "P3Y"', 'retention = "P3Y\\n"')
    folder = write_pack(tmp_path / "pack", purposes=text)
    with pytest.raises(PolicyError):
        ov.load_policy(folder)


@pytest.mark.parametrize("retention", ["P5Y", "P30D", "P1Y6M", "P2W", "PT12H", "P1DT2H30M5S"])
def test_valid_iso_durations_load(tmp_path: Path, retention: str) -> None:
    """ISO 8601 durations with any of the designators load as the purpose's retention."""
    text = _replace(BASE_PURPOSES, 'retention = "P3Y"', f'retention = "{retention}"')
    pol = ov.load_policy(write_pack(tmp_path / "pack", purposes=text))
    assert pol.purposes["billing"].retention == retention


def test_consent_purpose_with_separate_consent_loads(tmp_path: Path) -> None:
    """A consent-based purpose may use sensitive fields once separate_consent = true."""
    text = BASE_PURPOSES + NEWSLETTER.replace(
        'retention = "P1Y"', 'retention = "P1Y"\nseparate_consent = true'
    )
    pol = ov.load_policy(write_pack(tmp_path / "pack", purposes=text))
    assert pol.purposes["newsletter"].separate_consent


@pytest.mark.parametrize("missing", ["purposes.toml", "roles.toml", "rules.toml"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    """A pack without one of its three files fails with a PolicyError naming that file."""
    folder = write_pack(tmp_path / "pack")
    (folder / missing).unlink()
    with pytest.raises(PolicyError) as info:
        ov.load_policy(folder)
    assert info.value.file == str(folder / missing)
    assert info.value.line is None
    assert str(info.value) == f"{folder / missing}: policy file is missing"


def test_missing_folder_is_named(tmp_path: Path) -> None:
    """Loading a folder that does not exist fails with a PolicyError naming the folder."""
    with pytest.raises(PolicyError) as info:
        ov.load_policy(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


# =========================================================================== maskers

MASKER_EXAMPLES = [
    ("name", "张三", "张*"),
    ("name", "欧阳娜娜", "欧***"),
    ("name", "李小龙", "李**"),
    ("phone", "13800138000", "138****8000"),
    ("phone", "138-0013-8000", "138****8000"),
    ("phone", "12345", "****2345"),
    ("phone", "123", "****"),
    ("id_number", "11010119900307002X", "1101**********002X"),
    ("id_number", "11010119900307002x", "1101**********002X"),
    ("id_number", "110101 19900307 002X", "1101**********002X"),
    ("id_number", "E1234567", "********"),
    ("bank_account", "6222021234567890123", "****0123"),
    ("bank_account", "6222 0212 3456 7890 123", "****0123"),
    ("last4", "1234", "****"),
    ("address", "阳光花园3栋2单元1201", "阳光花园3栋****"),
    ("address", "翠湖苑12号楼3单元501", "翠湖苑12号楼****"),
    ("address", "人民路一百号", "人民****"),
    ("email", "zhang.san@example.com", "z***@example.com"),
    ("email", "not-an-email", "n" + "*" * 11),
    ("plate", "京A12345", "京A****5"),
    ("plate", "粤B D12345", "粤B*****5"),
    ("plate", "京A1", "***"),
    ("date", "1990-03-07", "1990-**-**"),
    ("redact", "anything at all", "***"),
]


@pytest.mark.parametrize(("masker", "value", "expected"), MASKER_EXAMPLES)
def test_masker_examples(masker: str, value: str, expected: str) -> None:
    """Each masker turns a typical value into the documented masked form."""
    assert mask(masker, value) == expected


def test_mask_takes_non_string_values_in_text_form() -> None:
    """Dates and numbers are masked through their text form (1990-03-07 -> 1990-**-**)."""
    import datetime as dt

    assert mask("date", dt.date(1990, 3, 7)) == "1990-**-**"
    assert mask("phone", 13800138000) == "138****8000"


def test_unknown_masker_is_a_validation_error() -> None:
    """mask() with a masker name that does not exist raises ValidationError."""
    with pytest.raises(ValidationError):
        mask("rot13", "张三")
    assert set(MASKERS) >= {
        "name",
        "phone",
        "id_number",
        "bank_account",
        "address",
        "email",
        "plate",
        "date",
    }


@settings(max_examples=300)
@given(phone=mobile_phones)
def test_masked_mobile_keeps_prefix_and_last_four_only(phone: str) -> None:
    """A masked mobile number is the first three and last four digits around four stars."""
    masked = mask("phone", phone)
    assert masked == f"{phone[:3]}****{phone[-4:]}"
    assert phone not in masked


@settings(max_examples=300)
@given(data=st.data(), digits=mobile_phones)
def test_masked_phone_never_contains_the_number(data: st.DataObject, digits: str) -> None:
    """However a phone number is written, its mask shows neither the number nor the written
    form, and always keeps the last four digits."""
    written = data.draw(phone_spellings(digits))
    masked = unicodedata.normalize("NFKC", mask("phone", written))
    assert digits not in masked
    assert written not in masked
    assert masked.endswith(digits[-4:])
    assert sum(ch.isdigit() for ch in masked) <= 7


@settings(max_examples=300)
@given(value=st.text("0123456789", min_size=1, max_size=20))
def test_masked_digit_string_never_contains_the_original(value: str) -> None:
    """A masked phone of any length never contains the original digits once there are more than
    four of them, and never shows more than seven digits."""
    masked = mask("phone", value)
    if len(value) > 4:
        assert value not in masked
        assert masked.endswith(value[-4:])
    else:
        assert masked == "****"
    assert sum(ch.isdigit() for ch in masked) <= 7


@settings(max_examples=300)
@given(id_number=resident_id_numbers(), lower=st.booleans())
def test_masked_id_number_keeps_region_and_last_four_only(id_number: str, lower: bool) -> None:
    """A masked 18-character ID number shows its first and last four characters only."""
    written = id_number.lower() if lower else id_number
    masked = mask("id_number", written)
    assert masked == id_number[:4] + "*" * 10 + id_number[-4:]
    assert id_number not in masked
    assert id_number[6:14] not in masked  # the birth date


@settings(max_examples=300)
@given(value=st.text("0123456789ABCDEFGHJKX", min_size=1, max_size=24))
def test_masked_identifier_never_contains_the_original(value: str) -> None:
    """mask("id_number", x) never contains x and shows at most eight characters of it."""
    masked = mask("id_number", value)
    assert value not in masked
    assert len(masked) == len(value)
    assert sum(ch != "*" for ch in masked) <= min(8, max(len(value) - 1, 0))


@settings(max_examples=200)
@given(name=chinese_names())
def test_masked_name_keeps_first_character_only(name: str) -> None:
    """A masked name of two or more characters is its first character and stars."""
    masked = mask("name", name)
    assert masked == name[0] + "*" * (len(name) - 1)
    assert name not in masked


@settings(max_examples=200)
@given(account=bank_accounts)
def test_masked_bank_account_keeps_last_four(account: str) -> None:
    """A masked bank account shows four stars and the last four digits."""
    assert mask("bank_account", account) == "****" + account[-4:]


@settings(max_examples=200)
@given(plate=plates())
def test_masked_plate_keeps_region_and_last_character(plate: str) -> None:
    """A masked plate keeps the province and letter and its last character."""
    masked = mask("plate", plate)
    assert masked[:2] == plate[:2]
    assert masked[-1] == plate[-1]
    assert set(masked[2:-1]) == {"*"}
    assert plate not in masked


# =========================================================================== explain


def test_explain_is_json_and_names_rules_per_field(policy: Policy) -> None:
    """Decision.explain() is JSON-serialisable and names, per field, the rules that decided it."""
    decision = decide(policy, ("front_desk",), "owner_registration", "owner_profile")
    explained = json.loads(json.dumps(decision.explain(), ensure_ascii=False))
    assert explained["allowed"] is True
    assert explained["actor"] == "actor-1"
    assert explained["legal_basis"] == "contract"
    assert explained["rules"] == ["front-desk.registration.profile"]
    assert explained["fields"]["id_number"] == {
        "view": "masked:id_number",
        "rules": ["front-desk.registration.profile"],
        "reason": "granted by rule",
        "search": False,
        "search_reason": "shown masked; no matching rule grants search",
    }
    assert explained["fields"]["name"]["view"] == "full"
    assert set(explained["fields"]) == set(RECORD_TYPES["owner_profile"].field_specs())


def test_explain_names_the_rule_that_released_a_sensitive_field(policy: Policy) -> None:
    """For the compliance officer the ID number is credited to the rule naming it, not the
    wildcard rule, and other fields to the wildcard rule."""
    decision = decide(policy, ("compliance_officer",), "subject_access_request", "owner_profile")
    fields = decision.explain()["fields"]
    assert fields["id_number"]["rules"] == ["compliance.access.sensitive"]
    assert fields["name"]["rules"] == ["compliance.access.all"]
    json.dumps(decision.explain())


def test_explain_of_a_denial_is_json(policy: Policy) -> None:
    """A denied decision explains itself as JSON with its reason and no fields."""
    decision = decide(policy, ("security",), "visitor_verification", "owner_profile", minor=True)
    explained = json.loads(json.dumps(decision.explain()))
    assert explained["allowed"] is False
    assert explained["reason"] == "minor_data_not_permitted"
    assert explained["rules"] == ["security.visitor.profile"]
    assert explained["fields"] == {}


def test_cli_output_into_a_closed_pipe_stops_quietly() -> None:
    """``ownervault ... | head`` whose reader has gone: exit 141, nothing on stderr, no
    traceback or "unexpected error" line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ownervault.cli", "policy", "ropa"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, b"")
