"""What every ``ownervault`` command shares: error handling, the root key, options, tables.

* :func:`handle_errors` turns every ownervault error into one line on stderr and an exit code
  (never a traceback); set ``OWNERVAULT_DEBUG=1`` to see tracebacks of unexpected errors.
* :func:`key_provider` resolves the root key: ``--key-file``, else the passphrase from
  ``$OWNERVAULT_PASSPHRASE``, else a prompt in a terminal; :func:`open_vault` opens a vault
  with it.
* The options more than one command takes (``--key-file``, ``--policy``, ``--as``,
  ``--quiet``), the actors that commands act as, :func:`print_table`, which lines up columns of
  Chinese text, and :func:`progress_bar`, the bar long commands draw on a terminal.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import exceptions as exc
from ..keys import KeyFileKey, KeyProvider, PassphraseKey
from ..policy import Actor
from ..vault import Session, Vault

__all__ = [
    "PASSPHRASE_ENV",
    "admin_actor",
    "as_option",
    "audited_as_option",
    "evidence_digest",
    "handle_errors",
    "key_file_option",
    "key_provider",
    "officer_actor",
    "officer_session",
    "open_vault",
    "parse_expiry",
    "policy_option",
    "print_table",
    "progress_bar",
    "quiet_option",
]

PASSPHRASE_ENV = "OWNERVAULT_PASSPHRASE"  # noqa: S105 - the variable name, not a secret

_F = TypeVar("_F", bound=Callable[..., Any])

_EXIT_CODES: tuple[tuple[type[exc.OwnerVaultError], int], ...] = (
    (exc.WrongKeyError, 3),
    (exc.KeyProviderError, 3),
    (exc.AccessDeniedError, 4),
    (exc.FieldNotDisclosedError, 4),
    (exc.VaultFormatError, 5),
    (exc.PolicyError, 5),
)


def _fail(message: str, code: int) -> None:
    click.echo(f"ownervault: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: _F) -> _F:
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
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as other command-line tools do,
            # and keep Python from reporting the pipe again when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except click.exceptions.ClickException:
            raise
        except Exception as error:
            if os.environ.get("OWNERVAULT_DEBUG"):
                raise
            # The message of an unexpected error is not vetted for personal data: show its type.
            _fail(f"unexpected {type(error).__name__} (set OWNERVAULT_DEBUG=1 for details)", 70)
        return None

    return wrapper  # type: ignore[return-value]


def key_provider(key_file: Path | None, *, confirm: bool = False) -> KeyProvider:
    """The root key: ``key_file``, else ``$OWNERVAULT_PASSPHRASE``, else a terminal prompt."""
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


def open_vault(path: Path, key_file: Path | None, policy_dir: Path | None = None) -> Vault:
    """Open the vault at ``path`` with the root key of :func:`key_provider`."""
    return Vault.open(path, key=key_provider(key_file), policy=policy_dir)


key_file_option = click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Root key file (otherwise the passphrase from ${PASSPHRASE_ENV} or a prompt).",
)
policy_option = click.option(
    "--policy",
    "policy_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Policy pack folder (default: the shipped property-management pack).",
)
as_option = click.option("--as", "as_actor", help="Your actor id (default: $USER).")
quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress bar (there is none either when stderr is not a terminal).",
)
audited_as_option = click.option(
    "--as",
    "as_actor",
    help="Your actor id, recorded in the audit trail (default: $USER).",
)


def admin_actor(actor_id: str | None) -> Actor:
    """An admin: ``actor_id``, else ``$USER``, else ``admin``."""
    return Actor(actor_id or os.environ.get("USER") or "admin", roles=["admin"])


def officer_actor(actor_id: str | None) -> Actor:
    """A compliance officer: ``actor_id``, else ``$USER``, else ``compliance-officer``."""
    return Actor(
        actor_id or os.environ.get("USER") or "compliance-officer", roles=["compliance_officer"]
    )


def officer_session(vault: Vault, as_actor: str | None, purpose: str) -> Session:
    """A session of :func:`officer_actor` for ``purpose``."""
    return vault.session(officer_actor(as_actor), purpose=purpose)


def parse_expiry(text: str | None) -> _dt.datetime | None:
    """An ``--expires`` option: an ISO 8601 time (UTC when it names no zone), or None."""
    if text is None:
        return None
    try:
        at = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.UsageError("--expires must be an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=_dt.UTC)


def evidence_digest(evidence: str | None, evidence_file: Path | None) -> str:
    """The SHA-256 hex digest of ``evidence_file``, else the digest given as ``evidence``."""
    if evidence_file is not None:
        import hashlib

        return hashlib.sha256(evidence_file.read_bytes()).hexdigest()
    if evidence is None:
        raise click.UsageError("give --evidence SHA256 or --evidence-file FILE")
    return evidence.lower()


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback that draws a bar with counts and an ETA on stderr.

    The bar is drawn only when stderr is a terminal and ``quiet`` is false; otherwise the
    callback does nothing, so output sent to a file or a log has no bar in it. It appears at
    the first call and is redrawn at most ten times a second.
    """
    stream = sys.stderr
    if quiet or not stream.isatty():
        yield lambda done, total: None
        return
    bar: Any = None
    shown = 0
    last = 0.0

    def advance(done: int, total: int) -> None:
        nonlocal bar, shown, last
        if bar is None:
            bar = click.progressbar(
                length=max(total, 1), label=label, file=stream, show_eta=True, show_pos=True
            )
            bar.__enter__()
        now = time.monotonic()
        if done < total and now - last < 0.1:
            return
        # A key job's total grows when owners are added while it runs.
        bar.length = max(total, done, 1)
        bar.update(done - shown)
        shown, last = done, now

    try:
        yield advance
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def print_table(
    headers: list[str], rows: list[list[str]], *, wrap: Mapping[int, int] | None = None
) -> None:
    """Print ``rows`` under ``headers`` in columns (CJK characters count two columns).

    Args:
        headers: the column titles.
        rows: the cells, one list per row (no rows: the titles alone).
        wrap: column index -> widest width; a longer cell of that column is wrapped between
            words onto continuation lines (a single word wider than that is kept whole).
    """
    limits = wrap or {}
    cells = [
        [_wrapped(cell, limits[i]) if i in limits else [cell] for i, cell in enumerate(row)]
        for row in rows
    ]
    widths = [
        max([_width(h), *(_width(part) for row in cells for part in row[i])])
        for i, h in enumerate(headers)
    ]
    _echo_row(headers, widths)
    _echo_row(["-" * w for w in widths], widths)
    for row in cells:
        for n in range(max(len(parts) for parts in row)):
            _echo_row([parts[n] if n < len(parts) else "" for parts in row], widths)


def _echo_row(cells: list[str], widths: list[int]) -> None:
    click.echo("  ".join(_pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _wrapped(text: str, limit: int) -> list[str]:
    """``text`` cut between words into lines of at most ``limit`` columns."""
    lines: list[str] = []
    for word in text.split():
        if lines and _width(lines[-1]) + 1 + _width(word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
