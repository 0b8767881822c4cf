"""The clinicians' patient timeline (issue 14): every study, report, finding, measurement and
questionnaire of one patient, newest first, in the page's language, tenant-scoped and audit-logged.

The baseline is the real TotalSegmentator CT with a measured segment; the follow-up study is a
second, later study row of the same patient (its images are not needed to place it in time)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone, translation

from annotation.models import Patient, Study
from diagnosis import services
from diagnosis.models import Finding
from diagnosis.timeline import patient_timeline
from followup import services as followup_services
from portal.models import AuditLog
from tests.diagnosis.test_reports import measured_segmentation  # noqa: F401 (the measured lesion fixture)

pytestmark = pytest.mark.django_db


def web_client(client, user):
    """The test client signed in as ``user`` (replacing whoever was signed in)."""
    client.force_login(user)
    return client


@pytest.fixture
def history(doctor, patient_user, small_ct_study, measured_segmentation):  # noqa: F811
    """Baseline CT (2026-01-10) measured, reported and signed, with an accepted nodule; a follow-up
    study (2026-06-01); a PHQ-9 submitted by the patient."""
    patient = Patient.objects.get(pk=small_ct_study.patient_id)  # with its account linked by the fixture
    small_ct_study.study_date = dt.date(2026, 1, 10)
    small_ct_study.save(update_fields=["study_date"])
    series = small_ct_study.series.get()
    Finding.objects.create(study=small_ct_study, series=series, kind=Finding.Kind.LUNG_NODULE,
                           centroid_lps_mm=[0, 0, 0], centroid_voxel=[15, 40, 40], long_axis_mm=8.2,
                           short_axis_mm=6.1, volume_ml=0.21, source=Finding.Source.MANUAL,
                           status=Finding.Status.ACCEPTED)
    report = services.report_create_draft(user=doctor, study=small_ct_study, segmentation=measured_segmentation)
    services.report_update(user=doctor, report=report, impression="右肺结节，建议随访。")
    services.report_finalize(user=doctor, report=report)
    follow_up = Study.objects.create(hospital=small_ct_study.hospital, patient=patient, study_instance_uid="2.25.1414",
                                     study_date=dt.date(2026, 6, 1), description="Chest CT follow-up")
    phq9 = next(q for q in followup_services.instruments_install() if q.code == "phq-9")
    assignment = followup_services.questionnaire_assign(actor=doctor, questionnaire=phq9, patients=[patient],
                                                        due_date=timezone.localdate())[0]
    followup_services.assignment_submit(user=patient_user, assignment=assignment,
                                        answers={f"phq9_{n}": "1" for n in range(1, 10)} | {"phq9_difficulty": "0"})
    return {"patient": patient, "baseline": small_ct_study, "follow_up": follow_up, "report": report}


def test_the_timeline_holds_every_record_newest_first(doctor, history):
    with translation.override("en"):
        patient, events = patient_timeline(user=doctor, patient_id=history["patient"].pk)
    kinds = [e.kind for e in events]
    assert patient == history["patient"]
    # The questionnaire (submitted today) and the signed report (signed today) come before both studies.
    assert {"questionnaire", "report", "finding", "measurement", "study"} <= set(kinds)
    moments = [e.at for e in events]
    assert moments == sorted(moments, reverse=True)
    studies = [e for e in events if e.kind == "study"]
    assert [e.study_id for e in studies] == [history["follow_up"].pk, history["baseline"].pk]
    finding = next(e for e in events if e.kind == "finding")
    assert finding.title == "1 finding (1 accepted)" and "8.2 × 6.1 mm" in finding.detail and "0.21 mL" in finding.detail
    measurement = next(e for e in events if e.kind == "measurement")
    volume = history["baseline"].series.get().segmentations.get().measurements.get().volume_ml
    assert f"lesion {volume:.1f} mL" in measurement.detail
    report = next(e for e in events if e.kind == "report")
    assert report.title == "Report version 1 signed" and report.detail == "右肺结节，建议随访。"
    questionnaire = next(e for e in events if e.kind == "questionnaire")
    assert questionnaire.detail.startswith("Score 9 of 27")


def test_the_page_is_in_one_language_and_audited(client, doctor, history):
    patient = history["patient"]
    page = web_client(client, doctor).get(f"/patients/{patient.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "患者时间线" in html and "病灶" in html and "报告第 1 版已签发" in html and "得分 9（满分 27）" in html
    assert "Patient timeline" not in html and "Report version" not in html
    english = web_client(client, doctor).get(f"/patients/{patient.pk}/", HTTP_ACCEPT_LANGUAGE="en")
    text = english.content.decode()
    assert "Patient timeline" in text and "lesion" in text and "患者时间线" not in text and "病灶" not in text
    assert AuditLog.objects.filter(actor=doctor, action=AuditLog.Action.VIEW, target_type="patient",
                                   target_id=str(patient.pk)).count() == 2
    # The study page and the worklist link to it.
    assert f'href="/patients/{patient.pk}/"' in web_client(client, doctor).get(
        f"/studies/{history['baseline'].pk}/").content.decode()


def test_annotators_patients_and_other_hospitals_are_refused(client, annotator, patient_user, other_doctor, history):
    url = f"/patients/{history['patient'].pk}/"
    assert web_client(client, annotator).get(url).status_code == 403
    assert web_client(client, patient_user).get(url).status_code == 403
    assert web_client(client, other_doctor).get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # signed out: to the login page
    assert not AuditLog.objects.filter(target_type="patient").exists()
