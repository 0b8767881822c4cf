"""Helpers shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from rest_framework.test import APIClient

from portal.storage import s3_client


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def stored_keys() -> set[str]:
    """All object keys in the test bucket (to prove that failures store nothing)."""
    from django.conf import settings

    client = s3_client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def upload(client: APIClient, paths: list[Path], *, mrn: str = "MRN-1", **extra):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post("/api/studies/import/", {"files": handles, "patient_mrn": mrn, **extra}, format="multipart")
    finally:
        for h in handles:
            h.close()


def contiguous_slices(folder: Path, count: int) -> list[Path]:
    """Return ``count`` DICOM files of a series that are neighbours along the slice axis."""
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    by_z = sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    return by_z[:count]
