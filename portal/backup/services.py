"""Back up the whole portal to a directory or S3 location, and restore it into an empty portal.

A backup holds: ``database.jsonl`` (every row, :mod:`.database`), ``objects.jsonl`` + ``objects/`` (every
object of the bucket, :mod:`.objects`), one folder per registered part (the knowledge graph, the
federation's keys and outboxes: :mod:`.parts`) and ``manifest.json`` (format version, portal version and
commit, creation time, applied migrations, counts per model and part, SHA-256 and size of every file).

A restore checks everything before it writes anything: every file against the manifest, the object
index against the files, the schema (applied migrations) against this portal's, and that this portal
is empty (no data rows, no object, nothing in any part) unless ``force`` is given. Only then does it
write, and afterwards it compares what it wrote with the manifest's counts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .. import services as portal_services
from ..models import AuditLog
from . import database, objects
from .locations import (
    LocationError,
    S3Location,
    folder_protect,
    location_parse,
    s3_download,
    s3_location_used,
    s3_upload,
)
from .manifest import BackupInvalid, manifest_verify, manifest_write
from .parts import backup_parts


class RestoreRefused(Exception):
    """The target portal is not empty (and ``force`` was not given) or runs another schema.

    ``non_empty`` maps each non-empty piece (``database``, ``objects``, a part name) to its count.
    """

    def __init__(self, message: str, *, non_empty: dict[str, int] | None = None):
        super().__init__(message)
        self.non_empty = non_empty or {}


class RestoreIncomplete(Exception):
    """Everything was written, but the counts found afterwards differ from the manifest's."""


@dataclass
class BackupResult:
    """What a backup or restore did: its location, manifest counts and (restore) what was cleared first."""

    location: str
    counts: dict
    files: int
    cleared: dict[str, int] = field(default_factory=dict)


def _scratch(prefix: str) -> Path:
    base = Path(settings.VAR_DIR) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _export_into(folder: Path, created_at: str) -> dict:
    counts = {"database": database.database_export(folder), "objects": objects.objects_export(folder)}
    for part in backup_parts():
        part_folder = folder / part.name
        part_folder.mkdir()
        counts[part.name] = part.export(part_folder)
    folder_protect(folder)
    return manifest_write(
        folder, created_at=created_at, counts=counts,
        database={"vendor": connections[DEFAULT_DB_ALIAS].vendor, "migrations": database.database_migrations()},
    )


def portal_backup_create(*, out: str) -> BackupResult:
    """Back up the database, the bucket and every registered part to ``out`` (a directory or ``s3://…``).

    A directory is built beside its final name and renamed into place when complete; an S3 location
    is built in a scratch folder under ``VAR_DIR/tmp`` (as much free disk as the backup's size) and
    uploaded with ``manifest.json`` last.

    Raises
    ------
    LocationError
        The directory exists and is not empty, or the S3 location already holds a backup, or it is
        in the portal's own bucket.
    """
    location = location_parse(out)
    created_at = timezone.now().isoformat()
    if isinstance(location, S3Location):
        if s3_location_used(location):
            raise LocationError(f"{location} already holds a backup; choose a new prefix")
        folder = _scratch("backup-")
        try:
            manifest = _export_into(folder, created_at)
            files = s3_upload(folder, location)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        if location.exists() and (not location.is_dir() or any(location.iterdir())):
            raise LocationError(f"{location} exists and is not an empty directory")
        location.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{location.name}.partial-", dir=location.parent))
        try:
            manifest = _export_into(building, created_at)
            if location.exists():
                location.rmdir()
            building.rename(location)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        files = len(manifest["files"]) + 1
    portal_services.audit_record(actor=None, action=AuditLog.Action.EXPORT, target_type="portal_backup",
                                 target_id=created_at[:64], detail={"files": files})
    return BackupResult(location=str(location), counts=manifest["counts"], files=files)


def _check_objects_index(folder: Path, manifest: dict) -> None:
    listed = manifest["files"]
    for entry in objects.objects_index(folder):
        name = f"{objects.FOLDER_NAME}/{entry.get('sha256')}"
        if listed.get(name, {}).get("sha256") != entry.get("sha256"):
            raise BackupInvalid(f"{objects.INDEX_NAME} names an object whose file {name} is missing or altered",
                                path=objects.INDEX_NAME)


def _check_counts(folder: Path, manifest: dict) -> None:
    """Count the rows and objects in the files (one streaming pass) against the manifest's counts."""
    counted: dict[str, int] = {}
    try:
        for model in database.database_file_models(folder):
            counted[model] = counted.get(model, 0) + 1
    except ValueError as exc:
        raise BackupInvalid(str(exc), path=database.FILE_NAME) from None
    expected = {model: n for model, n in manifest["counts"].get("database", {}).items() if n}
    if counted != expected:
        differing = sorted(m for m in set(counted) | set(expected) if counted.get(m) != expected.get(m))
        raise BackupInvalid(
            f"{database.FILE_NAME} does not hold the rows the manifest counts ({', '.join(differing[:5])})",
            path=database.FILE_NAME)
    try:
        listed = sum(1 for _ in objects.objects_index(folder))
    except ValueError:
        raise BackupInvalid(f"{objects.INDEX_NAME} is not JSON Lines", path=objects.INDEX_NAME) from None
    if listed != manifest["counts"].get("objects", {}).get("objects"):
        raise BackupInvalid(f"{objects.INDEX_NAME} lists {listed} objects, the manifest counts "
                            f"{manifest['counts'].get('objects', {}).get('objects')}", path=objects.INDEX_NAME)


def _check_schema(manifest: dict) -> None:
    theirs = manifest.get("database", {}).get("migrations", {})
    ours = database.database_migrations()
    if theirs != ours:
        apps_differing = sorted(a for a in set(theirs) | set(ours) if theirs.get(a) != ours.get(a))
        raise RestoreRefused(
            "the backup was made with other database migrations than this portal has applied "
            f"(apps: {', '.join(apps_differing)}); restore it with the portal version that made it "
            f"({manifest.get('portal', {}).get('git_commit', 'unknown')}), then upgrade"
        )


def _check_parts(manifest: dict) -> None:
    known = {part.name for part in backup_parts()} | {"database", "objects"}
    unknown = sorted(set(manifest.get("counts", {})) - known)
    if unknown:
        raise RestoreRefused(f"the backup holds parts this portal does not know: {', '.join(unknown)}")


def portal_contents() -> dict[str, int]:
    """Return what the portal holds now: data rows, objects (0 or more) and items per registered part."""
    contents = {"database": database.database_data_rows(), "objects": objects.objects_count()}
    for part in backup_parts():
        contents[part.name] = part.count()
    return contents


def _compare(expected: dict, restored: dict) -> list[str]:
    differences = []
    for name, counts in expected.items():
        got = restored.get(name, {})
        for key, value in counts.items():
            if got.get(key) != value:
                differences.append(f"{name}.{key}: {got.get(key)} instead of {value}")
    return differences


def _restore_from(folder: Path, *, force: bool) -> BackupResult:
    manifest = manifest_verify(folder)
    _check_counts(folder, manifest)
    _check_objects_index(folder, manifest)
    _check_schema(manifest)
    _check_parts(manifest)
    contents = portal_contents()
    non_empty = {name: n for name, n in contents.items() if n}
    if non_empty and not force:
        raise RestoreRefused(
            "this portal is not empty (" + ", ".join(f"{k}: {v}" for k, v in non_empty.items())
            + "); restore into an empty portal, or pass --force to replace everything it holds",
            non_empty=non_empty,
        )
    # Nothing has been written up to here. From here on the target is replaced.
    if non_empty.get("objects"):
        objects.objects_clear()
    parts = {part.name: part for part in backup_parts()}
    for name in non_empty:
        if name in parts:
            parts[name].clear()
    restored = {"database": database.database_restore(folder), "objects": objects.objects_restore(folder)}
    for name in manifest["counts"]:
        if name in parts:
            # A part that had no files has no folder (a backup lists files only): its restore gets a
            # path that may not exist, and the backup itself is never written to.
            restored[name] = parts[name].restore(folder / name)
    differences = _compare(manifest["counts"], restored)
    if differences:
        raise RestoreIncomplete("restored counts differ from the manifest: " + "; ".join(differences[:20]))
    portal_services.audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="portal_restore",
                                 target_id=str(manifest.get("created_at", ""))[:64],
                                 detail={"forced": bool(non_empty), "files": len(manifest["files"])})
    return BackupResult(location="", counts=manifest["counts"], files=len(manifest["files"]), cleared=non_empty)


def portal_backup_restore(*, source: str, force: bool = False) -> BackupResult:
    """Restore a backup made by :func:`portal_backup_create` into this portal.

    Raises
    ------
    BackupInvalid
        A file missing, extra, truncated or altered (named in the message); nothing was written.
    RestoreRefused
        The portal is not empty and ``force`` is False, the backup's schema differs, or it holds a part
        this portal does not know; nothing was written.
    RestoreIncomplete
        Written, but the counts afterwards differ from the manifest's.
    LocationError
        The directory does not exist.
    """
    location = location_parse(source)
    if isinstance(location, S3Location):
        folder = _scratch("restore-")
        try:
            s3_download(location, folder)
            result = _restore_from(folder, force=force)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        if not location.is_dir():
            raise LocationError(f"{location} is not a directory")
        result = _restore_from(location, force=force)
    result.location = str(location)
    return result
