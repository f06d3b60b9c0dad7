"""Privacy notices and the controller: ``notices.toml`` and ``controller.toml`` of a policy pack.

A notice tells owners what PIPL Art 17 (GDPR Art 13-14) requires before their data is
processed: who the controller is and how to reach it, the purposes, the processing methods, the
categories of personal information, the retention period and how to exercise their rights;
where it applies, why sensitive data is necessary and how it affects them (PIPL Art 30), who
else receives the data (Art 23) and how to withdraw a consent (Art 15).

Each notice names the purposes it serves, an explicit ``version`` its author bumps, and the
``sha256`` of its content: the SHA-256 over the canonical JSON of what the owner is told (see
:func:`notice_hash`). A text changed without a new version and hash is refused, so a changed
notice can never hide under an old version number. Consents are keyed on the hash.

``controller.toml`` names the controller (the personal information processor) and its personal
information protection officer (PIPL Art 52; GDPR Art 37), and lists the security measures that
go into the record of processing activities.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import attrs
import pydantic

from ..records import RECORD_TYPES, Classification
from .files import ISO_DURATION, Notice, PackFile
from .model import LegalBasis

__all__ = [
    "ELEMENTS",
    "Controller",
    "NoticeSet",
    "Officer",
    "PrivacyNotice",
    "SecurityMeasure",
    "duration_text",
    "legacy_notice",
    "load_notices",
    "notice_hash",
]

Lang = Literal["zh", "en"]

#: The elements of a notice: key -> (Chinese heading, English heading, where the law asks it).
ELEMENTS: Final[dict[str, tuple[str, str, str]]] = {
    "controller": (
        "个人信息处理者及联系方式",
        "Who we are and how to reach us",
        "PIPL Art 17(1)(1)",
    ),
    "purposes": ("处理目的", "Why we process your information", "PIPL Art 17(1)(2)"),
    "methods": ("处理方式", "How we process it", "PIPL Art 17(1)(2)"),
    "categories": ("个人信息种类", "What information we process", "PIPL Art 17(1)(2)"),
    "retention": ("保存期限", "How long we keep it", "PIPL Art 17(1)(2)"),
    "rights": ("行使权利的方式和程序", "How to exercise your rights", "PIPL Art 17(1)(3)"),
    "sensitive": (
        "处理敏感个人信息的必要性及对个人权益的影响",
        "Why sensitive information is necessary and how it affects you",
        "PIPL Art 30",
    ),
    "recipients": ("向其他个人信息处理者提供", "Who else receives it", "PIPL Art 23"),
    "withdrawal": ("撤回同意", "Withdrawing your consent", "PIPL Art 15"),
}
#: Elements every notice must have, in both languages.
REQUIRED: Final = ("controller", "purposes", "methods", "categories", "retention", "rights")

_Text = Annotated[str, pydantic.Field(min_length=1)]
_Ident = Annotated[str, pydantic.Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ElementsModel(_Strict):
    """One language of a notice (or of ``[defaults]``): its elements, each a paragraph."""

    controller: _Text | None = None
    purposes: _Text | None = None
    methods: _Text | None = None
    categories: _Text | None = None
    retention: _Text | None = None
    rights: _Text | None = None
    sensitive: _Text | None = None
    recipients: _Text | None = None
    withdrawal: _Text | None = None


class NoticeModel(_Strict):
    """One ``[notices.<id>]`` entry."""

    purposes: list[_Ident] = pydantic.Field(min_length=1)
    version: int = pydantic.Field(ge=1)
    sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    retention: str
    categories: list[_Ident]
    zh: ElementsModel = ElementsModel()
    en: ElementsModel = ElementsModel()


class DefaultsModel(_Strict):
    """``[defaults]``: elements every notice shares unless it gives its own."""

    zh: ElementsModel = ElementsModel()
    en: ElementsModel = ElementsModel()


class NoticesFile(_Strict):
    """``notices.toml``."""

    defaults: DefaultsModel = DefaultsModel()
    notices: dict[_Ident, NoticeModel]


class _Bilingual(_Strict):
    zh: _Text
    en: _Text


class OfficerModel(_Strict):
    """``[controller.officer]``: the personal information protection officer."""

    name: _Bilingual
    phone: _Text | None = None
    email: _Text | None = None

    @pydantic.model_validator(mode="after")
    def _reachable(self) -> OfficerModel:
        if self.phone is None and self.email is None:
            raise ValueError("the officer needs a phone or an email")
        return self


class ControllerModel(_Strict):
    """``[controller]``: the personal information processor."""

    name: _Bilingual
    address: _Bilingual
    phone: _Text | None = None
    email: _Text | None = None
    officer: OfficerModel | None = None

    @pydantic.model_validator(mode="after")
    def _reachable(self) -> ControllerModel:
        if self.phone is None and self.email is None:
            raise ValueError("the controller needs a phone or an email")
        return self


class ControllerFile(_Strict):
    """``controller.toml``."""

    controller: ControllerModel
    security_measures: dict[_Ident, _Bilingual] = {}


@attrs.frozen
class Officer:
    """The personal information protection officer (个人信息保护负责人; GDPR DPO)."""

    name_zh: str
    name_en: str
    phone: str | None
    email: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the record of processing activities)."""
        return {
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "phone": self.phone,
            "email": self.email,
        }


@attrs.frozen
class Controller:
    """The personal information processor (个人信息处理者; GDPR controller)."""

    name_zh: str
    name_en: str
    address_zh: str
    address_en: str
    phone: str | None
    email: str | None
    officer: Officer | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the officer is given separately)."""
        return {
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "address_zh": self.address_zh,
            "address_en": self.address_en,
            "phone": self.phone,
            "email": self.email,
        }


@attrs.frozen
class SecurityMeasure:
    """One ``[security_measures.<id>]`` entry of ``controller.toml``."""

    measure_id: str
    zh: str
    en: str


@attrs.frozen
class PrivacyNotice:
    """A loaded notice: its id, version, content hash and its elements in both languages.

    ``version`` is the author's number as text (``"3"``), or for a notice written inline in
    ``purposes.toml`` its older content-hash version (``"n"`` and 16 hex digits). ``sha256`` is
    the SHA-256 of the canonical content; consents are keyed on it.
    """

    notice_id: str
    version: str
    sha256: str
    purposes: tuple[str, ...]
    retention: str
    categories: tuple[str, ...]
    zh: Mapping[str, str]
    en: Mapping[str, str]
    #: Written inline in ``purposes.toml`` (one paragraph per language, no elements).
    inline: bool = False

    def elements(self, lang: Lang) -> Mapping[str, str]:
        """The notice's elements in ``lang``, in the order of :data:`ELEMENTS`."""
        return self.zh if lang == "zh" else self.en

    def text(self, lang: Lang, *, title: str = "") -> str:
        """The notice as plain text for a screen or a printed form, in ``lang``."""
        lines: list[str] = []
        if title:
            lines += [title, ""]
        for key, body in self.elements(lang).items():
            heading = ELEMENTS[key][0 if lang == "zh" else 1] if key in ELEMENTS else ""
            if heading:
                lines.append(heading + ("：" if lang == "zh" else ":"))
            lines += [body, ""]
        label = "告知书版本" if lang == "zh" else "Notice version"
        lines.append(f"{label} {self.version} (sha256 {self.sha256})")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "notice": self.notice_id,
            "version": self.version,
            "sha256": self.sha256,
            "purposes": list(self.purposes),
            "retention": self.retention,
            "categories": list(self.categories),
            "zh": dict(self.zh),
            "en": dict(self.en),
        }


@attrs.frozen
class NoticeSet:
    """What ``notices.toml`` and ``controller.toml`` gave a pack."""

    #: Notice id -> notice (inline notices too, under their purpose's id).
    notices: Mapping[str, PrivacyNotice]
    #: Purpose id -> the id of the notice that serves it.
    by_purpose: Mapping[str, str]
    controller: Controller | None
    security_measures: tuple[SecurityMeasure, ...]
    #: The pack files read, for the pack digest: (name, text).
    texts: tuple[tuple[str, str], ...] = ()


def notice_hash(
    purposes: Sequence[str],
    retention: str,
    categories: Sequence[str],
    zh: Mapping[str, str],
    en: Mapping[str, str],
) -> str:
    """SHA-256 (hex) over the canonical JSON of a notice's content.

    Canonical: keys sorted, purposes and categories sorted, UTF-8, no insignificant whitespace.
    The version is not part of the content, so renumbering a notice does not change its hash.
    """
    content = {
        "purposes": sorted(purposes),
        "retention": retention,
        "categories": sorted(categories),
        "zh": dict(zh),
        "en": dict(en),
    }
    raw = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _part(name: str, text: str) -> bytes:
    raw_name, raw_text = name.encode("utf-8"), text.encode("utf-8")
    return len(raw_name).to_bytes(4, "big") + raw_name + len(raw_text).to_bytes(8, "big") + raw_text


def legacy_notice(purpose_id: str, retention: str, notice: Notice) -> PrivacyNotice:
    """A notice written inline in ``purposes.toml``: versioned by its own content hash.

    The version is ``n`` and the first 16 hex digits of the SHA-256 over both texts, exactly as
    grants given on it recorded it, so those grants stay live while the text is unchanged.
    """
    digest = hashlib.sha256(_part("zh", notice.zh) + _part("en", notice.en)).hexdigest()
    return PrivacyNotice(
        notice_id=purpose_id,
        version="n" + digest[:16],
        sha256=digest,
        purposes=(purpose_id,),
        retention=retention,
        categories=(),
        zh={"notice": notice.zh},
        en={"notice": notice.en},
        inline=True,
    )


_ZH_UNITS: Final = ("年", "个月", "周", "天", "小时", "分钟", "秒")
_EN_UNITS: Final = ("year", "month", "week", "day", "hour", "minute", "second")


def duration_text(duration: str, lang: Lang) -> tuple[str, ...]:
    """The parts of an ISO 8601 duration as a notice states them: ``P5Y`` -> ``("5年",)`` or
    ``("5 years",)``; ``P1Y6M`` -> ``("1 year", "6 months")``."""
    match = ISO_DURATION.match(duration)
    if match is None:
        raise ValueError("not an ISO 8601 duration")
    out: list[str] = []
    for i, group in enumerate(match.groups()):
        if group is None:
            continue
        number = int(group)
        if lang == "zh":
            out.append(f"{number}{_ZH_UNITS[i]}")
        else:
            out.append(f"{number} {_EN_UNITS[i]}{'' if number == 1 else 's'}")
    return tuple(out)


def _states(text: str, parts: Sequence[str], lang: Lang) -> bool:
    if lang == "zh":
        flat = "".join(text.split())
        return all(part in flat for part in parts)
    flat = " ".join(text.lower().split())
    return all(part in flat for part in parts)


@attrs.frozen
class _PurposeFacts:
    """What a notice is checked against: one purpose's basis, retention and fields."""

    legal_basis: LegalBasis
    retention: str
    fields: Mapping[str, frozenset[str]]
    inline: Notice | None

    @property
    def record_types(self) -> frozenset[str]:
        return frozenset(rt for rt, names in self.fields.items() if names)

    @property
    def sensitive(self) -> bool:
        return any(
            RECORD_TYPES[rt].field_specs()[f].classification is Classification.SENSITIVE
            for rt, names in self.fields.items()
            for f in names
        )


def load_notices(
    base: Path,
    purposes_file: PackFile,
    purposes: Mapping[str, tuple[LegalBasis, str, Mapping[str, frozenset[str]], Notice | None]],
) -> NoticeSet:
    """Read and check ``controller.toml`` and ``notices.toml`` of the pack in ``base``.

    Args:
        base: the pack folder.
        purposes_file: ``purposes.toml``, for errors about purposes.
        purposes: purpose id -> (legal basis, retention, fields by record type, inline notice).

    Either file may be absent (a pack from before notices had their own file): the consent
    purposes then carry their notices inline, and ``ownervault policy check`` reports the pack
    incomplete (:func:`completeness_problem`). A file that is present is checked in full.

    Raises:
        PolicyError: with file and line, for a notice lacking an element the law asks for, a
            purpose without a notice or with two, a notice whose retention or categories do not
            match its purposes, a text changed without a new version and hash, a controller
            without contact, or sensitive processing without a protection officer.
    """
    facts = {
        pid: _PurposeFacts(basis, retention, fields, inline)
        for pid, (basis, retention, fields, inline) in purposes.items()
    }
    texts: list[tuple[str, str]] = []
    controller: Controller | None = None
    measures: tuple[SecurityMeasure, ...] = ()
    if (base / "controller.toml").exists():
        cfile = PackFile(base, "controller.toml")
        texts.append(("controller.toml", cfile.text))
        cdoc = cfile.validate(ControllerFile)
        controller = _controller(cdoc.controller)
        measures = tuple(
            SecurityMeasure(mid, m.zh, m.en) for mid, m in cdoc.security_measures.items()
        )
        if controller.officer is None:
            sensitive = sorted(pid for pid, f in facts.items() if f.sensitive)
            if sensitive:
                raise cfile.error(
                    ["controller"],
                    f"purpose {sensitive[0]!r} processes sensitive personal information: "
                    "name the personal information protection officer in [controller.officer] "
                    "(PIPL Art 52)",
                )
    notices: dict[str, PrivacyNotice] = {}
    by_purpose: dict[str, str] = {}
    if (base / "notices.toml").exists():
        nfile = PackFile(base, "notices.toml")
        texts.append(("notices.toml", nfile.text))
        if controller is None:
            raise nfile.error([], "notices name their controller: the pack needs controller.toml")
        ndoc = nfile.validate(NoticesFile)
        for nid, nm in ndoc.notices.items():
            for i, pid in enumerate(nm.purposes):
                if pid in by_purpose:
                    raise nfile.error(
                        ["notices", nid, "purposes", i],
                        f"purpose {pid!r} is served by notices {by_purpose[pid]!r} and {nid!r}",
                    )
                by_purpose[pid] = nid
            notices[nid] = _check_notice(nfile, nid, nm, ndoc.defaults, facts, controller)
        for pid, fact in facts.items():
            if fact.inline is not None:
                raise purposes_file.error(
                    ["purposes", pid, "notice"],
                    f"purpose {pid!r} has an inline [notice]; give it in notices.toml instead",
                )
            if pid not in by_purpose:
                raise purposes_file.error(
                    ["purposes", pid],
                    f"purpose {pid!r} has no notice: name it in a notice of notices.toml "
                    "(PIPL Art 17)",
                )
    else:
        for pid, fact in facts.items():
            if fact.inline is not None:
                notices[pid] = legacy_notice(pid, fact.retention, fact.inline)
                by_purpose[pid] = pid
    return NoticeSet(notices, by_purpose, controller, measures, tuple(texts))


def _controller(model: ControllerModel) -> Controller:
    officer = None
    if model.officer is not None:
        o = model.officer
        officer = Officer(o.name.zh, o.name.en, o.phone, o.email)
    return Controller(
        model.name.zh,
        model.name.en,
        model.address.zh,
        model.address.en,
        model.phone,
        model.email,
        officer,
    )


def _check_notice(
    nfile: PackFile,
    nid: str,
    nm: NoticeModel,
    defaults: DefaultsModel,
    facts: Mapping[str, _PurposeFacts],
    controller: Controller,
) -> PrivacyNotice:
    at = ["notices", nid]
    served: list[_PurposeFacts] = []
    for i, pid in enumerate(nm.purposes):
        fact = facts.get(pid)
        if fact is None:
            raise nfile.error([*at, "purposes", i], f"notice {nid!r}: unknown purpose {pid!r}")
        served.append(fact)
        if fact.retention != nm.retention:
            raise nfile.error(
                [*at, "retention"],
                f"notice {nid!r}: retention {nm.retention} does not match purpose {pid!r}'s "
                f"retention {fact.retention}",
            )
        missing = sorted(fact.record_types - set(nm.categories))
        if missing:
            raise nfile.error(
                [*at, "categories"],
                f"notice {nid!r}: categories do not name {missing[0]!r}, which purpose {pid!r} "
                "processes",
            )
    for i, category in enumerate(nm.categories):
        if category not in RECORD_TYPES:
            raise nfile.error(
                [*at, "categories", i], f"notice {nid!r}: unknown record type {category!r}"
            )
    needed = list(REQUIRED)
    if any(f.sensitive for f in served):
        needed.append("sensitive")
    if any(f.legal_basis is LegalBasis.CONSENT for f in served):
        needed.append("withdrawal")
    merged: dict[str, dict[str, str]] = {}
    langs: tuple[Lang, Lang] = ("zh", "en")
    for lang in langs:
        own = getattr(nm, lang).model_dump(exclude_none=True)
        common = getattr(defaults, lang).model_dump(exclude_none=True)
        elements = {key: own.get(key, common.get(key)) for key in ELEMENTS}
        where = [*at, lang]
        # An element the notice takes from [defaults] is written there.
        origin = {
            key: [*at, lang, key] if key in own else ["defaults", lang, key] for key in ELEMENTS
        }

        for key in needed:
            if not elements.get(key):
                raise nfile.error(
                    where,
                    f"notice {nid!r} ({lang}) lacks {key!r}: {ELEMENTS[key][1].lower()} "
                    f"({ELEMENTS[key][2]})",
                )
        name = controller.name_zh if lang == "zh" else controller.name_en
        text = elements["controller"] or ""
        if name not in text:
            raise nfile.error(
                origin["controller"],
                f"notice {nid!r} ({lang}): 'controller' does not give the controller's name",
            )
        if not any(c and c in text for c in (controller.phone, controller.email)):
            raise nfile.error(
                origin["controller"],
                f"notice {nid!r} ({lang}): 'controller' does not give the controller's "
                "phone or email",
            )
        period = duration_text(nm.retention, lang)
        if not _states(elements["retention"] or "", period, lang):
            raise nfile.error(
                origin["retention"],
                f"notice {nid!r} ({lang}): 'retention' does not state the period "
                f"{nm.retention} ({' '.join(period)})",
            )
        merged[lang] = {k: v for k, v in elements.items() if v}
    digest = notice_hash(nm.purposes, nm.retention, nm.categories, merged["zh"], merged["en"])
    if digest != nm.sha256:
        raise nfile.error(
            [*at, "sha256"],
            f"notice {nid!r}: its content does not match the sha256 recorded for version "
            f"{nm.version}; if the text changed on purpose, raise the version and set "
            f'sha256 = "{digest}"',
        )
    return PrivacyNotice(
        notice_id=nid,
        version=str(nm.version),
        sha256=digest,
        purposes=tuple(nm.purposes),
        retention=nm.retention,
        categories=tuple(nm.categories),
        zh=merged["zh"],
        en=merged["en"],
    )
