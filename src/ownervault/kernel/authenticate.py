"""Actors from verified credentials: the vault's authenticator asked, every answer audited.

:meth:`ownervault.Vault.session_for_token` hands a credential (a signed token) here. The
vault's :class:`~ownervault.authn.Authenticator` verifies it; the actor is built from the
verified actor id and the roles and scope the application asks for, and the session then
opens as any other.

Both outcomes are audited as ``session.authenticate``. An accepted credential gives an
``allow`` entry in the verified actor's name with the key that vouched for it and when it
expires, so that sessions opened under a key later found compromised can be listed. A refused
one gives a ``deny`` entry whose reason is the error's reason code and whose actor is
:data:`UNAUTHENTICATED`, never an id taken from the token: a forger could write any id there.
The detail names only what no forger can choose: the configured key the token asked for and,
when the token's signature verified but it was refused for another reason (expired, another
audience...), the actor id the identity provider signed (``signed_actor``). The credential
itself is never written anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from ..audit import format_time
from ..authn import Authenticator, Identity, reason_code, refused, valid_actor_id
from ..exceptions import AuthenticationError, ConfigurationError, ValidationError
from ..policy import Actor
from .core import SYSTEM_ACTOR, Kernel

__all__ = ["AUTHENTICATE_ACTION", "UNAUTHENTICATED", "authenticate"]

#: The audit action of every credential checked.
AUTHENTICATE_ACTION: Final = "session.authenticate"
#: The actor of the audit entry of a refused credential (nobody was authenticated).
UNAUTHENTICATED: Final = "unauthenticated"
#: Actor ids a credential may never claim: the vault's own and the one of refusals.
RESERVED_ACTOR_IDS: Final = frozenset({SYSTEM_ACTOR.actor_id, UNAUTHENTICATED})
_KEY_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")


def authenticate(
    kernel: Kernel,
    authenticator: Authenticator | None,
    credential: str,
    purpose: str,
    roles: Sequence[str],
    communities: Sequence[str] = (),
    buildings: Sequence[str] = (),
) -> Actor:
    """The actor ``credential`` identifies, with the roles and scope asked for (audited).

    Raises:
        ConfigurationError: the vault has no authenticator, or it returned no Identity.
        ValidationError: ``purpose``, ``roles`` or the scope are not valid.
        AuthenticationError: the credential was refused (after its ``deny`` entry committed).
    """
    kernel.check_open()
    if authenticator is None:
        raise ConfigurationError(
            "the vault has no authenticator: set vault.authenticator (e.g. a JWTAuthenticator)"
        )
    if not isinstance(purpose, str):
        raise ValidationError("purpose must be a string")
    # The roles are checked before the credential, so a caller's mistake is not audited as a
    # refused token; the refusal's entry names the roles asked for.
    asked = Actor(UNAUTHENTICATED, roles=roles, communities=communities, buildings=buildings)
    try:
        identity = authenticator.authenticate(credential)
        if not isinstance(identity, Identity):
            raise ConfigurationError("the vault's authenticator returned no Identity")
        if identity.actor_id in RESERVED_ACTOR_IDS:
            raise refused("token_claims", key_id=identity.key_id)
    except AuthenticationError as exc:
        _append(kernel, asked, purpose, reason=reason_code(exc.reason), detail=_refusal(exc))
        raise
    actor = attrs.evolve(asked, actor_id=identity.actor_id)
    _append(
        kernel,
        actor,
        purpose,
        reason="",
        detail={
            "issuer": identity.issuer[:256],
            "key_id": _key_id(identity.key_id),
            "expires_at": format_time(identity.expires_at),
        },
    )
    return actor


def _append(
    kernel: Kernel,
    actor: Actor,
    purpose: str,
    *,
    reason: str,
    detail: Mapping[str, str | None],
) -> None:
    entry = kernel.admin_entry(
        actor, AUTHENTICATE_ACTION, detail=detail, reason=reason, purpose=purpose
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=kernel.clock.now())


def _refusal(error: AuthenticationError) -> dict[str, str | None]:
    """The detail of a refusal: only values the identity provider or the vault chose."""
    signed = error.signed_actor_id
    return {
        "key_id": _key_id(error.key_id),
        "signed_actor": signed if valid_actor_id(signed) else None,
    }


def _key_id(key_id: object) -> str | None:
    """A key id fit for the log (printable ASCII, at most 128 characters), else None."""
    return key_id if isinstance(key_id, str) and _KEY_ID.fullmatch(key_id) else None
