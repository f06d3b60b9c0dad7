"""Test doubles shipped as public API: an in-memory root key, a frozen clock, fast KDF costs,
:func:`grant_roles` to give test actors the roles they ask for, and
:func:`record_assessments` to record synthetic impact assessments for the purposes that need one.

Use them in an embedding application's own tests; none of them is meant for production.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from typing import Final, Protocol

from . import crypto
from .exceptions import ConfigurationError, ValidationError
from .kernel import AssessmentBook, GrantBook
from .kernel.assessments import shared_purposes
from .kernel.clock import FrozenClock
from .keys import InMemoryKey
from .policy import Actor, Policy, requirement


class _WithGrants(Protocol):
    """Anything with ``grants`` (an :class:`ownervault.Vault`)."""

    @property
    def grants(self) -> GrantBook: ...


class _WithAssessments(_WithGrants, Protocol):
    """Anything with ``grants``, ``assessments`` and ``policy`` (an :class:`ownervault.Vault`)."""

    @property
    def assessments(self) -> AssessmentBook: ...
    @property
    def policy(self) -> Policy: ...


__all__ = [
    "FAST_ARGON2",
    "TEST_ASSESSED",
    "TEST_ASSESSOR",
    "TEST_GRANTOR",
    "TEST_NEXT_REVIEW",
    "FrozenClock",
    "InMemoryKey",
    "grant_roles",
    "record_assessments",
]

#: The grant administrator :func:`grant_roles` acts as (bootstrapped when the vault has none).
TEST_GRANTOR: Final = Actor("test-grantor", roles=["security_admin"])


def grant_roles(vault: _WithGrants, *actors: Actor) -> None:
    """Grant each actor the roles it names, anywhere and without expiry (tests and demos only).

    Acts as :data:`TEST_GRANTOR`, bootstrapping it when the vault has no grant administrator;
    roles an actor holds already are left alone. A real deployment grants each role on purpose,
    with the narrowest scope and an expiry (``docs/access-control.md``).
    """
    # When a grant administrator exists, the test grantor must be it (or be granted by it).
    with contextlib.suppress(ValidationError):
        vault.grants.bootstrap(TEST_GRANTOR.actor_id, TEST_GRANTOR.roles[0])
    for actor in actors:
        held = {g.role for g in vault.grants.list(actor.actor_id, by=TEST_GRANTOR)}
        for role in actor.roles:
            if role not in held:
                vault.grants.add(actor.actor_id, role, by=TEST_GRANTOR)


#: The compliance officer :func:`record_assessments` records as (granted when it is not yet);
#: under a pack without that role, the actor id records in a role the pack lets add assessments.
TEST_ASSESSOR: Final = Actor("test-assessor", roles=["compliance_officer"])

#: The dates of every synthetic assessment: assessed long ago, reviewed never, so that no test
#: clock (frozen or moved on by years) finds one dated in the future or due for review.
TEST_ASSESSED: Final = _dt.date(2000, 1, 1)
TEST_NEXT_REVIEW: Final = _dt.date(9999, 12, 31)


def record_assessments(vault: _WithAssessments, *, grantor: Actor = TEST_GRANTOR) -> list[str]:
    """Record a synthetic ``approved`` assessment for every purpose that needs one and has no
    current one (tests and demos only); returns the purposes assessed.

    Acts as :data:`TEST_ASSESSOR` (in a role the pack lets record assessments), granted its role
    when needed by ``grantor`` (by default :func:`grant_roles`' :data:`TEST_GRANTOR`; give the
    vault's own grant administrator for a vault created with ``creator=``). Dated
    :data:`TEST_ASSESSED` with the next review :data:`TEST_NEXT_REVIEW`. A real deployment
    records each assessment after making it, with a review within a year or two
    (``docs/assessments.md``).
    """
    policy = vault.policy
    shared = shared_purposes(policy)
    if not any(requirement(policy, p, shared).needed for p in policy.purposes):
        return []
    may = policy.admin_actions.get("assessment.add", frozenset()) & set(policy.roles)
    if not may:
        raise ConfigurationError(
            "the policy pack lets no role record impact assessments: name one for "
            '"assessment.add" and "assessment.list" in roles.toml\'s [admin_actions]'
        )
    role = TEST_ASSESSOR.roles[0] if TEST_ASSESSOR.roles[0] in may else sorted(may)[0]
    assessor = Actor(TEST_ASSESSOR.actor_id, roles=[role])
    if grantor == TEST_GRANTOR:
        grant_roles(vault, assessor)
    elif not vault.grants.list(assessor.actor_id, by=grantor):
        vault.grants.add(assessor.actor_id, role, by=grantor)
    book = vault.assessments
    done: list[str] = []
    for found in book.check(by=assessor):
        if found.allowed:
            continue
        book.add(
            found.purpose,
            by=assessor,
            assessor="synthetic test assessment",
            assessed_at=TEST_ASSESSED,
            risks="synthetic: no real assessment was made",
            measures="synthetic: for tests and demos only",
            conclusion="approved",
            next_review=TEST_NEXT_REVIEW,
        )
        done.append(found.purpose)
    return done


#: Argon2id costs low enough for unit tests. Never use them for a real vault.
FAST_ARGON2: Final = crypto.Argon2Params(memory_kib=64, iterations=1, lanes=1)
