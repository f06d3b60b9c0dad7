"""Notification hooks: the webhook against a real HTTP server on 127.0.0.1, the Maildir hook,
entry-point discovery, redacted reprs, and the outbox dispatcher surviving failing hooks and a
SIGKILL mid-dispatch without losing or doubling a notification at an idempotent receiver.
"""

from __future__ import annotations

import datetime as _dt
import email
import email.policy
import http.server
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, Vault
from ownervault.exceptions import ConfigurationError, OwnerVaultError
from ownervault.keys import KeyFileKey
from ownervault.notifiers import (
    ENTRY_POINT_GROUP,
    SIGNATURE_HEADER,
    MaildirNotifier,
    Notification,
    NotificationError,
    Recipient,
    UndeliverableError,
    WebhookNotifier,
    build_notifier,
    discover_notifiers,
    sign_body,
    verify_signature,
)
from ownervault.policy import default_policy_dir
from ownervault.records import OwnerProfile
from ownervault.testing import grant_roles, record_assessments
from ownervault.typing import NotificationHook

SECRET = b"test-webhook-secret-0123456789"


def notification(**overrides: Any) -> Notification:
    """A notification for an owner, with contact details that must never leak into reprs."""
    values: dict[str, Any] = {
        "idempotency_key": "ntf_0123456789abcdef0123456789abcdef",
        "incident_id": "INC-20260303-ABCDEF",
        "audience": "owners",
        "hook": "test",
        "payload": {
            "schema": "ownervault.owner-notice/1",
            "zh": {"subject": "告知", "body": "尊敬的业主：……"},
            "en": {"subject": "Notice", "body": "Dear owner, ..."},
        },
        "attempt": 1,
        "created_at": "2026-03-03T00:00:00.000000Z",
        "recipient": Recipient(
            "sub_feed", name="张三", phone="13800138000", email="zhang@example.com"
        ),
    }
    values.update(overrides)
    return Notification(**values)


# --------------------------------------------------------------------------- a real receiver


class Receiver:
    """An idempotent webhook receiver on 127.0.0.1: checks signatures, applies each key once."""

    def __init__(self, secret: bytes = SECRET) -> None:
        self.secret = secret
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.applied: dict[str, int] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.status = 200
        self.redirect = False
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                key = self.headers.get("Idempotency-Key", "")
                valid = verify_signature(receiver.secret, self.headers[SIGNATURE_HEADER], body)
                with receiver.lock:
                    receiver.posts.append(
                        {"key": key, "valid": valid, "headers": self.headers, "body": body}
                    )
                    status = receiver.status if valid else 401
                    if receiver.redirect:
                        status = 302
                    if status == 200 and key not in receiver.applied:
                        receiver.applied[key] = 1
                        receiver.bodies[key] = json.loads(body)
                    elif status == 200:
                        pass  # a repeat of a key already applied: acknowledged, not applied
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def distinct_ok(self) -> int:
        """How many keys were applied."""
        with self.lock:
            return len(self.applied)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver, shut down after the test."""
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


# --------------------------------------------------------------------------- webhook


def test_webhook_posts_signed_json_with_the_idempotency_key(receiver: Receiver) -> None:
    """The webhook POSTs the notification as JSON with a valid signature and the key header."""
    hook = WebhookNotifier(receiver.url, SECRET)
    note = notification()
    hook(note)
    [post] = receiver.posts
    assert post["valid"]
    assert post["key"] == note.idempotency_key
    assert post["headers"]["Content-Type"].startswith("application/json")
    assert post["headers"]["X-OwnerVault-Attempt"] == "1"
    body = json.loads(post["body"])
    assert body["incident_id"] == note.incident_id
    assert body["payload"]["zh"]["subject"] == "告知"
    assert body["recipient"]["phone"] == "13800138000"


def test_webhook_can_leave_contact_details_out(receiver: Receiver) -> None:
    """With include_recipient=False only the pseudonym-free payload goes out."""
    WebhookNotifier(receiver.url, SECRET, include_recipient=False)(notification())
    body = json.loads(receiver.posts[0]["body"])
    assert "recipient" not in body
    assert b"13800138000" not in receiver.posts[0]["body"]


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_webhook_retryable_answers_raise_notification_error(
    receiver: Receiver, status: int
) -> None:
    """Server errors, 408 and 429 raise NotificationError (retried), not UndeliverableError."""
    receiver.status = status
    with pytest.raises(NotificationError) as caught:
        WebhookNotifier(receiver.url, SECRET)(notification())
    assert not isinstance(caught.value, UndeliverableError)
    assert f"HTTP {status}" in str(caught.value)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_webhook_client_errors_are_undeliverable(receiver: Receiver, status: int) -> None:
    """Other 4xx answers raise UndeliverableError (dead-lettered at once)."""
    receiver.status = status
    with pytest.raises(UndeliverableError):
        WebhookNotifier(receiver.url, SECRET)(notification())


def test_webhook_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    """A receiver checking signatures refuses a body signed with another secret."""
    with pytest.raises(UndeliverableError, match="HTTP 401"):
        WebhookNotifier(receiver.url, b"another-secret-of-enough-length")(notification())
    assert receiver.applied == {}


def test_webhook_never_follows_a_redirect(receiver: Receiver) -> None:
    """A redirect is a failure: the signed body is never replayed to another address."""
    receiver.redirect = True
    with pytest.raises(UndeliverableError, match="HTTP 302"):
        WebhookNotifier(receiver.url, SECRET)(notification())
    assert len(receiver.posts) == 1


def test_webhook_connection_refused_is_retryable() -> None:
    """A closed port raises NotificationError naming the host, not the recipient."""
    hook = WebhookNotifier("http://127.0.0.1:9/none", SECRET, timeout=2)
    with pytest.raises(NotificationError) as caught:
        hook(notification())
    assert "127.0.0.1" in str(caught.value)
    assert "13800138000" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://example.com/hook", SECRET),
        ("ftp://127.0.0.1/hook", SECRET),
        ("https://example.com/hook", b"short"),
        ("not a url", SECRET),
    ],
)
def test_webhook_configuration_is_checked(url: str, secret: bytes) -> None:
    """Plain http off loopback, other schemes and short secrets are configuration errors."""
    with pytest.raises(ConfigurationError):
        WebhookNotifier(url, secret)


def test_webhook_from_options_reads_the_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The secret comes from the variable named by secret_env; a missing one is an error."""
    options = {"url": "https://example.com/hook", "secret_env": "OV_TEST_SECRET_VAR"}
    monkeypatch.delenv("OV_TEST_SECRET_VAR", raising=False)
    with pytest.raises(ConfigurationError, match="OV_TEST_SECRET_VAR"):
        WebhookNotifier.from_options(options, base_dir=tmp_path)
    monkeypatch.setenv("OV_TEST_SECRET_VAR", SECRET.decode())
    hook = WebhookNotifier.from_options(options, base_dir=tmp_path)
    assert "redacted" in repr(hook)
    assert SECRET.decode() not in repr(hook)


def test_signatures_fail_for_a_changed_body_or_an_old_timestamp() -> None:
    """verify_signature rejects a changed body, a stale timestamp and a malformed header."""
    body = b'{"a":1}'
    now = 1_700_000_000
    header = sign_body(SECRET, body, timestamp=now)
    assert verify_signature(SECRET, header, body, now=now)
    assert not verify_signature(SECRET, header, b'{"a":2}', now=now)
    assert not verify_signature(SECRET, header, body, now=now + 3600)
    assert not verify_signature(SECRET, "v1=abc", body, now=now)
    assert not verify_signature(b"other-secret-0123456789", header, body, now=now)


# --------------------------------------------------------------------------- maildir


def test_maildir_writes_one_message_per_key_atomically(tmp_path: Path) -> None:
    """A delivery lands in new/ as one 0600 file named after the key; tmp/ is left empty."""
    hook = MaildirNotifier(tmp_path / "md")
    note = notification()
    hook(note)
    files = list((tmp_path / "md" / "new").iterdir())
    assert [f.name for f in files] == [note.idempotency_key]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert list((tmp_path / "md" / "tmp").iterdir()) == []
    text = files[0].read_bytes().decode()
    assert f"X-OwnerVault-Idempotency-Key: {note.idempotency_key}" in text


def test_maildir_spools_owner_notices_addressed_to_the_pseudonym_only(tmp_path: Path) -> None:
    """An owner notice in a Maildir names the owner by pseudonym, with no name, phone or e-mail."""
    hook = MaildirNotifier(tmp_path / "md")
    hook(notification())
    [message] = (tmp_path / "md" / "new").iterdir()
    raw = message.read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["X-OwnerVault-Owner"] == "sub_feed"
    assert parsed["X-OwnerVault-Format"] == "owner-notice/1"
    assert parsed["To"] is None
    decoded = raw.decode() + str(parsed) + parsed.get_content()
    for value in ("张三", "13800138000", "zhang@example.com", "zhang"):
        assert value.encode() not in raw and value not in decoded


def test_maildir_second_delivery_of_a_key_writes_nothing(tmp_path: Path) -> None:
    """An existing message with the key (in new/ or moved to cur/) means already delivered."""
    hook = MaildirNotifier(tmp_path / "md")
    note = notification()
    hook(note)
    first = (tmp_path / "md" / "new" / note.idempotency_key).read_bytes()
    hook(attrs_evolve(note, attempt=2))
    assert (tmp_path / "md" / "new" / note.idempotency_key).read_bytes() == first
    (tmp_path / "md" / "new" / note.idempotency_key).rename(
        tmp_path / "md" / "cur" / f"{note.idempotency_key}:2,S"
    )
    hook(attrs_evolve(note, attempt=3))
    assert list((tmp_path / "md" / "new").iterdir()) == []
    assert hook.delivered(note.idempotency_key)


def attrs_evolve(note: Notification, **changes: Any) -> Notification:
    """A copy of a notification with some attributes changed."""
    import attrs

    return attrs.evolve(note, **changes)


def test_maildir_owner_without_email_is_undeliverable(tmp_path: Path) -> None:
    """An owner notice needs the owner's e-mail address through this hook."""
    note = notification(recipient=Recipient("sub_feed", phone="13800138000"))
    with pytest.raises(UndeliverableError, match="sub_feed"):
        MaildirNotifier(tmp_path / "md")(note)


def test_maildir_reports_and_pages_go_to_the_configured_address(tmp_path: Path) -> None:
    """Regulator reports are written as JSON to the configured address."""
    hook = MaildirNotifier.from_options(
        {"path": "reports", "to": "regulator@example.org"}, base_dir=tmp_path
    )
    hook(notification(audience="regulator", recipient=None, payload={"title": "Report 1"}))
    [message] = (tmp_path / "reports" / "new").iterdir()
    text = message.read_text()
    assert "To: regulator@example.org" in text
    assert "Subject: Report 1" in text


def test_maildir_refuses_unsafe_keys(tmp_path: Path) -> None:
    """A key that is not a plain file name is undeliverable (no path traversal)."""
    with pytest.raises(UndeliverableError):
        MaildirNotifier(tmp_path / "md")(notification(idempotency_key="../../etc/passwd"))


# --------------------------------------------------------------------------- discovery and reprs


def test_entry_points_are_discovered_and_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks registered in the ownervault.notifiers group are found and built by name."""
    (tmp_path / "fake_pager.py").write_text(
        textwrap.dedent(
            """
            SENT = []

            class Pager:
                def __init__(self, channel):
                    self.channel = channel

                def __call__(self, notification):
                    SENT.append((self.channel, notification.idempotency_key))

            def plain(notification):
                SENT.append(("plain", notification.idempotency_key))
            """
        )
    )
    dist = tmp_path / "fake_pager-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-pager\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\npager = fake_pager:Pager\nplain = fake_pager:plain\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover_notifiers()
    assert {"pager", "plain"} <= set(found)
    pager = build_notifier("pager", {"channel": "ops"}, base_dir=tmp_path)
    plain = build_notifier("plain", {}, base_dir=tmp_path)
    assert isinstance(pager, NotificationHook)
    pager(notification())
    plain(notification())
    import fake_pager  # type: ignore[import-not-found]

    assert [s[0] for s in fake_pager.SENT] == ["ops", "plain"]
    with pytest.raises(ConfigurationError, match="takes no options"):
        build_notifier("plain", {"x": 1}, base_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="does not accept"):
        build_notifier("pager", {"nope": 1}, base_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="no notifier type"):
        build_notifier("missing-kind", {}, base_dir=tmp_path)


def test_reprs_and_documents_keep_contacts_out_of_logs() -> None:
    """Recipient and Notification reprs never show a name, phone or e-mail address."""
    note = notification()
    for text in (repr(note), str(note), repr(note.recipient)):
        assert "13800138000" not in text
        assert "zhang@example.com" not in text
        assert "张三" not in text
    assert "recipient" not in note.document(include_recipient=False)


def test_notification_errors_are_ownervault_errors() -> None:
    """Hook errors derive from OwnerVaultError; undeliverable is a kind of notification error."""
    assert issubclass(NotificationError, OwnerVaultError)
    assert issubclass(UndeliverableError, NotificationError)


# --------------------------------------------------------------------------- the fault test


def _pack(tmp_path: Path, url: str) -> Path:
    """The default policy pack with contacts, fast retries and every audience on one webhook."""
    pack = tmp_path / "pack"
    pack.mkdir()
    for name in (
        "purposes.toml",
        "roles.toml",
        "rules.toml",
        "detectors.toml",
        "controller.toml",
        "notices.toml",
    ):
        (pack / name).write_text((default_policy_dir() / name).read_text(encoding="utf-8"))
    text = (default_policy_dir() / "incident.toml").read_text(encoding="utf-8")
    start, end = text.index("[controller]"), text.index("[deadlines.cac]")
    head = textwrap.dedent(
        """
        [controller]
        name_zh = "阳光物业服务有限公司"
        name_en = "Sunshine Property Services"

        [dpo]
        name = "个人信息保护办公室"
        phone = "400-000-0000"
        email = "privacy@sunshine-property.example"

        """
    )
    text = text[:start] + head + text[end:]
    start, end = text.index("[routing]"), text.index("# Categories of personal information")
    routing = textwrap.dedent(
        f"""
        [routing]
        oncall = ["hook"]
        regulator = ["hook"]
        owners = ["hook"]

        [notifiers.hook]
        type = "webhook"
        url = "{url}"
        secret_env = "OV_TEST_WEBHOOK_SECRET"

        [dispatch]
        max_attempts = 10
        backoff = "PT0.05S"
        max_backoff = "PT0.2S"
        lease = "PT1S"
        batch = 4

        """
    )
    (pack / "incident.toml").write_text(text[:start] + routing + text[end:], encoding="utf-8")
    return pack


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import ownervault as ov
    from ownervault.keys import KeyFileKey
    from ownervault.notifiers import NotificationError, WebhookNotifier

    vault_path, key_path, pack, url, progress = sys.argv[1:6]
    slow = os.environ.get("OV_TEST_SLOW") == "1"
    webhook = WebhookNotifier(url, os.environ["OV_TEST_WEBHOOK_SECRET"].encode())

    def flaky(notification):
        # Fails the first two attempts of every notification, whatever process runs it.
        if notification.attempt <= 2:
            raise NotificationError("simulated outage")
        webhook(notification)
        if slow:
            with open(progress, "a") as fh:
                fh.write(notification.idempotency_key + "\\n")
            time.sleep(0.5)  # delivered, not yet recorded: the window a kill hits

    vault = ov.Vault.open(vault_path, key=KeyFileKey(key_path), policy=pack)
    dpo = ov.Actor("dpo-dispatch", roles=["compliance_officer"])
    report = vault.incidents.dispatch(actor=dpo, hooks={"hook": flaky}, wait=True, timeout=60)
    vault.close()
    print(report.delivered, report.dead, report.pending)
    """
)


def test_failing_hook_and_sigkill_mid_dispatch_deliver_everything_exactly_once(
    tmp_path: Path, receiver: Receiver, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A hook failing twice per notification and a SIGKILL mid-dispatch lose and double nothing."""
    pack = _pack(tmp_path, receiver.url)
    key = KeyFileKey.generate(tmp_path / "root.key")
    vault_path = tmp_path / "vault"
    clerk = Actor("clerk-01", roles=["front_desk"])
    dpo = Actor("dpo-01", roles=["compliance_officer"])
    dispatcher = Actor("dpo-dispatch", roles=["compliance_officer"])  # the child processes
    owners = [make_owner() for _ in range(10)]
    with Vault.create(vault_path, key=key, policy=pack) as vault:
        grant_roles(vault, clerk, dpo, dispatcher)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            session.put_many(owners)
        incident = vault.incidents.open(
            kind="leak",
            title="A registration spreadsheet was posted in a chat group",
            actor=dpo,
            exposure="plaintext",
            subject_ids=[o.subject_id for o in owners],
            cause="An export was shared by mistake",
        )
        vault.incidents.update(
            incident.incident_id, actor=dpo, measures_taken=["The message was recalled"]
        )
        vault.incidents.notify(incident.incident_id, actor=dpo)
        expected = {r.notification_id for r in vault.incidents.outbox()}
    assert len(expected) == 12  # one page, one regulator report, ten owner notices

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    progress = tmp_path / "progress.txt"
    args = [sys.executable, str(script), str(vault_path), str(key.path), str(pack)]
    args += [receiver.url, str(progress)]
    env = {**os.environ, "OV_TEST_WEBHOOK_SECRET": SECRET.decode(), "OV_TEST_SLOW": "1"}
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while receiver.distinct_ok() < 4:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first dispatcher made no progress"
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)  # mid-dispatch: a delivered notification is unrecorded
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    applied_before = receiver.distinct_ok()
    assert 4 <= applied_before < len(expected)

    env["OV_TEST_SLOW"] = "0"
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[1:] == ["0", "0"]  # nothing dead, nothing pending

    assert set(receiver.applied) == expected  # none lost
    assert all(count == 1 for count in receiver.applied.values())  # none applied twice
    keys_posted = [p["key"] for p in receiver.posts]
    assert len(keys_posted) > len(set(keys_posted))  # the killed delivery was repeated...
    assert all(p["valid"] for p in receiver.posts)  # ...with the same key and a valid signature

    with Vault.open(vault_path, key=key, policy=pack) as vault:
        rows = vault.incidents.outbox()
        assert {r.state for r in rows} == {"delivered"}
        assert all(r.attempts >= 3 for r in rows)  # two failures before each success
        entries = list(vault.audit.entries())
        delivered = [
            e
            for e in entries
            if e["action"] == "incident.notification" and e["detail"]["state"] == "delivered"
        ]
        assert {e["detail"]["notification"] for e in delivered} == expected
        contact_reads = [e for e in entries if e["purpose"] == "breach_notification"]
        assert {e["action"] for e in contact_reads} >= {"read"}
    for body in receiver.bodies.values():
        if body["audience"] == "owners":
            owner = next(o for o in owners if o.phone == body["recipient"]["phone"])
            assert body["recipient"]["email"] == owner.email
            assert owner.phone not in json.dumps(body["payload"], ensure_ascii=False)


def test_dispatch_timestamps_move_with_the_backoff(
    tmp_path: Path, receiver: Receiver, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Each failed attempt schedules the next one later, doubling up to max_backoff."""
    from ownervault.testing import FrozenClock, InMemoryKey

    pack = _pack(tmp_path, receiver.url)
    clock = FrozenClock()
    dpo = Actor("dpo-01", roles=["compliance_officer"])
    attempts: list[int] = []

    def failing(note: Notification) -> None:
        attempts.append(note.attempt)
        raise NotificationError("still down")

    with Vault.create(tmp_path / "v", key=InMemoryKey(), policy=pack, clock=clock) as vault:
        grant_roles(vault, dpo)
        record_assessments(vault)
        vault.incidents.open(kind="loss", title="Backup tape missing", actor=dpo, exposure="none")
        [row] = vault.incidents.outbox()
        gaps = []
        for _ in range(5):
            vault.incidents.dispatch(actor=dpo, hooks={"hook": failing})
            [row] = vault.incidents.outbox()
            next_at = _dt.datetime.fromisoformat(row.next_attempt_at)
            gaps.append((next_at - clock.now()).total_seconds())
            clock.set(next_at)
        assert attempts == [1, 2, 3, 4, 5]
        assert gaps == [0.05, 0.1, 0.2, 0.2, 0.2]
        assert row.state == "pending"
        assert row.last_error == "NotificationError: still down"


def test_the_documented_webhook_receiver_acts_once_per_idempotency_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver in docs/incident-response.md acts once for a notification sent twice."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "incident-response.md"
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("### A webhook receiver that acts once") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(doc), "exec"), namespace)
    handled: list[dict[str, Any]] = []
    namespace["act_on"] = handled.append
    body = json.dumps({"idempotency_key": "ntf_1", "payload": {"schema": "x"}}).encode()

    def headers(key: str, payload: bytes) -> dict[str, str]:
        signature = sign_body(namespace["SECRET"], payload, timestamp=int(time.time()))
        return {"Idempotency-Key": key, "X-OwnerVault-Signature": signature}

    assert namespace["receive"](headers("ntf_1", body), body) == 200
    assert namespace["receive"](headers("ntf_1", body), body) == 200
    assert len(handled) == 1
    other = body.replace(b"ntf_1", b"ntf_2")
    assert namespace["receive"](headers("ntf_2", other), other) == 200
    assert len(handled) == 2
    forged = {"Idempotency-Key": "ntf_3", "X-OwnerVault-Signature": "t=1,v1=00"}
    assert namespace["receive"](forged, other) == 401
    assert len(handled) == 2
    namespace["seen"].close()
