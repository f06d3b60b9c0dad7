"""A deceased owner's close relatives (PIPL Art 49), and what the owner arranged for them.

Close relatives may, for their own lawful and legitimate interests, access, copy, correct or
delete a deceased owner's personal information, unless the owner arranged otherwise during
their life. The vault keeps:

* the owner's **arrangement** (:func:`record_arrangement`): which of ``access``, ``copy``,
  ``correction`` and ``erasure`` close relatives may ask for (none: every request is refused),
  with a SHA-256 digest of the signed arrangement; stored in the subject row
  (:mod:`ownervault.kernel.limits`);
* each **next-of-kin request** (:func:`open_next_of_kin`): a rights request of kind
  ``next_of_kin`` with the requester's own id (the embedding application's id for the person,
  never stored as an owner), their relation, and a SHA-256 digest of the death certificate and
  relationship proof kept outside the vault. An arrangement refusing every next-of-kin request
  closes it as refused at once.

Each action then runs through the owners' ordinary rights functions (export, correction,
erasure), after :func:`next_of_kin_action` checks the request is open, is for this owner and
the arrangement allows the action; it is audited as ``subject.next_of_kin`` with the request id.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import Final

import attrs

from ..audit import format_time
from ..exceptions import PolicyDeniedError, ValidationError
from ..kernel import Access, RecordRef
from ..kernel.ledger import DIGEST
from ..kernel.limits import NEXT_OF_KIN_ACTIONS, Arrangement, parse_limits
from ..policy import RIGHTS_PURPOSES
from ..storage import SubjectRow
from ..storage.base import RequestRow
from .requests import DEFAULT_REQUEST_DAYS, close_request, open_request

__all__ = [
    "KIN_ACTION",
    "KIN_RELATIONS",
    "NEXT_OF_KIN_ACTIONS",
    "Arrangement",
    "next_of_kin_action",
    "next_of_kin_record",
    "open_next_of_kin",
    "record_arrangement",
]

#: Close relatives (近亲属, Civil Code Art 1045): spouse, parents, children, siblings,
#: grandparents and grandchildren.
KIN_RELATIONS: Final = ("spouse", "parent", "child", "sibling", "grandparent", "grandchild")
#: A requester id: the embedding application's reference for the relative (it is audited).
REQUESTER_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: A run of seven digits or more reads as a phone or ID number: never an id to audit.
PERSONAL_LOOKING: Final = re.compile(r"\d{7,}")
#: The audit action of every next-of-kin step.
KIN_ACTION: Final = "subject.next_of_kin"


def record_arrangement(
    access: Access, subject_id: str, next_of_kin: Iterable[str] | None, *, evidence: str
) -> Arrangement | None:
    """Record what the owner allows close relatives to do after their death (None removes the
    arrangement, so the law's default applies: every action may be asked for)."""
    access.kernel.check_writable()
    access.require_purpose("subject.arrangement", {"subject_rights"})
    if not DIGEST.match(evidence):
        raise ValidationError("evidence must be a SHA-256 hex digest of the signed arrangement")
    actions = None if next_of_kin is None else tuple(sorted(set(next_of_kin)))
    if actions is not None and isinstance(next_of_kin, str):
        raise ValidationError("next_of_kin is a list of action names, not one string")
    unknown = [a for a in actions or () if a not in NEXT_OF_KIN_ACTIONS]
    if unknown:
        raise ValidationError(
            f"unknown next-of-kin action {unknown[0]!r}: use {', '.join(NEXT_OF_KIN_ACTIONS)}"
        )
    now = access.now()
    arrangement = None if actions is None else Arrangement(actions, evidence, format_time(now))
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.arrangement")
        limits = parse_limits(subject.restricted_to)
        text = attrs.evolve(limits, arrangement=arrangement).dump()
        access.kernel.keys.store_subject(attrs.evolve(subject, restricted_to=text))
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.arrangement",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={
                        "next_of_kin": None if actions is None else ",".join(actions),
                        "evidence": evidence,
                        "limits": text,
                    },
                )
            ],
            now=now,
        )
    return arrangement


def open_next_of_kin(
    access: Access,
    subject_id: str,
    *,
    requester: str,
    relation: str,
    proof: str,
    received_at: _dt.datetime | None = None,
    days: int = DEFAULT_REQUEST_DAYS,
) -> RequestRow:
    """Track a close relative's request about a deceased owner (kind ``next_of_kin``).

    Returns the request, open; or already closed as ``refused`` when the owner arranged that
    close relatives may do nothing.

    Raises:
        ValidationError: the requester id, relation or proof is not acceptable.
        RecordNotFoundError: no live subject with that id.
        PolicyDeniedError: the session is not for a rights purpose.
    """
    access.require_purpose("request.open", RIGHTS_PURPOSES)
    if not isinstance(requester, str) or not REQUESTER_ID.match(requester.strip()):
        raise ValidationError(
            "requester must be the application's id for the relative: 1-128 letters, digits, "
            "'.', '_', ':' or '-'"
        )
    if access.kernel.keys.lookup_subject(requester.strip()) is not None:
        # The requester acts for themself; they are not (and are not made) an owner here.
        raise ValidationError("the requester's id is an owner's id: use the owner's own rights")
    if PERSONAL_LOOKING.search(requester):
        raise ValidationError(
            "the requester's id looks like personal data (a phone or ID number): use the "
            "application's reference for the relative"
        )
    if relation not in KIN_RELATIONS:
        raise ValidationError(f"relation must be one of {', '.join(KIN_RELATIONS)}")
    if not DIGEST.match(proof):
        raise ValidationError(
            "proof must be a SHA-256 hex digest of the death certificate and relationship proof"
        )
    request = open_request(access, subject_id, "next_of_kin", received_at=received_at, days=days)
    subject = access.subject(subject_id, KIN_ACTION)
    arrangement = parse_limits(subject.restricted_to).arrangement
    refused = arrangement is not None and not arrangement.next_of_kin
    access.commit(
        [
            access.entry(
                KIN_ACTION,
                decision="deny" if refused else "allow",
                reason="deceased_arrangement" if refused else None,
                subject=subject.pseudonym,
                detail={
                    "request_id": request.request_id,
                    "step": "open",
                    "requester": requester.strip(),
                    "relation": relation,
                    "proof": proof,
                },
            )
        ]
    )
    if refused:
        return close_request(
            access,
            request.request_id,
            status="refused",
            outcome=(
                "The owner arranged during their life that close relatives may not access, "
                "copy, correct or delete their personal information (PIPL Art 49)."
            ),
        )
    return request


def next_of_kin_action(access: Access, request_id: str, subject_id: str, action: str) -> RequestRow:
    """Check (audited) that a next-of-kin request lets ``action`` run on ``subject_id`` now.

    Raises:
        ValidationError: no open next-of-kin request with that id for this owner, or an
            unknown action.
        PolicyDeniedError: the owner's arrangement does not allow the action (reason
            ``deceased_arrangement``); the refusal is audited.
    """
    access.require_purpose(KIN_ACTION, RIGHTS_PURPOSES)
    return _check(access, request_id, access.subject(subject_id, KIN_ACTION), action)


def next_of_kin_record(access: Access, request_id: str, ref: RecordRef) -> RequestRow:
    """As :func:`next_of_kin_action` for a ``correction`` of one record of the deceased owner.

    Raises:
        ValidationError: the record or its owner is gone, or the request is not for its owner.
        PolicyDeniedError: the owner's arrangement does not allow corrections.
    """
    access.require_purpose(KIN_ACTION, RIGHTS_PURPOSES)
    rows = access.backend.get_records([ref.record_id])
    subject = access.live_subject(rows[0]) if rows else None
    if subject is None:
        raise ValidationError("no live record with that id")
    return _check(access, request_id, subject, "correction")


def _check(access: Access, request_id: str, subject: SubjectRow, action: str) -> RequestRow:
    if action not in NEXT_OF_KIN_ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(NEXT_OF_KIN_ACTIONS)}")
    requests = access.kernel.keys.checked(access.backend.requests())
    request = next((r for r in requests if r.request_id == request_id), None)
    if (
        request is None
        or request.kind != "next_of_kin"
        or request.status != "open"
        or request.pseudonym != subject.pseudonym
    ):
        raise ValidationError(f"no open next-of-kin request {request_id} for this owner")
    arrangement = parse_limits(subject.restricted_to).arrangement
    detail: dict[str, str | int | bool | None] = {"request_id": request_id, "step": action}
    if arrangement is not None and not arrangement.permits(action):
        entry = access.entry(
            KIN_ACTION,
            decision="deny",
            reason="deceased_arrangement",
            subject=subject.pseudonym,
            detail=detail,
        )
        raise access.deny(
            [entry],
            PolicyDeniedError(
                f"the owner arranged during their life that close relatives may not ask for "
                f"{action} (PIPL Art 49)",
                reason="deceased_arrangement",
            ),
        )
    access.commit(
        [access.entry(KIN_ACTION, decision="allow", subject=subject.pseudonym, detail=detail)]
    )
    return request
