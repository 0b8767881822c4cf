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


class StorageUnavailable(Exception):
    """The object store cannot be reached, or refuses the configured keys; the message names the endpoint."""


def storage_ensure_bucket(*, timeout_s: float = 30.0) -> None:
    """Create the configured bucket when it does not exist yet (idempotent).

    Retries connection failures and server errors for ``timeout_s`` seconds: the store may still be
    starting, and a SeaweedFS that has just started answers 500 until its filer and volume servers
    have registered.

    Raises
    ------
    StorageUnavailable
        When the store is still unreachable (or failing) after ``timeout_s`` seconds, or refuses the
        keys or the bucket (403 and other client errors); one line naming ``S3_ENDPOINT_URL``.
    """
    import time

    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    import boto3

    client = boto3.client(
        "s3", endpoint_url=settings.S3_ENDPOINT_URL, aws_access_key_id=settings.S3_ACCESS_KEY_ID,
        aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY, region_name=settings.S3_REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )
    where = f"object storage at {settings.S3_ENDPOINT_URL} (bucket {settings.S3_BUCKET!r})"
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
            code = exc.response.get("Error", {}).get("Code") or status
            if status < 500:
                raise StorageUnavailable(f"{where} refused the request: {code} (check S3_ACCESS_KEY_ID / "
                                         f"S3_SECRET_ACCESS_KEY, or the embedded credentials in YIXIN_VAR_DIR)") from exc
            if time.monotonic() > deadline:
                raise StorageUnavailable(f"{where} kept failing for {timeout_s:.0f} s: {code}") from exc
        except BotoCoreError as exc:
            if time.monotonic() > deadline:
                raise StorageUnavailable(f"{where} is unreachable after {timeout_s:.0f} s: {exc}") from exc
        time.sleep(0.5)


def sha256_of(stream: BinaryIO, chunk_size: int = 1024 * 1024) -> str:
    """Return the hex SHA-256 of a binary stream, read from its current position to the end."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(chunk_size), b""):
        digest.update(chunk)
    return digest.hexdigest()
