"""The owner-notice spool: no owner's name, phone or e-mail address in the spool's bytes, private
modes, erasure purging an owner's spooled notices (and only theirs), and the send step that
addresses each notice at send time and hands it to a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import email
import email.policy
import json
import os
import pickle
import socketserver
import stat
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from ownervault import Actor, Vault
from ownervault.breach import SendReport
from ownervault.cli import main
from ownervault.exceptions import ConfigurationError, PolicyDeniedError
from ownervault.keys import KeyFileKey
from ownervault.notifiers import Notification, SmtpTransport
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments
from test_breach import local, pseudonyms, register, write_pack

DPO = Actor("dpo-01", roles=["compliance_officer"])
CLERK = Actor("clerk-01", roles=["front_desk"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (DPO, CLERK)
OWNER_HOOKS = ("oncall", "regulator", "owner_mail")


# --------------------------------------------------------------------------- an SMTP server


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts.

    ``rcpt_reply`` is its answer to ``RCPT TO`` (``250 OK`` unless a test changes it).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], bytes]] = []
        self.rcpt_reply = "250 OK"
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode("ascii") + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                recipients: list[str] = []
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        self.reply("250-sink")
                        self.reply("250 8BITMIME")
                    elif verb == b"MAIL":
                        recipients = []
                        self.reply("250 OK")
                    elif verb == b"RCPT":
                        address = line.split(b":", 1)[1].split()[0].strip(b"<>").decode()
                        with sink.lock:
                            answer = sink.rcpt_reply
                        if answer.startswith("250"):
                            recipients.append(address)
                        self.reply(answer)
                    elif verb == b"DATA":
                        self.reply("354 go ahead")
                        data: list[bytes] = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        with sink.lock:
                            sink.messages.append((recipients, b"".join(data)))
                        self.reply("250 queued")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_address[1])

    def transport(self) -> SmtpTransport:
        """A transport to this server."""
        return SmtpTransport("127.0.0.1", self.port, timeout=5)

    def parsed(self) -> list[tuple[list[str], EmailMessage]]:
        """The accepted messages, parsed, with the envelope recipients."""
        with self.lock:
            return [
                (rcpt, email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[misc]
                for rcpt, raw in self.messages
            ]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A running SMTP sink, shut down after the test."""
    sink = SmtpSink()
    sink.thread.start()
    try:
        yield sink
    finally:
        sink.server.shutdown()
        sink.server.server_close()


# --------------------------------------------------------------------------- vaults


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A policy pack with contacts configured and the shipped Maildir routing."""
    return write_pack(tmp_path / "pack")


@pytest.fixture
def clock() -> FrozenClock:
    """10:00 on Monday 2 March 2026 in Shanghai."""
    return FrozenClock(local(2, 10))


@pytest.fixture
def svault(tmp_path: Path, pack: Path, clock: FrozenClock) -> Iterator[Vault]:
    """A vault on the configured pack, closed after the test."""
    vault = Vault.create(tmp_path / "vault", key=InMemoryKey(), policy=pack, clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    try:
        yield vault
    finally:
        vault.close()


def notify(vault: Vault, owners: list[OwnerProfile]) -> str:
    """Open a readable leak about ``owners`` and queue its notices; returns the incident id."""
    incident = vault.incidents.open(
        kind="leak",
        title="Owner list left on the lobby printer",
        actor=DPO,
        exposure="plaintext",
        subject_ids=[o.subject_id for o in owners],
        cause="A printout was left unattended",
    )
    vault.incidents.update(incident.incident_id, actor=DPO, measures_taken=["Printout shredded"])
    vault.incidents.notify(incident.incident_id, actor=DPO)
    return incident.incident_id


def pseudonym_of(vault: Vault, owner: OwnerProfile) -> str:
    """The pseudonym of ``owner`` (registered already)."""
    with vault.session(DPO, "subject_access_request") as session:
        [record_id] = [r.record_id for r in session.find(OwnerProfile, phone=owner.phone)]
    [pseudonym] = pseudonyms(vault, [record_id])
    return pseudonym


def spool(vault: Vault) -> Path:
    """The owners' Maildir of the shipped routing."""
    assert vault.path is not None
    return vault.path / "notifications" / "owners"


def spooled_owners(vault: Vault, folder: str = "new") -> dict[str, str]:
    """Pseudonym -> file name of the owner notices in the spool's ``folder``.

    Files are matched to owners through the outbox (a file is named after its notification).
    """
    owner_of = {r.notification_id: r.subject for r in vault.incidents.outbox() if r.subject}
    directory = spool(vault) / folder
    names = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    return {str(owner_of[name.split(":")[0]]): name for name in names}


def byte_forms(value: str) -> set[bytes]:
    """How a value could sit in a message file: UTF-8, GBK, JSON-escaped, base64 (RFC 2047)."""
    raw = value.encode("utf-8")
    forms = {raw, json.dumps(value).encode("ascii")[1:-1], base64.b64encode(raw).rstrip(b"=")}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(value.encode("gbk"))
    return forms


def leaks(folder: Path, owners: list[OwnerProfile]) -> list[str]:
    """Owners' names, phones and e-mail addresses found in any file under ``folder``.

    Every file is searched byte for byte, and every message once more with its headers and body
    decoded (RFC 2047 words, base64 and quoted-printable bodies).
    """
    values = [v for o in owners for v in (o.name, o.phone, o.email) if v]
    found: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        message = email.message_from_bytes(data, policy=email.policy.default)
        decoded = "\n".join(f"{k}: {v}" for k, v in message.items())
        if not message.is_multipart():
            decoded += "\n" + str(message.get_content())
        for value in values:
            if any(form in data for form in byte_forms(value)) or value in decoded:
                found.append(f"{value!r} in {path.relative_to(folder)}")
    return found


# --------------------------------------------------------------------------- what is at rest


def test_the_spool_holds_no_owner_name_phone_or_email(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """After owner notices are queued, dispatched into the Maildirs and sent, no file under
    notifications/ holds an owner's name, phone or e-mail address, in any encoding."""
    owners = [make_owner() for _ in range(3)]
    register(svault, owners)
    notify(svault, owners)
    report = svault.incidents.dispatch(actor=DPO)
    assert report.dead == 0
    assert set(spooled_owners(svault)) == {pseudonym_of(svault, o) for o in owners}
    assert svault.path is not None
    assert leaks(svault.path / "notifications", owners) == []
    for name in spooled_owners(svault).values():
        raw = (spool(svault) / "new" / name).read_bytes()
        assert b"X-OwnerVault-Owner: sub_" in raw and b"\nTo:" not in raw

    assert svault.incidents.send(actor=DPO, transport=smtp.transport()).sent == 3
    assert len(spooled_owners(svault, "cur")) == 3
    assert leaks(svault.path / "notifications", owners) == []


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_notification_directories_are_0700_and_files_0600(
    svault: Vault,
    smtp: SmtpSink,
    make_owner: Callable[..., OwnerProfile],
    umask: int,
) -> None:
    """Every directory created for notifications (notifications/ itself included) is 0700 and
    every file 0600, whatever the process umask."""
    owners = [make_owner() for _ in range(2)]
    register(svault, owners)
    notify(svault, owners)
    assert svault.path is not None
    base = svault.path / "notifications"

    def modes(kind: Callable[[Path], bool]) -> dict[str, str]:
        found = [base, *base.rglob("*")]
        return {
            str(p.relative_to(base)): oct(stat.S_IMODE(p.stat().st_mode)) for p in found if kind(p)
        }

    previous = os.umask(umask)
    try:
        svault.incidents.dispatch(actor=DPO)
        dirs, files = modes(Path.is_dir), modes(Path.is_file)
        assert len(dirs) == 1 + 3 * 4 and len(files) == 4
        assert (dirs, files) == (dict.fromkeys(dirs, "0o700"), dict.fromkeys(files, "0o600"))
        svault.incidents.send(actor=DPO, transport=smtp.transport())
        dirs, files = modes(Path.is_dir), modes(Path.is_file)
        assert "owners/send.lock" in files and "owners/cur" in dirs
        assert (dirs, files) == (dict.fromkeys(dirs, "0o700"), dict.fromkeys(files, "0o600"))
    finally:
        os.umask(previous)


# --------------------------------------------------------------------------- erasure


def test_erasing_an_owner_purges_their_spooled_notice_and_the_others_are_still_sent(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """An erased owner's spooled notice is deleted once the erasure commits (audited); the
    other owners' notices stay and reach their addresses."""
    owners = [make_owner() for _ in range(3)]
    register(svault, owners)
    incident_id = notify(svault, owners)
    svault.incidents.dispatch(actor=DPO)
    erased, *kept = [pseudonym_of(svault, o) for o in owners]
    assert set(spooled_owners(svault)) == {erased, *kept}

    with svault.session(DPO, "erasure_request") as session:
        session.erase_subject(owners[0].subject_id)

    assert set(spooled_owners(svault)) == set(kept)
    assert [list((spool(svault) / sub).iterdir()) for sub in ("cur", "tmp")] == [[], []]
    [purge] = [e for e in svault.audit.entries() if e["action"] == "incident.purge"]
    assert purge["subject"] == erased and purge["actor"] == "ownervault"
    assert purge["detail"] == {
        "incident": incident_id,
        "notices": 1,
        "files": 1,
        "failed": 0,
        "pending": 0,
    }
    report = svault.incidents.send(actor=DPO, transport=smtp.transport())
    assert report == SendReport(sent=2)
    assert sorted(rcpt for rcpt, _ in smtp.parsed()) == sorted([o.email] for o in owners[1:])


def test_a_retention_sweep_purges_the_notices_of_the_owners_it_erases(
    svault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Owners erased by the retention sweep lose their spooled notices too; others keep them."""
    gone, staying = make_owner(status="moved_out"), make_owner()
    register(svault, [gone, staying])
    notify(svault, [gone, staying])
    svault.incidents.dispatch(actor=DPO)
    gone_p, staying_p = pseudonym_of(svault, gone), pseudonym_of(svault, staying)
    clock.advance(_dt.timedelta(days=365 * 10))
    with svault.session(DPO, "erasure_request") as session:
        assert session.retention_sweep(dry_run=False).erased == [gone_p]
    assert set(spooled_owners(svault)) == {staying_p}
    purged = [e["subject"] for e in svault.audit.entries() if e["action"] == "incident.purge"]
    assert purged == [gone_p]


def test_a_pending_notice_of_an_erased_owner_is_dead_lettered_without_reaching_a_hook(
    svault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A notice still in the outbox when its owner is erased stays as a row (no personal value)
    but is dead-lettered as erased without being handed to any hook; the others go out."""
    owners = [make_owner() for _ in range(2)]
    register(svault, owners)
    notify(svault, owners)
    erased, kept = (pseudonym_of(svault, o) for o in owners)
    with svault.session(DPO, "erasure_request") as session:
        session.erase_subject(owners[0].subject_id)
    [purge] = [e for e in svault.audit.entries() if e["action"] == "incident.purge"]
    assert (purge["subject"], purge["detail"]["pending"], purge["detail"]["files"]) == (
        erased,
        1,
        0,
    )

    seen: list[Notification] = []
    svault.incidents.dispatch(actor=DPO, hooks=dict.fromkeys(OWNER_HOOKS, seen.append))
    assert [n.payload["subject"] for n in seen if n.audience == "owners"] == [kept]
    [dead] = svault.incidents.outbox(state="dead")
    assert dead.subject == erased
    assert dead.last_error == (
        "UndeliverableError: the owner was erased; the notice can no longer be delivered"
    )
    assert not (spool(svault) / "new").exists()


# --------------------------------------------------------------------------- sending


def test_send_hands_each_notice_to_smtp_addressed_to_its_owner(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """The send step looks the owner up, sends the notice to their address and name over SMTP,
    moves the spooled message to cur/ and audits it; a second run sends nothing."""
    owner = make_owner()
    register(svault, [owner])
    incident_id = notify(svault, [owner])
    svault.incidents.dispatch(actor=DPO)
    pseudonym = pseudonym_of(svault, owner)
    key = spooled_owners(svault)[pseudonym]

    report = svault.incidents.send(actor=DPO, transport=smtp.transport())
    assert report == SendReport(sent=1)
    [(recipients, message)] = smtp.parsed()
    assert recipients == [owner.email]
    [address] = message["To"].addresses
    assert (address.addr_spec, address.display_name) == (owner.email, owner.name)
    assert message["Message-ID"] == f"<{key}@ownervault>"
    assert message["X-OwnerVault-Owner"] is None and message["X-OwnerVault-Format"] is None
    assert incident_id in message.get_body().get_content()
    assert spooled_owners(svault) == {}
    assert spooled_owners(svault, "cur") == {pseudonym: f"{key}:2,S"}

    sends = [e for e in svault.audit.entries() if e["action"] == "incident.send"]
    assert [(e["subject"], e["detail"]["outcome"]) for e in sends] == [(pseudonym, "sent")]
    lookups = [
        e
        for e in svault.audit.entries()
        if e["purpose"] == "breach_notification" and e["action"] == "read"
    ]
    assert len(lookups) == 2  # one when dispatched into the spool, one when sent
    assert svault.incidents.send(actor=DPO, transport=smtp.transport()) == SendReport()
    assert len(smtp.messages) == 1


def test_send_retries_what_the_server_defers_and_drops_what_it_refuses(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A 4xx answer leaves the notice spooled for the next run; a 5xx answer removes it; both are
    audited without the address."""
    owner = make_owner()
    register(svault, [owner])
    notify(svault, [owner])
    svault.incidents.dispatch(actor=DPO)
    pseudonym = pseudonym_of(svault, owner)

    smtp.rcpt_reply = "451 try again later"
    assert svault.incidents.send(actor=DPO, transport=smtp.transport()) == SendReport(
        retried=1, left=1
    )
    assert set(spooled_owners(svault)) == {pseudonym}
    smtp.rcpt_reply = "550 no such mailbox"
    assert svault.incidents.send(actor=DPO, transport=smtp.transport()) == SendReport(dropped=1)
    assert spooled_owners(svault) == {}
    assert smtp.messages == []
    sends = [e["detail"] for e in svault.audit.entries() if e["action"] == "incident.send"]
    assert [(d["outcome"], d["error"].split(":")[0]) for d in sends] == [
        ("retry", "NotificationError"),
        ("dropped", "UndeliverableError"),
    ]
    assert owner.email not in json.dumps(sends)


def test_send_rewrites_a_notice_spooled_with_an_address_before_sending_it(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A notice spooled in the earlier format (addressed in clear) loses the address on disk
    and is sent to the address looked up now."""
    owner = make_owner()
    register(svault, [owner])
    notify(svault, [owner])
    svault.incidents.dispatch(actor=DPO)
    [path] = (spool(svault) / "new").iterdir()
    legacy = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    del legacy["X-OwnerVault-Owner"], legacy["X-OwnerVault-Format"]
    legacy["To"] = "old-address@example.com"
    path.write_bytes(legacy.as_bytes())

    def check(message: EmailMessage) -> None:
        assert b"old-address" not in path.read_bytes()
        smtp.transport()(message)

    assert svault.incidents.send(actor=DPO, transport=check) == SendReport(sent=1)
    [(recipients, _message)] = smtp.parsed()
    assert recipients == [owner.email]
    [sent] = (spool(svault) / "cur").iterdir()
    assert b"old-address" not in sent.read_bytes()


def test_send_removes_unsent_a_spooled_notice_of_an_erased_owner(
    svault: Vault, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A notice that reaches the spool after its owner's erasure was purged is removed by the
    send step, never sent, and the drop is audited."""
    owner = make_owner()
    register(svault, [owner])
    notify(svault, [owner])
    svault.incidents.dispatch(actor=DPO)
    pseudonym = pseudonym_of(svault, owner)
    spooled = spool(svault) / "new" / spooled_owners(svault)[pseudonym]
    late_copy = spooled.read_bytes()
    with svault.session(DPO, "erasure_request") as session:
        session.erase_subject(owner.subject_id)
    spooled.write_bytes(late_copy)  # as if a dispatcher wrote it just after the purge

    assert svault.incidents.send(actor=DPO, transport=smtp.transport()) == SendReport(dropped=1)
    assert smtp.messages == [] and not spooled.exists()
    [drop] = [e for e in svault.audit.entries() if e["action"] == "incident.send"]
    assert (drop["subject"], drop["detail"]["outcome"], drop["detail"]["error"]) == (
        pseudonym,
        "dropped",
        "owner erased",
    )


def test_only_compliance_officers_send(svault: Vault, smtp: SmtpSink) -> None:
    """Sending spooled notices is refused (audited) to other roles."""
    with pytest.raises(PolicyDeniedError):
        svault.incidents.send(actor=CLERK, transport=smtp.transport())
    [refusal] = [e for e in svault.audit.entries() if e["action"] == "incident.send"]
    assert refusal["decision"] == "deny"


def test_smtp_transport_needs_starttls_off_loopback_and_hides_its_password() -> None:
    """Plain SMTP only reaches loopback; the password never shows in repr or a pickle."""
    with pytest.raises(ConfigurationError, match="STARTTLS"):
        SmtpTransport("mail.example.com", 25)
    relay = SmtpTransport(
        "mail.example.com", 587, starttls=True, username="ownervault", password="s3cret-pw"
    )
    assert "s3cret-pw" not in repr(relay)
    with pytest.raises(TypeError):
        pickle.dumps(relay)
    with pytest.raises(ConfigurationError):
        SmtpTransport("127.0.0.1", 25, username="ownervault")


def test_cli_send_delivers_spooled_notices_over_smtp(
    tmp_path: Path, pack: Path, smtp: SmtpSink, make_owner: Callable[..., OwnerProfile]
) -> None:
    """`ownervault incident send VAULT --smtp 127.0.0.1:PORT` sends the spooled owner notices."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    path = tmp_path / "cli-vault"
    owner = make_owner()
    with Vault.create(path, key=key, policy=pack) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        register(vault, [owner])
        notify(vault, [owner])
        vault.incidents.dispatch(actor=DPO)
    common = ["--key-file", str(key.path), "--policy", str(pack), "--as", "dpo-01"]
    result = CliRunner().invoke(
        main, ["incident", "send", str(path), "--smtp", f"127.0.0.1:{smtp.port}", *common]
    )
    assert result.exit_code == 0, result.output
    assert "sent 1, retrying 0, dropped 0, skipped 0, still queued 0" in result.output
    assert [rcpt for rcpt, _ in smtp.parsed()] == [[owner.email]]
    assert owner.email not in result.output
