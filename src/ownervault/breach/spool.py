"""The owner-notice spool: sending spooled owner notices, and purging an erased owner's.

An owner notice routed to a Maildir notifier is spooled addressed to the owner's pseudonym only
(:mod:`.maildir`): nothing in the spool identifies the owner. :meth:`Spool.send` (what
``vault.incidents.send`` and ``ownervault incident send`` run) looks each owner's name and
e-mail address up when the notice is sent, through a kernel read under the
``breach_notification`` purpose (audited like every read), addresses a copy made in memory and
hands it to a :class:`~.notifiers.MailTransport` (an SMTP server); the spooled message then
moves to ``cur/``. :meth:`Spool.purge` runs after an owner's erasure commits (a kernel erasure
observer) and deletes that owner's spooled notices. Also owns the owner contact look-up the
dispatcher uses, and the error text kept for a failed delivery (never a contact detail).
"""

from __future__ import annotations

import email.errors
from collections.abc import Callable, Iterable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import (
    ConfigurationError,
    DecryptionError,
    OwnerVaultError,
    RecordNotFoundError,
    SubjectErasedError,
)
from ..kernel import SYSTEM_ACTOR
from ..kernel.reads import get_many
from ..policy import Actor
from ..records import OwnerProfile
from ..storage.base import OutboxRow
from .config import BreachConfig
from .maildir import (
    AUDIENCE_HEADER,
    FORMAT_HEADER,
    INCIDENT_HEADER,
    OWNER_HEADER,
    SPOOL_FORMAT,
    Maildir,
    parse_message,
)
from .model import NOTIFICATION_PURPOSE, PERSONAL_LOOKING, SendReport
from .notifiers import (
    MaildirNotifier,
    MailTransport,
    NotificationError,
    Recipient,
    UndeliverableError,
)
from .store import IncidentStore

if TYPE_CHECKING:
    from ..kernel import Access, Kernel

__all__ = ["Spool", "addressed", "notifier_base", "owner_contact", "safe_error"]


def notifier_base(kernel: Kernel) -> Path:
    """Where relative notifier paths start: the vault directory.

    For a vault on a database server, which has no directory, it is the working directory.
    """
    return kernel.path or Path.cwd()


def safe_error(exc: BaseException, recipient: Recipient | None) -> str:
    """An error message fit for the outbox, the audit log and the CLI: no personal data."""
    name = type(exc).__name__
    if not isinstance(exc, OwnerVaultError):
        return name
    text = str(exc).splitlines()[0] if str(exc) else ""
    secrets_seen = (
        [v for v in (recipient.name, recipient.phone, recipient.email) if v] if recipient else []
    )
    if any(value in text for value in secrets_seen) or PERSONAL_LOOKING.search(text):
        return name
    return f"{name}: {text}"[:500] if text else name


def owner_contact(session: Access, pseudonym: str) -> Recipient | None:
    """The owner's name, phone and e-mail address, read now for one delivery (audited).

    Returns None when the owner has no live profile with a phone or an e-mail address (or was
    erased). The values live in memory only.
    """
    ids = [
        r.record_id
        for r in session.backend.records_of_subject(pseudonym)
        if r.record_type == OwnerProfile.record_type and not r.erased
    ]
    if not ids:
        return None
    try:
        views = get_many(session, OwnerProfile.record_type, ids)
    except (SubjectErasedError, RecordNotFoundError, DecryptionError):
        return None
    for view in views:
        phone, email_addr, name = view.get("phone"), view.get("email"), view.get("name")
        if phone or email_addr:
            return Recipient(
                pseudonym=pseudonym,
                name=str(name) if name else None,
                phone=str(phone) if phone else None,
                email=str(email_addr) if email_addr else None,
            )
    return None


def addressed(message: EmailMessage, recipient: Recipient) -> EmailMessage:
    """A copy of a spooled owner notice addressed to the owner (name and e-mail address).

    The spool's own headers (the format and the pseudonym) are left out of the copy.

    Raises:
        UndeliverableError: the owner has no usable e-mail address.
    """
    if not recipient.email:
        raise UndeliverableError("the owner has no e-mail address")
    out = parse_message(message.as_bytes())
    for header in ("To", "Cc", "Bcc", OWNER_HEADER, FORMAT_HEADER):
        del out[header]
    try:
        out["To"] = Address(display_name=recipient.name or "", addr_spec=recipient.email)
    except (ValueError, TypeError, IndexError, email.errors.HeaderParseError):
        raise UndeliverableError("the owner has no usable e-mail address") from None
    return out


class Spool:
    """Owner notices spooled in Maildir notifiers: sending them, and purging an erased owner's.

    Security promise: a spooled notice names its owner by pseudonym only; the name and e-mail
    address are read (audited) when the notice is sent and exist in memory only; an erased
    owner's notices are deleted from the spool and never sent.
    """

    def __init__(self, kernel: Kernel, config: BreachConfig, store: IncidentStore) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config
        self._store = store

    def maildirs(
        self, names: Iterable[str] | None = None, *, strict: bool = True
    ) -> dict[str, Maildir]:
        """The Maildir folders of the notifiers ``names`` (default: those routed for owners).

        Raises:
            ConfigurationError: with ``strict``, a name given is not a Maildir notifier.
        """
        routed = self._config.incident.routing.get("owners", [])
        chosen = list(dict.fromkeys(routed if names is None else names))
        found: dict[str, Maildir] = {}
        for name in chosen:
            spec = self._config.incident.notifiers.get(name)
            if spec is None or spec.type != "maildir":
                if strict and names is not None:
                    raise ConfigurationError(f"notifier {name!r} is not a maildir notifier")
                continue
            hook = MaildirNotifier.from_options(spec.options, base_dir=notifier_base(self._kernel))
            found[name] = Maildir(hook.path)
        return found

    # ------------------------------------------------------------------ sending

    def send(
        self, *, actor: Actor, transport: MailTransport, names: Sequence[str] | None = None
    ) -> SendReport:
        """Send the spooled owner notices (see :meth:`IncidentManager.send`)."""
        counts = {"sent": 0, "retried": 0, "dropped": 0, "skipped": 0}
        session: Access | None = None

        def contacts() -> Access:
            # Opened on the first owner notice; closed (audited) when the run ends.
            nonlocal session
            if session is None:
                session = self._kernel.access(actor, NOTIFICATION_PURPOSE)
            return session

        folders = self.maildirs(names)
        where = ""
        try:
            for hook, maildir in folders.items():
                where = str(maildir.path)
                if not maildir.path.is_dir():
                    continue  # nothing was ever spooled there
                with maildir.sending():
                    for key in maildir.queued():
                        outcome = self._send_one(hook, maildir, key, transport, contacts, actor)
                        if outcome:
                            counts[outcome] += 1
            left = sum(len(m.queued()) for m in folders.values())
        except OSError as exc:
            raise NotificationError(
                f"cannot use maildir {where}: {exc.strerror or type(exc).__name__}"
            ) from None
        finally:
            if session is not None:
                session.close()
        return SendReport(left=left, **counts)

    def _send_one(
        self,
        hook: str,
        maildir: Maildir,
        key: str,
        transport: MailTransport,
        contacts: Callable[[], Access],
        actor: Actor,
    ) -> str | None:
        message = maildir.read(key)
        if message is None:
            return None  # purged or sent by someone else meanwhile
        if str(message.get(AUDIENCE_HEADER, "")) != "owners":
            return "skipped"  # a report or a page: a mail transfer agent takes it as it is
        pseudonym = self._owner(maildir, key, message)
        if pseudonym is None:
            return "skipped"
        incident_id = str(message.get(INCIDENT_HEADER, "")) or None
        subject = self._backend.subject(pseudonym)
        if subject is None or subject.erased_at is not None:
            return self._drop(maildir, key, hook, incident_id, pseudonym, actor, "owner erased")
        recipient = owner_contact(contacts(), pseudonym)
        try:
            if recipient is None:
                raise UndeliverableError("the owner has no live profile with an address")
            transport(addressed(message, recipient))
        except UndeliverableError as exc:
            reason = safe_error(exc, recipient)
            return self._drop(maildir, key, hook, incident_id, pseudonym, actor, reason)
        except Exception as exc:  # a transport may fail in any way; the message is vetted
            self._audit(
                actor, incident_id, pseudonym, key, hook, "retry", safe_error(exc, recipient)
            )
            return "retried"
        maildir.mark_sent(key)
        self._audit(actor, incident_id, pseudonym, key, hook, "sent", "")
        return "sent"

    def _owner(self, maildir: Maildir, key: str, message: EmailMessage) -> str | None:
        """The pseudonym a spooled owner notice is for.

        A notice spooled before the spool format existed carries the owner's address instead:
        its owner is found through the outbox, and the file is rewritten in the spool format
        (without the address) before anything else happens.
        """
        if str(message.get(FORMAT_HEADER, "")) == SPOOL_FORMAT:
            named = message.get(OWNER_HEADER)
            return str(named) if named else None
        rows = [
            r
            for r in self._kernel.keys.checked(self._backend.outbox())
            if r.notification_id == key and r.audience == "owners" and r.subject
        ]
        if not rows:
            return None
        pseudonym = str(rows[0].subject)
        for header in ("To", "Cc", "Bcc", OWNER_HEADER, FORMAT_HEADER):
            del message[header]
        message[FORMAT_HEADER] = SPOOL_FORMAT
        message[OWNER_HEADER] = pseudonym
        maildir.replace(key, message.as_bytes())
        return pseudonym

    def _drop(
        self,
        maildir: Maildir,
        key: str,
        hook: str,
        incident_id: str | None,
        pseudonym: str,
        actor: Actor,
        reason: str,
    ) -> str:
        maildir.remove(key)
        self._audit(actor, incident_id, pseudonym, key, hook, "dropped", reason)
        return "dropped"

    def _audit(
        self,
        actor: Actor,
        incident_id: str | None,
        pseudonym: str,
        key: str,
        hook: str,
        outcome: str,
        error: str,
    ) -> None:
        detail: dict[str, str | int | bool | None] = {
            "notification": key,
            "hook": hook,
            "outcome": outcome,
        }
        if error:
            detail["error"] = error
        self._store.audit(
            actor, "incident.send", incident_id, detail, subject=pseudonym, transaction=True
        )

    # ------------------------------------------------------------------ erasure

    def purge(self, pseudonym: str) -> None:
        """Delete an erased owner's spooled notices; one audit entry per incident.

        Called after the erasure committed. The owner's notices are found through the outbox
        (their keys are the file names) and each file is checked to name this owner before it
        is deleted, so no other owner's notice can be lost. Outbox rows stay: they hold no
        personal value, and a pending one is dead-lettered by the dispatcher, which never hands
        an erased owner's notice to a hook.
        """
        rows = [
            r
            for r in self._kernel.keys.checked(self._backend.outbox())
            if r.audience == "owners" and r.subject == pseudonym
        ]
        if not rows:
            return
        hooks = [r.hook for r in rows] + list(self._config.incident.routing.get("owners", []))
        folders = self.maildirs(hooks, strict=False)
        by_incident: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_incident.setdefault(row.incident_id, []).append(row)
        for incident_id, group in by_incident.items():
            keys = [r.notification_id for r in group]
            deleted = failed = 0
            for maildir in folders.values():
                gone, stuck = maildir.discard(keys, owner=pseudonym)
                deleted, failed = deleted + gone, failed + stuck
            self._store.audit(
                SYSTEM_ACTOR,
                "incident.purge",
                incident_id,
                {
                    "notices": len(group),
                    "files": deleted,
                    "failed": failed,
                    "pending": sum(r.state in ("pending", "delivering") for r in group),
                },
                subject=pseudonym,
                transaction=True,
            )
