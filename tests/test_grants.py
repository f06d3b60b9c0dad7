"""Grants: the vault, not the caller, decides which roles and scope an actor acts with.

Also: every administrative verb is authorised by the pack's ``[admin_actions]``, separation of
duties holds at grant time and at session time, and grants rows are authenticated.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ownervault import Actor, Vault
from ownervault.cli import main
from ownervault.exceptions import (
    IntegrityError,
    NotGrantedError,
    PolicyDeniedError,
    PolicyError,
    ValidationError,
)
from ownervault.kernel import Grant
from ownervault.keys import KeyKind
from ownervault.policy import ADMIN_ACTIONS, default_policy_dir, load_policy
from ownervault.records import OwnerProfile, Unit
from ownervault.testing import (
    TEST_GRANTOR,
    FrozenClock,
    InMemoryKey,
    grant_roles,
    record_assessments,
)

SECADMIN = Actor("secadmin-01", roles=["security_admin"])


@pytest.fixture
def fresh(tmp_path: Path, clock: FrozenClock) -> Vault:
    """A vault whose only grant is its creator's."""
    vault = Vault.create(tmp_path / "v", key=InMemoryKey(), clock=clock, creator="secadmin-01")
    yield vault
    vault.close()


def _entries(vault: Vault, start: int = 0) -> list[dict[str, Any]]:
    return list(vault.audit.entries(start))


def _size(vault: Vault) -> int:
    return vault.key_status().audit_entries


# --------------------------------------------------------------------------- sessions


def test_creator_holds_the_grant_administrator_role(fresh: Vault) -> None:
    (grant,) = fresh.grants.list(by=SECADMIN)
    assert (grant.actor_id, grant.role, grant.scoped) == ("secadmin-01", "security_admin", False)
    bootstrap = [e for e in _entries(fresh) if e["action"] == "grant.bootstrap"]
    assert len(bootstrap) == 1 and bootstrap[0]["detail"]["grantee"] == "secadmin-01"


def test_an_actor_without_grants_gets_nothing_and_the_refusal_is_audited(fresh: Vault) -> None:
    start = _size(fresh)
    with pytest.raises(NotGrantedError) as caught:
        fresh.session(Actor("anyone", roles=["front_desk"]), "owner_registration")
    assert caught.value.reason == "no_grants"
    (entry,) = _entries(fresh, start)
    assert (entry["action"], entry["decision"], entry["reason"]) == (
        "session.open",
        "deny",
        "no_grants",
    )


def test_claimed_but_ungranted_roles_are_refused(fresh: Vault) -> None:
    fresh.grants.add("guard-01", "security", by=SECADMIN)
    everything = Actor(
        "guard-01", roles=["admin", "compliance_officer", "front_desk", "finance", "security"]
    )
    with pytest.raises(NotGrantedError) as caught:
        fresh.session(everything, "visitor_verification")
    assert caught.value.reason == "role_not_granted"
    assert "'admin'" in str(caught.value)
    # Asking for fewer roles than granted is fine (least privilege).
    with fresh.session(Actor("guard-01", roles=["security"]), "visitor_verification"):
        pass


def test_expired_and_revoked_grants_no_longer_count(fresh: Vault, clock: FrozenClock) -> None:
    record_assessments(fresh, grantor=SECADMIN)
    start = _size(fresh)
    until = clock.now() + _dt.timedelta(hours=8)
    temp = fresh.grants.add("temp-01", "front_desk", by=SECADMIN, expires_at=until)
    clerk = Actor("temp-01", roles=["front_desk"])
    with fresh.session(clerk, "owner_registration"):
        pass
    clock.advance(_dt.timedelta(hours=8))
    with pytest.raises(NotGrantedError, match="holds no role"):
        fresh.session(clerk, "owner_registration")
    assert fresh.grants.list("temp-01", by=SECADMIN) == []
    assert [g.grant_id for g in fresh.grants.list("temp-01", by=SECADMIN, revoked=True)] == [
        temp.grant_id
    ]

    kept = fresh.grants.add("clerk-02", "front_desk", by=SECADMIN)
    removed = fresh.grants.remove(kept.grant_id, by=SECADMIN)
    assert removed.revoked_by == "secadmin-01" and removed.revoked_at is not None
    with pytest.raises(NotGrantedError):
        fresh.session(Actor("clerk-02", roles=["front_desk"]), "owner_registration")
    with pytest.raises(ValidationError, match="no active grant"):
        fresh.grants.remove(kept.grant_id, by=SECADMIN)
    actions = [e["action"] for e in _entries(fresh, start)]
    assert actions.count("grant.add") == 2 and actions.count("grant.remove") == 1


def test_bad_grants_are_refused_with_clear_errors(fresh: Vault, clock: FrozenClock) -> None:
    with pytest.raises(ValidationError, match="unknown role"):
        fresh.grants.add("x-01", "janitor", by=SECADMIN)
    with pytest.raises(ValidationError, match="community/building"):
        fresh.grants.add("x-01", "front_desk", by=SECADMIN, buildings=["no-slash"])
    with pytest.raises(ValidationError, match="future"):
        fresh.grants.add("x-01", "front_desk", by=SECADMIN, expires_at=clock.now())
    with pytest.raises(ValidationError, match="time zone"):
        fresh.grants.add("x-01", "front_desk", by=SECADMIN, expires_at=_dt.datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match="already"):
        fresh.grants.bootstrap("usurper")
    for reserved in ("ownervault", "unauthenticated"):
        with pytest.raises(ValidationError, match="the vault itself"):
            fresh.grants.add(reserved, "admin", by=SECADMIN)


# --------------------------------------------------------------------------- scope


def _owner_in(vault: Vault, subject_id: str, community: str, building: str) -> str:
    clerk = Actor("clerk-hq", roles=["front_desk"])
    vault.grants.add("clerk-hq", "front_desk", by=SECADMIN)
    with vault.session(clerk, "owner_registration") as s:
        rid, _ = s.put_many(
            [
                OwnerProfile(subject_id=subject_id, name="测试业主", phone="13800138000"),
                Unit(
                    subject_id=subject_id,
                    community=community,
                    building=building,
                    unit_number="101",
                ),
            ]
        )
    vault.grants.remove(vault.grants.list("clerk-hq", by=SECADMIN)[0].grant_id, by=SECADMIN)
    return rid


def test_a_scoped_grant_confines_the_session_to_its_buildings(fresh: Vault) -> None:
    record_assessments(fresh, grantor=SECADMIN)
    inside = _owner_in(fresh, "owner-in", "翠湖苑", "3")
    outside = _owner_in(fresh, "owner-out", "翠湖苑", "5")
    fresh.grants.add("butler-01", "front_desk", by=SECADMIN, buildings=["翠湖苑/3", "翠湖苑/4"])
    butler = Actor("butler-01", roles=["front_desk"])
    with fresh.session(butler, "owner_registration") as s:
        assert s.actor.confined and s.actor.buildings == ("翠湖苑/3", "翠湖苑/4")
        assert s.get(OwnerProfile, inside)["name"] == "测试业主"
        with pytest.raises(PolicyDeniedError) as caught:
            s.get(OwnerProfile, outside)
        assert caught.value.reason == "outside_scope"
    # Asking for a narrower scope is fine; a wider one is refused and audited.
    with (
        fresh.session(
            Actor("butler-01", roles=["front_desk"], buildings=["翠湖苑/4"]), "owner_registration"
        ) as s,
        pytest.raises(PolicyDeniedError),
    ):
        s.get(OwnerProfile, inside)
    start = _size(fresh)
    with pytest.raises(NotGrantedError) as refused:
        fresh.session(
            Actor("butler-01", roles=["front_desk"], communities=["翠湖苑"]), "owner_registration"
        )
    assert refused.value.reason == "scope_not_granted"
    assert _entries(fresh, start)[0]["reason"] == "scope_not_granted"


def test_a_community_grant_covers_its_buildings(fresh: Vault) -> None:
    record_assessments(fresh, grantor=SECADMIN)
    rid = _owner_in(fresh, "owner-c", "金桂园", "2")
    fresh.grants.add("mgr-01", "manager", by=SECADMIN, communities=["金桂园"])
    for scope in ({}, {"buildings": ["金桂园/2"]}, {"communities": ["金桂园"]}):
        actor = Actor("mgr-01", roles=["manager"], **scope)
        with fresh.session(actor, "complaint_handling") as s:
            assert s.actor.confined
            s.get(OwnerProfile, rid)


# --------------------------------------------------------------------------- separation of duties


def test_separation_of_duties_is_refused_at_grant_time(fresh: Vault) -> None:
    fresh.grants.add("dpo-01", "compliance_officer", by=SECADMIN)
    with pytest.raises(ValidationError, match="separation of duties"):
        fresh.grants.add("dpo-01", "admin", by=SECADMIN)
    with pytest.raises(ValidationError, match="separation of duties"):
        fresh.grants.add("secadmin-01", "front_desk", by=SECADMIN)


def test_separation_of_duties_is_refused_at_session_time(
    tmp_path: Path, clock: FrozenClock
) -> None:
    lax = tmp_path / "lax"
    lax.mkdir()
    for name in (
        "purposes.toml",
        "rules.toml",
        "detectors.toml",
        "notices.toml",
        "controller.toml",
        "breach.toml",
    ):
        source = default_policy_dir() / name
        if source.exists():
            (lax / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    roles = (default_policy_dir() / "roles.toml").read_text(encoding="utf-8")
    start = roles.index("separation_of_duties")
    roles = roles[:start] + roles[roles.index("]\n\n", start) + 3 :]
    (lax / "roles.toml").write_text(roles, encoding="utf-8")
    assert load_policy(lax).conflicts == frozenset()
    key = InMemoryKey()
    with Vault.create(tmp_path / "v", key=key, clock=clock, policy=lax, creator="sa") as vault:
        sa = Actor("sa", roles=["security_admin"])
        vault.grants.add("both-01", "admin", by=sa)
        vault.grants.add("both-01", "compliance_officer", by=sa)
    # The pack now keeps the two apart: the actor may use either, never both at once.
    with Vault.open(tmp_path / "v", key=key, clock=clock) as vault:
        with pytest.raises(NotGrantedError) as caught:
            vault.session(Actor("both-01", roles=["admin", "compliance_officer"]), "subject_rights")
        assert caught.value.reason == "separation_of_duties"
        with vault.session(Actor("both-01", roles=["compliance_officer"]), "subject_rights"):
            pass


# --------------------------------------------------------------------------- admin verbs


def _verbs(vault: Vault) -> dict[str, Callable[[Actor], object]]:
    """One call per administrative action the pack authorises."""
    some_key = vault.keys.primary(vault.keys.inventory()[0].kind)
    return {
        "key.add": lambda a: vault.keys.add("kek", actor=a),
        "key.promote": lambda a: vault.keys.promote(some_key, actor=a),
        "key.demote": lambda a: vault.keys.demote(some_key, actor=a),
        "key.compromised": lambda a: vault.keys.mark_compromised(some_key, actor=a),
        "key.destroy": lambda a: vault.keys.destroy(some_key, actor=a),
        "key.rotate_root": lambda a: vault.keys.rotate_root(InMemoryKey(), actor=a),
        "key.rotate_kek": lambda a: vault.keys.rotate_kek(actor=a),
        "key.rotate_index": lambda a: vault.keys.rotate_index_key(actor=a),
        "key.reencrypt": lambda a: vault.keys.reencrypt_subjects(actor=a),
        "key.seal_header": lambda a: vault.keys.seal_header(actor=a),
        "key.backup": lambda a: vault.export_key_backup(vault.path.parent / "kb", actor=a),
        "vault.backup": lambda a: vault.backup(vault.path.parent / "bk", actor=a),
        "audit.export": lambda a: vault.export_audit(vault.path.parent / "a.bundle", actor=a),
        "key.run_job": lambda a: vault.keys.run("job-none", actor=a),
        "key.rotate_page_key": lambda a: vault.rotate_page_key(actor=a),
        "grant.add": lambda a: vault.grants.add("x-01", "front_desk", by=a),
        "grant.remove": lambda a: vault.grants.remove("grant-none", by=a),
        "grant.list": lambda a: vault.grants.list(by=a),
        "incident.affected": lambda a: vault.incidents.affected("inc-none", actor=a),
        "incident.confirm": lambda a: vault.incidents.confirm("inc-none", actor=a),
        "incident.close": lambda a: vault.incidents.close("inc-none", actor=a, resolution="x"),
        "incident.refresh": lambda a: vault.incidents.refresh("inc-none", actor=a),
        "incident.acknowledge": lambda a: vault.incidents.acknowledge("inc-none", actor=a),
        "incident.retry": lambda a: vault.incidents.retry("n-none", actor=a),
    }


def test_each_admin_verb_is_refused_for_a_role_the_pack_does_not_name(fresh: Vault) -> None:
    guard = Actor("guard-01", roles=["security"])
    fresh.grants.add("guard-01", "security", by=SECADMIN)
    verbs = _verbs(fresh)
    assert set(verbs) <= set(ADMIN_ACTIONS)
    for action, call in verbs.items():
        start = _size(fresh)
        with pytest.raises(PolicyDeniedError) as caught:
            call(guard)
        assert caught.value.reason == "role_not_permitted", action
        (entry,) = _entries(fresh, start)
        assert (entry["action"], entry["decision"], entry["actor"]) == (action, "deny", "guard-01")


def test_an_admin_verb_needs_the_role_granted_not_claimed(fresh: Vault) -> None:
    with pytest.raises(NotGrantedError):
        fresh.keys.rotate_kek(actor=Actor("guard-01", roles=["admin"]))
    fresh.grants.add("admin-01", "admin", by=SECADMIN)
    fresh.keys.rotate_kek(actor=Actor("admin-01", roles=["admin"]))


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ('"key.teleport" = ["admin"]', "unknown administrative action"),
        ('"key.add" = ["janitor"]', "unknown role"),
    ],
)
def test_the_loader_refuses_unknown_admin_actions_and_roles(
    tmp_path: Path, roles: str, message: str
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    for source in default_policy_dir().iterdir():
        if source.suffix == ".toml":
            (pack / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    text = (pack / "roles.toml").read_text(encoding="utf-8")
    text = text.replace('"key.add" = ["admin"]', roles)
    (pack / "roles.toml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message) as caught:
        load_policy(pack)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(roles.split()[0]))
    assert f"roles.toml:{line}:" in str(caught.value)


# --------------------------------------------------------------------------- integrity and CLI


def test_a_grant_written_outside_the_vault_is_refused(fresh: Vault) -> None:
    fresh.grants.add("guard-01", "security", by=SECADMIN)
    backend = fresh._kernel.backend
    with backend.atomic():
        backend._execute("UPDATE grants SET role = 'admin' WHERE actor_id = 'guard-01'", ())
    with pytest.raises(IntegrityError):
        fresh.session(Actor("guard-01", roles=["admin"]), "vault_administration")


def test_a_revoked_grant_written_back_is_found_by_the_deep_check(fresh: Vault) -> None:
    grant = fresh.grants.add("guard-01", "security", by=SECADMIN)
    before = _sql_rows(fresh, "SELECT * FROM grants WHERE grant_id = ?", (grant.grant_id,))
    fresh.grants.remove(grant.grant_id, by=SECADMIN)
    assert fresh.check(deep=True).damage == ()
    columns = ", ".join(f"{c} = ?" for c in before[0])
    _sql_rows(
        fresh,
        f"UPDATE grants SET {columns} WHERE grant_id = ?",
        (*before[0].values(), grant.grant_id),
    )
    # Its tag is the vault's own, so a session opens; the audit log names the revocation.
    fresh.session(Actor("guard-01", roles=["security"]), "visitor_verification").close()
    damage = fresh.check(deep=True).damage
    assert [(d.table, d.row) for d in damage] == [("grants", grant.grant_id)]
    assert "revocation" in damage[0].problem


def _sql_rows(vault: Vault, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    backend = vault._kernel.backend
    with backend.atomic():
        cursor = backend._execute(sql, params)
        names = [d[0] for d in cursor.description] if cursor.description else []
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()] if names else []


def test_grants_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERVAULT_PASSPHRASE", "cli-grants-test")
    runner = CliRunner()
    path = str(tmp_path / "v")
    assert runner.invoke(main, ["init", path, "--creator", "sa-01"]).exit_code == 0
    added = runner.invoke(
        main,
        ["grants", "add", path, "butler-01", "front_desk", "--building", "A/1", "--as", "sa-01"],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, ["grants", "list", path, "--as", "sa-01"])
    assert "butler-01" in listed.output and "A/1" in listed.output
    refused = runner.invoke(main, ["grants", "list", path, "--as", "butler-01"])
    assert refused.exit_code != 0
    assert "not granted" in refused.output and "Traceback" not in refused.output
    grant_id = added.output.strip().rsplit("(", 1)[1].rstrip(")")
    removed = runner.invoke(main, ["grants", "remove", path, grant_id, "--as", "sa-01"])
    assert removed.exit_code == 0 and "revoked" in removed.output


def test_the_test_helper_grants_through_the_public_api(tmp_path: Path) -> None:
    with Vault.create(tmp_path / "v", key=InMemoryKey()) as vault:
        clerk = Actor("clerk-01", roles=["front_desk"])
        grant_roles(vault, clerk)
        grant_roles(vault, clerk)  # roles held already are left alone
        held = vault.grants.list(by=TEST_GRANTOR)
        assert [(g.actor_id, g.role) for g in held] == [
            (TEST_GRANTOR.actor_id, "security_admin"),
            ("clerk-01", "front_desk"),
        ]
        assert all(isinstance(g, Grant) for g in held)


# --------------------------------------------------------------------------- break-glass


def test_break_glass_is_bounded_audited_and_opens_a_review(
    fresh: Vault, clock: FrozenClock
) -> None:
    record_assessments(fresh, grantor=SECADMIN)
    read = _owner_in(fresh, "owner-bg", "翠湖苑", "3")
    _owner_in(fresh, "owner-other", "翠湖苑", "4")
    fresh.grants.add("eng-night", "engineering", by=SECADMIN)
    fresh.grants.add("dpo-01", "compliance_officer", by=SECADMIN)
    engineer = Actor("eng-night", roles=["engineering"])
    reason = "Burst pipe on floor 12, water entering flats below; need residents reached"
    start = _size(fresh)
    access = fresh.break_glass(
        engineer, "emergency_access", reason=reason, duration=_dt.timedelta(minutes=30)
    )
    assert access.grant.role == "emergency_responder"
    assert access.expires_at == clock.now() + _dt.timedelta(minutes=30)
    granted = [e for e in _entries(fresh, start) if e["action"] == "break_glass.grant"]
    assert len(granted) == 1
    detail = granted[0]["detail"]
    assert detail["incident_id"] == access.incident_id and detail["rule_set"] == "emergency_access"
    assert reason not in repr(_entries(fresh, start))  # the audit log keeps a digest, not text
    responder = Actor("eng-night", roles=["emergency_responder"])
    with fresh.session(responder, "emergency_contact") as s:
        assert s.get(OwnerProfile, read)["phone"] == "13800138000"
        # A session still open when the grant runs out can do nothing more.
        clock.advance(_dt.timedelta(minutes=31))
        with pytest.raises(NotGrantedError) as late:
            s.get(OwnerProfile, read)
        assert late.value.reason == "grant_expired"
    with pytest.raises(NotGrantedError) as expired:
        fresh.session(responder, "emergency_contact")
    assert expired.value.reason == "role_not_granted"

    dpo = Actor("dpo-01", roles=["compliance_officer"])
    incident = fresh.incidents.refresh(access.incident_id, actor=dpo)
    assert incident.status.value == "suspected"
    affected = fresh.incidents.affected(access.incident_id, actor=dpo)
    reads = {
        e["subject"]
        for e in _entries(fresh, start)
        if e["actor"] == "eng-night" and e["action"] == "read" and e["decision"] == "allow"
    }
    assert len(reads) == 1 and set(affected) == reads  # exactly the owner read, not the other
    fresh.incidents.close(access.incident_id, actor=dpo, resolution="justified: burst pipe")


def test_break_glass_is_refused_to_roles_not_eligible_and_without_a_reason(
    fresh: Vault,
) -> None:
    fresh.grants.add("guard-01", "security", by=SECADMIN)
    fresh.grants.add("clerk-01", "front_desk", by=SECADMIN)
    guard = Actor("guard-01", roles=["security"])
    start = _size(fresh)
    with pytest.raises(PolicyDeniedError) as caught:
        fresh.break_glass(guard, "emergency_access", reason="fire alarm in building 3")
    assert caught.value.reason == "role_not_eligible"
    assert _entries(fresh, start)[-1]["reason"] == "role_not_eligible"
    clerk = Actor("clerk-01", roles=["front_desk"])
    with pytest.raises(PolicyDeniedError) as unknown:
        fresh.break_glass(clerk, "everything", reason="fire alarm in building 3")
    assert unknown.value.reason == "unknown_rule_set"
    with pytest.raises(ValidationError, match="at least"):
        fresh.break_glass(clerk, "emergency_access", reason="fire")
    with pytest.raises(ValidationError, match="personal data"):
        fresh.break_glass(clerk, "emergency_access", reason="call resident on 13800138000 now")
    with pytest.raises(ValidationError, match="at most"):
        fresh.break_glass(
            clerk,
            "emergency_access",
            reason="fire alarm in building 3",
            duration=_dt.timedelta(hours=3),
        )
    with pytest.raises(NotGrantedError):
        fresh.break_glass(
            Actor("clerk-01", roles=["engineering"]), "emergency_access", reason="fire alarm 3"
        )


# --------------------------------------------------------------------------- two people


def _two_person_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "pack"
    pack.mkdir()
    for source in default_policy_dir().iterdir():
        if source.suffix == ".toml":
            (pack / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    with (pack / "roles.toml").open("a", encoding="utf-8") as roles:
        roles.write('\n[two_person]\nactions = ["key.destroy"]\ngrants_of = ["admin"]\n')
    return pack


def test_two_person_actions_need_another_permitted_actor(
    tmp_path: Path, clock: FrozenClock
) -> None:
    policy = _two_person_pack(tmp_path)
    with Vault.create(
        tmp_path / "v", key=InMemoryKey(), clock=clock, policy=policy, creator="sa-1"
    ) as vault:
        sa1 = Actor("sa-1", roles=["security_admin"])
        vault.grants.add("sa-2", "security_admin", by=sa1)
        sa2 = Actor("sa-2", roles=["security_admin"])
        start = _size(vault)
        with pytest.raises(PolicyDeniedError) as missing:
            vault.grants.add("admin-1", "admin", by=sa1)
        assert missing.value.reason == "approval_required"
        assert _entries(vault, start)[-1]["reason"] == "approval_required"
        with pytest.raises(PolicyDeniedError) as own:
            vault.grants.add("admin-1", "admin", by=sa1, approver=sa1)
        assert own.value.reason == "approver_is_actor"
        vault.grants.add("guard-1", "security", by=sa1)
        with pytest.raises(PolicyDeniedError) as weak:
            vault.grants.add(
                "admin-1", "admin", by=sa1, approver=Actor("guard-1", roles=["security"])
            )
        assert weak.value.reason == "approver_not_permitted"
        vault.grants.add("admin-1", "admin", by=sa1, approver=sa2)
        vault.grants.add("admin-2", "admin", by=sa2, approver=sa1)
        added = [e for e in _entries(vault, start) if e["action"] == "grant.add"]
        assert [e["detail"].get("approved_by") for e in added if e["decision"] == "allow"] == [
            None,
            "sa-2",
            "sa-1",
        ]

        admin1, admin2 = Actor("admin-1", roles=["admin"]), Actor("admin-2", roles=["admin"])
        kek = vault.keys.primary(KeyKind.KEK)
        job = vault.keys.rotate_kek(actor=admin1)
        vault.keys.run(job.job_id, actor=admin1)
        with pytest.raises(PolicyDeniedError, match="second person"):
            vault.keys.destroy(kek, actor=admin1)
        vault.keys.destroy(kek, actor=admin1, approver=admin2)
        destroyed = [e for e in _entries(vault) if e["action"] == "key.destroy"]
        assert destroyed[-1]["detail"]["approved_by"] == "admin-2"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[two_person]\nactions = ["key.teleport"]\n', "unknown administrative action"),
        ('[two_person]\ngrants_of = ["janitor"]\n', "unknown role"),
        (
            '[break_glass.x]\nrole = "admin"\neligible = ["admin"]\nmax_duration = "PT1H"\n',
            "cannot be eligible",
        ),
        (
            '[break_glass.x]\nrole = "admin"\neligible = ["security"]\nmax_duration = "P2D"\n',
            "PT24H",
        ),
    ],
)
def test_the_loader_refuses_bad_two_person_and_break_glass_sections(
    tmp_path: Path, section: str, message: str
) -> None:
    pack = _two_person_pack(tmp_path)
    roles = (pack / "roles.toml").read_text(encoding="utf-8")
    roles = roles[: roles.index("\n[two_person]")] + "\n" + section
    (pack / "roles.toml").write_text(roles, encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(pack)
