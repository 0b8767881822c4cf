"""Medical record numbers refuse control, zero-width and bidirectional-override characters, through the
one validator (portal.validators.validate_mrn) used by the API, the import service, the command line
and patient creation. Nothing is stored when an MRN is refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from annotation.models import Patient, Series
from annotation.services import patient_get_or_create, study_import
from portal.api_errors import ServiceError
from portal.validators import validate_mrn
from tests.helpers import api_client, stored_keys, upload

BAD_MRNS = {
    "nul": "MRN\x00123",
    "tab": "MRN\t123",
    "delete": "MRN\x7f123",
    "zero-width space": "MRN\u200b123",
    "zero-width joiner": "MRN\u200d123",
    "byte-order mark": "\ufeffMRN123",
    "right-to-left override": "MRN-\u202e321",
    "first-strong isolate": "MRN-\u2068123\u2069",
    "line separator": "MRN\u2028123",
}


@pytest.mark.parametrize("mrn", BAD_MRNS.values(), ids=BAD_MRNS.keys())
def test_validator_refuses_invisible_characters(mrn):
    with pytest.raises(ValidationError) as caught:
        validate_mrn(mrn)
    assert caught.value.error_list[0].code == "invalid_mrn"
    assert "MRN" not in caught.value.messages[0]  # names code points, never the value


@pytest.mark.parametrize("mrn", ["MRN-1", "住院号 2024-0001", "A/B.12_x"])
def test_validator_accepts_ordinary_identifiers(mrn):
    validate_mrn(mrn)


@pytest.mark.django_db
@pytest.mark.parametrize("mrn", [BAD_MRNS["right-to-left override"], BAD_MRNS["zero-width space"]])
def test_patient_creation_refuses_and_stores_nothing(hospital, mrn):
    with pytest.raises(ServiceError) as caught:
        patient_get_or_create(hospital=hospital, mrn=mrn)
    assert caught.value.code == "invalid_mrn"
    assert not Patient.objects.exists()


@pytest.mark.django_db
def test_the_model_refuses_in_full_clean(hospital):
    with pytest.raises(ValidationError):
        Patient(hospital=hospital, mrn=BAD_MRNS["byte-order mark"]).full_clean()


@pytest.mark.django_db
def test_import_api_refuses_before_storing_anything(doctor, small_ct_path):
    before = stored_keys()
    response = upload(api_client(doctor), [small_ct_path], mrn=BAD_MRNS["right-to-left override"])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "patient_mrn" in error["fields"]
    assert stored_keys() == before
    assert not Patient.objects.exists() and not Series.objects.exists()


@pytest.mark.django_db
def test_import_service_refuses_before_reading_the_files(doctor, hospital, tmp_path):
    missing = tmp_path / "never-read.nii.gz"  # would be an imaging error if it were read
    with pytest.raises(ServiceError) as caught:
        study_import(user=doctor, hospital=hospital, patient_mrn=BAD_MRNS["nul"], paths=[missing])
    assert caught.value.code == "invalid_mrn"


@pytest.mark.django_db
def test_import_command_refuses(hospital, small_ct_path):
    with pytest.raises(CommandError, match="invalid_mrn"):
        call_command("import_study", str(small_ct_path), "--hospital", hospital.code,
                     "--patient", BAD_MRNS["zero-width joiner"], "--modality", "CT")
    assert not Patient.objects.exists()
