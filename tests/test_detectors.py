"""Detectors against insiders: search enumeration, bulk reads of ordinary personal data per
classification, and after-hours reads under every purpose the pack does not exempt.

Uses the shipped pack's ``detectors.toml``: find_enumeration (more than 30 searches in 30
minutes, fewer than 20 % finding anyone), bulk_access (sensitive 50, personal 200 owners an
hour), after_hours (5 owners at night; emergency_contact 10, counted apart).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ownervault import Actor, Vault
from ownervault.audit import format_time
from ownervault.breach import Exposure, load_breach_config
from ownervault.breach.detectors import Detectors
from ownervault.exceptions import PolicyDeniedError, PolicyError
from ownervault.policy import default_policy_dir, load_policy
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-01", roles=["security"])
FINANCE = Actor("finance-01", roles=["finance"])
DPO = Actor("dpo-01", roles=["compliance_officer"])


def local(day: int, hour: int, minute: int = 0) -> _dt.datetime:
    """A moment in March 2026, Shanghai time, as UTC."""
    return _dt.datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI).astimezone(_dt.UTC)


@pytest.fixture
def clock() -> FrozenClock:
    """10:00 on Monday 2 March 2026 in Shanghai (working hours)."""
    return FrozenClock(local(2, 10))


@pytest.fixture
def dvault(tmp_path: Path, clock: FrozenClock) -> Iterator[Vault]:
    """A vault on the shipped pack and its detectors."""
    with Vault.create(tmp_path / "vault", key=InMemoryKey(), clock=clock) as vault:
        grant_roles(vault, CLERK, GUARD, FINANCE, DPO)
        record_assessments(vault)
        yield vault


def register(vault: Vault, owners: list[OwnerProfile]) -> list[str]:
    """Store owners' profiles as the front desk; returns the record ids."""
    with vault.session(CLERK, "owner_registration") as session:
        return session.put_many(owners)


def pseudonyms(vault: Vault, record_ids: list[str]) -> set[str]:
    """The pseudonyms of the records' subjects."""
    return {r.pseudonym for r in vault._kernel.backend.get_records(record_ids)}


def stored_text(vault: Vault) -> str:
    """Every audit entry, incident document and notification payload, as text."""
    entries = "\n".join(json.dumps(e, ensure_ascii=False) for e in vault.audit.entries())
    incidents = []
    for incident in vault.incidents.all():
        row = vault._kernel.backend.get_incident(incident.incident_id)
        assert row is not None
        incidents.append(row.document)
    payloads = [n.payload for n in vault.incidents.outbox()]
    return "\n".join([entries, *incidents, *payloads])


# --------------------------------------------------------------------------- find_enumeration


def test_guessing_a_masked_phone_is_refused_every_time_and_opens_an_incident(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A guard trying the hidden digits of 139****9999: each search is refused and audited,
    and the 31st within half an hour opens a find_enumeration incident (nothing disclosed)."""
    owner = make_owner(phone="13912349999")
    register(dvault, [owner])
    start = dvault.audit.size()
    guesses = [f"139{n:04d}9999" for n in range(1230, 1240)] + [
        f"139{n:04d}9999" for n in range(1, 21)
    ]
    with dvault.session(GUARD, "visitor_verification") as session:
        for guess in guesses:  # 30 guesses, one every 40 seconds: not yet
            with pytest.raises(PolicyDeniedError) as caught:
                session.find(OwnerProfile, phone=guess)
            assert caught.value.reason == "search_field_masked"
            assert guess not in str(caught.value)
            clock.advance(_dt.timedelta(seconds=40))
        assert dvault.incidents.all() == []
        with pytest.raises(PolicyDeniedError):
            session.find(OwnerProfile, phone="13912349999")  # the right one, refused too
    [incident] = dvault.incidents.all()
    assert incident.detectors == ("find_enumeration",)  # too slow for denial_burst
    assert incident.exposure is Exposure.NONE
    assert incident.scope.actors == ("guard-01",)
    assert incident.scope.since == format_time(local(2, 10))
    [finding] = incident.findings
    assert finding["detail"]["finds"] == 31 and finding["detail"]["hits"] == 0
    assert len(dvault.incidents.affected(incident.incident_id, actor=DPO)) == 0
    refused = [e for e in dvault.audit.entries() if e["seq"] >= start and e["action"] == "find"]
    assert len(refused) == 31
    assert {(e["decision"], e["reason"], tuple(e["fields"])) for e in refused} == {
        ("deny", "search_field_masked", ("phone",))
    }
    text = stored_text(dvault)
    assert "13912349999" not in text and all(g not in text for g in guesses)


def test_granted_searches_that_mostly_miss_open_an_incident_naming_the_owners_found(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Finance may search by phone; 40 searches in which 2 find an owner open an incident
    whose affected owners are the 2 found, their phone counted as disclosed in full."""
    owners = [make_owner() for _ in range(5)]
    ids = register(dvault, owners)
    found: list[str] = []
    with dvault.session(FINANCE, "fee_collection") as session:
        for n in range(40):
            phone = owners[n // 20].phone if n % 20 == 7 else f"1370000{n:04d}"
            hits = session.find(OwnerProfile, phone=phone)
            found += [v.record_id for v in hits]
            clock.advance(_dt.timedelta(seconds=20))
    assert found == ids[:2]
    [incident] = dvault.incidents.all()
    assert incident.detectors == ("find_enumeration",)
    assert incident.exposure is Exposure.PLAINTEXT  # a hit tells the full number
    affected = dvault.incidents.affected(incident.incident_id, actor=DPO)
    assert set(affected) == pseudonyms(dvault, ids[:2])
    for exposure in affected.values():
        assert exposure.fields["owner_profile.phone"] == "full"  # searched for and found
        assert exposure.fields["owner_profile.name"] == "full"
    text = stored_text(dvault)
    assert all(str(o.phone) not in text for o in owners)


def test_desk_work_that_finds_the_owners_it_looks_for_opens_nothing(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Forty look-ups in half an hour that find their owner, with a few misses, are work."""
    owners = [make_owner() for _ in range(40)]
    register(dvault, owners)
    with dvault.session(CLERK, "complaint_handling") as session:
        for n, owner in enumerate(owners):
            phone = "13700000000" if n % 5 == 0 else owner.phone
            session.find(OwnerProfile, phone=phone)
            clock.advance(_dt.timedelta(seconds=40))
    assert dvault.incidents.all() == []


def test_searches_spread_beyond_the_window_do_not_count(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Misses more than the window apart fall out of the count."""
    register(dvault, [make_owner()])
    with dvault.session(FINANCE, "fee_collection") as session:
        for n in range(60):
            session.find(OwnerProfile, phone=f"1370000{n:04d}")
            clock.advance(_dt.timedelta(minutes=2))
    assert dvault.incidents.all() == []


# --------------------------------------------------------------------------- ordinary data


def test_a_guard_reading_300_owners_names_and_phones_at_2am_opens_one_incident(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """300 owners' names, phones and emergency contacts read at 02:00 under emergency_contact
    (no sensitive field among them) open one incident whose affected owners are exactly the
    300 read, with after_hours and bulk_access (personal) both on it."""
    owners = [make_owner() for _ in range(300)]
    others = [make_owner() for _ in range(20)]
    ids = register(dvault, owners + others)
    target = ids[:300]
    with dvault.session(GUARD, "emergency_contact") as session:
        session.get_many(OwnerProfile, ids[300:302])  # in working hours: nothing
    assert dvault.incidents.all() == []

    clock.set(local(3, 2))
    with dvault.session(GUARD, "emergency_contact") as session:
        for rid in target:
            view = session.get(OwnerProfile, rid)
            assert view["emergency_contact_phone"]  # shown in full under this purpose
            clock.advance(_dt.timedelta(seconds=2))
    [incident] = dvault.incidents.all()
    assert set(incident.detectors) == {"after_hours", "bulk_access"}
    assert incident.scope.actors == ("guard-01",)
    assert incident.scope.since == format_time(local(3, 2))
    eleventh = local(3, 2) + _dt.timedelta(seconds=20)  # emergency_contact's own threshold: 10
    assert incident.detected_at == format_time(eleventh)
    bulk = next(f for f in incident.findings if f["detector"] == "bulk_access")
    assert bulk["detail"]["classification"] == "personal"
    assert bulk["count"] == 201

    affected = dvault.incidents.affected(incident.incident_id, actor=DPO)
    assert set(affected) == pseudonyms(dvault, target)
    assert affected.record_count == 300
    for exposure in affected.values():
        assert exposure.fields["owner_profile.name"] == "full"
        assert exposure.fields["owner_profile.phone"] == "full"
        assert exposure.fields["owner_profile.emergency_contact_phone"] == "full"
        assert "owner_profile.id_number" not in exposure.fields
    text = stored_text(dvault)
    for owner in owners[:50]:
        for value in (owner.name, owner.phone, owner.emergency_contact_phone, owner.subject_id):
            assert str(value) not in text


def test_bulk_reads_of_masked_personal_data_fire_on_the_personal_threshold(
    dvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """In working hours, the gate reading 200 owners' masked names and phones within the hour
    opens nothing; the 201st opens a bulk_access incident for personal data."""
    ids = register(dvault, [make_owner() for _ in range(201)])
    with dvault.session(GUARD, "visitor_verification") as session:
        for rid in ids[:200]:
            session.get(OwnerProfile, rid)
            clock.advance(_dt.timedelta(seconds=10))
        assert dvault.incidents.all() == []
        session.get(OwnerProfile, ids[200])
    [incident] = dvault.incidents.all()
    assert incident.detectors == ("bulk_access",)
    [finding] = incident.findings
    assert finding["detail"] == {"classification": "personal", "threshold": 200, "window": "PT1H"}
    affected = dvault.incidents.affected(incident.incident_id, actor=DPO)
    assert len(affected) == 201
    assert {e.fields["owner_profile.phone"] for e in affected.values()} == {"masked"}


def test_breach_notification_reads_are_exempt_by_the_pack_only(tmp_path: Path) -> None:
    """The shipped pack exempts breach_notification in its own file; the code exempts nothing:
    with the exemption taken out of detectors.toml the purpose counts like any other."""
    config = load_breach_config(policy=load_policy())
    assert config.detectors.after_hours.exempt_purposes == ["breach_notification"]
    assert config.detectors.bulk_access.exempt_purposes == ["breach_notification"]
    assert config.detectors.after_hours.purpose_owners == {"emergency_contact": 10}
    pack = copy_pack(tmp_path)
    text = (pack / "detectors.toml").read_text(encoding="utf-8")
    (pack / "detectors.toml").write_text(
        text.replace('exempt_purposes = ["breach_notification"]', "exempt_purposes = []"),
        encoding="utf-8",
    )
    bare = load_breach_config(pack, policy=load_policy(pack)).detectors
    assert bare.after_hours.exempt_purposes == [] and bare.bulk_access.exempt_purposes == []
    # A pack without its own detectors.toml gets the model's defaults, which exempt nothing.
    assert load_breach_config(tmp_path / "nothing").detectors.find_enumeration.exempt_purposes == []


# --------------------------------------------------------------------------- configuration


def copy_pack(tmp_path: Path) -> Path:
    """A copy of the shipped pack in ``tmp_path / "pack"``."""
    folder = tmp_path / "pack"
    shutil.copytree(default_policy_dir(), folder)
    return folder


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "[bulk_access.owners]\nsensitive = 50\npersonal = 200\n",
            'owners = 50\nclassifications = ["sensitive"]\n',
            "thresholds are per classification",
        ),
        ("personal = 200", "personel = 200", "personel"),
        ("emergency_contact = 10", "emergncy_contact = 10", "unknown purpose 'emergncy_contact'"),
        ("hits_below_percent = 20", "hits_below_percent = 0", "greater than or equal to 1"),
        ("finds = 30", "finds = 0", "greater than or equal to 1"),
        ('window = "PT30M"', 'window = "half an hour"', "ISO 8601 duration"),
        ("finds = 30", "finds = 30\nfind = 3", "find"),
    ],
)
def test_detector_settings_are_checked_with_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    """Per-class thresholds, per-purpose night thresholds and find_enumeration settings are
    validated; errors name detectors.toml and a line near the setting."""
    pack = copy_pack(tmp_path)
    path = pack / "detectors.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    first = old.splitlines()[0]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(first))
    with pytest.raises(PolicyError, match=message) as caught:
        load_breach_config(pack, policy=load_policy(pack))
    assert caught.value.file == str(path)
    assert caught.value.line is not None and abs(caught.value.line - line) <= 12


#: Ten searches that find someone, then, once they have left the window, 40 that find no one.
_HITS_THEN_MISSES = [(60, True)] * 10 + [(1320, False)] + [(30, False)] * 39


@settings(max_examples=60, deadline=None)
@example(searches=_HITS_THEN_MISSES)
@given(
    searches=st.lists(
        # A search every 45 s on average (40 within the 30-minute window), 1 in 6 finding
        # someone: enough and few enough hits to cross the threshold and come back.
        st.tuples(st.integers(min_value=0, max_value=90), st.sampled_from([True] + [False] * 5)),
        min_size=1,
        max_size=400,
    )
)
def test_search_enumeration_counts_the_window_as_a_full_recount_would(
    searches: list[tuple[int, bool]],
) -> None:
    """The find_enumeration counter keeps the searches and hits of its window as they come
    and go; its findings (when, how many searches, how many hits) are those of counting the
    whole window again at every search."""
    config = load_breach_config(default_policy_dir()).detectors
    rule = config.find_enumeration
    span = _dt.timedelta(minutes=30)
    assert rule.window == "PT30M"
    at = local(2, 10)
    entries: list[dict[str, object]] = []
    for seq, (gap, hit) in enumerate(searches):
        at += _dt.timedelta(seconds=gap)
        entries.append(
            {
                "seq": seq,
                "time": format_time(at),
                "action": "find",
                "actor": "finance-01",
                "roles": ["finance"],
                "purpose": "fee_collection",
                "decision": "allow",
                "record_type": "owner_profile",
                "fields": ["phone"],
                "detail": {"matches": 1 if hit else 0},
            }
        )
    found = Detectors(config).scan(entries)
    got = [(f.detector, f.since_seq, f.count, f.detail["hits"]) for f in found]

    expected: list[tuple[str, int, int, int]] = []
    window: list[tuple[_dt.datetime, int, bool]] = []
    cooldown: _dt.datetime | None = None
    for seq, entry in enumerate(entries):
        moment = _dt.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
        window.append((moment, seq, searches[seq][1]))
        window = [w for w in window if w[0] >= moment - span]
        hits = sum(1 for w in window if w[2])
        if len(window) <= rule.finds or hits * 100 >= rule.hits_below_percent * len(window):
            continue
        if cooldown is not None and moment < cooldown:
            continue
        expected.append(("find_enumeration", window[0][1], len(window), hits))
        window, cooldown = [], moment + span
    assert got == expected
    if searches == _HITS_THEN_MISSES:
        assert got, "misses after the hits left the window must be reported"


@pytest.mark.parametrize("bulk_masked", [True, False])
@pytest.mark.parametrize("night_masked", [True, False])
def test_masked_fields_count_as_each_detector_says(bulk_masked: bool, night_masked: bool) -> None:
    """``count_masked`` is each detector's own. At night, reads that show an owner's ID number
    masked and the name in full count as personal data for bulk access and after hours
    whatever the setting, and as sensitive data only with the bulk detector's
    ``count_masked``; reads that show both masked count for each detector only with its own."""
    config = load_breach_config(default_policy_dir()).detectors
    config = config.model_copy(
        update={
            "bulk_access": config.bulk_access.model_copy(
                update={"count_masked": bulk_masked, "owners": {"sensitive": 3, "personal": 3}}
            ),
            "after_hours": config.after_hours.model_copy(
                update={"count_masked": night_masked, "owners": 3}
            ),
        }
    )

    def reads(fields: list[str], masked: str, first_seq: int) -> list[dict[str, object]]:
        return [
            {
                "seq": first_seq + n,
                "time": format_time(local(2, 2, 10) + _dt.timedelta(seconds=n)),
                "action": "read",
                "actor": "gate-01",
                "roles": ["security"],
                "purpose": "visitor_verification",
                "decision": "allow",
                "record_type": "owner_profile",
                "record_id": f"rec-{first_seq + n}",
                "subject": f"sub_{first_seq + n}",
                "fields": fields,
                "detail": {"masked": masked},
            }
            for n in range(4)
        ]

    detectors = Detectors(config)
    fired = {
        (f.detector, f.detail.get("classification"))
        for f in detectors.scan(reads(["id_number", "name"], "id_number", 0))
    }
    expected = {("bulk_access", "personal"), ("after_hours", None)}
    if bulk_masked:
        expected.add(("bulk_access", "sensitive"))
    assert fired == expected
    # Only masked fields: the detectors that fired are cooling down, so fresh counters see them.
    fresh = Detectors(config)
    fired = {
        (f.detector, f.detail.get("classification"))
        for f in fresh.scan(reads(["id_number", "name"], "id_number,name", 10))
    }
    expected = set()
    if bulk_masked:
        expected |= {("bulk_access", "personal"), ("bulk_access", "sensitive")}
    if night_masked:
        expected.add(("after_hours", None))
    assert fired == expected
