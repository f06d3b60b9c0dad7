"""Front desk: a small property-management service that keeps owners' records in ownervault.

Run it with ``uvicorn examples.frontdesk.app:app`` (``README.md`` beside this file says how).
It embeds the vault the way a property system would:

* one :class:`ownervault.Vault` per process, opened when the service starts (created if the
  directory is new) and closed when it stops, shared by the worker threads;
* one :class:`ownervault.Session` per request, for the actor the request's user maps to and
  the purpose of the screen that sent it, closed when the request ends;
* pydantic models at the edge, so that nothing malformed reaches the vault;
* ownervault's errors turned into HTTP statuses in one place (:data:`ERROR_STATUSES`).

Endpoints are plain ``def`` functions: the vault does blocking I/O, so FastAPI runs each
request in its thread pool.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import attrs
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

import ownervault as ov
from ownervault import exceptions as ovx

__all__ = [
    "DEMO_USERS",
    "ERROR_STATUSES",
    "User",
    "app",
    "assess_demo_purposes",
    "create_app",
    "open_vault_from_env",
]

#: Where the vault lives and how its root key is found (see README.md).
VAULT_ENV: Final = "FRONTDESK_VAULT"
KEY_FILE_ENV: Final = "FRONTDESK_KEY_FILE"
PASSPHRASE_ENV: Final = "OWNERVAULT_PASSPHRASE"  # noqa: S105 - the variable's name


# --------------------------------------------------------------------------- who is asking


@attrs.frozen
class User:
    """One of the application's users, and the roles the policy pack knows them by."""

    user_id: str
    roles: tuple[str, ...]


#: Demo users by bearer token. A real deployment replaces :func:`authenticate` with its own
#: login (SSO, session cookies, OAuth) and maps its users to the policy pack's roles. The roles
#: only count where the vault granted them (:func:`grant_demo_users`; ``ownervault grants``).
DEMO_USERS: Final[Mapping[str, User]] = {
    "demo-clerk": User("clerk-01", ("front_desk",)),
    "demo-guard": User("guard-07", ("security",)),
    "demo-finance": User("fin-02", ("finance",)),
    "demo-dpo": User("dpo-01", ("compliance_officer",)),
}


def authenticate(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> ov.Actor:
    """The vault actor for the request's user, from ``Authorization: Bearer <token>``.

    This is where the application's real authentication goes: whatever it checks, the result
    is an :class:`ownervault.Actor` with the user's id (recorded in the audit trail) and roles.

    Raises:
        HTTPException: 401 without a known bearer token.
    """
    scheme, _, token = (authorization or "").partition(" ")
    users: Mapping[str, User] = request.app.state.users
    user = users.get(token) if scheme.lower() == "bearer" else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a known bearer token is needed",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return ov.Actor(user.user_id, roles=list(user.roles))


def the_vault(request: Request) -> ov.Vault:
    """The process's vault (opened at start-up)."""
    vault: ov.Vault = request.app.state.vault
    return vault


ActorDep = Annotated[ov.Actor, Depends(authenticate)]
VaultDep = Annotated[ov.Vault, Depends(the_vault)]
#: Why the data is asked for: the screen sends the purpose it serves (default: registration).
PurposeQuery = Annotated[str, Query(min_length=1, max_length=64)]


# --------------------------------------------------------------------------- edge models


class OwnerIn(BaseModel):
    """An owner to register, as the registration form sends it."""

    model_config = ConfigDict(extra="forbid")

    subject_id: str = Field(min_length=1, max_length=64, description="The owner's id here.")
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    id_type: Literal["resident_id", "passport", "hk_macau_permit", "taiwan_permit"] | None = None
    id_number: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    birth_date: _dt.date | None = None
    household_role: Literal["owner", "co_owner", "spouse", "child", "parent", "tenant"] = "owner"


class Registered(BaseModel):
    """Where a registered owner's profile is kept."""

    record_id: str
    subject_id: str


class FieldOut(BaseModel):
    """One disclosed field: its value (``None`` when empty) and whether it is masked."""

    value: str | None
    view: Literal["full", "masked"]


class OwnerOut(BaseModel):
    """What the caller's role may see of an owner's profile, for the purpose asked."""

    record_id: str
    subject_id: str
    version: int
    fields: dict[str, FieldOut]


class ConsentIn(BaseModel):
    """A consent the owner gave (on paper, in the app, ...), with a digest of the evidence."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=64)
    channel: Literal["app", "web", "wechat", "paper", "in_person", "phone", "email", "sms"]
    evidence: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the signed form.")
    separate: bool = False
    expires_at: _dt.datetime | None = None


class WithdrawalIn(BaseModel):
    """How the owner withdrew a consent."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["app", "web", "wechat", "paper", "in_person", "phone", "email", "sms"]


class ConsentOut(BaseModel):
    """One fact of the owner's consent ledger."""

    consent_id: str
    purpose: str
    event: Literal["grant", "withdraw"]
    at: str
    channel: str
    separate: bool
    notice_version: str | None
    expires_at: str | None


class IdentityCheck(BaseModel):
    """Who checked the requester's identity for a subject access request, and how."""

    model_config = ConfigDict(extra="forbid")

    checked_by: str = Field(min_length=1, max_length=64)
    method: Literal["id_document_in_person", "video_call", "notarised_letter"]


# --------------------------------------------------------------------------- errors


#: ownervault errors and the HTTP answer each becomes, most specific first. A locked vault (it
#: failed closed after an integrity failure) answers 503: the service cannot serve anyone until
#: an officer has looked at it, and clients treat 503 as the server's trouble, not theirs.
ERROR_STATUSES: Final[tuple[tuple[type[ovx.OwnerVaultError], int, str], ...]] = (
    (ovx.ConsentRequiredError, status.HTTP_403_FORBIDDEN, "consent_required"),
    (ovx.PolicyDeniedError, status.HTTP_403_FORBIDDEN, "policy_denied"),
    (ovx.AccessDeniedError, status.HTTP_403_FORBIDDEN, "access_denied"),
    (ovx.FieldNotDisclosedError, status.HTTP_403_FORBIDDEN, "field_not_disclosed"),
    (ovx.RecordNotFoundError, status.HTTP_404_NOT_FOUND, "not_found"),
    (ovx.SubjectErasedError, status.HTTP_410_GONE, "erased"),
    (ovx.StaleRecordError, status.HTTP_409_CONFLICT, "stale_record"),
    (ovx.ValidationError, 422, "invalid"),
    (ovx.VaultLockedError, status.HTTP_503_SERVICE_UNAVAILABLE, "vault_locked"),
    (ovx.VaultClosedError, status.HTTP_503_SERVICE_UNAVAILABLE, "vault_closed"),
    (ovx.StorageError, status.HTTP_503_SERVICE_UNAVAILABLE, "storage_unavailable"),
)


def error_response(request: Request, error: Exception) -> JSONResponse:
    """The JSON answer to an ownervault error: a code, the policy's reason code, a message.

    ownervault's messages name records, fields and purposes, never a personal value, so they
    can go back to the caller; an unexpected error answers 500 with its type only.
    """
    assert isinstance(error, ovx.OwnerVaultError)
    for cls, code, name in ERROR_STATUSES:
        if isinstance(error, cls):
            body = {"error": name, "reason": getattr(error, "reason", None), "detail": str(error)}
            return JSONResponse(body, status_code=code)
    body = {"error": "internal", "reason": None, "detail": type(error).__name__}
    return JSONResponse(body, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


# --------------------------------------------------------------------------- the service


def open_vault_from_env() -> ov.Vault:
    """Open (or create) the vault named by the environment; see README.md.

    ``FRONTDESK_VAULT`` is the vault directory (default ``frontdesk-vault``). The root key is
    the key file ``FRONTDESK_KEY_FILE`` if set, else the passphrase in
    ``OWNERVAULT_PASSPHRASE``.

    Raises:
        KeyProviderError: neither variable is set.
    """
    path = Path(os.environ.get(VAULT_ENV) or "frontdesk-vault")
    key: ov.KeyFileKey | ov.PassphraseKey
    if key_file := os.environ.get(KEY_FILE_ENV):
        key = ov.KeyFileKey(key_file)
    elif passphrase := os.environ.get(PASSPHRASE_ENV):
        key = ov.PassphraseKey(passphrase)
    else:
        raise ovx.KeyProviderError(f"set {KEY_FILE_ENV} or {PASSPHRASE_ENV}")
    if (path / "vault.header").exists():
        return ov.Vault.open(path, key=key)
    vault = ov.Vault.create(path, key=key, creator=SETUP_ACTOR.actor_id)
    grant_demo_users(vault)
    assess_demo_purposes(vault)
    return vault


#: Who creates the demo vault and grants the demo users their roles (a security administrator).
SETUP_ACTOR: Final = ov.Actor("frontdesk-setup", roles=["security_admin"])


def grant_demo_users(vault: ov.Vault, users: Mapping[str, User] = DEMO_USERS) -> None:
    """Grant each demo user its roles, as :data:`SETUP_ACTOR` (who must hold a grant already).

    In a real deployment a security administrator grants each person's role on purpose, with a
    scope and an expiry where they apply (``ownervault grants add``).
    """
    for user in users.values():
        held = {g.role for g in vault.grants.list(user.user_id, by=SETUP_ACTOR)}
        for role in user.roles:
            if role not in held:
                vault.grants.add(user.user_id, role, by=SETUP_ACTOR)


#: The demo's compliance officer, who records its impact assessments.
ASSESSOR: Final = ov.Actor("dpo-01", roles=["compliance_officer"])


def assess_demo_purposes(vault: ov.Vault) -> None:
    """Record, as :data:`ASSESSOR`, an impact assessment of each purpose that needs one and has
    none current, reviewed in a year (PIPL Art 55: before the processing starts).

    The demo's assessments are synthetic. A real deployment makes each assessment first (the
    risks of the purpose, the measures taken) and records it as its compliance officer, with
    ``ownervault pia add`` or ``vault.assessments.add``; ``ownervault pia check`` shows what is
    missing. Sessions for a purpose that needs one are refused until then.
    """
    book = vault.assessments
    today = book.today()
    for found in book.check(by=ASSESSOR):
        if found.allowed:
            continue
        book.add(
            found.purpose,
            by=ASSESSOR,
            assessor=ASSESSOR.actor_id,
            assessed_at=today,
            risks=f"demo assessment; the purpose involves: {found.need.why}",
            measures="field encryption, masking per role, consent checks, audited access",
            conclusion="approved",
            next_review=today + _dt.timedelta(days=365),
        )


def create_app(vault: ov.Vault | None = None, *, users: Mapping[str, User] = DEMO_USERS) -> FastAPI:
    """The front-desk service.

    Args:
        vault: an open vault to serve (the caller closes it); default: the one
            :func:`open_vault_from_env` opens when the service starts, closed when it stops.
        users: bearer token -> user, for :func:`authenticate`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = vault is None
        app.state.vault = open_vault_from_env() if vault is None else vault
        try:
            yield
        finally:
            if owned:
                app.state.vault.close()

    app = FastAPI(title="Front desk (ownervault example)", lifespan=lifespan)
    app.state.users = users
    app.state.vault = vault
    app.add_exception_handler(ovx.OwnerVaultError, error_response)
    _routes(app)
    return app


def _owner_out(view: ov.RecordView) -> OwnerOut:
    fields = {
        name: FieldOut(
            value=None if view[name] is None else str(view[name]),
            view="masked" if view.view_of(name) is ov.ViewMode.MASKED else "full",
        )
        for name in view.views
        if view.view_of(name) is not ov.ViewMode.HIDDEN
    }
    return OwnerOut(
        record_id=view.record_id, subject_id=view.subject_id, version=view.version, fields=fields
    )


def _consent_out(record: Any) -> ConsentOut:
    return ConsentOut(
        consent_id=record.consent_id,
        purpose=record.purpose,
        event=record.event,
        at=record.at,
        channel=record.channel,
        separate=record.separate,
        notice_version=record.notice_version,
        expires_at=record.expires_at,
    )


def _routes(app: FastAPI) -> None:
    """Register the endpoints: each opens one session for its user and purpose."""

    @app.get("/healthz")
    def health(vault: VaultDep) -> dict[str, str]:
        """Liveness: the vault is open (no authentication, no personal data)."""
        return {"status": "ok", "vault": vault.vault_id}

    @app.post("/owners", status_code=status.HTTP_201_CREATED)
    def register_owner(owner: OwnerIn, actor: ActorDep, vault: VaultDep) -> Registered:
        """Register an owner's profile (purpose ``owner_registration``)."""
        record = ov.records.OwnerProfile(**owner.model_dump(exclude_none=True))
        with vault.session(actor, purpose="owner_registration") as session:
            record_id = session.put(record)
        return Registered(record_id=record_id, subject_id=owner.subject_id)

    @app.get("/owners/{record_id}")
    def get_owner(
        record_id: str,
        actor: ActorDep,
        vault: VaultDep,
        purpose: PurposeQuery = "owner_registration",
    ) -> OwnerOut:
        """An owner's profile, as much as the policy shows this role for ``purpose``."""
        with vault.session(actor, purpose=purpose) as session:
            return _owner_out(session.get(ov.records.OwnerProfile, record_id))

    @app.get("/owners")
    def find_owners(
        actor: ActorDep,
        vault: VaultDep,
        purpose: PurposeQuery = "owner_registration",
        phone: Annotated[str | None, Query(max_length=40)] = None,
        name: Annotated[str | None, Query(max_length=200)] = None,
        id_number: Annotated[str | None, Query(max_length=40)] = None,
        email: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[OwnerOut]:
        """Owners whose phone, name, ID number or e-mail equals the one given (normalised)."""
        criteria = {
            key: value
            for key, value in (
                ("phone", phone),
                ("name", name),
                ("id_number", id_number),
                ("email", email),
            )
            if value
        }
        if not criteria:
            raise HTTPException(
                422,
                detail="search by phone, name, id_number or email",
            )
        with vault.session(actor, purpose=purpose) as session:
            return [_owner_out(v) for v in session.find(ov.records.OwnerProfile, **criteria)]

    @app.get("/subjects/{subject_id}/consents")
    def list_consents(subject_id: str, actor: ActorDep, vault: VaultDep) -> list[ConsentOut]:
        """The owner's consent ledger, oldest first (purpose ``consent_management``)."""
        with vault.session(actor, purpose="consent_management") as session:
            return [_consent_out(r) for r in session.consents(subject_id)]

    @app.post("/subjects/{subject_id}/consents", status_code=status.HTTP_201_CREATED)
    def grant_consent(
        subject_id: str, consent: ConsentIn, actor: ActorDep, vault: VaultDep
    ) -> ConsentOut:
        """Record a consent the owner gave for a consent-based purpose."""
        with vault.session(actor, purpose="consent_management") as session:
            record = session.grant_consent(
                subject_id,
                consent.purpose,
                channel=consent.channel,
                evidence=consent.evidence,
                separate=consent.separate,
                expires_at=consent.expires_at,
            )
        return _consent_out(record)

    @app.post("/subjects/{subject_id}/consents/{purpose}/withdrawal")
    def withdraw_consent(
        subject_id: str, purpose: str, withdrawal: WithdrawalIn, actor: ActorDep, vault: VaultDep
    ) -> ConsentOut:
        """Record that the owner withdrew a consent; it takes effect at once."""
        with vault.session(actor, purpose="consent_management") as session:
            record = session.withdraw_consent(subject_id, purpose, channel=withdrawal.channel)
        return _consent_out(record)

    @app.post("/subjects/{subject_id}/access-request")
    def subject_access_request(
        subject_id: str, check: IdentityCheck, actor: ActorDep, vault: VaultDep
    ) -> dict[str, Any]:
        """Everything held about the owner, as one document (PIPL Art 45, GDPR Art 15).

        The requester's identity is checked by a person before this is called (``check`` says
        who and how); an application with its own identity verification calls it here.
        """
        with vault.session(actor, purpose="subject_access_request") as session:
            export = session.export_subject(
                subject_id,
                verify_identity=lambda _subject: True,
                attestation=f"identity checked by {check.checked_by} ({check.method})",
            )
        return export.model_dump(mode="json")


#: The service as ``uvicorn examples.frontdesk.app:app`` runs it (the vault from the environment).
app = create_app()
