"""Loading a policy pack: validate the TOML files, cross-check them, build the :class:`Policy`.

A policy pack is a folder of TOML files (see ``docs/policies.md`` and ``policies/``):

* ``purposes.toml`` -- why data is used: title, legal basis, retention (ISO 8601 duration), the
  fields each purpose may need per record type; and prohibited purposes with a reason.
* ``roles.toml`` -- who acts: each role and the purposes it may act for.
* ``rules.toml`` -- role x purpose x record type -> actions and field views
  (``full``, ``masked:<masker>``, ``hidden``).
* ``retention.toml`` -- per record type, how long it is kept and from which event
  (:mod:`.retention`).
* ``controller.toml`` -- the controller, its personal information protection officer and the
  security measures; ``notices.toml`` -- the versioned privacy notice of every purpose (see
  :mod:`.notices`). A pack written before these two files existed still loads.

Loading fails with the file, line and a clear message on any unknown field, role, purpose,
record type or masker. :func:`processing_register` turns a loaded pack into the record of
processing activities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..exceptions import PolicyError, ValidationError
from ..records import MASKERS, RECORD_TYPES, Classification, Record
from .files import PackFile, PurposesFile, RolesFile, RuleModel, RulesFile, clock_minutes
from .impact import requirement
from .model import ADMIN_ACTIONS, FieldView, LegalBasis, ViewMode
from .notices import load_notices
from .pack import BreakGlass, Policy, Purpose, Rule
from .recipients import RECIPIENTS_FILE, Recipient, load_recipients
from .retention import RETENTION_FILE, derived_schedule, load_schedule

__all__ = ["cross_border_transfers", "default_policy_dir", "load_policy", "processing_register"]


def default_policy_dir() -> Path:
    """The property-management policy pack shipped with ownervault."""
    return Path(__file__).parent.parent / "policies"


def _parse_view(raw: str) -> FieldView:
    if raw == "full":
        return FieldView(ViewMode.FULL)
    if raw == "hidden":
        return FieldView(ViewMode.HIDDEN)
    return FieldView(ViewMode.MASKED, raw.split(":", 1)[1])


def load_policy(folder: str | Path | None = None) -> Policy:
    """Load and validate a policy pack folder (default: the shipped property-management pack).

    Raises:
        PolicyError: with file and line, for any syntax error, unknown role, purpose, record
            type, field or masker, bad duration, or a rule granting more than its purpose needs.
    """
    base = Path(folder) if folder is not None else default_policy_dir()
    if not base.is_dir():
        raise PolicyError("policy folder does not exist", file=str(base))
    pfile, rfile, rulefile = (
        PackFile(base, n) for n in ("purposes.toml", "roles.toml", "rules.toml")
    )
    purposes_doc = pfile.validate(PurposesFile)
    roles_doc = rfile.validate(RolesFile)
    rules_doc = rulefile.validate(RulesFile)

    purposes: dict[str, Purpose] = {}
    for pid, pm in purposes_doc.purposes.items():
        if pid in purposes_doc.prohibited:
            raise pfile.error(
                ["prohibited", pid], f"purpose {pid!r} is both allowed and prohibited"
            )
        fields: dict[str, frozenset[str]] = {}
        for rtype, names in pm.fields.items():
            record_cls = RECORD_TYPES.get(rtype)
            if record_cls is None:
                raise pfile.error(
                    ["purposes", pid, "fields", rtype], f"unknown record type {rtype!r}"
                )
            fields[rtype] = _expand_fields(
                pfile, ["purposes", pid, "fields", rtype], record_cls, names
            )
        purposes[pid] = Purpose(
            purpose_id=pid,
            title_zh=pm.title.zh,
            title_en=pm.title.en,
            legal_basis=pm.legal_basis,
            retention=pm.retention,
            separate_consent=pm.separate_consent,
            contract_necessary=pm.contract_necessary,
            fields=fields,
            description=pm.description,
            automated_decisions=pm.automated_decisions,
            cross_border=pm.cross_border,
        )
        sensitive_used = any(
            RECORD_TYPES[rt].field_specs()[f].classification is Classification.SENSITIVE
            for rt, names in fields.items()
            for f in names
        )
        if sensitive_used and pm.legal_basis is LegalBasis.CONSENT and not pm.separate_consent:
            raise pfile.error(
                ["purposes", pid, "separate_consent"],
                f"purpose {pid!r} needs sensitive fields under consent: "
                "set separate_consent = true",
            )

    notice_set = load_notices(
        base,
        pfile,
        {
            pid: (pm.legal_basis, pm.retention, purposes[pid].fields, pm.notice)
            for pid, pm in purposes_doc.purposes.items()
        },
    )
    for pid, pm in purposes_doc.purposes.items():
        if pm.legal_basis is LegalBasis.CONSENT and pid not in notice_set.by_purpose:
            raise pfile.error(
                ["purposes", pid, "legal_basis"],
                f"purpose {pid!r} is based on consent and needs a [notice] with zh and en text",
            )
    for pid, nid in notice_set.by_purpose.items():
        notice = notice_set.notices[nid]
        purposes[pid] = attrs.evolve(
            purposes[pid],
            notice_zh=notice.text("zh"),
            notice_en=notice.text("en"),
            notice_version=notice.version,
            notice_hash=notice.sha256,
            notice_id=nid,
        )

    roles: dict[str, frozenset[str]] = {}
    titles: dict[str, tuple[str, str]] = {}
    for rid, role_model in roles_doc.roles.items():
        for i, pid in enumerate(role_model.purposes):
            if pid not in purposes:
                what = "a prohibited" if pid in purposes_doc.prohibited else "an unknown"
                raise rfile.error(
                    ["roles", rid, "purposes", i], f"role {rid!r} names {what} purpose {pid!r}"
                )
        roles[rid] = frozenset(role_model.purposes)
        titles[rid] = (role_model.title.zh, role_model.title.en)
    admin: dict[str, frozenset[str]] = {}
    for action, granted in roles_doc.admin_actions.items():
        if action not in ADMIN_ACTIONS:
            raise rfile.error(
                ["admin_actions", action], f"unknown administrative action {action!r}"
            )
        for i, role in enumerate(granted):
            if role not in roles:
                raise rfile.error(
                    ["admin_actions", action, i], f"action {action!r} names unknown role {role!r}"
                )
        admin[action] = frozenset(granted)
    conflicts: set[frozenset[str]] = set()
    for i, pair in enumerate(roles_doc.separation_of_duties):
        for j, role in enumerate(pair):
            if role not in roles:
                raise rfile.error(
                    ["separation_of_duties", i, j],
                    f"separation of duties names unknown role {role!r}",
                )
        if pair[0] == pair[1]:
            raise rfile.error(
                ["separation_of_duties", i],
                f"separation of duties pairs role {pair[0]!r} with itself",
            )
        conflicts.add(frozenset(pair))
    for i, action in enumerate(roles_doc.two_person.actions):
        if action not in ADMIN_ACTIONS:
            raise rfile.error(
                ["two_person", "actions", i], f"unknown administrative action {action!r}"
            )
    for i, role in enumerate(roles_doc.two_person.grants_of):
        if role not in roles:
            raise rfile.error(["two_person", "grants_of", i], f"unknown role {role!r}")
    emergency: dict[str, BreakGlass] = {}
    for name, bg in roles_doc.break_glass.items():
        named: list[tuple[list[object], str]] = [(["role"], bg.role)]
        named += [(["eligible", i], r) for i, r in enumerate(bg.eligible)]
        for where, role in named:
            if role not in roles:
                raise rfile.error(
                    ["break_glass", name, *where],
                    f"break-glass {name!r} names unknown role {role!r}",
                )
        if bg.role in bg.eligible:
            raise rfile.error(
                ["break_glass", name, "eligible"],
                f"break-glass {name!r}: its own role {bg.role!r} cannot be eligible for it",
            )
        emergency[name] = BreakGlass(name, bg.role, frozenset(bg.eligible), bg.max_duration)

    rules: list[Rule] = []
    seen: set[str] = set()
    for i, rm in enumerate(rules_doc.rules):
        at: list[object] = ["rules", i]
        if rm.id in seen:
            raise rulefile.error([*at, "id"], f"duplicate rule id {rm.id!r}")
        seen.add(rm.id)
        for role in rm.roles:
            if role not in roles:
                raise rulefile.error([*at, "roles"], f"rule {rm.id!r}: unknown role {role!r}")
            if rm.purpose in purposes and rm.purpose not in roles[role]:
                raise rulefile.error(
                    [*at, "roles"], f"rule {rm.id!r}: role {role!r} may not act for {rm.purpose!r}"
                )
        if rm.purpose not in purposes:
            raise rulefile.error(
                [*at, "purpose"], f"rule {rm.id!r}: unknown purpose {rm.purpose!r}"
            )
        if rm.record == "*":
            # A rule for every record type its purpose covers may only use wildcards.
            if set(rm.fields) - {"*"} or set(rm.write) - {"*"}:
                raise rulefile.error(
                    [*at, "record"],
                    f"rule {rm.id!r}: a rule for record '*' may only name field '*'",
                )
            if rm.search:
                raise rulefile.error(
                    [*at, "search"],
                    f"rule {rm.id!r}: a rule for record '*' cannot grant search; "
                    "name the record type",
                )
            if rm.where:
                raise rulefile.error(
                    [*at, "where"],
                    f"rule {rm.id!r}: a rule for record '*' cannot have a 'where' condition; "
                    "name the record type",
                )
            targets = sorted(purposes[rm.purpose].fields)
        else:
            targets = [rm.record]
        for record_type in targets:
            rules.append(_build_rule(rulefile, at, rm, record_type, purposes))
    digest = hashlib.sha256()
    for pack in (pfile, rfile, rulefile):
        digest.update(_digest_part(pack.path.name, pack.text))
    recipients = {}
    if (base / RECIPIENTS_FILE).exists():
        # The register of recipients is optional; when present it is part of the digest.
        recipients_file = PackFile(base, RECIPIENTS_FILE)
        recipients = load_recipients(
            recipients_file, {pid: (p.legal_basis, p.fields) for pid, p in purposes.items()}
        )
        digest.update(_digest_part(recipients_file.path.name, recipients_file.text))
    # The retention schedule (retention.toml); a pack without one gets a derived schedule.
    used_types = {rt for p in purposes.values() for rt, names in p.fields.items() if names}
    if (base / RETENTION_FILE).is_file():
        retention_file = PackFile(base, RETENTION_FILE)
        schedule = load_schedule(retention_file, used_types)
        digest.update(_digest_part(RETENTION_FILE, retention_file.text))
    else:
        schedule = derived_schedule(purposes)
    for name, text in notice_set.texts:
        digest.update(_digest_part(name, text))
    return Policy(
        source=str(base),
        roles=roles,
        role_titles=titles,
        purposes=purposes,
        prohibited={pid: pm.reason for pid, pm in purposes_doc.prohibited.items()},
        rules=tuple(rules),
        digest=digest.hexdigest(),
        admin_actions=admin,
        conflicts=frozenset(conflicts),
        break_glass=emergency,
        two_person=frozenset(roles_doc.two_person.actions),
        two_person_grants=frozenset(roles_doc.two_person.grants_of),
        recipients=recipients,
        retention=schedule,
        notices=notice_set.notices,
        controller=notice_set.controller,
        security_measures=notice_set.security_measures,
    )


def _digest_part(name: str, text: str) -> bytes:
    """Length-prefixed (name, text) bytes, so the pack digest is unambiguous."""
    raw_name, raw_text = name.encode("utf-8"), text.encode("utf-8")
    return len(raw_name).to_bytes(4, "big") + raw_name + len(raw_text).to_bytes(8, "big") + raw_text


def _build_rule(
    rulefile: PackFile,
    at: list[object],
    rm: RuleModel,
    record_type: str,
    purposes: Mapping[str, Purpose],
) -> Rule:
    """Validate one rule against its record type and purpose and build the loaded value."""
    record_cls = RECORD_TYPES.get(record_type)
    if record_cls is None:
        raise rulefile.error(
            [*at, "record"], f"rule {rm.id!r}: unknown record type {record_type!r}"
        )
    needed = purposes[rm.purpose].fields.get(record_type)
    if needed is None:
        raise rulefile.error(
            [*at, "record"],
            f"rule {rm.id!r}: purpose {rm.purpose!r} does not cover record type {record_type!r}",
        )
    views: dict[str, FieldView] = {}
    for name, raw in rm.fields.items():
        if name != "*" and name not in record_cls.field_specs():
            raise rulefile.error([*at, "fields", name], f"rule {rm.id!r}: unknown field {name!r}")
        view = _parse_view(raw)
        if view.masker is not None and view.masker not in MASKERS:
            raise rulefile.error(
                [*at, "fields", name], f"rule {rm.id!r}: unknown masker {view.masker!r}"
            )
        if name != "*" and view.disclosed and name not in needed:
            raise rulefile.error(
                [*at, "fields", name],
                f"rule {rm.id!r}: purpose {rm.purpose!r} does not need field {name!r}",
            )
        views[name] = attrs.evolve(view, rule_ids=(rm.id,))
    write = (
        _expand_fields(rulefile, [*at, "write"], record_cls, rm.write) if rm.write else frozenset()
    )
    if write - needed:
        extra = sorted(write - needed)[0]
        raise rulefile.error(
            [*at, "write"], f"rule {rm.id!r}: purpose {rm.purpose!r} does not need field {extra!r}"
        )
    if write and not {"create", "update"} & set(rm.actions):
        raise rulefile.error(
            [*at, "write"], f"rule {rm.id!r}: 'write' needs a create or update action"
        )
    search = _search_fields(rulefile, at, rm, record_cls, views, needed)
    if rm.scope is not None and record_type == "*":
        raise rulefile.error([*at, "scope"], f"rule {rm.id!r}: scope needs a record type")
    hours = None
    if rm.hours is not None:
        start, end = rm.hours.split("-")
        hours = (clock_minutes(start), clock_minutes(end))
    return Rule(
        rule_id=rm.id,
        roles=frozenset(rm.roles),
        purpose=rm.purpose,
        record_type=record_type,
        actions=frozenset(rm.actions),
        views=views,
        write=write,
        search=search,
        minors=rm.minors,
        scope=rm.scope,
        hours=hours,
        weekdays=frozenset(rm.weekdays) if rm.weekdays is not None else None,
        timezone=rm.timezone,
        where=_where(rulefile, at, rm, record_cls),
    )


def _where(
    rulefile: PackFile, at: list[object], rm: RuleModel, record_cls: type[Record]
) -> dict[str, tuple[object, ...]]:
    """Validate a rule's ``where`` condition: internal fields and values they can hold.

    Conditions are checked on the fields stored in the clear, so nothing is decrypted to
    decide; a personal or sensitive field cannot be named, nor a value the field cannot hold.
    """
    specs = record_cls.field_specs()
    out: dict[str, tuple[object, ...]] = {}
    for name, values in rm.where.items():
        place = [*at, "where", name]
        spec = specs.get(name)
        if spec is None:
            raise rulefile.error(place, f"rule {rm.id!r}: 'where' names unknown field {name!r}")
        if spec.classification is not Classification.INTERNAL:
            raise rulefile.error(
                place,
                f"rule {rm.id!r}: 'where' may only name internal fields; "
                f"{record_cls.record_type}.{name} is {spec.classification.value}",
            )
        adapter = record_cls.field_adapter(name)
        allowed: list[object] = []
        for i, value in enumerate(values):
            try:
                checked = record_cls.validate_field(name, value)
            except ValidationError:
                raise rulefile.error(
                    [*place, i],
                    f"rule {rm.id!r}: 'where' value {value!r} is not a possible value of "
                    f"{record_cls.record_type}.{name}",
                ) from None
            allowed.append(adapter.dump_python(checked, mode="json"))
        out[name] = tuple(dict.fromkeys(allowed))
    return out


def _search_fields(
    rulefile: PackFile,
    at: list[object],
    rm: RuleModel,
    record_cls: type[Record],
    views: Mapping[str, FieldView],
    needed: frozenset[str],
) -> frozenset[str]:
    """Validate a rule's ``search`` list: indexed fields the rule shows, named one by one.

    A field the rule shows in full is searchable anyway; ``search`` matters for the fields it
    shows masked, which nobody may search by value unless a rule says so.
    """
    specs = record_cls.field_specs()
    out: set[str] = set()
    for i, name in enumerate(rm.search):
        where = [*at, "search", i]
        if name == "*":
            raise rulefile.error(
                where, f"rule {rm.id!r}: 'search' names fields one by one, not '*'"
            )
        spec = specs.get(name)
        if spec is None:
            raise rulefile.error(where, f"rule {rm.id!r}: 'search' names unknown field {name!r}")
        view = views.get(name)
        if view is None and spec.classification is not Classification.SENSITIVE:
            # A wildcard shows every field it does not name, sensitive fields excepted.
            view = views.get("*")
        if view is None or not view.disclosed or name not in needed:
            raise rulefile.error(
                where,
                f"rule {rm.id!r}: 'search' names field {name!r}, which the rule does not show",
            )
        if spec.index is None:
            raise rulefile.error(
                where,
                f"rule {rm.id!r}: 'search' names field {name!r}, which has no blind index",
            )
        out.add(name)
    if out and "read" not in rm.actions:
        raise rulefile.error([*at, "search"], f"rule {rm.id!r}: 'search' needs the read action")
    return frozenset(out)


def _expand_fields(
    pack: PackFile, at: list[object], record_cls: type[Record], names: Sequence[str]
) -> frozenset[str]:
    specs = record_cls.field_specs()
    out: set[str] = set()
    for i, name in enumerate(names):
        if name == "*":
            out.update(specs)
        elif name in specs:
            out.add(name)
        else:
            raise pack.error(
                [*at, i], f"unknown field {name!r} of record type {record_cls.record_type!r}"
            )
    return frozenset(out)


def processing_register(policy: Policy) -> list[dict[str, Any]]:
    """The record of processing activities (GDPR Art 30 / PIPL Art 56 style), one per purpose.

    Each item: purpose, titles, legal basis, data categories (fields by classification),
    roles that may act for it, retention, consent requirement, the notice (id, version,
    sha256), whether data leaves the country (``cross_border``), the recipients of the register
    that may receive data for it (type, fields, location, cross-border, transfer mechanism,
    agreement), whether it needs an impact assessment and why, and prohibited purposes last.
    :func:`ownervault.policy.register.processing_record` adds the controller, its officer and
    the security measures.
    """
    register: list[dict[str, Any]] = []
    shared = frozenset(policy.purposes_with_recipients())
    for pid, spec in sorted(policy.purposes.items()):
        categories: dict[str, list[str]] = {}
        for record_type, names in sorted(spec.fields.items()):
            specs = RECORD_TYPES[record_type].field_specs()
            for name in sorted(names):
                cls = specs[name].classification.value
                categories.setdefault(cls, []).append(f"{record_type}.{name}")
        consent_text = ""
        if spec.legal_basis is LegalBasis.CONSENT:
            consent_text = "separate consent" if spec.separate_consent else "consent"
            consent_text += f" (notice {spec.notice_version})"
        notice = None
        if spec.notice_id is not None:
            notice = {
                "id": spec.notice_id,
                "version": spec.notice_version,
                "sha256": spec.notice_hash,
            }
        register.append(
            {
                "purpose": pid,
                "title_zh": spec.title_zh,
                "title_en": spec.title_en,
                "legal_basis": spec.legal_basis.value,
                "contract_necessary": spec.contract_necessary,
                "categories": {k: categories[k] for k in sorted(categories)},
                "roles": sorted(r for r, ps in policy.roles.items() if pid in ps),
                "retention": spec.retention,
                "consent": consent_text,
                "prohibited": None,
                "notice": notice,
                "cross_border": spec.cross_border,
                "recipients": [
                    _register_entry(r)
                    for _, r in sorted(policy.recipients.items())
                    if pid in r.purposes
                ],
                "assessment": _assessment_entry(policy, pid, shared),
            }
        )
    for pid, reason in sorted(policy.prohibited.items()):
        register.append(
            {
                "purpose": pid,
                "title_zh": "",
                "title_en": "",
                "legal_basis": "prohibited",
                "contract_necessary": False,
                "categories": {},
                "roles": [],
                "retention": "",
                "consent": "",
                "prohibited": reason,
                "notice": None,
                "cross_border": False,
                "recipients": [],
                "assessment": None,
            }
        )
    return register


def _assessment_entry(policy: Policy, purpose: str, shared: frozenset[str]) -> dict[str, Any]:
    """Whether a purpose needs an impact assessment (PIPL Art 55) and why, from the pack alone.

    Whether a current one is on record is the vault's to say (``ownervault pia check``).
    """
    need = requirement(policy, purpose, shared)
    return {"needed": need.needed, "triggers": list(need.triggers), "exempt": need.exempt}


def _register_entry(recipient: Recipient) -> dict[str, Any]:
    """A recipient as the processing register lists it under a purpose."""
    return {
        "recipient": recipient.recipient_id,
        "name_zh": recipient.name_zh,
        "name_en": recipient.name_en,
        "type": recipient.type.value,
        "fields": sorted(recipient.field_names),
        "retention": recipient.retention,
        "location": recipient.location,
        "cross_border": recipient.cross_border,
        "transfer_mechanism": recipient.transfer_mechanism or None,
        "agreement": recipient.agreement_reference or None,
    }


def cross_border_transfers(policy: Policy) -> list[dict[str, Any]]:
    """The register's recipients outside mainland China, with their transfer mechanisms."""
    return [
        {
            "recipient": r.recipient_id,
            "name_en": r.name_en,
            "location": r.location,
            "purposes": sorted(r.purposes),
            "fields": sorted(r.field_names),
            "transfer_mechanism": r.transfer_mechanism,
        }
        for _, r in sorted(policy.recipients.items())
        if r.cross_border
    ]
