"""Object storage helpers around the configured S3 bucket (django-storages)."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from django.conf import settings


def s3_client():
    """Return a boto3 S3 client for the configured endpoint and keys."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings.S3_ENDPOINT_URL,
        aws_access_key_id=settings.S3_ACCESS_KEY_ID,
        aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY,
        region_name=settings.S3_REGION,
    )


def storage_ensure_bucket(*, timeout_s: float = 30.0) -> None:
    """Create the configured bucket when it does not exist yet (idempotent).

    Retries server errors for ``timeout_s`` seconds: a SeaweedFS that has just started answers
    500 until its filer and volume servers have registered.
    """
    import time

    from botocore.exceptions import ClientError

    client = s3_client()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            try:
                client.head_bucket(Bucket=settings.S3_BUCKET)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
                client.create_bucket(Bucket=settings.S3_BUCKET)
            return
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status < 500 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def sha256_of(stream: BinaryIO, chunk_size: int = 1024 * 1024) -> str:
    """Return the hex SHA-256 of a binary stream, read from its current position to the end."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(chunk_size), b""):
        digest.update(chunk)
    return digest.hexdigest()
