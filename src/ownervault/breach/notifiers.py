"""Notification hooks: where incident reports, owner notices and on-call pages are delivered.

A hook is any callable that takes a :class:`Notification` and returns once the notification is
handed over (:class:`NotificationHook`, also importable from :mod:`ownervault.typing`). It
raises :class:`NotificationError` for a failure worth retrying (a timeout, an HTTP 503) and
:class:`UndeliverableError` for one that retrying cannot fix (an owner without an e-mail
address, an HTTP 400); the dispatcher in :mod:`ownervault.breach` retries the first kind with
exponential backoff and dead-letters the second at once.

Delivery is at least once: a crash between handing a notification over and recording that it
was delivered makes the dispatcher deliver it again, with the same
:attr:`Notification.idempotency_key`. A hook whose receiver honours the key (drops a second
delivery with a key it has seen) therefore acts exactly once. Both hooks shipped here do:

* :class:`WebhookNotifier` -- HTTP POST of a JSON body with an ``Idempotency-Key`` header and an
  HMAC-SHA256 signature header (``X-OwnerVault-Signature: t=<unix time>,v1=<hex>``) that the
  receiver checks with :func:`verify_signature`.
* :class:`MaildirNotifier` -- one RFC 5322 message per idempotency key in a Maildir, written to
  ``tmp/`` and linked into ``new/`` atomically; a message already there means already delivered.
  Owner notices are spooled addressed to the owner's pseudonym only; ``ownervault incident
  send`` (:mod:`.spool`) looks the address up and hands them to a :class:`MailTransport` such
  as :class:`SmtpTransport` (a local mail server, or a relay over STARTTLS).

Other hooks are found by name through the ``ownervault.notifiers`` entry-point group
(:func:`discover_notifiers`): an SMS gateway, a regulator's reporting API, an on-call pager.

Notification payloads never hold a personal value. An owner notice carries only the owner's
pseudonym and the rendered notice; the owner's contact details are looked up at delivery time,
in memory, and handed to the hook as :attr:`Notification.recipient` (whose ``repr`` is
redacted). They are never written to the vault, nor to a Maildir.
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
import hmac
import importlib.metadata
import ipaddress
import json
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from ..exceptions import ConfigurationError, OwnerVaultError
from .maildir import (
    AUDIENCE_HEADER,
    FORMAT_HEADER,
    INCIDENT_HEADER,
    KEY_HEADER,
    KEY_PATTERN,
    OWNER_HEADER,
    SPOOL_FORMAT,
    Maildir,
)

__all__ = [
    "BUILTIN_TYPES",
    "ENTRY_POINT_GROUP",
    "SIGNATURE_HEADER",
    "MailTransport",
    "MaildirNotifier",
    "Notification",
    "NotificationError",
    "NotificationHook",
    "Recipient",
    "SmtpTransport",
    "UndeliverableError",
    "WebhookNotifier",
    "build_notifier",
    "discover_notifiers",
    "sign_body",
    "verify_signature",
]

#: Entry-point group under which packages register notification hooks.
ENTRY_POINT_GROUP: Final = "ownervault.notifiers"
#: Header carrying the webhook body's HMAC-SHA256 signature.
SIGNATURE_HEADER: Final = "X-OwnerVault-Signature"


class NotificationError(OwnerVaultError):
    """A hook could not deliver a notification now; the dispatcher will try again later.

    Messages name the hook, host or status code, never a recipient's contact details.
    """


class UndeliverableError(NotificationError):
    """A notification can never be delivered as it is (no contact, rejected by the receiver).

    The dispatcher moves it to the dead-letter state at once, without retrying.
    """


@runtime_checkable
class NotificationHook(Protocol):
    """Delivers one breach notification (an incident report, an owner notice, a page).

    Return once the notification is handed over; raise :class:`NotificationError` to have it
    retried later, or :class:`UndeliverableError` when retrying cannot help. The same
    notification may be delivered again after a crash, always with the same
    ``notification.idempotency_key``: a receiver that drops keys it has seen acts once.
    """

    def __call__(self, notification: Notification, /) -> None:
        """Deliver ``notification``."""
        ...


@attrs.frozen(repr=False)
class Recipient:
    """An owner's contact details, decrypted for one delivery and never stored.

    ``repr`` shows only the pseudonym and which channels exist.
    """

    pseudonym: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None

    def __repr__(self) -> str:
        channels = [c for c in ("name", "phone", "email") if getattr(self, c)]
        return f"<Recipient {self.pseudonym} has={','.join(channels) or 'nothing'} <redacted>>"

    __str__ = __repr__


@attrs.frozen(repr=False)
class Notification:
    """One notification handed to a hook.

    Attributes:
        idempotency_key: the same for every delivery attempt of this notification.
        incident_id: the incident it belongs to.
        audience: ``regulator``, ``owners`` or ``oncall``.
        hook: the name the notification was routed to.
        payload: JSON-compatible content; never a personal value.
        attempt: 1 for the first delivery attempt, 2 for the next...
        created_at: when the notification was queued (UTC, ISO 8601).
        recipient: for owner notices, the owner's contact details (in memory only).
    """

    idempotency_key: str
    incident_id: str
    audience: str
    hook: str
    payload: Mapping[str, Any]
    attempt: int
    created_at: str
    recipient: Recipient | None = None

    def __repr__(self) -> str:
        return (
            f"<Notification {self.idempotency_key} {self.audience} via {self.hook} "
            f"incident={self.incident_id} attempt={self.attempt}>"
        )

    __str__ = __repr__

    def document(self, *, include_recipient: bool = True) -> dict[str, Any]:
        """The notification as one JSON object (the webhook body)."""
        out: dict[str, Any] = {
            "idempotency_key": self.idempotency_key,
            "incident_id": self.incident_id,
            "audience": self.audience,
            "attempt": self.attempt,
            "created_at": self.created_at,
            "payload": dict(self.payload),
        }
        if include_recipient and self.recipient is not None:
            out["recipient"] = {
                "pseudonym": self.recipient.pseudonym,
                "name": self.recipient.name,
                "phone": self.recipient.phone,
                "email": self.recipient.email,
            }
        return out


# --------------------------------------------------------------------------- signatures


def sign_body(secret: bytes, body: bytes, *, timestamp: int) -> str:
    """The signature header value for ``body``: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    The MAC covers ``b"<timestamp>." + body`` so a captured request cannot be replayed later
    with another timestamp.
    """
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: bytes,
    header: str,
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a webhook signature header against ``body`` (for receivers).

    Returns False when the header is malformed, the MAC does not match (compared in constant
    time), or the timestamp is more than ``tolerance`` seconds from ``now``.
    """
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, value)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign_body(secret, body, timestamp=timestamp).rpartition("v1=")[2]
    return hmac.compare_digest(expected, given)


# --------------------------------------------------------------------------- webhook


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A signed POST is never replayed to another address: redirects are failures."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookNotifier:
    """POST each notification as JSON to a URL, signed with HMAC-SHA256.

    Headers: ``Content-Type: application/json``, ``Idempotency-Key``, ``X-OwnerVault-Signature``
    (see :func:`sign_body`) and ``X-OwnerVault-Attempt``. A 2xx answer is success; 408, 425,
    429 and 5xx answers and network errors are retried; any other answer is undeliverable.

    Plain ``http://`` is accepted only for loopback addresses (a local relay or a test server);
    anything leaving the host must use ``https://``. Redirects are not followed, and proxies
    from the environment are used only with ``use_env_proxies=True``.

    Args:
        url: where to POST.
        secret: the shared HMAC key (at least 16 bytes).
        timeout: seconds to wait for the receiver.
        include_recipient: send owners' contact details in the body (an SMS or mail gateway
            needs them); False sends only the pseudonym.
        use_env_proxies: honour ``HTTPS_PROXY`` and friends.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = 10.0,
        include_recipient: bool = True,
        use_env_proxies: bool = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or ""
        if parsed.scheme not in ("http", "https") or not host:
            raise ConfigurationError("a webhook URL must be an http:// or https:// URL")
        if parsed.scheme == "http" and not _is_loopback(host):
            raise ConfigurationError("a webhook URL must use https:// unless it is on loopback")
        if len(secret) < 16:
            raise ConfigurationError("a webhook secret must be at least 16 bytes")
        if timeout <= 0:
            raise ConfigurationError("a webhook timeout must be positive")
        self.url = url
        self._host = host
        self._secret = bytes(secret)
        self.timeout = timeout
        self.include_recipient = include_recipient
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if not use_env_proxies:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"<WebhookNotifier host={self._host!r} secret=<redacted>>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a WebhookNotifier holds a secret and cannot be pickled")

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path) -> WebhookNotifier:
        """Build from ``[notifiers.NAME]`` options: ``url``, ``secret_env``, ``timeout``...

        The secret is read from the environment variable named by ``secret_env``, never from
        the policy file.
        """
        url = options.get("url")
        secret_env = options.get("secret_env")
        if not isinstance(url, str) or not isinstance(secret_env, str):
            raise ConfigurationError("a webhook notifier needs 'url' and 'secret_env'")
        secret = os.environ.get(secret_env)
        if not secret:
            raise ConfigurationError(f"the webhook secret variable {secret_env} is not set")
        timeout = options.get("timeout", 10.0)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            raise ConfigurationError("a webhook timeout is a number of seconds")
        return cls(
            url,
            secret.encode("utf-8"),
            timeout=float(timeout),
            include_recipient=bool(options.get("include_recipient", True)),
            use_env_proxies=bool(options.get("use_env_proxies", False)),
        )

    def __call__(self, notification: Notification) -> None:
        """POST the notification; raise NotificationError / UndeliverableError on failure."""
        body = json.dumps(
            notification.document(include_recipient=self.include_recipient),
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Idempotency-Key": notification.idempotency_key,
                "X-OwnerVault-Attempt": str(notification.attempt),
                SIGNATURE_HEADER: sign_body(self._secret, body, timestamp=int(time.time())),
                "User-Agent": "ownervault-webhook/1",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = int(response.status)
                response.read(65536)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotificationError(
                f"webhook to {self._host} failed: {type(reason).__name__}"
            ) from None
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise NotificationError(f"webhook to {self._host} answered HTTP {status}")
        raise UndeliverableError(f"webhook to {self._host} refused the notification: HTTP {status}")


# --------------------------------------------------------------------------- maildir


class MaildirNotifier:
    """Write each notification as one e-mail message into a Maildir (``tmp``, ``new``, ``cur``).

    The message file is named after the idempotency key. It is written under ``tmp/``, flushed
    to disk and hard-linked into ``new/``; if ``new/`` or ``cur/`` already holds a message with
    that key, the notification was delivered before and nothing is written. Every directory
    the hook creates (the folder's parents included) is mode ``0700`` and every file ``0600``.

    Security promise: an owner notice is written addressed to the owner's pseudonym only (the
    owner-notice spool format of ``docs/formats.md``), never with the owner's name, phone or
    e-mail address; ``ownervault incident send`` looks the address up when it hands the notice
    to a mail server, so nothing in the folder identifies the owner. Regulator reports and
    on-call pages go to ``to`` and can be picked up by a mail transfer agent as they are.

    Owner notices are refused as undeliverable when the owner has no e-mail address (checked
    with the contact the dispatcher looked up, which is not written).

    Args:
        path: the Maildir folder (created with mode 0700, parents included, if missing).
        to: the address for regulator reports and on-call pages.
        sender: the ``From`` address.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, to: str = "", sender: str = "ownervault@localhost"
    ) -> None:
        self.path = Path(path)
        self.to = to
        self.sender = sender
        self._maildir = Maildir(self.path)

    def __repr__(self) -> str:
        return f"<MaildirNotifier path={str(self.path)!r}>"

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path) -> MaildirNotifier:
        """Build from ``[notifiers.NAME]`` options: ``path`` (relative to the vault), ``to``."""
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigurationError("a maildir notifier needs a 'path'")
        to = options.get("to", "")
        sender = options.get("from", "ownervault@localhost")
        if not isinstance(to, str) or not isinstance(sender, str):
            raise ConfigurationError("maildir 'to' and 'from' are e-mail addresses")
        target = Path(path)
        return cls(target if target.is_absolute() else base_dir / target, to=to, sender=sender)

    def delivered(self, idempotency_key: str) -> bool:
        """Whether a message with this key is already in ``new/`` or ``cur/``."""
        return self._maildir.delivered(idempotency_key)

    def __call__(self, notification: Notification) -> None:
        """Deliver into the Maildir unless a message with the same key is there already."""
        key = notification.idempotency_key
        if not KEY_PATTERN.match(key):
            raise UndeliverableError("the idempotency key is not a safe file name")
        try:
            self._maildir.ensure()
            if self._maildir.delivered(key):
                return
            self._maildir.deliver(key, self._message(notification))
        except OSError as exc:
            raise NotificationError(
                f"cannot write to maildir {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None

    def _message(self, notification: Notification) -> bytes:
        payload = notification.payload
        msg = email.message.EmailMessage()
        if notification.audience == "owners":
            recipient = notification.recipient
            if recipient is None or not recipient.email:
                raise UndeliverableError(
                    f"owner {recipient.pseudonym if recipient else '?'} has no e-mail address"
                )
            # The spool format: the pseudonym only; the address is looked up at send time.
            msg[FORMAT_HEADER] = SPOOL_FORMAT
            msg[OWNER_HEADER] = recipient.pseudonym
            zh, en = payload.get("zh", {}), payload.get("en", {})
            msg["Subject"] = f"{zh.get('subject', '')} / {en.get('subject', '')}"
            text = f"{zh.get('body', '')}\n\n---\n\n{en.get('body', '')}\n"
        else:
            if self.to:
                msg["To"] = self.to
            msg["Subject"] = str(payload.get("title") or f"Incident {notification.incident_id}")
            text = json.dumps(dict(payload), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        msg["From"] = self.sender
        msg["Date"] = email.utils.formatdate(usegmt=True)
        msg["Message-ID"] = f"<{notification.idempotency_key}@ownervault>"
        msg[KEY_HEADER] = notification.idempotency_key
        msg[INCIDENT_HEADER] = notification.incident_id
        msg[AUDIENCE_HEADER] = notification.audience
        msg.set_content(text, charset="utf-8")
        return msg.as_bytes()


# --------------------------------------------------------------------------- mail transports


@runtime_checkable
class MailTransport(Protocol):
    """Hands one finished e-mail message to a mail system (what ``incident send`` uses).

    Return once the message is accepted; raise :class:`NotificationError` to try again later,
    or :class:`UndeliverableError` when the mail system refuses it for good. Messages raised
    must not contain an address.
    """

    def __call__(self, message: email.message.EmailMessage, /) -> None:
        """Send ``message`` to the addresses in its ``To`` header."""
        ...


class SmtpTransport:
    """Send messages through an SMTP server: a mail server on this host, or a relay.

    A plain connection is accepted only to a loopback address (the local mail server); any
    other host needs ``starttls=True``, and the server's certificate is checked against the
    system's trust store. A login is sent only over TLS or to loopback. A 5xx answer (an
    unknown mailbox, a refused sender) is undeliverable; 4xx answers and network errors are
    retried by the next send.

    Args:
        host: the server's name or address.
        port: its SMTP port (25, or 587 for submission).
        starttls: upgrade the connection with STARTTLS before sending.
        username: log in with this account (with ``password``).
        password: the account's password.
        timeout: seconds to wait for the server.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not host:
            raise ConfigurationError("an SMTP transport needs a host")
        if not 0 < port < 65536:
            raise ConfigurationError("an SMTP port is between 1 and 65535")
        if not starttls and not _is_loopback(host):
            raise ConfigurationError("an SMTP server off loopback must be reached with STARTTLS")
        if bool(username) != bool(password):
            raise ConfigurationError("an SMTP login needs both a username and a password")
        if timeout <= 0:
            raise ConfigurationError("an SMTP timeout must be positive")
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout = timeout

    def __repr__(self) -> str:
        login = " login=<redacted>" if self.username else ""
        return f"<SmtpTransport {self.host}:{self.port} starttls={self.starttls}{login}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("an SmtpTransport may hold a password and cannot be pickled")

    def __call__(self, message: email.message.EmailMessage) -> None:
        """Send ``message``; raise NotificationError / UndeliverableError on failure."""
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            # The exception's text holds the refused addresses: only the codes are kept.
            codes = sorted({int(code) for code, _text in exc.recipients.values()})
            error = UndeliverableError if codes and min(codes) >= 500 else NotificationError
            raise error(f"{where} refused the recipient: {codes}") from None
        except smtplib.SMTPResponseException as exc:
            error = UndeliverableError if exc.smtp_code >= 500 else NotificationError
            raise error(f"{where} answered {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationError(f"{where} failed: {type(exc).__name__}") from None


# --------------------------------------------------------------------------- discovery

#: The built-in hook types, by the ``type`` used in ``[notifiers.NAME]``.
BUILTIN_TYPES: Final = ("webhook", "maildir")


def _builtin(kind: str, options: Mapping[str, object], base_dir: Path) -> NotificationHook | None:
    if kind == "webhook":
        return WebhookNotifier.from_options(options, base_dir=base_dir)
    if kind == "maildir":
        return MaildirNotifier.from_options(options, base_dir=base_dir)
    return None


def discover_notifiers() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points registered under ``ownervault.notifiers``, by name (not loaded yet)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def build_notifier(
    kind: str, options: Mapping[str, object] | None = None, *, base_dir: Path
) -> NotificationHook:
    """Build a hook of type ``kind``: ``webhook``, ``maildir`` or an entry point's name.

    An entry point may name a hook (any callable taking a :class:`Notification`), used as it
    is, or a class, instantiated with ``options`` as keyword arguments.

    Raises:
        ConfigurationError: the type is unknown, its options are wrong or it cannot be loaded.
    """
    options = dict(options or {})
    built = _builtin(kind, options, base_dir)
    if built is not None:
        return built
    entry = discover_notifiers().get(kind)
    if entry is None:
        raise ConfigurationError(
            f"no notifier type {kind!r}: use 'webhook', 'maildir' or an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group"
        )
    try:
        loaded = entry.load()
    except Exception as exc:  # an entry point may fail to import in any way
        raise ConfigurationError(
            f"notifier entry point {kind!r} cannot be loaded ({type(exc).__name__})"
        ) from None
    if isinstance(loaded, type):
        try:
            hook = loaded(**options)
        except TypeError:
            raise ConfigurationError(
                f"notifier {kind!r} does not accept the options given: {', '.join(sorted(options))}"
            ) from None
    elif options:
        raise ConfigurationError(f"notifier {kind!r} is a plain callable and takes no options")
    else:
        hook = loaded
    if not callable(hook):
        raise ConfigurationError(f"notifier entry point {kind!r} is not callable")
    result: NotificationHook = hook
    return result
