"""Backups and restores of the whole portal (``manage.py backup`` / ``manage.py restore``).

See :mod:`portal.backup.services` for what a backup holds and the checks a restore makes, and
``docs/operations.md`` for the administrator's view.
"""

from .locations import LocationError
from .manifest import BackupInvalid, file_sha256
from .parts import BackupPart, backup_part_register, backup_parts, backup_seed_rows_register
from .services import (
    BackupResult,
    RestoreIncomplete,
    RestoreRefused,
    portal_backup_create,
    portal_backup_restore,
    portal_contents,
)

__all__ = [
    "BackupInvalid",
    "BackupPart",
    "BackupResult",
    "LocationError",
    "RestoreIncomplete",
    "RestoreRefused",
    "backup_part_register",
    "backup_parts",
    "backup_seed_rows_register",
    "file_sha256",
    "portal_backup_create",
    "portal_backup_restore",
    "portal_contents",
]
