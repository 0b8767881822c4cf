from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Patient
from portal.models import Role
from portal.storage import s3_client
from tests.conftest import shared_data
from tests.factories import HospitalFactory, UserFactory


@pytest.fixture
def hospital():
    return HospitalFactory()


@pytest.fixture
def doctor(hospital):
    return UserFactory(role=Role.DOCTOR, hospital=hospital)


@pytest.fixture
def annotator(hospital):
    return UserFactory(role=Role.ANNOTATOR, hospital=hospital)


@pytest.fixture
def other_doctor():
    return UserFactory(role=Role.DOCTOR, hospital=HospitalFactory())


@pytest.fixture
def patient_user(hospital):
    return UserFactory(role=Role.PATIENT, hospital=hospital)


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


@pytest.fixture
def small_ct_path() -> Path:
    return shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")


@pytest.fixture
def small_ct_study(hospital, doctor, patient_user, small_ct_path):
    """A small real CT (NIfTI, 30 slices) imported for ``hospital`` and linked to ``patient_user``."""
    result = services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-1", paths=[small_ct_path], modality="CT")
    patient = Patient.objects.get(hospital=hospital, mrn="MRN-1")
    patient.user = patient_user
    patient.save()
    return result.studies[0]
