"""The federation's part of a portal backup (registered in ``FederationConfig.ready``).

The ledger itself is rows of the database (``LedgerEntry``, with the public keys on the task and
participant rows) and travels with the database part. What lives only on disk is ``FEDERATION_DIR``:
each task's CA and keys (the coordinator's Ed25519 signing key, which later rounds are signed with, the
hospitals' node and signing keys, the TLS material) and the coordinator's outbox and logs. This part
copies that folder file by file, keeping the owner-only modes of the private keys. The hospitals'
training datasets (``FEDERATION_DATASETS_ROOT``) are source data the hospitals keep, not portal state,
and are not copied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings


def _root() -> Path:
    return Path(settings.FEDERATION_DIR)


def _files(root: Path):
    if not root.is_dir():
        return
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _copy_tree(source: Path, target: Path) -> dict[str, int]:
    files = size = 0
    for path in _files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)  # contents, mode and times: private keys stay owner-only
        files += 1
        size += path.stat().st_size
    return {"files": files, "bytes": size}


def federation_backup_export(folder: Path) -> dict[str, int]:
    """Copy every file of ``FEDERATION_DIR`` (keys, outboxes, logs) under ``folder``; return files and bytes."""
    return _copy_tree(_root(), folder)


def federation_backup_restore(folder: Path) -> dict[str, int]:
    """Copy a backup's federation files into ``FEDERATION_DIR`` (created when missing); return files and bytes."""
    _root().mkdir(parents=True, exist_ok=True)
    return _copy_tree(folder, _root())


def federation_backup_count() -> int:
    """Return the number of files in ``FEDERATION_DIR`` (0: none)."""
    return sum(1 for _ in _files(_root()))


def federation_backup_clear() -> None:
    """Delete everything in ``FEDERATION_DIR`` (``restore --force`` only); the folder itself stays."""
    root = _root()
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
