"""Verified actors: the JWT verifier, its refusals, and sessions opened for a signed token.

Keys are generated here with ``cryptography`` and tokens signed with PyJWT, as an identity
provider would; a few hostile tokens (``alg: none``, an HMAC keyed with the public key) are
put together by hand because no honest library will make them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies
from ownervault import Actor, Identity, JWTAuthenticator, Vault
from ownervault.authn import AUTHENTICATION_REASONS, Authenticator
from ownervault.exceptions import (
    AccessDeniedError,
    AuthenticationError,
    ConfigurationError,
    NotGrantedError,
    PolicyDeniedError,
    ValidationError,
)
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

ISSUER = "https://login.example-property.cn"
AUDIENCE = "ownervault-frontdesk"
CLERK = "clerk-01"
#: The actor id the badge authenticator below vouches for.
GUARD = "guard-7"
#: The ``clock`` fixture's starting time, in seconds: the tokens below are issued then.
NOW = int(FrozenClock().now().timestamp())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_pem(private: Any) -> bytes:
    pem: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


#: The identity provider's signing keys (kids ``ed-1``, ``ec-1``; RSA for ``rsa-1``).
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def authenticator(clock: FrozenClock) -> JWTAuthenticator:
    """A verifier with the defaults, the provider's two public keys and the test clock."""
    return JWTAuthenticator(
        issuer=ISSUER,
        audience=AUDIENCE,
        public_keys={"ed-1": _public_pem(ED_KEY), "ec-1": _public_pem(EC_KEY).decode()},
        clock=clock,
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims for the clerk, issued at NOW for five minutes; ``changes`` (None drops one)."""
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": CLERK,
        "iat": NOW,
        "exp": NOW + 300,
        "name": "张三",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def sign(
    payload: dict[str, Any], key: Any = ED_KEY, *, alg: str = "EdDSA", kid: str | None = "ed-1"
) -> str:
    """A token signed the way an identity provider signs it."""
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def sign_any(payload: object, key: Any = ED_KEY, *, kid: str = "ed-1") -> str:
    """A genuine EdDSA signature over any JSON payload (PyJWT's encode checks some claims)."""
    body = json.dumps(payload).encode()
    return jwt.PyJWS().encode(body, key, algorithm="EdDSA", headers={"kid": kid})


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS put together by hand, with whatever header and signature it is given."""
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(payload).encode()),
            _b64url(signature),
        ]
    )


def hs256_keyed_with(secret: bytes, payload: dict[str, Any], kid: str = "ed-1") -> str:
    """An HS256 token whose HMAC key is ``secret`` (the public key, in a confusion attack)."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64url(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def refusal(authenticator: Authenticator, token: str) -> AuthenticationError:
    """The error ``token`` is refused with (the test fails if it is accepted)."""
    with pytest.raises(AuthenticationError) as caught:
        authenticator.authenticate(token)
    return caught.value


# --------------------------------------------------------------------------- good tokens


def test_a_good_ed25519_token_gives_the_signed_identity(
    authenticator: JWTAuthenticator, clock: FrozenClock
) -> None:
    """A fresh token signed by a configured key yields its sub, issuer, key id and expiry."""
    identity = authenticator.authenticate(sign(claims()))
    assert identity.actor_id == CLERK
    assert identity.issuer == ISSUER
    assert identity.key_id == "ed-1"
    assert identity.expires_at == clock.now() + _dt.timedelta(minutes=5)


def test_a_good_es256_token_is_verified_with_the_key_its_kid_names(
    authenticator: JWTAuthenticator,
) -> None:
    """An ES256 token naming ``ec-1`` verifies under the P-256 key."""
    identity = authenticator.authenticate(sign(claims(), EC_KEY, alg="ES256", kid="ec-1"))
    assert (identity.actor_id, identity.key_id) == (CLERK, "ec-1")


def test_an_rs256_token_verifies_under_an_rsa_key(clock: FrozenClock) -> None:
    """RS256, the third default algorithm, verifies under a 2048-bit RSA public key."""
    verifier = JWTAuthenticator(
        issuer=ISSUER, audience=AUDIENCE, public_keys={"rsa-1": _public_pem(RSA_KEY)}, clock=clock
    )
    assert (
        verifier.authenticate(sign(claims(), RSA_KEY, alg="RS256", kid="rsa-1")).key_id == "rsa-1"
    )


def test_the_audience_may_be_one_of_a_list(authenticator: JWTAuthenticator) -> None:
    """``aud`` may list several audiences; the configured one among them is enough."""
    token = sign(claims(aud=["billing", AUDIENCE]))
    assert authenticator.authenticate(token).actor_id == CLERK


def test_another_claim_may_hold_the_actor_id(clock: FrozenClock) -> None:
    """With ``actor_claim="employee_no"`` the actor id comes from that claim, not ``sub``."""
    verifier = JWTAuthenticator(
        issuer=ISSUER,
        audience=AUDIENCE,
        public_keys={"ed-1": _public_pem(ED_KEY)},
        actor_claim="employee_no",
        clock=clock,
    )
    assert verifier.authenticate(sign(claims(employee_no="E1024"))).actor_id == "E1024"
    assert refusal(verifier, sign(claims())).reason == "token_claims"


def test_a_token_without_kid_is_taken_when_one_key_is_configured(clock: FrozenClock) -> None:
    """With a single configured key a token need not name it; the identity still does."""
    verifier = JWTAuthenticator(
        issuer=ISSUER, audience=AUDIENCE, public_keys={"only": _public_pem(ED_KEY)}, clock=clock
    )
    assert verifier.authenticate(sign(claims(), kid=None)).key_id == "only"


def test_expiry_and_start_within_the_leeway_are_accepted(authenticator: JWTAuthenticator) -> None:
    """A token expired 20 s ago (leeway 30 s) passes, and so do nbf and iat 20 s ahead."""
    late = sign(claims(iat=NOW - 300, exp=NOW - 20))
    early = sign(claims(iat=NOW + 20, nbf=NOW + 20, exp=NOW + 300))
    assert authenticator.authenticate(late).actor_id == CLERK
    assert authenticator.authenticate(early).actor_id == CLERK


def test_the_injected_clock_decides_expiry(
    authenticator: JWTAuthenticator, clock: FrozenClock
) -> None:
    """The same token passes now and is refused once the frozen clock is past exp + leeway."""
    token = sign(claims())
    authenticator.authenticate(token)
    clock.advance(_dt.timedelta(minutes=5, seconds=29))
    authenticator.authenticate(token)
    clock.advance(_dt.timedelta(seconds=1))
    assert refusal(authenticator, token).reason == "token_expired"


def test_an_identity_repr_shows_neither_the_actor_id_nor_the_token(
    authenticator: JWTAuthenticator,
) -> None:
    """``repr(identity)`` names issuer, key and expiry; the sub (maybe an e-mail) stays out."""
    token = sign(claims(sub="zhang.san@example.cn"))
    text = repr(authenticator.authenticate(token))
    assert "zhang.san" not in text and token not in text
    assert "ed-1" in text and ISSUER in text


def test_an_identity_checks_its_values() -> None:
    """An identity built by an authenticator of the application's own is validated too."""
    with pytest.raises(ValidationError):
        Identity(actor_id="", issuer=ISSUER, key_id=None, expires_at=_dt.datetime.now(_dt.UTC))
    with pytest.raises(ValidationError):
        Identity(actor_id=CLERK, issuer=ISSUER, key_id=None, expires_at=_dt.datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        Identity(actor_id=CLERK, issuer=None, key_id=1, expires_at=_dt.datetime.now(_dt.UTC))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- refusals

_OTHER_KEY = ed25519.Ed25519PrivateKey.generate()
_HEAD, _BODY, _TAIL = sign(claims()).split(".")
_ADMIN_BODY = _b64url(json.dumps(claims(sub="forged-admin-99")).encode())

#: Each bad token (by case name) and the reason it must be refused with.
REFUSALS: dict[str, tuple[str, str]] = {
    "wrong key": (sign(claims(), _OTHER_KEY), "token_signature"),
    "tampered payload": (f"{_HEAD}.{_ADMIN_BODY}.{_TAIL}", "token_signature"),
    "signature cut off": (f"{_HEAD}.{_BODY}.", "token_signature"),
    "alg none": (forged({"alg": "none", "kid": "ed-1"}, claims()), "token_algorithm"),
    "alg None": (forged({"alg": "None", "kid": "ed-1"}, claims()), "token_algorithm"),
    "HS256 keyed with the public key": (
        hs256_keyed_with(_public_pem(ED_KEY), claims()),
        "token_algorithm",
    ),
    "ES256 claimed for the Ed25519 key": (
        sign(claims(), EC_KEY, alg="ES256", kid="ed-1"),
        "token_algorithm",
    ),
    "RS512 not accepted": (sign(claims(), RSA_KEY, alg="RS512", kid="ed-1"), "token_algorithm"),
    "expired beyond the leeway": (sign(claims(iat=NOW - 300, exp=NOW - 31)), "token_expired"),
    "nbf in the future": (sign(claims(nbf=NOW + 60)), "token_not_yet_valid"),
    "iat in the future": (sign(claims(iat=NOW + 60, exp=NOW + 360)), "token_not_yet_valid"),
    "wrong issuer": (sign(claims(iss="https://login.example.org")), "token_issuer"),
    "no issuer": (sign(claims(iss=None)), "token_issuer"),
    "wrong audience": (sign(claims(aud="billing")), "token_audience"),
    "no audience": (sign(claims(aud=None)), "token_audience"),
    "audience list with junk": (sign(claims(aud=[1, AUDIENCE])), "token_audience"),
    "lifetime too long": (sign(claims(exp=NOW + 16 * 60)), "token_lifetime"),
    "backdated long lifetime": (sign(claims(iat=NOW - 3600, exp=NOW + 60)), "token_lifetime"),
    "no iat and a far exp": (sign(claims(iat=None, exp=NOW + 3600)), "token_lifetime"),
    "unknown kid": (sign(claims(), kid="ed-2"), "token_unknown_key"),
    "no kid with two keys": (sign(claims(), kid=None), "token_unknown_key"),
    "missing sub": (sign(claims(sub=None)), "token_claims"),
    "empty sub": (sign(claims(sub="")), "token_claims"),
    "sub too long": (sign(claims(sub="x" * 129)), "token_claims"),
    "sub not a string": (sign(claims(sub=12345)), "token_claims"),
    "missing exp": (sign(claims(exp=None)), "token_claims"),
    "exp a string": (sign(claims(exp=str(NOW + 60))), "token_claims"),
    "exp a boolean": (sign(claims(exp=True)), "token_claims"),
    "exp absurd": (sign(claims(exp=10**30)), "token_claims"),
    "nbf a list": (sign(claims(nbf=[NOW])), "token_claims"),
    "crit header": (
        forged({"alg": "EdDSA", "kid": "ed-1", "crit": ["exp"], "exp": 1}, claims(), b"x" * 64),
        "token_malformed",
    ),
    "two segments": (f"{_HEAD}.{_BODY}", "token_malformed"),
    "not base64": ("a.b.c", "token_malformed"),
    "header a list": (f"W10.{_BODY}.{_TAIL}", "token_malformed"),
    "header without alg": (forged({"kid": "ed-1"}, claims(), b"x" * 64), "token_malformed"),
    "kid a number": (forged({"alg": "EdDSA", "kid": 1}, claims(), b"x" * 64), "token_malformed"),
    "empty": ("", "token_malformed"),
    "far too long": ("a" * 20_000, "token_malformed"),
}


def test_every_reason_code_has_a_refused_token() -> None:
    """The table of refusals covers every documented reason code."""
    assert {reason for _, reason in REFUSALS.values()} == set(AUTHENTICATION_REASONS)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_token_is_refused_with_its_reason(case: str, authenticator: JWTAuthenticator) -> None:
    """Each bad token raises AuthenticationError with its reason and a message quoting nothing."""
    token, reason = REFUSALS[case]
    error = refusal(authenticator, token)
    assert error.reason == reason
    assert isinstance(error, AccessDeniedError)
    assert str(error) == f"token refused: {AUTHENTICATION_REASONS[reason]}"
    # No chained library error (whose text may quote the token) is shown with a traceback.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    text = f"{error} {error!r} {error.args!r}"
    assert not [part for part in token.split(".") if len(part) >= 8 and part in text]
    assert "张三" not in text and "forged-admin-99" not in text


def test_a_signed_refusal_names_the_signed_actor_and_a_forged_one_does_not(
    authenticator: JWTAuthenticator,
) -> None:
    """An expired genuine token carries its sub as signed_actor_id; a forgery carries none."""
    expired = refusal(authenticator, REFUSALS["expired beyond the leeway"][0])
    assert (expired.key_id, expired.signed_actor_id) == ("ed-1", CLERK)
    tampered = refusal(authenticator, REFUSALS["tampered payload"][0])
    assert (tampered.key_id, tampered.signed_actor_id) == ("ed-1", None)
    unknown = refusal(authenticator, REFUSALS["unknown kid"][0])
    assert (unknown.key_id, unknown.signed_actor_id) == (None, None)


def test_a_shorter_leeway_and_lifetime_are_honoured(clock: FrozenClock) -> None:
    """With leeway 0 a token expired a second ago is refused; lifetime 1 min refuses 5 min."""
    verifier = JWTAuthenticator(
        issuer=ISSUER,
        audience=AUDIENCE,
        public_keys={"ed-1": _public_pem(ED_KEY)},
        leeway=_dt.timedelta(0),
        max_lifetime=_dt.timedelta(minutes=1),
        clock=clock,
    )
    assert refusal(verifier, sign(claims(iat=NOW - 30, exp=NOW - 1))).reason == "token_expired"
    assert refusal(verifier, sign(claims())).reason == "token_lifetime"
    assert verifier.authenticate(sign(claims(exp=NOW + 60))).actor_id == CLERK


# --------------------------------------------------------------------------- shared secrets


def test_hs256_is_accepted_only_with_a_shared_secret_configured_for_it(clock: FrozenClock) -> None:
    """An explicit HS256 secret verifies HS256 tokens; the public key never serves as one."""
    secret = b"s" * 32
    verifier = JWTAuthenticator(
        issuer=ISSUER,
        audience=AUDIENCE,
        public_keys={"ed-1": _public_pem(ED_KEY)},
        shared_secrets={"hs-1": secret},
        algorithms=("EdDSA", "HS256"),
        clock=clock,
    )
    assert verifier.authenticate(sign(claims(), secret, alg="HS256", kid="hs-1")).key_id == "hs-1"
    assert verifier.authenticate(sign(claims())).key_id == "ed-1"
    confused = hs256_keyed_with(_public_pem(ED_KEY), claims(), kid="ed-1")
    assert refusal(verifier, confused).reason == "token_algorithm"
    assert refusal(verifier, sign(claims(), ED_KEY, kid="hs-1")).reason == "token_algorithm"
    wrong = sign(claims(), b"t" * 32, alg="HS256", kid="hs-1")
    assert refusal(verifier, wrong).reason == "token_signature"


# --------------------------------------------------------------------------- JWKS


def _jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``private`` (as an identity provider publishes it)."""
    pem = _public_pem(private)
    parser: Any
    if isinstance(private, ed25519.Ed25519PrivateKey):
        parser = jwt.algorithms.OKPAlgorithm()
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        parser = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
    else:
        parser = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)
    jwk: dict[str, Any] = parser.to_jwk(parser.prepare_key(pem), as_dict=True)
    return {**jwk, "kid": kid, **extra}


def test_a_jwks_supplies_keys_by_kid(clock: FrozenClock) -> None:
    """Keys from a JWKS are selected by kid; encryption keys and unusable kinds are passed over."""
    jwks = {
        "keys": [
            _jwk(ED_KEY, "2026-01", use="sig"),
            _jwk(EC_KEY, "2026-02", alg="ES256"),
            _jwk(RSA_KEY, "enc-1", use="enc"),
            {"kty": "AKP", "kid": "pq-1", "pub": "AAAA"},
        ]
    }
    verifier = JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, clock=clock)
    assert verifier.key_ids == ("2026-01", "2026-02")
    assert verifier.authenticate(sign(claims(), kid="2026-01")).key_id == "2026-01"
    es256 = sign(claims(), EC_KEY, alg="ES256", kid="2026-02")
    assert verifier.authenticate(es256).key_id == "2026-02"
    rs256 = sign(claims(), RSA_KEY, alg="RS256", kid="enc-1")
    assert refusal(verifier, rs256).reason == "token_unknown_key"


# --------------------------------------------------------------------------- configuration


def _config(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "public_keys": {"ed-1": _public_pem(ED_KEY)},
    }
    values.update(changes)
    return values


_PRIVATE_PEM = ED_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)

#: Configurations that must be refused when the verifier is made.
BAD_CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "alg none": _config(algorithms=("EdDSA", "none")),
    "HS256 without a secret": _config(algorithms=("HS256",)),
    "a secret without HS*": _config(shared_secrets={"hs-1": b"s" * 32}),
    "a short secret": _config(shared_secrets={"hs-1": b"s" * 16}, algorithms=("HS256",)),
    "unknown algorithm": _config(algorithms=("ES256K",)),
    "algorithms as one string": _config(algorithms="EdDSA"),
    "no keys": _config(public_keys={}),
    "a private key": _config(public_keys={"ed-1": _PRIVATE_PEM}),
    "not a key": _config(public_keys={"ed-1": b"-----BEGIN PUBLIC KEY-----\nAAAA\n"}),
    "a key for no accepted algorithm": _config(algorithms=("ES256",)),
    "a small RSA key": _config(
        public_keys={
            "rsa-1": _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
        },
    ),
    "the same kid twice": _config(jwks={"keys": [_jwk(ED_KEY, "ed-1")]}),
    "a JWKS key without kid": _config(jwks={"keys": [{**_jwk(EC_KEY, "x"), "kid": None}]}),
    "a JWKS with a secret": _config(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}),
    "a JWKS that is a list": _config(jwks=[_jwk(EC_KEY, "ec")]),
    "no issuer": _config(issuer=""),
    "no audience": _config(audience=""),
    "a long leeway": _config(leeway=_dt.timedelta(minutes=10)),
    "a long lifetime": _config(max_lifetime=_dt.timedelta(days=2)),
    "no lifetime": _config(max_lifetime=_dt.timedelta(0)),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGURATIONS))
def test_an_unsafe_configuration_is_refused(case: str) -> None:
    """A missing, unknown or unsafe setting raises ConfigurationError when the verifier is made."""
    with pytest.raises(ConfigurationError):
        JWTAuthenticator(**BAD_CONFIGURATIONS[case])


def test_a_verifier_cannot_be_pickled_and_its_repr_holds_no_secret() -> None:
    """The repr names issuer, audience and key ids; pickling is refused (secrets inside)."""
    import pickle

    secret = b"very-secret-shared-hmac-key-0123456789"
    verifier = JWTAuthenticator(
        **_config(shared_secrets={"hs-1": secret}, algorithms=("EdDSA", "HS256"))
    )
    assert "very-secret" not in repr(verifier) and "hs-1" in repr(verifier)
    with pytest.raises(TypeError):
        pickle.dumps(verifier)


# --------------------------------------------------------------------------- anything at all


@settings(max_examples=300, deadline=None)
@given(st.text(strategies.ANY_CHAR, max_size=300) | strategies.jwt_like_tokens())
def test_any_string_is_accepted_or_refused_with_authentication_error(token: str) -> None:
    """Whatever string arrives, authenticate raises nothing but AuthenticationError."""
    verifier = JWTAuthenticator(**_config(clock=FrozenClock()))
    with pytest.raises(AuthenticationError) as caught:
        verifier.authenticate(token)
    assert caught.value.reason in AUTHENTICATION_REASONS


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat"]), strategies.json_values
    )
)
def test_any_signed_claims_are_accepted_or_refused_with_authentication_error(
    payload: object,
) -> None:
    """Genuinely signed tokens with arbitrary claims give an identity or AuthenticationError."""
    verifier = JWTAuthenticator(**_config(clock=FrozenClock()))
    try:
        identity = verifier.authenticate(sign_any(payload))
    except AuthenticationError as error:
        assert error.reason in AUTHENTICATION_REASONS
    else:
        assert isinstance(payload, dict) and identity.actor_id == payload["sub"]


# --------------------------------------------------------------------------- vault sessions


@pytest.fixture
def token_vault(tmp_path: Path, clock: FrozenClock) -> Iterator[Vault]:
    """A vault on the frozen clock whose authenticator is the provider's verifier."""
    vault = Vault.create(tmp_path / "vault", key=InMemoryKey(), clock=clock)
    grant_roles(vault, Actor(CLERK, roles=["front_desk"]), Actor(GUARD, roles=["security"]))
    record_assessments(vault)
    vault.authenticator = JWTAuthenticator(**_config(clock=clock))
    try:
        yield vault
    finally:
        vault.close()


def _entries(
    vault: Vault, start: int, action: str = "session.authenticate"
) -> list[dict[str, Any]]:
    return [e for e in vault.audit.entries(start) if e["action"] == action]


def test_a_session_for_a_good_token_acts_as_the_verified_actor(token_vault: Vault) -> None:
    """The session's actor is the token's sub with the roles asked for; both steps are audited."""
    start = token_vault.audit.size()
    with token_vault.session_for_token(
        sign(claims()), "owner_registration", roles=["front_desk"], communities=["c1"]
    ) as session:
        assert session.actor == Actor(CLERK, roles=["front_desk"], communities=["c1"])
    [entry] = _entries(token_vault, start)
    assert entry["decision"] == "allow" and entry["actor"] == CLERK
    assert entry["roles"] == ["front_desk"] and entry["purpose"] == "owner_registration"
    assert entry["detail"] == {
        "issuer": ISSUER,
        "key_id": "ed-1",
        "expires_at": "2026-01-01T09:05:00.000000Z",
    }
    [opened] = _entries(token_vault, start, "session.open")
    assert opened["actor"] == CLERK and opened["seq"] > entry["seq"]


def test_a_refused_token_is_audited_without_any_of_its_text(token_vault: Vault) -> None:
    """Each refusal is a deny entry by 'unauthenticated' with its reason; no token text is kept."""
    start = token_vault.audit.size()
    tokens = {case: REFUSALS[case] for case in ("tampered payload", "alg none", "wrong issuer")}
    for token, reason in tokens.values():
        with pytest.raises(AuthenticationError) as caught:
            token_vault.session_for_token(token, "owner_registration", roles=["front_desk"])
        assert caught.value.reason == reason
    entries = _entries(token_vault, start)
    assert [e["reason"] for e in entries] == [reason for _, reason in tokens.values()]
    assert {e["decision"] for e in entries} == {"deny"}
    assert {e["actor"] for e in entries} == {"unauthenticated"}
    assert not _entries(token_vault, start, "session.open")
    logged = json.dumps(list(token_vault.audit.entries()), ensure_ascii=False)
    for token, _ in tokens.values():
        assert not [part for part in token.split(".") if len(part) >= 8 and part in logged]
    assert "forged-admin-99" not in logged and "张三" not in logged


def test_a_refusal_names_the_signed_actor_only_when_the_signature_verified(
    token_vault: Vault,
) -> None:
    """An expired genuine token logs its sub as signed_actor; a forged sub is never logged."""
    start = token_vault.audit.size()
    forged_sub = "forged-chief-accountant"
    forgery = sign(claims(sub=forged_sub), _OTHER_KEY)
    for token in (REFUSALS["expired beyond the leeway"][0], forgery):
        with pytest.raises(AuthenticationError):
            token_vault.session_for_token(token, "owner_registration", roles=["front_desk"])
    expired, forged_entry = _entries(token_vault, start)
    assert expired["reason"] == "token_expired"
    assert expired["detail"] == {"key_id": "ed-1", "signed_actor": CLERK}
    assert forged_entry["reason"] == "token_signature"
    assert forged_entry["detail"] == {"key_id": "ed-1", "signed_actor": None}
    assert forged_sub not in json.dumps(list(token_vault.audit.entries()))


def test_the_vault_clock_expires_the_token(token_vault: Vault, clock: FrozenClock) -> None:
    """A token good now is refused after the vault's frozen clock moves ten minutes on."""
    token = sign(claims())
    token_vault.session_for_token(token, "owner_registration", roles=["front_desk"]).close()
    clock.advance(_dt.timedelta(minutes=10))
    with pytest.raises(AuthenticationError) as caught:
        token_vault.session_for_token(token, "owner_registration", roles=["front_desk"])
    assert caught.value.reason == "token_expired"


def test_a_token_may_not_name_the_vaults_own_actor(token_vault: Vault) -> None:
    """A signed token whose sub is 'ownervault' or 'unauthenticated' is refused (token_claims)."""
    for sub in ("ownervault", "unauthenticated"):
        with pytest.raises(AuthenticationError) as caught:
            token_vault.session_for_token(
                sign(claims(sub=sub)), "owner_registration", roles=["front_desk"]
            )
        assert caught.value.reason == "token_claims"


def test_the_policy_still_decides_for_a_verified_actor(token_vault: Vault) -> None:
    """A verified clerk asking for a purpose the role may not use is refused by the policy."""
    start = token_vault.audit.size()
    with pytest.raises(PolicyDeniedError):
        token_vault.session_for_token(sign(claims()), "fee_collection", roles=["front_desk"])
    [opened] = _entries(token_vault, start, "session.open")
    assert opened["actor"] == CLERK and opened["decision"] == "deny"


def test_without_an_authenticator_tokens_are_not_accepted(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """A vault with no authenticator refuses session_for_token with ConfigurationError."""
    with Vault.create(tmp_path / "vault", key=InMemoryKey(), clock=clock) as vault:
        start = vault.audit.size()
        with pytest.raises(ConfigurationError):
            vault.session_for_token(sign(claims()), "owner_registration", roles=["front_desk"])
        assert vault.audit.size() == start


def test_bad_roles_are_a_validation_error_before_the_token_is_read(token_vault: Vault) -> None:
    """Roles given as one string are the caller's mistake: ValidationError, nothing audited."""
    start = token_vault.audit.size()
    with pytest.raises(ValidationError):
        token_vault.session_for_token(sign(claims()), "owner_registration", roles="front_desk")
    assert token_vault.audit.size() == start


class _Badge:
    """An authenticator of the application's own: badge numbers, one reason of its own."""

    def authenticate(self, credential: str) -> Identity:
        if credential == "badge-7":
            return Identity(
                actor_id="guard-7",
                issuer="badge-office",
                key_id=None,
                expires_at=_dt.datetime(2026, 1, 1, 18, 0, tzinfo=_dt.UTC),
            )
        raise AuthenticationError("badge refused", reason="Badge Revoked: " + credential)


def test_an_applications_own_authenticator_plugs_in(token_vault: Vault) -> None:
    """Any Authenticator works; a reason that is not a code is logged as credential_refused."""
    badge = _Badge()
    assert isinstance(badge, Authenticator)
    token_vault.authenticator = badge
    start = token_vault.audit.size()
    with token_vault.session_for_token("badge-7", "visitor_verification", roles=["security"]) as s:
        assert s.actor.actor_id == "guard-7"
    with pytest.raises(AuthenticationError):
        token_vault.session_for_token("badge-8", "visitor_verification", roles=["security"])
    allowed, refused_entry = _entries(token_vault, start)
    assert allowed["detail"]["issuer"] == "badge-office"
    assert refused_entry["reason"] == "credential_refused"
    assert "badge-8" not in json.dumps(list(token_vault.audit.entries()))


def test_a_verified_actor_still_gets_only_the_roles_it_was_granted(token_vault: Vault) -> None:
    """A good token proves who is asking, not what they may do: roles come from grants."""
    with pytest.raises(NotGrantedError) as caught:
        token_vault.session_for_token(sign(claims()), "fee_collection", roles=["finance"])
    assert caught.value.reason == "role_not_granted"
