"""The questionnaire results CSV in its de-identified mode (issue 15): no MRN, name, ids or free text;
the patient column is the research pseudonym of the DICOM research export; dates shifted by the same
per-patient offset as the DICOM de-identification (checked against a real export of a shared-data study)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile

import pydicom
import pytest
from django.utils import timezone

from annotation import services as annotation_services
from annotation.dicomnet.deidentify import shift_date
from annotation.models import PatientPseudonym
from followup import services
from followup.models import QuestionnaireAssignment
from followup.services.questionnaires import CSV_DEIDENTIFIED_COLUMNS, CSV_FIXED_COLUMNS
from portal.models import AuditLog
from tests.conftest import shared_data
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

DUE = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
VISIT = {
    "items": [
        {"link_id": "pain", "type": "likert", "text": "疼痛程度", "min": 0, "max": 10, "required": True},
        {"link_id": "onset", "type": "date", "text": "症状开始日期", "required": True},
        {"link_id": "notes", "type": "text", "text": "其他情况", "required": False},
    ],
    "scoring": {"method": "sum", "items": ["pain"], "bands": [{"min": 0, "max": 10, "code": "any", "label": "任意"}]},
}
ANSWERS = {
    "FU-1": {"pain": 3, "onset": "2024-02-29", "notes": "张三的女儿 Chrisjen 陪同"},
    "FU-2": {"pain": 7, "onset": "2023-12-31", "notes": "李四 MRN FU-2"},
}


def _table(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


@pytest.fixture
def answered(doctor, patient, other_patient):
    """A questionnaire with a date and a free-text question, answered by both patients."""
    q = services.questionnaire_create(actor=doctor, code="visit", title="复诊", definition=VISIT)
    services.questionnaire_assign(actor=doctor, questionnaire=q, patients=[patient, other_patient],
                                  due_date=dt.date.fromisoformat(DUE))
    for assignment in QuestionnaireAssignment.objects.filter(questionnaire=q).select_related("patient"):
        services.assignment_submit(user=assignment.patient.user, assignment=assignment,
                                   answers=ANSWERS[assignment.patient.mrn])
    return q


def test_the_deidentified_csv_has_pseudonyms_shifted_dates_and_no_identifier(doctor, patient, other_patient, answered):
    response = api_client(doctor).get(f"/api/followup/questionnaires/{answered.pk}/results.csv?deidentified=1")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "deidentified" in response["Content-Disposition"]
    raw = response.content.decode("utf-8-sig")
    for identifier in ("FU-1", "FU-2", "张三", "李四", "Chrisjen", "陪同", "mrn", "patient_id", "assignment_id", "notes"):
        assert identifier not in raw, identifier
    table = _table(response)
    assert table[0] == CSV_DEIDENTIFIED_COLUMNS + ["pain", "onset"]
    assert len(table) == 3
    rows = {row[0]: row for row in table[1:]}
    offsets = {}
    for p in (patient, other_patient):
        pseudonym = PatientPseudonym.objects.get(patient=p).pseudonym
        offset = annotation_services.patient_date_offset(patient=p)
        offsets[p.mrn] = offset
        row = rows[pseudonym]
        submitted = QuestionnaireAssignment.objects.get(questionnaire=answered, patient=p).submitted_at
        assert dt.datetime.fromisoformat(row[3]) == timezone.localtime(submitted) + offset
        assert dt.timedelta(days=-730) <= offset <= dt.timedelta(days=-62)
        assert row[7] == shift_date(dt.date.fromisoformat(ANSWERS[p.mrn]["onset"]), offset).isoformat()
        assert row[7] != ANSWERS[p.mrn]["onset"] and row[4] == str(float(ANSWERS[p.mrn]["pain"]))
    assert offsets["FU-1"] != offsets["FU-2"]
    # Stable: a second export gives the same pseudonyms and dates.
    again = api_client(doctor).get(f"/api/followup/questionnaires/{answered.pk}/results.csv?deidentified=true")
    assert _table(again) == table
    assert PatientPseudonym.objects.count() == 2
    audits = AuditLog.objects.filter(action=AuditLog.Action.EXPORT, target_type="questionnaire", target_id=str(answered.pk))
    assert [a.detail["deidentified"] for a in audits.order_by("pk")] == [True, True]


def test_the_pseudonym_and_date_shift_are_those_of_the_dicom_research_export(doctor, hospital, patient, answered, tmp_path):
    """A real DICOM series of the same patient exported de-identified: the CSV joins on its PatientID
    and the StudyDate/StudyTime moved by exactly the CSV's offset."""
    source = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    original = pydicom.dcmread(sorted(source.glob("*.dcm"))[0])
    study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn=patient.mrn,
                                             paths=[source]).studies[0]
    assert study.patient == patient

    archive = zipfile.ZipFile(io.BytesIO(annotation_services.study_export_deidentified(user=doctor, study=study)))
    manifest = json.loads(archive.read("manifest.json"))
    image = pydicom.dcmread(io.BytesIO(archive.read(next(n for n in sorted(archive.namelist()) if "/IM00001" in n))))
    table = _table(api_client(doctor).get(f"/api/followup/questionnaires/{answered.pk}/results.csv?deidentified=1"))

    def when(ds):
        return dt.datetime.strptime(str(ds.StudyDate) + str(ds.StudyTime)[:6].ljust(6, "0"), "%Y%m%d%H%M%S")

    assert manifest["pseudonym"] == image.PatientID
    assert manifest["pseudonym"] in {row[0] for row in table[1:]}
    dicom_shift = when(image) - when(original)
    assert dicom_shift == annotation_services.patient_date_offset(patient=patient)
    row = next(row for row in table[1:] if row[0] == manifest["pseudonym"])
    submitted = QuestionnaireAssignment.objects.get(questionnaire=answered, patient=patient).submitted_at
    assert dt.datetime.fromisoformat(row[3]) - timezone.localtime(submitted) == dicom_shift


def test_a_bad_deidentified_value_is_a_400_and_the_default_csv_is_unchanged(doctor, answered):
    client = api_client(doctor)
    bad = client.get(f"/api/followup/questionnaires/{answered.pk}/results.csv?deidentified=maybe")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"

    for query in ("", "?deidentified=0"):
        response = client.get(f"/api/followup/questionnaires/{answered.pk}/results.csv{query}")
        table = _table(response)
        assert response.status_code == 200 and 'filename="visit-v1.csv"' in response["Content-Disposition"]
        assert table[0] == CSV_FIXED_COLUMNS + ["pain", "onset", "notes"]
        assert sorted((r[2], r[9], r[10]) for r in table[1:]) == [
            ("FU-1", "2024-02-29", ANSWERS["FU-1"]["notes"]), ("FU-2", "2023-12-31", ANSWERS["FU-2"]["notes"])]
    assert not PatientPseudonym.objects.exists()
    assert AuditLog.objects.filter(action=AuditLog.Action.EXPORT, target_type="questionnaire",
                                   detail__deidentified=False).count() == 2
