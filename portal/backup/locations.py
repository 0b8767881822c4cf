"""Where a backup lives: a local directory, or ``s3://bucket/prefix`` on the portal's S3 service.

A backup is always built and checked in a local folder; an S3 location is uploaded to (``manifest.json``
last, so a backup without a manifest is an unfinished one) or downloaded from, file by file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from ..storage import s3_client
from .manifest import MANIFEST_NAME, BackupInvalid


class LocationError(Exception):
    """A backup location that cannot be used (for the command line: a clear message, exit status 1)."""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` on the S3 service the portal uses (``S3_ENDPOINT_URL`` and its keys)."""

    bucket: str
    prefix: str

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def location_parse(text: str) -> Path | S3Location:
    """Return a :class:`pathlib.Path` for a directory or an :class:`S3Location` for ``s3://bucket/prefix``.

    Raises
    ------
    LocationError
        An ``s3://`` location without a bucket, or in the portal's own bucket (a backup stored in the
        bucket it backs up would be copied into every later backup and lost with it).
    """
    if not text.startswith("s3://"):
        return Path(text).expanduser().resolve()
    bucket, _, prefix = text[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise LocationError(f"{text}: an S3 location needs a bucket (s3://bucket/prefix)")
    if bucket == settings.S3_BUCKET:
        raise LocationError(
            f"{text}: a backup cannot be stored in the portal's own bucket {bucket!r}; use another bucket")
    if ".." in prefix.split("/"):
        raise LocationError(f"{text}: the prefix may not contain '..'")
    return S3Location(bucket=bucket, prefix=prefix)


def s3_location_used(location: S3Location) -> bool:
    """Return True when the location already holds a manifest (an earlier, finished backup)."""
    from botocore.exceptions import ClientError

    try:
        s3_client().head_object(Bucket=location.bucket, Key=location.key(MANIFEST_NAME))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            return False
        raise
    return True


def s3_upload(folder: Path, location: S3Location) -> int:
    """Upload every file of ``folder`` to ``location``, ``manifest.json`` last; return the files uploaded.

    The bucket is created when missing.
    """
    from botocore.exceptions import ClientError

    client = s3_client()
    try:
        client.head_bucket(Bucket=location.bucket)
    except ClientError:
        client.create_bucket(Bucket=location.bucket)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    for path in [*files, folder / MANIFEST_NAME]:
        client.upload_file(str(path), location.bucket, location.key(path.relative_to(folder).as_posix()))
    return len(files) + 1


def s3_download(location: S3Location, folder: Path) -> int:
    """Download every object under ``location`` into ``folder``; return the files downloaded.

    Raises
    ------
    BackupInvalid
        No manifest at the location, or a key that would leave ``folder``.
    """
    if not s3_location_used(location):
        raise BackupInvalid(f"{location}: no manifest.json there (not a backup, or an unfinished one)",
                            path=MANIFEST_NAME)
    client = s3_client()
    prefix = f"{location.prefix}/" if location.prefix else ""
    count = 0
    root = folder.resolve()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):]
            target = (folder / relative).resolve()
            if not relative or root not in target.parents:
                raise BackupInvalid(f"{location}: an object name leaves the backup folder", path=relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(location.bucket, obj["Key"], str(target))
            count += 1
    return count


def folder_protect(folder: Path) -> None:
    """Make a backup readable by its owner only: it holds patient data and private keys."""
    for root, dirs, names in os.walk(folder):
        os.chmod(root, 0o700)
        for name in names:
            os.chmod(os.path.join(root, name), 0o600)
