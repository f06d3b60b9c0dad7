"""Who acts: the :class:`Authenticator` protocol and a verifier of signed tokens (JWT).

The embedding application signs its users in with its identity provider, which hands each user
a short-lived signed token (a JWT). An :class:`Authenticator` turns such a credential into an
:class:`Identity` -- the actor id that the token's issuer vouches for -- or raises
:class:`~ownervault.exceptions.AuthenticationError` with a reason code.
:meth:`ownervault.Vault.session_for_token` asks the vault's authenticator, audits every
refusal and opens the session in the verified actor's name (``docs/authentication.md``).

:class:`JWTAuthenticator` verifies JWS-signed JWTs with PyJWT against keys configured here
(PEM public keys, a JWKS, or shared secrets when asked for explicitly), never against a key or
key location named by the token itself. Which algorithm may verify a token is decided by the
kind of the configured key the token names, so a token cannot choose to have a public key
used as an HMAC secret. The time claims are checked against an injected clock.

Imports only :mod:`ownervault.exceptions` (and PyJWT, which verifies the signatures).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import jwt
from jwt import algorithms as _jwa

from .exceptions import AuthenticationError, ConfigurationError, ValidationError

__all__ = [
    "AUTHENTICATION_REASONS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_LIFETIME",
    "MAX_TOKEN_CHARS",
    "Authenticator",
    "Identity",
    "JWTAuthenticator",
    "reason_code",
    "refused",
    "valid_actor_id",
]

#: The algorithms accepted unless others are configured: asymmetric signatures only.
DEFAULT_ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
#: How far the clocks of the identity provider and the vault may disagree.
DEFAULT_LEEWAY: Final = _dt.timedelta(seconds=30)
#: The longest a token may live (``exp - iat``); longer-lived tokens are refused.
DEFAULT_MAX_LIFETIME: Final = _dt.timedelta(minutes=15)
#: The longest credential looked at; anything longer is refused unread.
MAX_TOKEN_CHARS: Final = 16_384
#: The longest actor id (as for :class:`~ownervault.Actor`).
MAX_ACTOR_ID_CHARS: Final = 128

#: Every reason code of a refused token, with the message it is raised with. Messages describe
#: what was wrong and never repeat the token or a claim's value.
AUTHENTICATION_REASONS: Final[Mapping[str, str]] = {
    "token_malformed": "the token is not a well-formed signed JWT",
    "token_signature": "the token's signature does not verify",
    "token_expired": "the token has expired",
    "token_not_yet_valid": "the token is not valid yet (its nbf or iat lies in the future)",
    "token_issuer": "the token was not issued by the configured issuer",
    "token_audience": "the token is not meant for the configured audience",
    "token_lifetime": "the token lives longer than the maximum lifetime allowed",
    "token_algorithm": "the token's algorithm is not accepted for its key",
    "token_unknown_key": "the token names no configured verification key",
    "token_claims": "a required claim is missing or a claim has the wrong type",
}

#: The asymmetric algorithms, by the kind of key that verifies them (a JWK's ``kty``/``crv``).
_KEY_ALGORITHMS: Final[Mapping[tuple[str, str | None], tuple[str, ...]]] = {
    ("OKP", "Ed25519"): ("EdDSA",),
    ("OKP", "Ed448"): ("EdDSA",),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
}
#: HMAC algorithms (shared secrets only), with the shortest secret each accepts in bytes
#: (RFC 7518 section 3.2: at least the size of the hash output).
_SHARED_SECRET_ALGORITHMS: Final[Mapping[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_ASYMMETRIC_ALGORITHMS: Final = frozenset(a for algs in _KEY_ALGORITHMS.values() for a in algs)
_MIN_RSA_BITS: Final = 2048
#: JWK members that only a private or secret key has.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Time claims are NumericDates; values outside this range are not times of this world.
_MAX_NUMERIC_DATE: Final = 2**40
_REASON_CODE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


def valid_actor_id(value: object) -> bool:
    """Whether ``value`` may be an actor id: a string of 1 to 128 characters."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_ACTOR_ID_CHARS


def reason_code(value: object) -> str:
    """``value`` if it looks like a reason code (``[a-z][a-z0-9_]*``), else a generic one.

    An authenticator's own reasons reach the audit log through this, so that no free text of
    its choosing is written there.
    """
    if isinstance(value, str) and _REASON_CODE.fullmatch(value):
        return value
    return "credential_refused"


def refused(
    reason: str, *, key_id: str | None = None, signed_actor_id: str | None = None
) -> AuthenticationError:
    """The :class:`AuthenticationError` for ``reason``, with its fixed message."""
    message = AUTHENTICATION_REASONS.get(reason, "the credential was refused")
    return AuthenticationError(
        f"token refused: {message}",
        reason=reason_code(reason),
        key_id=key_id,
        signed_actor_id=signed_actor_id,
    )


def _aware(instance: object, attribute: object, value: _dt.datetime) -> None:
    if not isinstance(value, _dt.datetime) or value.tzinfo is None:
        raise ValidationError("an identity's expires_at is a timezone-aware datetime")


def _actor_id(instance: object, attribute: object, value: str) -> None:
    if not valid_actor_id(value):
        raise ValidationError("actor_id must be a non-empty string of at most 128 characters")


def _issuer(instance: object, attribute: object, value: str) -> None:
    if not isinstance(value, str):
        raise ValidationError("an identity's issuer is a string")


def _key_id(instance: object, attribute: object, value: str | None) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError("an identity's key_id is a string or None")


@attrs.frozen
class Identity:
    """Who a verified credential says is acting, and until when the credential holds.

    It carries no claim but these: no name, no e-mail address, no token text. The actor id is
    left out of the ``repr`` because some identity providers put an e-mail address in ``sub``.
    """

    actor_id: str = attrs.field(repr=False, validator=_actor_id)
    issuer: str = attrs.field(validator=_issuer)
    key_id: str | None = attrs.field(validator=_key_id)
    expires_at: _dt.datetime = attrs.field(validator=_aware)


@runtime_checkable
class Authenticator(Protocol):
    """Turns a credential from the embedding application into a verified :class:`Identity`."""

    def authenticate(self, credential: str) -> Identity:
        """Verify ``credential`` and return whom it identifies.

        Raises:
            AuthenticationError: the credential is refused; ``reason`` says why.
        """
        ...


class _Clock(Protocol):
    """What the verifier needs of an :class:`ownervault.typing.Clock`."""

    def now(self) -> _dt.datetime: ...


@attrs.frozen(eq=False)
class _Key:
    """One configured verification key: its id and a PyJWK per algorithm it verifies."""

    kid: str
    verifiers: Mapping[str, jwt.PyJWK]


class JWTAuthenticator:
    """Verifies short-lived signed JWTs from the embedding application's identity provider.

    Security promise: a token is accepted only when it is a compact JWS whose algorithm is one
    of ``algorithms`` *and* one that the configured key it names verifies (``none`` never; HMAC
    only with a shared secret configured for it); whose signature verifies; whose ``iss`` is
    ``issuer`` and whose ``aud`` is or contains ``audience``; which has an ``exp`` not past (by
    the injected clock, with ``leeway``), no ``nbf`` or ``iat`` in the future, and lives no
    longer than ``max_lifetime``; and whose ``actor_claim`` holds an actor id (1 to 128
    characters). Anything else raises :class:`AuthenticationError` and nothing more: no other
    exception escapes :meth:`authenticate`, whatever string it is given.

    It keeps no list of used tokens: a stolen token works until it expires, which is why
    lifetimes are bounded.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        public_keys: Mapping[str, str | bytes] | None = None,
        jwks: Mapping[str, Any] | None = None,
        shared_secrets: Mapping[str, bytes] | None = None,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: _dt.timedelta = DEFAULT_LEEWAY,
        max_lifetime: _dt.timedelta = DEFAULT_MAX_LIFETIME,
        actor_claim: str = "sub",
        clock: _Clock | None = None,
    ) -> None:
        """Configure the verifier; every key is checked here, not when a token arrives.

        Args:
            issuer: the ``iss`` every token must carry (the identity provider's issuer URL).
            audience: the ``aud`` every token must carry or list (this application's id).
            public_keys: PEM public keys (Ed25519, Ed448, EC P-256/P-384/P-521, RSA of at least
                2048 bits) by key id, the ``kid`` a token names.
            jwks: a JSON Web Key Set (``{"keys": [...]}``) of public keys, each with a
                ``kid``; keys not for signing, of an unknown kind or for no accepted
                algorithm are passed over.
            shared_secrets: HMAC secrets by key id; only with an ``HS*`` algorithm listed in
                ``algorithms``, and at least as long as the hash (32 bytes for HS256).
            algorithms: the JWS algorithms accepted; ``none`` is never accepted.
            leeway: how far the identity provider's clock may be off (0 to 5 minutes).
            max_lifetime: the longest ``exp - iat`` accepted (up to one day).
            actor_claim: the claim holding the actor id.
            clock: the vault's clock (``ownervault.testing.FrozenClock`` in tests); default
                the system clock in UTC.

        Raises:
            ConfigurationError: a value above is missing, unknown, malformed or unsafe.
        """
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("a token verifier needs the issuer its tokens must name")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("a token verifier needs the audience its tokens must name")
        if not isinstance(actor_claim, str) or not actor_claim:
            raise ConfigurationError("actor_claim names the claim that holds the actor id")
        if not isinstance(leeway, _dt.timedelta) or not (
            _dt.timedelta(0) <= leeway <= _dt.timedelta(minutes=5)
        ):
            raise ConfigurationError("leeway is a timedelta from 0 to 5 minutes")
        if not isinstance(max_lifetime, _dt.timedelta) or not (
            _dt.timedelta(0) < max_lifetime <= _dt.timedelta(days=1)
        ):
            raise ConfigurationError("max_lifetime is a timedelta of more than 0 and up to a day")
        self.issuer = issuer
        self.audience = audience
        self.actor_claim = actor_claim
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.algorithms = _accepted(algorithms, shared=bool(shared_secrets))
        self._clock = clock
        self._keys = _load_keys(
            public_keys or {}, jwks, shared_secrets or {}, accepted=self.algorithms
        )
        # Signatures only: every claim, the time claims above all, is checked below against
        # the injected clock rather than PyJWT's own reading of the system clock.
        self._decoder = jwt.PyJWT(
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            }
        )

    def __repr__(self) -> str:
        return (
            f"<JWTAuthenticator issuer={self.issuer!r} audience={self.audience!r} "
            f"keys={sorted(self._keys)!r} algorithms={sorted(self.algorithms)!r}>"
        )

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a JWTAuthenticator may hold shared secrets and cannot be pickled")

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the configured verification keys, sorted."""
        return tuple(sorted(self._keys))

    def authenticate(self, credential: str) -> Identity:
        """Verify a compact JWS JWT and return the identity it vouches for.

        Raises:
            AuthenticationError: the token is refused; ``reason`` is one of
                :data:`AUTHENTICATION_REASONS`.
        """
        now = self._clock.now() if self._clock is not None else _dt.datetime.now(_dt.UTC)
        header = _header(credential)
        algorithm = header["alg"]
        if algorithm not in self.algorithms:
            raise refused("token_algorithm")
        key = self._key_for(header.get("kid"))
        verifier = key.verifiers.get(algorithm)
        if verifier is None:
            raise refused("token_algorithm", key_id=key.kid)
        claims = self._verified_claims(credential, verifier, algorithm, key.kid)
        return self._identity(claims, key.kid, now)

    def _key_for(self, kid: object) -> _Key:
        """The configured key a token names; without a ``kid``, the only key configured."""
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise refused("token_unknown_key")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise refused("token_unknown_key")
        return key

    def _verified_claims(
        self, credential: str, verifier: jwt.PyJWK, algorithm: str, kid: str
    ) -> dict[str, Any]:
        """The token's claims once its signature verifies under ``verifier`` by ``algorithm``."""
        try:
            decoded = self._decoder.decode_complete(
                credential, key=verifier, algorithms=[algorithm]
            )
        except jwt.InvalidSignatureError:
            raise refused("token_signature", key_id=kid) from None
        except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
            raise refused("token_algorithm", key_id=kid) from None
        # Whatever else a library may raise on hostile input, the token is malformed; the
        # original error is dropped because its text may quote the token.
        except Exception:
            raise refused("token_malformed", key_id=kid) from None
        claims = decoded.get("payload")
        if not isinstance(claims, dict):
            raise refused("token_malformed", key_id=kid)
        return claims

    def _identity(self, claims: Mapping[str, Any], kid: str, now: _dt.datetime) -> Identity:
        """Check the claims of a token whose signature verified; return its identity."""
        actor_id = claims.get(self.actor_claim)
        signed = actor_id if valid_actor_id(actor_id) else None

        def refuse(reason: str) -> AuthenticationError:
            return refused(reason, key_id=kid, signed_actor_id=signed)

        if claims.get("iss") != self.issuer:
            raise refuse("token_issuer")
        audience = claims.get("aud")
        listed = audience if isinstance(audience, list) else []
        if audience != self.audience and not (
            all(isinstance(a, str) for a in listed) and self.audience in listed
        ):
            raise refuse("token_audience")
        try:
            exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
        except ValueError:
            raise refuse("token_claims") from None
        if signed is None or exp is None:
            raise refuse("token_claims")
        at = now.timestamp()
        leeway = self.leeway.total_seconds()
        longest = self.max_lifetime.total_seconds()
        if exp <= at - leeway:
            raise refuse("token_expired")
        if (nbf is not None and nbf > at + leeway) or (iat is not None and iat > at + leeway):
            raise refuse("token_not_yet_valid")
        # Without an iat the lifetime left is measured from now; a token issued in the past
        # passes the second test whenever it passes the first.
        if (iat is not None and exp - iat > longest) or exp - at > longest + leeway:
            raise refuse("token_lifetime")
        return Identity(
            actor_id=signed,
            issuer=self.issuer,
            key_id=kid,
            expires_at=_dt.datetime.fromtimestamp(exp, _dt.UTC),
        )


# --------------------------------------------------------------------------- token parts


def _header(credential: object) -> dict[str, Any]:
    """The unverified header of a compact JWS, refused when it cannot be one of ours."""
    if not isinstance(credential, str) or not 0 < len(credential) <= MAX_TOKEN_CHARS:
        raise refused("token_malformed")
    try:
        header = jwt.get_unverified_header(credential)
    except Exception:
        # PyJWT's messages may quote parts of the token; the reason says enough.
        raise refused("token_malformed") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise refused("token_malformed")
    # No critical extension is understood here (RFC 7515 section 4.1.11), and an unencoded
    # payload (RFC 7797) is not a JWT.
    if "crit" in header or "b64" in header:
        raise refused("token_malformed")
    return header


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A time claim in seconds since the epoch, or None when the token has none.

    Raises:
        ValueError: the claim is not a NumericDate of this world (a string, a boolean, NaN,
            infinity, a negative or absurdly large number).
    """
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number")
    # The comparison is also false for NaN.
    if not 0 <= value < _MAX_NUMERIC_DATE:
        raise ValueError(f"{name} is out of range")
    return float(value)


# --------------------------------------------------------------------------- configuration


def _accepted(algorithms: Iterable[str], *, shared: bool) -> frozenset[str]:
    """The accepted algorithms, checked: known, never ``none``, HMAC only with secrets."""
    if isinstance(algorithms, str):
        raise ConfigurationError("algorithms is a list of JWS algorithm names, not one string")
    accepted = frozenset(algorithms)
    if not accepted:
        raise ConfigurationError("a token verifier needs at least one accepted algorithm")
    if any(not isinstance(a, str) or a.lower() == "none" for a in accepted):
        raise ConfigurationError("the 'none' algorithm is never accepted: tokens must be signed")
    unknown = sorted(accepted - _ASYMMETRIC_ALGORITHMS - set(_SHARED_SECRET_ALGORITHMS))
    if unknown:
        raise ConfigurationError(f"unknown or unsupported JWS algorithms: {', '.join(unknown)}")
    hmac = accepted & set(_SHARED_SECRET_ALGORITHMS)
    if hmac and not shared:
        raise ConfigurationError(
            f"{', '.join(sorted(hmac))} need a shared secret: give shared_secrets, or accept "
            "only asymmetric algorithms"
        )
    if shared and not hmac:
        raise ConfigurationError(
            "shared_secrets are used only with an HS* algorithm listed in algorithms"
        )
    return accepted


def _load_keys(
    public_keys: Mapping[str, str | bytes],
    jwks: Mapping[str, Any] | None,
    shared_secrets: Mapping[str, bytes],
    *,
    accepted: frozenset[str],
) -> dict[str, _Key]:
    """Every configured key by id, each with the algorithms it may verify."""
    keys: dict[str, _Key] = {}

    def add(key: _Key) -> None:
        if key.kid in keys:
            raise ConfigurationError(f"verification key id {key.kid!r} is configured twice")
        keys[key.kid] = key

    for kid, pem in public_keys.items():
        _check_kid(kid)
        jwk = _pem_jwk(kid, pem)
        key = _asymmetric(kid, jwk, accepted)
        if key is None:
            kind = " ".join(str(jwk[part]) for part in ("kty", "crv") if part in jwk)
            raise ConfigurationError(
                f"verification key {kid!r} ({kind}) verifies none of the accepted algorithms "
                f"({', '.join(sorted(accepted))})"
            )
        add(key)
    for entry in _jwks_entries(jwks):
        # A JWKS may hold keys for other applications' algorithms: they are passed over.
        key = _asymmetric(entry["kid"], entry, accepted)
        if key is not None:
            add(key)
    for kid, secret in shared_secrets.items():
        _check_kid(kid)
        add(_shared(kid, secret, accepted))
    if not keys:
        raise ConfigurationError(
            "a token verifier needs at least one verification key for an accepted algorithm"
        )
    return keys


def _check_kid(kid: object) -> None:
    if not isinstance(kid, str) or not 0 < len(kid) <= 256:
        raise ConfigurationError("verification key ids are non-empty strings")


def _pem_jwk(kid: str, pem: str | bytes) -> dict[str, Any]:
    """A PEM public key as a JWK (PyJWT parses it; this module imports no primitives)."""
    if isinstance(pem, str):
        pem = pem.encode("utf-8")
    if not isinstance(pem, bytes):
        raise ConfigurationError(f"verification key {kid!r} is not PEM text")
    parsers: tuple[Any, ...] = (
        _jwa.OKPAlgorithm(),
        _jwa.ECAlgorithm(_jwa.ECAlgorithm.SHA256),
        _jwa.RSAAlgorithm(_jwa.RSAAlgorithm.SHA256),
    )
    for parser in parsers:
        try:
            jwk: dict[str, Any] = parser.to_jwk(parser.prepare_key(pem), as_dict=True)
        # A parser refuses a key of another kind in its own way; the next one is tried.
        except Exception:  # noqa: S112
            continue
        if _PRIVATE_MEMBERS & set(jwk):
            raise ConfigurationError(
                f"verification key {kid!r} is a private key: configure its public key"
            )
        return jwk
    raise ConfigurationError(
        f"verification key {kid!r} is not a PEM public key of a supported kind "
        "(Ed25519, Ed448, EC P-256/P-384/P-521, RSA)"
    )


def _jwks_entries(jwks: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The keys of a JWKS meant for verifying signatures; each must have a ``kid``."""
    if jwks is None:
        return []
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigurationError("a JWKS is a mapping with a 'keys' list")
    found = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ConfigurationError("every entry of a JWKS's 'keys' is a JSON object")
        kid = entry.get("kid")
        _check_kid(kid)
        if _PRIVATE_MEMBERS & set(entry):
            raise ConfigurationError(
                f"JWKS key {kid!r} holds private or secret key material: a JWKS given here "
                "holds public keys only (give shared secrets as shared_secrets)"
            )
        use, ops = entry.get("use"), entry.get("key_ops")
        if use not in (None, "sig") or (isinstance(ops, list) and "verify" not in ops):
            continue
        found.append(dict(entry))
    return found


def _asymmetric(kid: str, jwk: Mapping[str, Any], accepted: frozenset[str]) -> _Key | None:
    """A public key with a verifier per accepted algorithm its kind allows (None: none)."""
    kty = jwk.get("kty")
    crv = jwk.get("crv") if kty != "RSA" else None
    allowed = _KEY_ALGORITHMS.get((str(kty), crv if isinstance(crv, str) else None), ())
    named = jwk.get("alg")
    if named is not None:
        allowed = tuple(a for a in allowed if a == named)
    usable = [a for a in allowed if a in accepted]
    if not usable:
        return None
    if kty == "RSA" and _rsa_bits(jwk) < _MIN_RSA_BITS:
        raise ConfigurationError(
            f"verification key {kid!r} is an RSA key under {_MIN_RSA_BITS} bits"
        )
    return _Key(kid, _verifiers(kid, jwk, usable))


def _shared(kid: str, secret: bytes, accepted: frozenset[str]) -> _Key:
    """A shared secret with a verifier per accepted HMAC algorithm it is long enough for."""
    if not isinstance(secret, bytes | bytearray):
        raise ConfigurationError(f"shared secret {kid!r} is bytes")
    usable = [
        a
        for a, shortest in _SHARED_SECRET_ALGORITHMS.items()
        if a in accepted and len(secret) >= shortest
    ]
    if not usable:
        raise ConfigurationError(
            f"shared secret {kid!r} is too short for the accepted HS* algorithms (HS256 needs "
            "32 bytes, HS384 48, HS512 64)"
        )
    encoded = base64.urlsafe_b64encode(bytes(secret)).rstrip(b"=").decode("ascii")
    return _Key(kid, _verifiers(kid, {"kty": "oct", "k": encoded}, usable))


def _verifiers(kid: str, jwk: Mapping[str, Any], algorithms: Iterable[str]) -> dict[str, jwt.PyJWK]:
    """One PyJWK per algorithm, each bound to that algorithm alone."""
    verifiers = {}
    for algorithm in algorithms:
        try:
            verifiers[algorithm] = jwt.PyJWK(dict(jwk), algorithm=algorithm)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"verification key {kid!r} cannot be used for {algorithm}: {type(exc).__name__}"
            ) from None
    return verifiers


def _rsa_bits(jwk: Mapping[str, Any]) -> int:
    """The size of an RSA JWK's modulus in bits (0 when it has none)."""
    modulus = jwk.get("n")
    if not isinstance(modulus, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()
