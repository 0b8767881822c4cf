"""The read-only FHIR R4 endpoint for the EMR (issue 15): Patient, ImagingStudy, DiagnosticReport with the
signed PDF, an Observation per measured quantity and per questionnaire score, each validated by
fhir.resources; tenant scoping, permissions, bad parameters, unknown types and writes refused with an
OperationOutcome; every request audit-logged."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import numpy as np
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from fhir.resources.R4B import get_fhir_model_class
from rest_framework.test import APIClient

from annotation.models import Patient
from diagnosis import services
from diagnosis.fhir import codes
from diagnosis.models import Measurement, Report
from portal.models import AuditLog, Role
from tests.diagnosis.test_reports import measured_segmentation  # noqa: F401 (the measured lesion fixture)
from tests.factories import PASSWORD, UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def _valid(resource: dict) -> dict:
    """Validate with the fhir.resources model of its type (raises on any invalid element) and return it."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


@pytest.fixture
def signed_report(doctor, small_ct_study, measured_segmentation):
    report = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=measured_segmentation)
    services.report_update(user=doctor, report=report, findings="A box-shaped lesion in the liver.",
                           impression="Lesion of the liver, follow up in three months.")
    return services.report_finalize(user=doctor, report=report)


@pytest.fixture
def patient(small_ct_study) -> Patient:
    patient = Patient.objects.get(pk=small_ct_study.patient_id)  # with its portal account linked
    patient.name = "张^三"
    patient.sex = "F"
    patient.birth_date = dt.date(1961, 3, 14)
    patient.save()
    return patient


def _get(client, url, **params):
    response = client.get(url, params)
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    return response


# --- resources ---------------------------------------------------------------------------------------

def test_patient_read_carries_the_mrn_in_the_hospitals_system(doctor, patient, hospital, settings):
    response = _get(api_client(doctor), reverse("fhir:patient-read", args=[patient.pk]))

    assert response.status_code == 200, response.content
    body = _valid(response.json())
    assert body["resourceType"] == "Patient" and body["id"] == str(patient.pk)
    assert body["identifier"][0]["system"] == settings.FHIR_MRN_SYSTEM.format(hospital=hospital.code)
    assert body["identifier"][0]["value"] == "MRN-1"
    assert body["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert body["gender"] == "female" and body["birthDate"] == "1961-03-14"
    assert body["name"][0]["text"] == "张 三"


def test_imaging_study_names_the_study_uid_and_each_series(doctor, small_ct_study):
    series = small_ct_study.series.get()

    response = _get(api_client(doctor), reverse("fhir:imagingstudy-read", args=[small_ct_study.pk]))

    assert response.status_code == 200, response.content
    body = _valid(response.json())
    assert body["identifier"][0] == {"use": "official", "system": "urn:dicom:uid",
                                     "value": f"urn:oid:{small_ct_study.study_instance_uid}"}
    assert body["subject"] == {"reference": f"Patient/{small_ct_study.patient_id}"}
    assert body["numberOfSeries"] == 1
    assert body["series"][0]["uid"] == series.series_instance_uid
    assert body["series"][0]["modality"] == {"system": codes.DICOM_DCM, "code": "CT", "display": "Computed Tomography"}
    assert body["series"][0]["numberOfInstances"] == series.instance_count
    assert body["modality"] == [body["series"][0]["modality"]]


def test_imaging_study_body_site_is_the_snomed_code_of_the_body_part(doctor, small_ct_study):
    series = small_ct_study.series.get()
    series.body_part = "CHEST"
    series.save()
    small_ct_study.study_date = dt.date(2026, 5, 4)
    small_ct_study.save()

    body = _valid(_get(api_client(doctor), reverse("fhir:imagingstudy-read", args=[small_ct_study.pk])).json())

    assert body["series"][0]["bodySite"] == {"system": codes.SNOMED, "code": "816094009", "display": "Chest"}
    assert body["started"] == "2026-05-04"


def test_signed_report_is_final_with_its_pdf_and_results(doctor, small_ct_study, signed_report):
    response = _get(api_client(doctor), reverse("fhir:diagnosticreport-read", args=[signed_report.pk]))

    assert response.status_code == 200, response.content
    body = _valid(response.json())
    assert body["status"] == "final"
    assert body["code"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4",
                                         "display": "Diagnostic imaging study"}
    assert body["subject"] == {"reference": f"Patient/{small_ct_study.patient_id}"}
    assert body["imagingStudy"] == [{"reference": f"ImagingStudy/{small_ct_study.pk}"}]
    assert body["conclusion"] == "Lesion of the liver, follow up in three months."
    assert body["issued"].startswith(signed_report.signed_at.isoformat()[:19])
    form = body["presentedForm"][0]
    pdf = base64.b64decode(form["data"])
    assert form["contentType"] == "application/pdf"
    assert hashlib.sha256(pdf).hexdigest() == signed_report.pdf_sha256  # the very PDF that was signed
    assert form["size"] == len(pdf) and base64.b64decode(form["hash"]) == hashlib.sha1(pdf).digest()
    assert form["url"].endswith(reverse("report-pdf", args=[signed_report.pk]))
    measurement = Measurement.objects.get(segmentation=signed_report.segmentation)
    assert {r["reference"] for r in body["result"]} == {
        f"Observation/measurement-{measurement.pk}-{key}"
        for key in ("volume", "max-diameter", "long-axis", "short-axis", "surface-area", "mean-hu", "sd-hu")}


def test_a_draft_report_is_preliminary_without_pdf_data(doctor, small_ct_study, measured_segmentation):
    draft = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=measured_segmentation)

    body = _valid(_get(api_client(doctor), reverse("fhir:diagnosticreport-read", args=[draft.pk])).json())

    assert body["status"] == "preliminary"
    assert "data" not in body["presentedForm"][0]


def test_measurement_observations_carry_the_measured_values_with_codes_and_ucum_units(
        doctor, small_ct_study, signed_report):
    measurement = Measurement.objects.get(segmentation=signed_report.segmentation)
    # The fixture's lesion is 10 × 20 × 20 voxels of the real CT: a measured, non-trivial segment.
    assert measurement.volume_ml > 0 and measurement.mean_intensity is not None

    response = _get(api_client(doctor), reverse("fhir:observation-search"), patient=small_ct_study.patient_id)

    assert response.status_code == 200, response.content
    bundle = _valid(response.json())
    observations = {e["resource"]["id"]: _valid(e["resource"]) for e in bundle["entry"]}
    expected = {
        "volume": ("118565006", codes.SNOMED, "mL", round(measurement.volume_ml, 3)),
        "max-diameter": ("81827009", codes.SNOMED, "mm", round(measurement.max_diameter_mm, 1)),
        "long-axis": ("103339001", codes.SNOMED, "mm", round(measurement.axial_long_mm, 1)),
        "short-axis": ("103340004", codes.SNOMED, "mm", round(measurement.axial_short_mm, 1)),
        "surface-area": ("42798000", codes.SNOMED, "cm2", round(measurement.surface_area_mm2 / 100, 2)),
        "mean-hu": ("112181", codes.DICOM_DCM, "[hnsf'U]", round(measurement.mean_intensity, 1)),
        "sd-hu": ("112183", codes.DICOM_DCM, "[hnsf'U]", round(measurement.std_intensity, 1)),
    }
    for key, (code, system, unit, value) in expected.items():
        observation = observations[f"measurement-{measurement.pk}-{key}"]
        assert observation["code"]["coding"][0]["code"] == code and observation["code"]["coding"][0]["system"] == system
        assert observation["valueQuantity"] == {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                                "code": unit}
        assert observation["status"] == "final"
        assert observation["subject"] == {"reference": f"Patient/{small_ct_study.patient_id}"}
        assert observation["derivedFrom"] == [{"reference": f"ImagingStudy/{small_ct_study.pk}"}]
    assert observations[f"measurement-{measurement.pk}-volume"]["method"]["coding"][0]["code"] == "126030"
    assert "lesion" in observations[f"measurement-{measurement.pk}-volume"]["code"]["text"]

    one = _get(api_client(doctor), reverse("fhir:observation-read", args=[f"measurement-{measurement.pk}-volume"]))
    assert one.status_code == 200 and one.json() == observations[f"measurement-{measurement.pk}-volume"]


def test_questionnaire_scores_are_observations_with_their_loinc_codes(doctor, patient, patient_user):
    from followup import services as followup_services

    phq9, gad7 = followup_services.instruments_install()
    today = dt.date.today()
    for questionnaire, answers in ((phq9, {f"phq9_{n}": "2" for n in range(1, 10)}),
                                   (gad7, {f"gad7_{n}": "1" for n in range(1, 8)})):
        assignment = followup_services.questionnaire_assign(actor=doctor, questionnaire=questionnaire,
                                                            due_date=today, patients=[patient])[0]
        followup_services.assignment_submit(user=patient_user, assignment=assignment, answers=answers)

    bundle = _valid(_get(api_client(doctor), reverse("fhir:observation-search"), patient=patient.pk).json())

    scores = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in bundle["entry"]
              if e["resource"]["category"][0]["coding"][0]["code"] == "survey"}
    assert set(scores) == {"44249-1", "69737-5"}
    assert scores["44249-1"]["valueQuantity"]["value"] == 18  # nine answers of 2
    assert scores["44249-1"]["component"][0]["code"]["coding"][0]["code"] == "44261-6"
    assert scores["69737-5"]["valueQuantity"]["value"] == 7
    assert scores["69737-5"]["component"][0]["code"]["coding"][0]["code"] == "70274-6"
    assert scores["69737-5"]["valueQuantity"]["code"] == "{score}"
    read = _get(api_client(doctor), reverse("fhir:observation-read", args=[scores["44249-1"]["id"]]))
    assert read.status_code == 200 and read.json() == scores["44249-1"]


def test_searches_by_patient_return_bundles_of_that_patients_resources(doctor, hospital, small_ct_study,
                                                                        small_ct_path, signed_report):
    from annotation import services as annotation_services

    other = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-2",
                                             paths=[small_ct_path], modality="CT").studies[0]
    client = api_client(doctor)

    studies = _valid(_get(client, reverse("fhir:imagingstudy-search"),
                          patient=f"Patient/{small_ct_study.patient_id}").json())
    reports = _valid(_get(client, reverse("fhir:diagnosticreport-search"), patient=small_ct_study.patient_id).json())
    none = _valid(_get(client, reverse("fhir:diagnosticreport-search"), patient=other.patient_id).json())

    assert studies["type"] == "searchset" and studies["total"] == 1
    assert studies["entry"][0]["resource"]["id"] == str(small_ct_study.pk)
    assert studies["entry"][0]["fullUrl"].endswith(f"/fhir/ImagingStudy/{small_ct_study.pk}")
    assert [e["resource"]["id"] for e in reports["entry"]] == [str(signed_report.pk)]
    assert "data" not in reports["entry"][0]["resource"]["presentedForm"][0]  # a search gives the URL only
    assert none["total"] == 0 and "entry" not in none


def test_patient_search_by_identifier(doctor, patient, hospital, settings):
    client = api_client(doctor)
    system = settings.FHIR_MRN_SYSTEM.format(hospital=hospital.code)

    by_system = _valid(_get(client, reverse("fhir:patient-search"), identifier=f"{system}|MRN-1").json())
    by_value = _valid(_get(client, reverse("fhir:patient-search"), identifier="MRN-1").json())
    other_system = _valid(_get(client, reverse("fhir:patient-search"), identifier="urn:oid:1.2.3|MRN-1").json())

    assert [e["resource"]["id"] for e in by_system["entry"]] == [str(patient.pk)]
    assert by_value["total"] == 1
    assert other_system["total"] == 0


def test_capability_statement(client):
    response = _get(client, reverse("fhir:metadata"))

    assert response.status_code == 200
    body = _valid(response.json())
    assert body["fhirVersion"] == "4.0.1" and body["kind"] == "instance"
    served = {r["type"] for r in body["rest"][0]["resource"]}
    assert served == {"Patient", "ImagingStudy", "DiagnosticReport", "Observation"}


def test_reads_and_searches_are_audit_logged(doctor, small_ct_study, signed_report):
    client = api_client(doctor)
    client.get(reverse("fhir:diagnosticreport-read", args=[signed_report.pk]))
    client.get(reverse("fhir:observation-search"), {"patient": small_ct_study.patient_id})

    rows = AuditLog.objects.filter(actor=doctor, target_type__startswith="fhir:").order_by("pk")
    assert [(r.target_type, r.detail["interaction"]) for r in rows] == [
        ("fhir:DiagnosticReport", "read"), ("fhir:Observation", "search")]
    assert rows[0].target_id == str(signed_report.pk) and rows[0].hospital_id == small_ct_study.hospital_id
    assert rows[1].detail["patient_id"] == small_ct_study.patient_id and rows[1].detail["count"] == 7


def test_jwt_bearer_token_is_accepted(doctor, patient):
    token = APIClient().post(reverse("token-obtain"), {"username": doctor.username, "password": PASSWORD},
                             format="json").json()["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert client.get(reverse("fhir:patient-read", args=[patient.pk])).status_code == 200


# --- refusals ----------------------------------------------------------------------------------------

def _outcome(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    body = _valid(response.json())
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
    assert body["issue"][0]["diagnostics"]
    return body


def test_unauthenticated_requests_get_401(patient):
    response = APIClient().get(reverse("fhir:patient-read", args=[patient.pk]))

    _outcome(response, 401, "login")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_another_hospitals_resources_are_not_found(other_doctor, small_ct_study, signed_report):
    client = api_client(other_doctor)
    measurement = Measurement.objects.get(segmentation=signed_report.segmentation)

    for url in (reverse("fhir:patient-read", args=[small_ct_study.patient_id]),
                reverse("fhir:imagingstudy-read", args=[small_ct_study.pk]),
                reverse("fhir:diagnosticreport-read", args=[signed_report.pk]),
                reverse("fhir:observation-read", args=[f"measurement-{measurement.pk}-volume"])):
        _outcome(client.get(url), 404, "not-found")
    found = _valid(client.get(reverse("fhir:diagnosticreport-search"), {"patient": small_ct_study.patient_id}).json())
    assert found["total"] == 0


def test_annotators_and_patients_are_refused(annotator, patient_user, patient):
    for user in (annotator, patient_user):
        body = _outcome(api_client(user).get(reverse("fhir:patient-read", args=[patient.pk])), 403, "forbidden")
        assert "doctors" in body["issue"][0]["diagnostics"] or "医生" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("params, fragment", [
    ({}, "patient"),
    ({"patient": "abc"}, "abc"),
    ({"patient": "1", "subject": "1"}, "subject"),
    ({"patient": "1,2"}, "one"),
    ({"patient": "1", "_format": "xml"}, "JSON"),
])
def test_bad_search_parameters_get_400(doctor, params, fragment):
    client = api_client(doctor)
    client.credentials(HTTP_ACCEPT_LANGUAGE="en")

    body = _outcome(client.get(reverse("fhir:observation-search"), params), 400, "invalid")

    assert fragment in body["issue"][0]["diagnostics"]


def test_patient_search_needs_a_criterion(doctor):
    _outcome(api_client(doctor).get(reverse("fhir:patient-search")), 400, "invalid")
    _outcome(api_client(doctor).get(reverse("fhir:patient-search"), {"_id": "x"}), 400, "invalid")


def test_unknown_resource_types_and_ids_get_404(doctor, small_ct_study):
    client = api_client(doctor)

    body = _outcome(client.get("/fhir/Medication"), 404, "not-found")
    _outcome(client.get("/fhir/Medication/1"), 404, "not-found")
    _outcome(client.get(f"/fhir/ImagingStudy/{small_ct_study.pk}/_history"), 404, "not-found")
    _outcome(client.get("/fhir/"), 404, "not-found")
    _outcome(client.get(reverse("fhir:patient-read", args=["abc"])), 404, "not-found")
    _outcome(client.get(reverse("fhir:observation-read", args=["measurement-999999-volume"])), 404, "not-found")
    _outcome(client.get(reverse("fhir:observation-read", args=["questionnaire-score-999999"])), 404, "not-found")
    _outcome(client.get(reverse("fhir:observation-read", args=["nonsense"])), 404, "not-found")
    assert "Medication" in body["issue"][0]["diagnostics"]


def test_writes_get_405_and_change_nothing(doctor, patient, signed_report):
    client = api_client(doctor)
    before = Report.objects.get(pk=signed_report.pk).updated_at

    for method in ("post", "put", "patch", "delete"):
        _outcome(getattr(client, method)(reverse("fhir:diagnosticreport-read", args=[signed_report.pk]),
                                         {"resourceType": "DiagnosticReport", "status": "cancelled"}, format="json"),
                 405, "not-supported")
    _outcome(client.post(reverse("fhir:patient-search"), {"resourceType": "Patient"}, format="json"),
             405, "not-supported")

    assert Report.objects.get(pk=signed_report.pk).updated_at == before
    assert Patient.objects.count() == 1


def test_session_login_works_like_the_rest_api(hospital, patient):
    doctor = UserFactory(role=Role.DOCTOR, hospital=hospital)
    client = Client()
    client.force_login(doctor)

    assert client.get(reverse("fhir:patient-read", args=[patient.pk])).status_code == 200


def test_outcomes_speak_the_requests_language(doctor):
    client = api_client(doctor)

    chinese = client.get(reverse("fhir:observation-search"), HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    english = client.get(reverse("fhir:observation-search"), HTTP_ACCEPT_LANGUAGE="en").json()

    assert chinese["issue"][0]["diagnostics"] == "请按患者查询 Observation：添加 ?patient=<id>。"
    assert english["issue"][0]["diagnostics"] == "Search Observation by patient: add ?patient=<id>."


def test_searches_take_as_many_queries_for_two_reports_as_for_one(doctor, small_ct_study, signed_report):
    from annotation import services as annotation_services
    from annotation.models import Segmentation

    client = api_client(doctor)
    urls = [reverse(f"fhir:{name}-search") for name in ("imagingstudy", "diagnosticreport", "observation")]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url, {"patient": small_ct_study.patient_id}).status_code == 200
            found.append(len(queries))
        return found

    one = counts()
    series = small_ct_study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[5:10, 10:20, 10:20] = 1
    label_map[12:16, 60:70, 60:70] = 2
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=label_map, name="two", source=Segmentation.Source.MANUAL,
        label_table=[{"index": 1, "name": "a", "color": "#ff0000"}, {"index": 2, "name": "b", "color": "#00ff00"}])
    services.segmentation_measure(segmentation=segmentation)
    services.report_create_draft(user=doctor, study=small_ct_study, segmentation=segmentation)
    two = counts()

    assert two == one, (one, two)
    bundle = client.get(urls[2], {"patient": small_ct_study.patient_id}).json()
    assert bundle["total"] == 3 * 7  # three measured segments, seven quantities each on a CT
