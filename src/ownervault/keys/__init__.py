"""The key hierarchy: root key providers, the vault header, key states and the data-key cache.

Owns the root key providers (passphrase, key file, environment variable, PKCS#11 in
:mod:`.pkcs11`), the vault header, key states and transitions (NIST SP 800-57) and the bounded
cache of unwrapped data keys. Imports :mod:`ownervault.crypto`, :mod:`ownervault.storage` (file
names only) and :mod:`ownervault.exceptions`.

:mod:`ownervault.keys.admin` is the feature half: the administrators' verbs, rotation jobs,
backups and restores. It sits above the kernel and is never imported from here.
"""

from .header import HEADER_NAME, VaultHeader, recover, recovered, write_atomically
from .hierarchy import (
    DEFAULT_MAX_INVOCATIONS,
    TRANSITIONS,
    USES,
    KeyCache,
    KeyInfo,
    KeyKind,
    KeyState,
    check_transition,
    check_use,
)
from .providers import (
    KEY_TEXT_PREFIX,
    EnvKey,
    InMemoryKey,
    KeyFileKey,
    KeyProvider,
    LocalRootKey,
    PassphraseKey,
    Redacted,
    RootKey,
    decode_key_text,
    encode_key_text,
)

__all__ = [
    "DEFAULT_MAX_INVOCATIONS",
    "HEADER_NAME",
    "KEY_TEXT_PREFIX",
    "TRANSITIONS",
    "USES",
    "EnvKey",
    "InMemoryKey",
    "KeyCache",
    "KeyFileKey",
    "KeyInfo",
    "KeyKind",
    "KeyProvider",
    "KeyState",
    "LocalRootKey",
    "PassphraseKey",
    "Redacted",
    "RootKey",
    "VaultHeader",
    "check_transition",
    "check_use",
    "decode_key_text",
    "encode_key_text",
    "recover",
    "recovered",
    "write_atomically",
]
