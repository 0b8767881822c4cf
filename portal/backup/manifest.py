"""``manifest.json``: what a backup holds and the SHA-256 of every file, checked before a restore writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from django.conf import settings

MANIFEST_NAME = "manifest.json"
FORMAT = "yixin-portal-backup"
FORMAT_VERSION = 1


class BackupInvalid(Exception):
    """The backup cannot be restored: a missing, extra, truncated or altered file, or an unknown format.

    ``path`` names the offending file (relative to the backup), when there is one.
    """

    def __init__(self, message: str, *, path: str = ""):
        super().__init__(message)
        self.path = path


def file_sha256(path: Path, chunk_size: int = 1024 * 1024) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if relative != MANIFEST_NAME:
                found.append(relative)
    return sorted(found)


def portal_version() -> dict[str, str]:
    """Return the portal's version and, when the code is a git checkout, its commit (else "unknown")."""
    commit = "unknown"
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True,
                                timeout=10, check=False)
        if result.returncode == 0:
            commit = result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": settings.SPECTACULAR_SETTINGS.get("VERSION", "unknown"), "git_commit": commit}


def manifest_write(folder: Path, *, created_at: str, database: dict, counts: dict) -> dict:
    """Hash every file under ``folder`` and write ``manifest.json`` last; return the manifest.

    Parameters
    ----------
    created_at : str
        ISO 8601 time the backup started (UTC).
    database : dict
        ``{"vendor": …, "migrations": {app: [names]}}`` of the source database.
    counts : dict
        Counts per part: ``{"database": {model: rows}, "objects": {...}, "graph": {...}, …}``.
    """
    files = {}
    for relative in _files(folder):
        path = folder / relative
        files[relative] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "portal": portal_version(),
        "created_at": created_at,
        "database": database,
        "counts": counts,
        "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)
    (folder / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def manifest_verify(folder: Path) -> dict:
    """Read ``manifest.json`` and check every file against it; return the manifest.

    Raises
    ------
    BackupInvalid
        No or unreadable manifest, another format or a newer format version, a file listed but missing,
        of another size or hash (truncated or altered), or a file present but not listed.
    """
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupInvalid("no manifest.json: not a backup, or an unfinished one", path=MANIFEST_NAME) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupInvalid(f"manifest.json cannot be read: {exc}", path=MANIFEST_NAME) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupInvalid("manifest.json is not a Yixin portal backup manifest", path=MANIFEST_NAME)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupInvalid(f"backup format version {manifest.get('format_version')!r} is not supported "
                            f"(this portal reads version {FORMAT_VERSION})", path=MANIFEST_NAME)
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise BackupInvalid("manifest.json lists no files", path=MANIFEST_NAME)
    present = set(_files(folder))
    for relative in sorted(present - set(listed)):
        raise BackupInvalid(f"{relative} is not listed in manifest.json", path=relative)
    for relative, expected in sorted(listed.items()):
        if relative not in present:
            raise BackupInvalid(f"{relative} is missing", path=relative)
        size = (folder / relative).stat().st_size
        if size != expected.get("size"):
            raise BackupInvalid(f"{relative} has {size} bytes, the manifest says {expected.get('size')}", path=relative)
        if file_sha256(folder / relative) != expected.get("sha256"):
            raise BackupInvalid(f"{relative} does not match its SHA-256 in the manifest", path=relative)
    return manifest
