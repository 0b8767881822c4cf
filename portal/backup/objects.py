"""The object-storage part of a backup: every object of the portal's bucket, streamed.

Objects are stored content-addressed (``objects/<sha256>``, written once even when several keys hold the
same bytes) with ``objects.jsonl`` listing each key, its SHA-256, size and content type. Keys never
become file names, so no key can escape the backup folder. Each object is streamed from S3 to disk
in chunks while it is hashed, and uploaded back from its file (boto3 splits large files into parts):
no object, and never the whole bucket, is held in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from django.conf import settings

from ..storage import s3_client, storage_ensure_bucket

INDEX_NAME = "objects.jsonl"
FOLDER_NAME = "objects"
_CHUNK = 1024 * 1024


def _keys(client, bucket: str):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def objects_count() -> int:
    """Return 0 when the portal's bucket holds no object (or does not exist yet), else at least 1."""
    from botocore.exceptions import ClientError

    try:
        response = s3_client().list_objects_v2(Bucket=settings.S3_BUCKET, MaxKeys=1)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchBucket", "404"}:
            return 0
        raise
    return int(response.get("KeyCount", 0))


def objects_export(folder: Path) -> dict[str, int]:
    """Copy every object of the portal's bucket under ``folder`` and return ``{"objects": n, "bytes": b}``."""
    client = s3_client()
    store = folder / FOLDER_NAME
    store.mkdir()
    count = size = 0
    with open(folder / INDEX_NAME, "w", encoding="utf-8") as index:
        for key in _keys(client, settings.S3_BUCKET):
            response = client.get_object(Bucket=settings.S3_BUCKET, Key=key)
            digest = hashlib.sha256()
            partial = store / f".partial-{count}"
            length = 0
            with open(partial, "wb") as out:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    length += len(chunk)
            sha256 = digest.hexdigest()
            target = store / sha256
            if target.exists():
                partial.unlink()
            else:
                os.replace(partial, target)
            line = {"key": key, "sha256": sha256, "size": length, "content_type": response.get("ContentType", "")}
            index.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
            size += length
    return {"objects": count, "bytes": size}


def objects_index(folder: Path):
    """Yield the entries of a backup's ``objects.jsonl`` (dicts with key, sha256, size, content_type)."""
    with open(folder / INDEX_NAME, encoding="utf-8") as index:
        for line in index:
            if line.strip():
                yield json.loads(line)


def objects_restore(folder: Path) -> dict[str, int]:
    """Upload every object listed in ``folder/objects.jsonl`` into the portal's bucket (created if missing)."""
    storage_ensure_bucket()
    client = s3_client()
    count = size = 0
    for entry in objects_index(folder):
        extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
        path = folder / FOLDER_NAME / entry["sha256"]
        client.upload_file(str(path), settings.S3_BUCKET, entry["key"], ExtraArgs=extra)
        count += 1
        size += int(entry["size"])
    return {"objects": count, "bytes": size}


def objects_clear() -> None:
    """Delete every object of the portal's bucket (``restore --force`` only)."""
    client = s3_client()
    batch: list[dict] = []
    for key in list(_keys(client, settings.S3_BUCKET)):
        batch.append({"Key": key})
        if len(batch) == 1000:
            client.delete_objects(Bucket=settings.S3_BUCKET, Delete={"Objects": batch, "Quiet": True})
            batch = []
    if batch:
        client.delete_objects(Bucket=settings.S3_BUCKET, Delete={"Objects": batch, "Quiet": True})
