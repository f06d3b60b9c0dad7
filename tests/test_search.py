"""Searching by value: a field shown masked cannot be searched unless the pack grants it.

The ``search`` list of a rule in ``rules.toml``, how rules combine on it, what the loader
refuses (with file and line), what ``find`` refuses and audits, and how ``policy explain``
shows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault import Actor, Vault
from ownervault.cli import main
from ownervault.exceptions import PolicyDeniedError, PolicyError
from ownervault.keys import KeyFileKey
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

PURPOSES = """\
[purposes.ops]
title = { zh = "ops", en = "ops" }
legal_basis = "contract"
retention = "P1Y"
[purposes.ops.fields]
owner_profile = ["name", "phone", "email", "id_number", "household_role", "status"]
"""

ROLES = """\
[roles.r1]
title = { zh = "r1", en = "r1" }
purposes = ["ops"]

[roles.r2]
title = { zh = "r2", en = "r2" }
purposes = ["ops"]

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


def rule(
    rule_id: str,
    fields: dict[str, str],
    *,
    search: list[str] | None = None,
    roles: tuple[str, ...] = ("r1",),
    record: str = "owner_profile",
    actions: tuple[str, ...] = ("read",),
) -> str:
    """One [[rules]] entry of the small ``ops`` pack."""
    lines = [
        "[[rules]]",
        f'id = "{rule_id}"',
        f"roles = {json.dumps(list(roles))}",
        'purpose = "ops"',
        f'record = "{record}"',
        f"actions = {json.dumps(list(actions))}",
    ]
    if search is not None:
        lines.append(f"search = {json.dumps(search)}")
    lines += ["[rules.fields]", *(f'"{name}" = "{view}"' for name, view in fields.items())]
    return "\n".join(lines) + "\n\n"


def write_pack(folder: Path, rules: str) -> Path:
    """A pack with purpose ``ops`` on owner profiles, roles r1 and r2, and ``rules``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("purposes.toml", PURPOSES), ("roles.toml", ROLES), ("rules.toml", rules)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def decide(policy: ov.Policy, *roles: str) -> ov.Decision:
    """The read decision on owner profiles for purpose ``ops``."""
    return policy.decide(Actor("someone", roles), "ops", "owner_profile", "read")


# --------------------------------------------------------------------------- decisions


def test_the_default_pack_lets_no_one_search_a_field_it_sees_masked_without_a_grant() -> None:
    """In the shipped pack a masked field is searchable only where a rule grants search."""
    policy = ov.load_policy()
    granted: set[tuple[str, str, str]] = set()
    for role, purposes in policy.roles.items():
        for purpose in purposes:
            for record_type in policy.purposes[purpose].fields:
                decision = policy.decide(Actor("a", [role]), purpose, record_type, "read")
                for name, view in decision.fields.items():
                    if view.mode is ov.ViewMode.FULL and view.searchable:
                        continue
                    if view.searchable:
                        granted.add((role, purpose, f"{record_type}.{name}"))
    # The only grant: finance (and the manager, on the same rule) find an owner who calls
    # about a bill by the number they call from.
    assert granted == {
        ("finance", "fee_collection", "owner_profile.phone"),
        ("manager", "fee_collection", "owner_profile.phone"),
    }
    gate = policy.decide(Actor("g", ["security"]), "visitor_verification", "owner_profile", "read")
    assert not gate.view("phone").searchable and not gate.view("name").searchable
    desk = policy.decide(Actor("c", ["front_desk"]), "complaint_handling", "owner_profile", "read")
    assert desk.view("phone").searchable  # shown in full: the desk looks callers up by phone
    assert not desk.view("name").searchable  # shown masked


@pytest.mark.parametrize(
    ("a", "b", "searchable"),
    [
        (({"phone": "full"}, None), None, True),
        (({"phone": "masked:phone"}, None), None, False),
        (({"phone": "masked:phone"}, ["phone"]), None, True),
        (({"phone": "masked:phone"}, ["phone"]), ({"phone": "masked:phone"}, None), False),
        (({"phone": "masked:phone"}, ["phone"]), ({"phone": "masked:phone"}, ["phone"]), True),
        (({"phone": "full"}, None), ({"phone": "masked:phone"}, ["phone"]), True),
        (({"phone": "full"}, None), ({"phone": "masked:phone"}, None), False),
        (({"phone": "masked:phone"}, ["phone"]), ({"phone": "hidden"}, None), False),
        (({"*": "masked:redact"}, ["phone"]), None, True),
    ],
)
def test_search_is_part_of_each_rules_say_and_the_most_restrictive_say_wins(
    tmp_path: Path,
    a: tuple[dict[str, str], list[str] | None],
    b: tuple[dict[str, str], list[str] | None] | None,
    searchable: bool,
) -> None:
    """A masked field is searchable only if every matching rule with a say on it shows it in
    full or grants search; a field shown in full needs no grant; a hidden field never is."""
    rules = rule("a", a[0], search=a[1], roles=("r1",))
    if b is not None:
        rules += rule("b", b[0], search=b[1], roles=("r2",))
    policy = ov.load_policy(write_pack(tmp_path / "pack", rules))
    view = decide(policy, "r1", "r2").view("phone")
    assert view.searchable is searchable
    assert view.search_reason
    if not searchable and view.disclosed:
        assert view.search_reason.startswith("shown masked;")


def test_a_field_without_a_blind_index_is_never_searchable(tmp_path: Path) -> None:
    """Shown in full or not, a field without a blind index cannot be searched, and says why."""
    policy = ov.load_policy(write_pack(tmp_path / "pack", rule("a", {"*": "full"})))
    view = decide(policy, "r1").view("status")
    assert view.mode is ov.ViewMode.FULL
    assert (view.searchable, view.search_reason) == (False, "no blind index")


# --------------------------------------------------------------------------- the loader

LOADER_CASES = [
    (
        "not-shown",
        rule("a", {"phone": "masked:phone", "email": "hidden"}, search=["email"]),
        "which the rule does not show",
    ),
    ("not-named", rule("a", {"phone": "full"}, search=["name"]), "which the rule does not show"),
    ("unknown", rule("a", {"phone": "masked:phone"}, search=["phnoe"]), "unknown field 'phnoe'"),
    (
        "sensitive-wildcard",
        rule("a", {"*": "masked:redact"}, search=["id_number"]),
        "which the rule does not show",
    ),
    ("star", rule("a", {"phone": "masked:phone"}, search=["*"]), "one by one"),
    ("no-index", rule("a", {"status": "full"}, search=["status"]), "no blind index"),
    (
        "not-read",
        rule("a", {"phone": "masked:phone"}, search=["phone"], actions=("create",)),
        "needs the read action",
    ),
    ("every-record", rule("a", {"*": "full"}, search=["phone"], record="*"), "record '*'"),
]


@pytest.mark.parametrize(
    ("case", "text", "fragment"), LOADER_CASES, ids=[c[0] for c in LOADER_CASES]
)
def test_the_loader_refuses_a_bad_search_list_with_file_and_line(
    tmp_path: Path, case: str, text: str, fragment: str
) -> None:
    """A search naming an unknown field, a field the rule does not show, a field without a
    blind index, '*', or on a rule that cannot read, fails with rules.toml and its line."""
    good = rule("first", {"name": "full"})
    folder = write_pack(tmp_path / "pack", good + text)
    with pytest.raises(PolicyError) as caught:
        ov.load_policy(folder)
    error = caught.value
    rules_file = str(folder / "rules.toml")
    line = 1 + (good + text).splitlines().index(next(t for t in text.splitlines() if "search" in t))
    assert (error.file, error.line) == (rules_file, line)
    assert str(error).startswith(f"{rules_file}:{line}: rule 'a': ")
    assert fragment in str(error)


def test_an_unknown_key_next_to_search_is_still_refused(tmp_path: Path) -> None:
    """A typo such as 'serach' is an unknown key, not an ignored one."""
    text = rule("a", {"phone": "masked:phone"}).replace(
        "[rules.fields]", 'serach = ["phone"]\n[rules.fields]'
    )
    with pytest.raises(PolicyError, match="serach"):
        ov.load_policy(write_pack(tmp_path / "pack", text))


# --------------------------------------------------------------------------- find


@pytest.fixture
def svault(tmp_path: Path) -> Iterator[Vault]:
    """A vault with the shipped pack."""
    with Vault.create(tmp_path / "vault", key=InMemoryKey(), clock=FrozenClock()) as vault:
        grant_roles(vault, GUARD, FINANCE, CLERK, ENGINEER)
        record_assessments(vault)
        yield vault


GUARD = Actor("guard-01", roles=["security"])
FINANCE = Actor("finance-01", roles=["finance"])
CLERK = Actor("clerk-01", roles=["front_desk"])
ENGINEER = Actor("engineer-01", roles=["engineering"])
#: The two actors of the small ``ops`` pack: one writes, one looks up.
WRITER, LOOKUP = Actor("w", ["r1"]), Actor("l", ["r2"])


def _entries(vault: Vault, start: int) -> list[dict[str, Any]]:
    return [e for e in vault.audit.entries() if e["seq"] >= start]


def test_a_masked_phone_cannot_be_recovered_by_guessing_it_in_find(
    svault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A guard who sees 138****8000 guessing the hidden digits gets every guess refused and
    audited (search_field_masked, no value), the right one included."""
    owner = make_owner(phone="13800138000")
    with svault.session(CLERK, "owner_registration") as s:
        s.put(owner)
    start = svault.audit.size()
    with svault.session(GUARD, "visitor_verification") as s:
        (shown,) = [v["phone"] for v in s.get_many(OwnerProfile, [_only_record(svault)])]
        assert shown == "138****8000"
        answers = []
        for guess in ("13800130000", "13800138000", "13800139999"):
            with pytest.raises(PolicyDeniedError) as caught:
                s.find(OwnerProfile, phone=guess)
            answers.append((caught.value.reason, str(caught.value)))
    # The right guess is refused like the wrong ones: nothing tells them apart.
    assert {reason for reason, _ in answers} == {"search_field_masked"}
    assert len({message for _, message in answers}) == 1
    assert "owner_profile.phone is shown masked" in answers[0][1]
    finds = [e for e in _entries(svault, start) if e["action"] == "find"]
    assert [(e["decision"], e["reason"], e["fields"], e["record_id"]) for e in finds] == [
        ("deny", "search_field_masked", ["phone"], None)
    ] * 3
    log = "\n".join(json.dumps(e, ensure_ascii=False) for e in svault.audit.entries())
    assert "13800138000" not in log and "138****8000" not in log


def _only_record(vault: Vault) -> str:
    (entry,) = [e for e in vault.audit.entries() if e["action"] == "create"]
    return str(entry["record_id"])


def test_a_masked_name_cannot_be_recovered_from_a_dictionary(
    svault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """An engineer who sees 张* cannot try common names one by one."""
    with svault.session(CLERK, "owner_registration") as s:
        s.put(make_owner(name="张伟"))
    with svault.session(ENGINEER, "repair_dispatch") as s:
        for name in ("张伟", "张敏", "张静"):
            with pytest.raises(PolicyDeniedError, match="search_field_masked"):
                s.find(OwnerProfile, name=name)


def test_a_role_with_a_search_grant_finds_by_a_field_it_sees_masked(
    svault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Finance, granted search on the phone it sees masked, finds the caller's profile; the
    entry of the find records how many records matched, never the number searched for."""
    owner, other = make_owner(), make_owner()
    with svault.session(CLERK, "owner_registration") as s:
        rid, _ = s.put_many([owner, other])
    start = svault.audit.size()
    with svault.session(FINANCE, "fee_collection") as s:
        (found,) = s.find(OwnerProfile, phone=f"+86 {owner.phone}")
        assert s.find(OwnerProfile, phone="13900000000") == []
    assert found.record_id == rid
    assert found["phone"] == f"{owner.phone[:3]}****{owner.phone[-4:]}"
    assert found["name"] == owner.name
    summaries = [
        e for e in _entries(svault, start) if e["action"] == "find" and e["record_id"] is None
    ]
    assert [(e["decision"], e["fields"], e["detail"]) for e in summaries] == [
        ("allow", ["phone"], {"matches": 1}),
        ("allow", ["phone"], {"matches": 0}),
    ]


def test_a_pack_can_grant_search_on_a_masked_field(tmp_path: Path) -> None:
    """In a pack of one's own, the same masked view with and without 'search' decides find."""
    rules = rule("write", {"*": "full"}, roles=("r1",), actions=("read", "create")).replace(
        "[rules.fields]", 'write = ["name", "phone", "household_role", "status"]\n[rules.fields]'
    )
    rules += rule("lookup", {"phone": "masked:phone"}, search=["phone"], roles=("r2",))
    pack = write_pack(tmp_path / "pack", rules)
    owner = OwnerProfile(subject_id="owner-1", name="张三", phone="13800138000")
    with Vault.create(tmp_path / "v", key=InMemoryKey(), policy=pack, clock=FrozenClock()) as v:
        grant_roles(v, WRITER, LOOKUP)
        record_assessments(v)
        with v.session(WRITER, "ops") as s:
            rid = s.put(owner)
        with v.session(LOOKUP, "ops") as s:
            (found,) = s.find(OwnerProfile, phone="138 0013 8000")
            assert (found.record_id, found["phone"]) == (rid, "138****8000")
    # Without the grant the same view refuses the search.
    (pack / "rules.toml").write_text(rules.replace('search = ["phone"]\n', ""), encoding="utf-8")
    with Vault.create(tmp_path / "v2", key=InMemoryKey(), policy=pack, clock=FrozenClock()) as v:
        grant_roles(v, WRITER, LOOKUP)
        record_assessments(v)
        with v.session(WRITER, "ops") as s:
            s.put(owner)
        with v.session(LOOKUP, "ops") as s:
            with pytest.raises(PolicyDeniedError) as caught:
                s.find(OwnerProfile, phone="13800138000")
            assert caught.value.reason == "search_field_masked"


# --------------------------------------------------------------------------- explain


def test_policy_explain_says_which_fields_may_be_searched_and_why(tmp_path: Path) -> None:
    """``ownervault policy explain`` shows per field whether find may search it, and why."""
    key_file = tmp_path / "root.key"
    KeyFileKey.generate(key_file)
    path = tmp_path / "vault"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(path), "--key-file", str(key_file)]).exit_code == 0

    def explain(role: str, purpose: str) -> dict[str, Any]:
        args = ["policy", "explain", str(path), "--actor", "a-01", "--role", role]
        result = runner.invoke(main, [*args, "--purpose", purpose, "--key-file", str(key_file)])
        assert result.exit_code == 0, result.output
        fields: dict[str, Any] = json.loads(result.stdout)["fields"]
        return fields

    gate = explain("security", "visitor_verification")
    assert (gate["phone"]["search"], gate["phone"]["search_reason"]) == (
        False,
        "shown masked; no matching rule grants search",
    )
    assert (gate["id_number"]["search"], gate["id_number"]["search_reason"]) == (
        False,
        "not shown",
    )
    billing = explain("finance", "fee_collection")
    assert (billing["phone"]["search"], billing["phone"]["search_reason"]) == (
        True,
        "shown masked; search granted by rule finance.fees.profile",
    )
    assert (billing["name"]["search"], billing["name"]["search_reason"]) == (True, "shown in full")
