"""The ``ownervault`` command line, for admins and compliance officers.

It calls only the public Python API. Every ownervault error becomes one line on stderr and a
non-zero exit code (never a traceback); set ``OWNERVAULT_DEBUG=1`` to see tracebacks of
unexpected errors.

Exit codes: 1 other ownervault error, 2 usage, 3 wrong key or key provider problem,
4 access denied, 5 vault or policy format problem, 70 unexpected internal error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import exceptions as exc
from .keys import KeyFileKey, PassphraseKey
from .policy import Actor, load_policy
from .records import OwnerProfile, Vehicle
from .records.synthetic import synthetic_community
from .typing import KeyProvider
from .vault import Vault

PASSPHRASE_ENV = "OWNERVAULT_PASSPHRASE"  # noqa: S105 - the variable name, not a secret

_F = TypeVar("_F", bound=Callable[..., Any])

_EXIT_CODES: tuple[tuple[type[exc.OwnerVaultError], int], ...] = (
    (exc.WrongKeyError, 3),
    (exc.KeyProviderError, 3),
    (exc.AccessDeniedError, 4),
    (exc.VaultFormatError, 5),
    (exc.PolicyError, 5),
)


def _fail(message: str, code: int) -> None:
    click.echo(f"ownervault: error: {message}", err=True)
    sys.exit(code)


def _errors(fn: _F) -> _F:
    """Turn ownervault errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except exc.OwnerVaultError as error:
            code = next((c for cls, c in _EXIT_CODES if isinstance(error, cls)), 1)
            _fail(str(error).splitlines()[0] if str(error) else type(error).__name__, code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.exceptions.ClickException:
            raise
        except Exception as error:
            if os.environ.get("OWNERVAULT_DEBUG"):
                raise
            # The message of an unexpected error is not vetted for personal data: show its type.
            _fail(f"unexpected {type(error).__name__} (set OWNERVAULT_DEBUG=1 for details)", 70)
        return None

    return wrapper  # type: ignore[return-value]


def _key_provider(key_file: Path | None, *, confirm: bool = False) -> KeyProvider:
    if key_file is not None:
        return KeyFileKey(key_file)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if not passphrase:
        if not sys.stdin.isatty():
            raise exc.KeyProviderError(
                f"no key: set {PASSPHRASE_ENV}, pass --key-file, or run in a terminal to be asked"
            )
        passphrase = click.prompt("Vault passphrase", hide_input=True, confirmation_prompt=confirm)
    return PassphraseKey(passphrase)


_key_file_option = click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Root key file (otherwise the passphrase from ${PASSPHRASE_ENV} or a prompt).",
)
_policy_option = click.option(
    "--policy",
    "policy_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Policy pack folder (default: the shipped property-management pack).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ownervault")
def main() -> None:
    """Encrypted, policy-checked, audited storage of property owners' personal records."""


@main.command()
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@_key_file_option
@click.option(
    "--generate-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a new random root key file here and use it.",
)
@_policy_option
@_errors
def init(
    path: Path, key_file: Path | None, generate_key_file: Path | None, policy_dir: Path | None
) -> None:
    """Create a new, empty vault at PATH."""
    if generate_key_file is not None:
        if key_file is not None:
            raise click.UsageError("use either --key-file or --generate-key-file")
        key: KeyProvider = KeyFileKey.generate(generate_key_file)
        click.echo(f"wrote a new root key file to {generate_key_file} (keep it apart from backups)")
    else:
        key = _key_provider(key_file, confirm=True)
    with Vault.create(path, key=key, policy=policy_dir) as vault:
        click.echo(f"created vault {vault.vault_id} at {path}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--owners", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@_key_file_option
@_errors
def demo(path: Path, owners: int, key_file: Path | None) -> None:
    """Create a vault at PATH with a synthetic community and show who sees what."""
    key = _key_provider(key_file, confirm=True)
    population = list(synthetic_community(owners))
    with Vault.create(path, key=key) as vault:
        click.echo(f"created vault {vault.vault_id} at {path}")
        ids: dict[str, str] = {}
        registration: list[Any] = []
        for owner in population:
            registration.extend(r for r in owner.records() if r is not owner.fee_account)
        # The front desk registers owners, units and vehicles; finance opens the fee accounts.
        steps = [
            (Actor("clerk-01", roles=["front_desk"]), "owner_registration", registration),
            (
                Actor("fin-02", roles=["finance"]),
                "fee_collection",
                [o.fee_account for o in population],
            ),
        ]
        total = 0
        for actor, purpose, batch in steps:
            with vault.session(actor, purpose=purpose) as session:
                for start in range(0, len(batch), 2000):
                    chunk = batch[start : start + 2000]
                    for record, rid in zip(chunk, session.put_many(chunk), strict=True):
                        if isinstance(record, OwnerProfile):
                            ids[record.subject_id] = rid
            total += len(batch)
        click.echo(f"registered {owners} synthetic owners ({total} records)")
        first = population[0]
        rid = ids[first.subject_id]
        lookups = [
            ("front desk 客服", Actor("clerk-01", roles=["front_desk"]), "owner_registration"),
            ("security 安保", Actor("guard-07", roles=["security"]), "visitor_verification"),
            ("finance 财务", Actor("fin-02", roles=["finance"]), "fee_collection"),
        ]
        fields = ("name", "phone", "id_number", "birth_date", "household_role")
        rows: list[list[str]] = []
        for label, actor, purpose in lookups:
            with vault.session(actor, purpose=purpose) as session:
                view = session.get(OwnerProfile, rid)
                rows.append([f"{label} / {purpose}", *(str(view.get(f, "—")) for f in fields)])
        click.echo(f"\nWhat each role sees of owner {first.subject_id}'s profile:\n")
        _table(["who / purpose", *fields], rows)
        with vault.session(Actor("guard-07", roles=["security"]), "visitor_verification") as s:
            plate = first.vehicle.plate if first.vehicle else None
            if plate is not None:
                hits = s.find(Vehicle, plate=plate.lower()[:2] + " " + plate[2:])
                click.echo(
                    f"\nGate check by plate (typed in lower case with a space): {len(hits)} match"
                )
            units = s.find(OwnerProfile, phone=" ".join(first.profile.phone or ""))
            click.echo(f"Gate check by phone (typed with spaces): {len(units)} match, shown masked")
        status = vault.key_status()
        click.echo(
            f"\naudit log: {status.audit_entries} entries, verified: {vault.audit.verify()} entries"
        )
        click.echo(f"subject keys: {dict(status.subject_keys)}")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(_width(h), *(_width(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True))
    click.echo(line)
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)))


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


@main.group()
def keys() -> None:
    """Key inventory and lifecycle."""


@keys.command("status")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@_key_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_errors
def keys_status(path: Path, key_file: Path | None, as_json: bool) -> None:
    """List the vault's keys (ids, kinds, states, use counts); never key bytes."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        status = vault.key_status()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "vault_id": status.vault_id,
                    "provider": status.provider,
                    "keys": [
                        {
                            "key_id": k.key_id,
                            "kind": k.kind.value,
                            "state": k.state.value,
                            "created_at": k.created_at,
                            "state_changed_at": k.state_changed_at,
                            "invocations": k.invocations,
                            "max_invocations": k.max_invocations,
                        }
                        for k in status.keys
                    ],
                    "subject_keys": dict(status.subject_keys),
                    "audit_entries": status.audit_entries,
                },
                indent=2,
            )
        )
        return
    click.echo(f"vault {status.vault_id} (root key: {status.provider})")
    _table(
        ["key id", "kind", "state", "created", "invocations"],
        [
            [
                k.key_id,
                k.kind.value,
                k.state.value,
                k.created_at,
                f"{k.invocations}/{k.max_invocations}",
            ]
            for k in status.keys
        ],
    )
    summary = ", ".join(f"{n} {state}" for state, n in sorted(status.subject_keys.items()))
    click.echo(f"subject data keys: {summary or 'none'} ({status.records} records protected)")
    for job in status.jobs:
        click.echo(f"key job {job.job_id}: {job.kind} {job.state} {job.done}/{job.total}")
    click.echo(f"audit entries: {status.audit_entries}")


def _admin(actor_id: str | None) -> Actor:
    return Actor(actor_id or os.environ.get("USER") or "admin", roles=["admin"])


def _run_jobs(vault: Vault, actor: Actor, batch_size: int) -> None:
    """Run every unfinished key job with a progress bar (resumes interrupted ones)."""
    for job in vault.keys.pending():
        label = f"{job.kind} {job.job_id}"
        with click.progressbar(
            length=max(job.total, 1), label=label, show_eta=True, show_pos=True
        ) as bar:
            bar.update(job.done)
            seen = job.done

            def advance(status: Any, bar: Any = bar) -> None:
                nonlocal seen
                bar.update(status.done - seen)
                seen = status.done

            done = vault.keys.run(job.job_id, actor=actor, batch_size=batch_size, progress=advance)
        click.echo(f"{label}: {done.state}, {done.done} items")


@keys.command("rotate")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("what", type=click.Choice(["root", "kek", "index", "data", "page"]))
@click.option(
    "--new-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="For 'root': the new root key file (created if missing). Default: a new passphrase.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--no-run", is_flag=True, help="Start the job but do not run it now.")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def keys_rotate(
    path: Path,
    what: str,
    new_key_file: Path | None,
    batch_size: int,
    no_run: bool,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Rotate the root key, the KEK, the index key, every data key, or the page key.

    root: rewraps the header only (O(1)); kek: rewraps subject keys (O(keys));
    index: rebuilds blind indexes; data: new data keys and re-encrypted records;
    page: re-encrypts vault.db under a new SQLCipher key (no other process may have it open).
    """
    actor = _admin(as_actor)
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        if what == "root":
            new_key: KeyProvider
            if new_key_file is not None:
                new_key = (
                    KeyFileKey(new_key_file)
                    if new_key_file.exists()
                    else KeyFileKey.generate(new_key_file)
                )
            else:
                if not sys.stdin.isatty():
                    raise click.UsageError("give --new-key-file, or run in a terminal")
                new_key = PassphraseKey(
                    click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
                )
            vault.keys.rotate_root(new_key, actor=actor)
            click.echo("root key rotated: the old key no longer opens this vault")
            return
        if what == "page":
            vault.rotate_page_key(actor=actor)
            click.echo("vault.db re-encrypted under a new page key")
            return
        start = {
            "kek": vault.keys.rotate_kek,
            "index": vault.keys.rotate_index_key,
            "data": vault.keys.reencrypt_subjects,
        }[what]
        job = start(actor=actor)
        click.echo(f"started {job.kind} job {job.job_id} ({job.total} items)")
        if not no_run:
            _run_jobs(vault, actor, batch_size)


@keys.command("reencrypt")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def keys_reencrypt(
    path: Path, batch_size: int, as_actor: str | None, key_file: Path | None
) -> None:
    """Run (or resume after a crash) every unfinished rewrap, re-encryption or re-index job."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        if not vault.keys.pending():
            click.echo("no unfinished key jobs")
            return
        _run_jobs(vault, _admin(as_actor), batch_size)


@keys.command("set-state")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("key_id")
@click.argument("verb", type=click.Choice(["promote", "demote", "compromised", "destroy"]))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def keys_set_state(
    path: Path, key_id: str, verb: str, as_actor: str | None, key_file: Path | None
) -> None:
    """Promote, demote, mark compromised or destroy one key (NIST SP 800-57 states)."""
    actor = _admin(as_actor)
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        action = {
            "promote": vault.keys.promote,
            "demote": vault.keys.demote,
            "compromised": vault.keys.mark_compromised,
            "destroy": vault.keys.destroy,
        }[verb]
        info = action(key_id, actor=actor)
    click.echo(f"key {info.key_id} ({info.kind.value}) is now {info.state.value}")


@keys.command("destroy-retired")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def keys_destroy_retired(path: Path, as_actor: str | None, key_file: Path | None) -> None:
    """Destroy retired subject data keys that no record depends on any more."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        count = vault.keys.destroy_retired_subject_keys(actor=_admin(as_actor))
    click.echo(f"destroyed {count} retired subject keys")


@main.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def backup_command(path: Path, out: Path, as_actor: str | None, key_file: Path | None) -> None:
    """Take a consistent online snapshot of the vault (database and header) into OUT."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        summary = vault.backup(out, actor=_admin(as_actor))
    click.echo(
        f"backed up {summary.database_bytes} bytes and the header to {out} "
        f"({summary.audit_entries} audit entries); keep the root key apart from it"
    )


@keys.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def keys_backup(path: Path, out: Path, as_actor: str | None, key_file: Path | None) -> None:
    """Write the vault's wrapped keys to OUT, to restore data backups (keep it apart)."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        count = vault.export_key_backup(out, actor=_admin(as_actor))
    click.echo(f"wrote {count} wrapped keys to {out}")


@main.command("restore")
@click.argument("backup_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--key-backup",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Key backup (ownervault keys backup) supplying the subject data keys.",
)
@_key_file_option
@_errors
def restore_command(
    backup_dir: Path, target: Path, key_backup: Path | None, key_file: Path | None
) -> None:
    """Restore a backup into TARGET, check it opens, verify its audit log, restore data keys."""
    with Vault.restore(
        backup_dir, target, key=_key_provider(key_file), key_backup=key_backup
    ) as vault:
        size = vault.audit.size()
    click.echo(f"restored to {target}; audit log of {size} entries verified")


@keys.command("export-public")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@_key_file_option
@_errors
def keys_export_public(path: Path, key_file: Path | None) -> None:
    """Print the verifier key that checks this vault's signed audit checkpoints."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        click.echo(vault.verifier_key)


@main.group()
def audit() -> None:
    """Export, verify and report on the audit trail."""


def _officer(actor_id: str | None) -> Actor:
    return Actor(
        actor_id or os.environ.get("USER") or "compliance-officer", roles=["compliance_officer"]
    )


_actor_option = click.option(
    "--as",
    "as_actor",
    help="Your actor id, recorded in the audit trail (default: $USER).",
)


@audit.command("export")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--since", help="Only entries at or after this ISO 8601 time (UTC if no zone).")
@click.option("--until", help="Only entries before this ISO 8601 time.")
@click.option("--actor", "actor_filter", help="Only entries by this actor id.")
@click.option("--subject", help="Only entries about this subject id (turned into its pseudonym).")
@_actor_option
@_key_file_option
@_errors
def audit_export(
    path: Path,
    out: Path,
    since: str | None,
    until: str | None,
    actor_filter: str | None,
    subject: str | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Write a signed, offline-verifiable bundle of the audit log to --out."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        summary = vault.export_audit(
            out,
            actor=_officer(as_actor),
            since=since,
            until=until,
            actor_id=actor_filter,
            subject_id=subject,
        )
        vkey = vault.verifier_key
    kind = "complete" if summary.complete else "filtered"
    click.echo(
        f"exported {summary.entries} entries ({kind}) of a log of {summary.tree_size} to {out}"
    )
    click.echo(f"verify with: ownervault audit verify {out} --vkey '{vkey}'")


@audit.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--vkey", "vkeys", required=True, multiple=True, help="Trusted verifier key.")
@click.option(
    "--previous",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A signed checkpoint kept from before, to prove the log only grew.",
)
@_errors
def audit_verify(bundle: Path, vkeys: tuple[str, ...], previous: Path | None) -> None:
    """Verify an exported bundle offline: integrity, completeness, consistency."""
    from .audit.bundle import verify_bundle

    report = verify_bundle(
        bundle, list(vkeys), previous=previous.read_text(encoding="utf-8") if previous else None
    )
    click.echo(
        f"log {report.origin}: tree of {report.tree_size}, {report.entries} entries in bundle"
    )
    for label, result in (
        ("integrity", report.integrity),
        ("completeness", report.completeness),
        ("consistency", report.consistency),
    ):
        mark = {True: "ok", False: "FAILED", None: "not checked"}[result.ok]
        click.echo(f"{label:<13} {mark}: {result.message}")
    if not report.ok:
        sys.exit(6)


@audit.command("checkpoint")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@_key_file_option
@_errors
def audit_checkpoint(path: Path, key_file: Path | None) -> None:
    """Sign and print a checkpoint of the audit log (keep it to check later exports)."""
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        click.echo(vault.checkpoint(), nl=False)


@audit.command("subject")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@_actor_option
@_key_file_option
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
@_errors
def audit_subject(
    path: Path, subject_id: str, as_actor: str | None, key_file: Path | None, as_json: bool
) -> None:
    """Who accessed SUBJECT_ID's data, when, why and which fields."""
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        vault.session(_officer(as_actor), purpose="subject_access_request") as session,
    ):
        history = session.access_history(subject_id)
    if as_json:
        for entry in history:
            click.echo(json.dumps(entry, ensure_ascii=False, sort_keys=True))
        return
    _table(
        ["time", "actor", "roles", "purpose", "action", "decision", "fields"],
        [
            [
                str(e["time"]),
                str(e["actor"]),
                ",".join(e["roles"]),
                str(e["purpose"]),
                f"{e['action']} {e.get('record_type') or ''}".strip(),
                e["decision"] + (f" ({e['reason']})" if e.get("reason") else ""),
                ",".join(e["fields"]),
            ]
            for e in history
        ],
    )


@audit.command("report")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--html", "html_out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@_key_file_option
@_errors
def audit_report(path: Path, html_out: Path, key_file: Path | None) -> None:
    """Write a self-contained HTML compliance report (charts inline, no personal data)."""
    from .audit.report import collect, render_html

    with Vault.open(path, key=_key_provider(key_file)) as vault:
        try:
            size = vault.audit.verify()
            verification, verified = f"{size} entries verified against the Merkle root", True
        except exc.AuditIntegrityError as error:
            verification, verified = f"FAILED: {error}", False
        data = collect(vault.audit.entries())
        page = render_html(
            data, vault_id=vault.vault_id, verification=verification, verified=verified
        )
    html_out.write_text(page, encoding="utf-8")
    click.echo(f"wrote {html_out} ({data.total} entries)")


@main.group()
def consent() -> None:
    """Record, withdraw and list owners' consents."""


_staff_options = [
    click.option("--as", "as_actor", help="Your actor id (default: $USER)."),
    click.option(
        "--role", default="front_desk", show_default=True, help="Your role in the policy pack."
    ),
]


def _staff(fn: _F) -> _F:
    for option in reversed(_staff_options):
        fn = option(fn)
    return fn


def _evidence(evidence: str | None, evidence_file: Path | None) -> str:
    if evidence_file is not None:
        import hashlib

        return hashlib.sha256(evidence_file.read_bytes()).hexdigest()
    if evidence is None:
        raise click.UsageError("give --evidence SHA256 or --evidence-file FILE")
    return evidence.lower()


@consent.command("grant")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", required=True, help="A consent-based purpose, e.g. community_events.")
@click.option(
    "--channel", required=True, help="app, web, wechat, paper, in_person, phone, email or sms."
)
@click.option("--evidence", help="SHA-256 hex digest of the signed form or log.")
@click.option(
    "--evidence-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Hash this file as the evidence (the file itself is not stored).",
)
@click.option("--separate", is_flag=True, help="A separate consent covering sensitive fields.")
@click.option("--guardian", is_flag=True, help="Given by a guardian (subjects under 14).")
@click.option("--expires", help="ISO 8601 time when the consent lapses.")
@_staff
@_key_file_option
@_errors
def consent_grant(
    path: Path,
    subject_id: str,
    purpose: str,
    channel: str,
    evidence: str | None,
    evidence_file: Path | None,
    separate: bool,
    guardian: bool,
    expires: str | None,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Record SUBJECT_ID's consent to --purpose."""
    import datetime as _dt

    expires_at = None
    if expires is not None:
        try:
            expires_at = _dt.datetime.fromisoformat(expires)
        except ValueError:
            raise click.UsageError("--expires must be an ISO 8601 time") from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=_dt.UTC)
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        record = session.grant_consent(
            subject_id,
            purpose,
            channel=channel,
            evidence=_evidence(evidence, evidence_file),
            separate=separate,
            given_by="guardian" if guardian else "subject",
            expires_at=expires_at,
        )
    click.echo(f"recorded consent {record.consent_id} (notice {record.notice_version})")


@consent.command("withdraw")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", required=True)
@click.option("--channel", required=True)
@_staff
@_key_file_option
@_errors
def consent_withdraw(
    path: Path,
    subject_id: str,
    purpose: str,
    channel: str,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Record that SUBJECT_ID withdrew consent to --purpose (effective at once)."""
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        record = session.withdraw_consent(subject_id, purpose, channel=channel)
    click.echo(f"recorded withdrawal {record.consent_id}")


@consent.command("list")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@_staff
@_key_file_option
@_errors
def consent_list(
    path: Path, subject_id: str, as_actor: str | None, role: str, key_file: Path | None
) -> None:
    """List SUBJECT_ID's consent ledger."""
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        records = session.consents(subject_id)
    _table(
        ["id", "time", "event", "purpose", "by", "separate", "notice", "expires", "channel"],
        [
            [
                r.consent_id,
                r.at,
                r.event,
                r.purpose,
                r.given_by,
                "yes" if r.separate else "no",
                r.notice_version or "",
                r.expires_at or "",
                r.channel,
            ]
            for r in records
        ],
    )


@main.group()
def policy() -> None:
    """Check, explain and document policy packs."""


@policy.command("check")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@_errors
def policy_check(folder: Path | None) -> None:
    """Validate a policy pack (default: the shipped one); errors name file and line."""
    loaded = load_policy(folder)
    click.echo(
        f"{loaded.source}: {len(loaded.roles)} roles, {len(loaded.purposes)} purposes, "
        f"{len(loaded.prohibited)} prohibited, {len(loaded.rules)} rules: ok"
    )


@policy.command("explain")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--actor", "actor_id", required=True, help="The actor's id.")
@click.option("--role", "roles", required=True, multiple=True, help="A role (repeatable).")
@click.option("--purpose", required=True)
@click.option("--record", "record_type", default="owner_profile", show_default=True)
@click.option("--subject", help="Apply this subject's scope, age and consents.")
@click.option("--action", type=click.Choice(["read", "create", "update", "erase"]), default="read")
@click.option("--community", "communities", multiple=True, help="The actor's community scope.")
@_key_file_option
@_errors
def policy_explain(
    path: Path,
    actor_id: str,
    roles: tuple[str, ...],
    purpose: str,
    record_type: str,
    subject: str | None,
    action: str,
    communities: tuple[str, ...],
    key_file: Path | None,
) -> None:
    """Explain why a request would be allowed or denied, field by field."""
    actor = Actor(actor_id, roles=list(roles), communities=list(communities))
    with Vault.open(path, key=_key_provider(key_file)) as vault:
        explanation = vault.explain(
            actor,
            purpose,
            record_type,
            subject,
            action=action,  # type: ignore[arg-type]
        )
    click.echo(json.dumps(explanation, ensure_ascii=False, indent=2))


@policy.command("ropa")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown")
@_errors
def policy_ropa(folder: Path | None, fmt: str) -> None:
    """Print the record of processing activities (purpose register) of a policy pack."""
    from .policy import processing_register

    register = processing_register(load_policy(folder))
    if fmt == "json":
        click.echo(json.dumps(register, ensure_ascii=False, indent=2))
        return
    click.echo("# Record of processing activities\n")
    click.echo("| purpose | legal basis | data categories | roles | retention | consent |")
    click.echo("|---|---|---|---|---|---|")
    for item in register:
        categories = "; ".join(
            f"{cls}: {', '.join(fields)}" for cls, fields in item["categories"].items()
        )
        consent_text = item["consent"] or "—"
        if item["prohibited"]:
            click.echo(f"| {item['purpose']} | **prohibited**: {item['prohibited']} | | | | |")
            continue
        click.echo(
            f"| {item['purpose']} ({item['title_zh']} / {item['title_en']}) "
            f"| {item['legal_basis']} | {categories or '—'} "
            f"| {', '.join(item['roles']) or '—'} | {item['retention']} "
            f"| {consent_text} |"
        )


@main.group()
def subject() -> None:
    """Owners' rights: export, correct, restrict, erase, hold and release."""


def _officer_session(vault: Vault, as_actor: str | None, purpose: str) -> Any:
    return vault.session(_officer(as_actor), purpose=purpose)


@subject.command("export")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--identity-verified-by",
    "verified_by",
    required=True,
    help="Who checked the requester's identity (e.g. 'clerk-01, resident ID seen').",
)
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_export(
    path: Path,
    subject_id: str,
    out: Path,
    html_out: Path | None,
    verified_by: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Export everything held about SUBJECT_ID as JSON (and HTML in Chinese and English)."""
    from .rights import render_export_html

    if not verified_by.strip():
        raise click.UsageError("--identity-verified-by must say who verified the requester")
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "subject_access_request") as session,
    ):
        # The person running the command attests the check; the attestation is audited.
        document = session.export_subject(
            subject_id, verify_identity=lambda _sid: True, attestation=verified_by.strip()
        )
    out.write_text(
        json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    if html_out is not None:
        html_out.write_text(render_export_html(document), encoding="utf-8")
    click.echo(
        f"wrote {len(document.records)} records and {len(document.access_history)} "
        f"accesses to {out}"
    )


@subject.command("correct")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("record_type")
@click.argument("record_id")
@click.option("--set", "assignments", multiple=True, required=True, help="FIELD=VALUE (repeat).")
@click.option("--evidence-file", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_correct(
    path: Path,
    record_type: str,
    record_id: str,
    assignments: tuple[str, ...],
    evidence_file: Path,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Correct fields of a record on the owner's request, with evidence."""
    changes: dict[str, object] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError("--set takes FIELD=VALUE")
        changes[name] = value
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "correction_request") as session,
    ):
        view = session.get(record_type, record_id)
        result = session.correct(view, evidence=_evidence(None, evidence_file), **changes)
    told = ", ".join(result.recipients) or "none"
    click.echo(
        f"corrected {record_type} {record_id} (version {result.ref.version}); "
        f"recipients told: {told}"
    )


@subject.command("restrict")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", "purposes", multiple=True, help="A purpose still allowed (repeat).")
@click.option("--lift", is_flag=True, help="Lift the restriction.")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_restrict(
    path: Path,
    subject_id: str,
    purposes: tuple[str, ...],
    lift: bool,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Restrict SUBJECT_ID's data to the given purposes (PIPL Art 44), or --lift it."""
    if lift == bool(purposes):
        raise click.UsageError("give --purpose (one or more) or --lift")
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.restrict(subject_id, None if lift else list(purposes))
    click.echo("restriction lifted" if lift else f"restricted to {', '.join(purposes)}")


@subject.command("erase")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--request", "request_id", help="The rights request this erasure answers.")
@click.option(
    "--receipt", type=click.Path(path_type=Path, dir_okay=False), help="Save the receipt."
)
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_erase(
    path: Path,
    subject_id: str,
    request_id: str | None,
    receipt: Path | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Crypto-shred SUBJECT_ID and print a signed erasure receipt."""
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "erasure_request") as session,
    ):
        result = session.erase_subject(subject_id, request_id=request_id)
        vkey = vault.verifier_key
    if receipt is not None:
        receipt.write_text(result.receipt, encoding="utf-8")
    click.echo(result.receipt, nl=False)
    click.echo(f"verify with: ownervault subject verify-receipt FILE --vkey '{vkey}'")


@subject.command("verify-receipt")
@click.argument("receipt", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--vkey", "vkeys", required=True, multiple=True, help="Trusted verifier key.")
@_errors
def subject_verify_receipt(receipt: Path, vkeys: tuple[str, ...]) -> None:
    """Check an erasure receipt's signature offline."""
    from .audit.checkpoint import verify_note

    body = verify_note(receipt.read_text(encoding="utf-8"), list(vkeys))
    click.echo("receipt signature: ok")
    click.echo(body, nl=False)


@subject.command("hold")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--reason", required=True)
@click.option("--until", "until", required=True, help="ISO 8601 end of the hold.")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_hold(
    path: Path,
    subject_id: str,
    reason: str,
    until: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Put SUBJECT_ID's data on legal hold (no erasure or sweep) until --until."""
    import datetime as _dt

    try:
        end = _dt.datetime.fromisoformat(until)
    except ValueError:
        raise click.UsageError("--until must be an ISO 8601 time") from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=_dt.UTC)
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "subject_rights") as session,
    ):
        row = session.hold(subject_id, reason=reason, until=end)
    click.echo(f"hold {row.hold_id} until {row.ends_at}")


@subject.command("release")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("hold_id")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def subject_release(path: Path, hold_id: str, as_actor: str | None, key_file: Path | None) -> None:
    """Release legal hold HOLD_ID."""
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.release(hold_id)
    click.echo(f"released {hold_id}")


@main.group()
def retention() -> None:
    """Retention periods."""


@retention.command("sweep")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--apply", "apply_", is_flag=True, help="Erase for real (default: dry run).")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@_key_file_option
@_errors
def retention_sweep(path: Path, apply_: bool, as_actor: str | None, key_file: Path | None) -> None:
    """Erase subjects whose relationship ended and whose retention periods all ran out."""
    with (
        Vault.open(path, key=_key_provider(key_file)) as vault,
        _officer_session(vault, as_actor, "erasure_request") as session,
    ):
        report = session.retention_sweep(dry_run=not apply_)
    counts: dict[str, int] = {}
    for item in report.items:
        counts[f"{item.action} ({item.reason})"] = (
            counts.get(f"{item.action} ({item.reason})", 0) + 1
        )
    mode = "dry run" if report.dry_run else "applied"
    click.echo(f"retention sweep {mode} at {report.at}: {len(report.items)} subjects")
    for label, n in sorted(counts.items()):
        click.echo(f"  {n:6d}  {label}")


from .breach_cli import incident  # noqa: E402

main.add_command(incident)

from .migrate_cli import migrate_command  # noqa: E402

main.add_command(migrate_command)


if __name__ == "__main__":  # pragma: no cover
    main()
