"""Key administration, the feature half of :mod:`ownervault.keys`: verbs, jobs, backups.

Owns the administrators' key verbs and rotations (:mod:`.verbs`, reached as ``vault.keys``),
resumable key jobs (:mod:`.jobs`), and backups, key backups, restores and page-key rotation
(:mod:`.backups`). Works through the kernel's interface; imports the kernel and the layers
below it, never ``vault``, ``rights`` or ``breach``.
"""

from .backups import (
    KEY_BACKUP_FORMAT,
    BackupSummary,
    backup,
    export_key_backup,
    finish_restore,
    import_keys,
    rotate_page_key,
    stage_restore,
)
from .jobs import JOB_KINDS, JobRunner, JobStatus
from .verbs import KeyAdmin, KeyStatus

__all__ = [
    "JOB_KINDS",
    "KEY_BACKUP_FORMAT",
    "BackupSummary",
    "JobRunner",
    "JobStatus",
    "KeyAdmin",
    "KeyStatus",
    "backup",
    "export_key_backup",
    "finish_restore",
    "import_keys",
    "rotate_page_key",
    "stage_restore",
]
