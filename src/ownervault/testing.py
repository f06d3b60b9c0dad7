"""Test doubles shipped as public API: an in-memory root key, a frozen clock, fast KDF costs,
and :func:`grant_roles` to give test actors the roles they ask for.

Use them in an embedding application's own tests; none of them is meant for production.
"""

from __future__ import annotations

import contextlib
from typing import Final, Protocol

from . import crypto
from .exceptions import ValidationError
from .kernel import GrantBook
from .kernel.clock import FrozenClock
from .keys import InMemoryKey
from .policy import Actor


class _WithGrants(Protocol):
    """Anything with ``grants`` (an :class:`ownervault.Vault`)."""

    @property
    def grants(self) -> GrantBook: ...


__all__ = ["FAST_ARGON2", "TEST_GRANTOR", "FrozenClock", "InMemoryKey", "grant_roles"]

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


#: Argon2id costs low enough for unit tests. Never use them for a real vault.
FAST_ARGON2: Final = crypto.Argon2Params(memory_kib=64, iterations=1, lanes=1)
