"""The ownervault exception hierarchy.

Every error raised on purpose by ownervault derives from :class:`OwnerVaultError`, so an
embedding application can catch the whole family with one clause, and the CLI can turn any of
them into a one-line message and a non-zero exit code.

Messages name the record type, record id, field, purpose, key id, file or line involved, and
never a field value, a search term, a passphrase or key bytes. Exceptions carry no secret in
their ``args`` either, so ``str()``, ``repr()`` and tracebacks are safe to log.

::

    OwnerVaultError
    ├── ConfigurationError (ValueError)
    │   ├── PolicyError                      a policy file is invalid (file and line in the message)
    │   └── KeyProviderError                 a key provider cannot produce its key material
    ├── ValidationError (ValueError)         a record or argument handed in is invalid
    │   └── UnknownFieldError (KeyError, AttributeError)  a view was asked for a field its
    │                                        record type does not have
    ├── VaultError
    │   ├── VaultExistsError (FileExistsError)
    │   ├── VaultNotFoundError (FileNotFoundError)
    │   ├── VaultFormatError                 header or schema is not one this version can read
    │   ├── VaultClosedError
    │   ├── VaultLockedError                 the vault failed closed after an integrity failure
    │   └── VaultHandedOverError             the records went to a successor; no new data
    ├── CryptoError
    │   ├── WrongKeyError                    the root key does not open this vault
    │   ├── DecryptionError                  one message for every way a ciphertext can be bad
    │   ├── KeyStateError                    a key's state forbids the operation (e.g. decrypt-only)
    │   └── KeyExhaustedError                a key reached its invocation limit
    ├── AccessDeniedError (PermissionError)
    │   ├── PolicyDeniedError                no rule allows the actor, purpose, record or field
    │   │   └── NotGrantedError              the actor was not granted the roles or scope asked for
    │   ├── ConsentRequiredError             the purpose needs a live consent the subject lacks
    │   └── AuthenticationError              a credential (a signed token) was refused
    ├── FieldNotDisclosedError (KeyError, AttributeError)  a view was asked for a field the
    │                                        decision hides
    ├── RecordError
    │   ├── RecordNotFoundError (LookupError)
    │   ├── StaleRecordError                 an update was based on an out-of-date version
    │   └── SubjectErasedError               the subject was erased (crypto-shredded)
    ├── IntegrityError                       a stored row was changed outside the vault (or damaged)
    │   └── AuditIntegrityError              a Merkle proof, checkpoint or audit entry is bad
    ├── StorageError                         the database failed (locked too long, I/O, corrupt)
    └── HandoverError                        a handover package, receipt or certificate is refused
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AuditIntegrityError",
    "AuthenticationError",
    "ConfigurationError",
    "ConsentRequiredError",
    "CryptoError",
    "DecryptionError",
    "FieldNotDisclosedError",
    "HandoverError",
    "IntegrityError",
    "KeyExhaustedError",
    "KeyProviderError",
    "KeyStateError",
    "NotGrantedError",
    "OwnerVaultError",
    "PolicyDeniedError",
    "PolicyError",
    "RecordError",
    "RecordNotFoundError",
    "StaleRecordError",
    "StorageError",
    "SubjectErasedError",
    "UnknownFieldError",
    "ValidationError",
    "VaultClosedError",
    "VaultError",
    "VaultExistsError",
    "VaultFormatError",
    "VaultHandedOverError",
    "VaultLockedError",
    "VaultNotFoundError",
    "WrongKeyError",
]


class OwnerVaultError(Exception):
    """Root of every error ownervault raises on purpose."""


class ConfigurationError(OwnerVaultError, ValueError):
    """The vault was set up or configured wrongly."""


class PolicyError(ConfigurationError):
    """A policy file is invalid; the message names the file and line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{message}")


class KeyProviderError(ConfigurationError):
    """A key provider could not produce its key material (missing variable, bad key file)."""


class ValidationError(OwnerVaultError, ValueError):
    """A record or argument handed to ownervault is invalid; names fields, never values."""


class VaultError(OwnerVaultError):
    """A problem with the vault as a whole."""


class VaultExistsError(VaultError, FileExistsError):
    """A vault already exists at the path given to ``Vault.create``."""


class VaultNotFoundError(VaultError, FileNotFoundError):
    """No vault exists at the path given to ``Vault.open``."""


class VaultFormatError(VaultError):
    """The vault's header or schema is damaged or from an unknown format version."""


class VaultClosedError(VaultError):
    """The vault (or session) was used after it was closed."""


class VaultLockedError(VaultError):
    """The vault failed closed after an integrity failure and refuses further work."""


class CryptoError(OwnerVaultError):
    """A cryptographic operation failed."""


class WrongKeyError(CryptoError):
    """The root key (passphrase, key file, variable or HSM key) does not open this vault."""


class DecryptionError(CryptoError):
    """A ciphertext could not be decrypted.

    Wrong key, failed tag, failed key commitment, truncated input, unknown key id and unknown
    format version all raise this same error with the same message, so a caller learns nothing
    about which check failed (no decryption oracle).
    """

    MESSAGE = "decryption failed"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class KeyStateError(CryptoError):
    """A key's lifecycle state forbids the requested operation or transition."""


class KeyExhaustedError(CryptoError):
    """A key reached its configured invocation limit and must be rotated."""


class AccessDeniedError(OwnerVaultError, PermissionError):
    """Policy (or, later, consent) does not allow the requested access."""


class PolicyDeniedError(AccessDeniedError):
    """No rule allows this actor and purpose the requested record, field or action.

    ``reason`` is a short machine-readable code (also written to the audit trail).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class NotGrantedError(PolicyDeniedError):
    """The actor asks for a role or scope the vault never granted it (or no longer does).

    ``reason`` is ``no_grants``, ``role_not_granted``, ``scope_not_granted``,
    ``separation_of_duties``, or ``grant_expired`` for an operation in a session whose grants
    ran out after it opened; the refusal is audited.
    """


class ConsentRequiredError(AccessDeniedError):
    """A consent-based purpose has no live consent for this subject; nothing was decrypted.

    ``reason`` is ``consent_missing``, ``consent_withdrawn``, ``consent_expired`` or
    ``consent_reconsent_required``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class AuthenticationError(AccessDeniedError):
    """A credential (a signed token from the application's identity provider) was refused.

    ``reason`` is a short machine-readable code (also written to the audit trail):
    ``token_malformed``, ``token_signature``, ``token_expired``, ``token_not_yet_valid``,
    ``token_issuer``, ``token_audience``, ``token_lifetime``, ``token_algorithm``,
    ``token_unknown_key`` or ``token_claims``. The message says what was wrong, never the
    token or a claim's value.

    ``key_id`` names the configured verification key the token asked for, when there is one;
    ``signed_actor_id`` is the actor id of a token whose signature verified but which was
    refused for another reason (expired, another audience...): the identity provider did
    sign it. Both are None otherwise; neither ever holds text a forger chose.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        key_id: str | None = None,
        signed_actor_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.key_id = key_id
        self.signed_actor_id = signed_actor_id
        super().__init__(message)


class FieldNotDisclosedError(OwnerVaultError, KeyError, AttributeError):
    """A view was asked for a field of its record type that the decision hides.

    It is a ``KeyError`` for ``view["field"]`` and an ``AttributeError`` for ``view.field``, so
    ``getattr(view, "field", None)`` and ``hasattr`` work as for any Python object. It is not an
    :class:`AccessDeniedError`: Python cannot make one exception both a ``PermissionError`` and
    an ``AttributeError``. Nothing was denied when it is raised; the decision made when the
    record was read left the field out, and it was never decrypted.
    """

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class UnknownFieldError(ValidationError, KeyError, AttributeError):
    """A view was asked for a field that its record type does not have (a typo, most often).

    A ``KeyError`` for ``view["field"]`` and an ``AttributeError`` for ``view.field``.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RecordError(OwnerVaultError):
    """A problem with a particular record."""


class RecordNotFoundError(RecordError, LookupError):
    """No record of that type and id exists."""


class StaleRecordError(RecordError):
    """An update was based on a version of the record that is no longer current."""


class SubjectErasedError(RecordError):
    """The record's subject was erased; its personal fields are gone for good."""


class IntegrityError(OwnerVaultError):
    """Stored data failed its integrity check: changed outside the vault, moved, or damaged.

    Raised when a row's binding tag does not match its columns (a record, subject, consent or
    key row), when a search candidate does not hold the value searched for, or when the subject
    an erasure found is not the one asked for. The message names the table and row id, never a
    value. Nothing is disclosed or changed by the operation that raises it.

    ``table`` and ``row`` name what failed (a table and a row id or pseudonym) when it is one
    row; they hold no personal value.
    """

    def __init__(self, message: str, *, table: str | None = None, row: str | None = None) -> None:
        self.table = table
        self.row = row
        super().__init__(message)


class AuditIntegrityError(IntegrityError):
    """An audit entry, Merkle proof or signed checkpoint failed verification."""


class StorageError(OwnerVaultError):
    """The database failed: locked for too long, I/O error or corruption."""


class VaultHandedOverError(VaultError):
    """The owners' records were handed over to a successor and the vault takes no new data.

    Its audit log stays readable and exportable (``docs/handover.md``).
    """


class HandoverError(OwnerVaultError):
    """A handover package, receipt or certificate was refused (``docs/handover.md``).

    ``reason`` is a short machine-readable code: ``package_malformed``, ``package_signature``,
    ``vault_key_mismatch``, ``wrong_recipient_key``, ``manifest_mismatch``,
    ``receipt_malformed``, ``receipt_signature``, ``receipt_other_vault``,
    ``receipt_unknown_package``, ``receipt_mismatch``, ``vault_changed``,
    ``other_handover``, ``certificate_malformed`` or ``certificate_signature``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)
