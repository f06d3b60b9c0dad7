"""The ``ownervault`` command line, for admins and compliance officers.

This package owns the command line and nothing else: the top :func:`main` group (the
``ownervault`` console script, also run by ``python -m ownervault.cli``), one module per command
group (:mod:`.vault` for the whole-vault commands, :mod:`.check`, :mod:`.keys`, :mod:`.audit`,
:mod:`.consent`, :mod:`.policy`, :mod:`.subject`, :mod:`.retention`, :mod:`.incident`,
:mod:`.handover`, :mod:`.pia`) and the
helpers they share in :mod:`.common`. It is the top layer: it calls the public Python API
(:class:`ownervault.vault.Vault`, :mod:`ownervault.drill`, :mod:`ownervault.migrate` and the
packages' public names), and no other part of ownervault imports it.

Every ownervault error becomes one line on stderr and a non-zero exit code (never a
traceback); set ``OWNERVAULT_DEBUG=1`` to see tracebacks of unexpected errors.

Exit codes: 1 other ownervault error, 2 usage, 3 wrong key or key provider problem,
4 access denied, 5 vault or policy format problem, 6 ``check`` found damage, 70 unexpected
internal error.
"""

from __future__ import annotations

import click

from . import audit, check, consent, grants, incident, keys, policy, retention, subject, vault
from . import handover as _handover
from . import pia as pia_commands

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ownervault")
def main() -> None:
    """Encrypted, policy-checked, audited storage of property owners' personal records."""


main.add_command(vault.init)
main.add_command(vault.demo)
main.add_command(vault.backup_command)
main.add_command(vault.restore_command)
main.add_command(vault.migrate_command)
main.add_command(check.check_command)
main.add_command(keys.keys)
main.add_command(audit.audit)
main.add_command(consent.consent)
main.add_command(grants.grants)
main.add_command(grants.break_glass_command)
main.add_command(policy.policy)
main.add_command(subject.subject)
main.add_command(retention.retention)
main.add_command(incident.incident)
main.add_command(_handover.handover)
main.add_command(pia_commands.pia)
