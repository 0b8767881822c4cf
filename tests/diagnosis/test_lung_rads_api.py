"""Lung-RADS v2022 over the API: a suggestion from the accepted nodules (with a prior study: new and
growing), never stored by itself, and the doctor's audited confirmation on a draft report."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Study
from diagnosis import services
from diagnosis.models import Finding, Report
from portal.models import AuditLog
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def _nodule(doctor, series, voxel, long_mm, short_mm, composition="solid", accept=True):
    finding = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL, centroid_voxel=voxel,
                                      long_axis_mm=long_mm, short_axis_mm=short_mm, composition=composition)
    return services.finding_accept(user=doctor, finding=finding) if accept else finding


@pytest.fixture
def series(small_ct_study):
    return small_ct_study.series.get()


@pytest.fixture
def prior_study(doctor, hospital, small_ct_path, small_ct_study):
    """An earlier study of the same patient (same MRN), a year before."""
    prior = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-1", paths=[small_ct_path],
                                             modality="CT").studies[0]
    assert prior.pk != small_ct_study.pk and prior.patient_id == small_ct_study.patient_id
    Study.objects.filter(pk=small_ct_study.pk).update(study_date=datetime.date(2025, 6, 1))
    Study.objects.filter(pk=prior.pk).update(study_date=datetime.date(2024, 6, 1))
    return Study.objects.get(pk=prior.pk)


def test_suggestion_comes_from_accepted_nodules_with_its_rule_and_source_and_is_not_stored(
        doctor, series, small_ct_study):
    accepted = _nodule(doctor, series, [10, 40, 40], 9.0, 7.0)  # mean 8.0 mm: 4A
    _nodule(doctor, series, [20, 60, 60], 20.0, 18.0, accept=False)  # only suggested: not counted
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    response = api_client(doctor).get(reverse("study-lung-rads", args=[small_ct_study.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["category"] == "4A" and body["rule_code"] == "solid_baseline_8_15"
    assert body["rule"] == "Solid nodule ≥ 8 to < 15 mm at baseline."
    assert "American College of Radiology" in body["source"] and "v2022" in body["source"]
    assert [n["finding_id"] for n in body["nodules"]] == [accepted.pk] and body["nodules"][0]["mean_diameter_mm"] == 8.0
    assert body["suggestion_only"] is True
    report.refresh_from_db()
    assert report.lung_rads_category == "" and report.lung_rads_confirmed_by is None


def test_with_a_prior_study_a_nodule_is_new_or_growing(doctor, series, small_ct_study, prior_study):
    prior_series = prior_study.series.get()
    _nodule(doctor, prior_series, [10, 40, 40], 6.0, 6.0)
    _nodule(doctor, series, [10, 40, 40], 9.0, 7.0)  # grew from 6.0 to 8.0 mm: growing >= 8 mm, 4B
    new = _nodule(doctor, series, [25, 90, 90], 5.0, 5.0)  # nothing there before: new 4 to < 6 mm, 3
    body = api_client(doctor).get(reverse("study-lung-rads", args=[small_ct_study.pk]),
                                  {"prior": prior_study.pk}).json()
    assert body["category"] == "4B" and body["rule_code"] == "solid_new_or_growing_ge8"
    assert body["prior_interval_months"] == 12.0
    courses = {n["finding_id"]: (n["course"], n["category"]) for n in body["nodules"]}
    assert courses[new.pk] == ("new", "3")


def test_a_prior_of_another_patient_or_hospital_is_refused(doctor, other_doctor, hospital, small_ct_path,
                                                           small_ct_study):
    other_patient = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-2",
                                                     paths=[small_ct_path], modality="CT").studies[0]
    url = reverse("study-lung-rads", args=[small_ct_study.pk])
    response = api_client(doctor).get(url, {"prior": other_patient.pk})
    assert response.status_code == 400 and response.json()["error"]["code"] == "prior_mismatch"
    assert api_client(other_doctor).get(url).status_code == 404


def test_the_doctor_confirms_a_category_on_a_draft_report_audited(doctor, series, small_ct_study):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    response = api_client(doctor).post(reverse("report-lung-rads", args=[report.pk]),
                                       {"category": "4a", "rule": "Solid nodule ≥ 8 to < 15 mm at baseline."},
                                       format="json")
    assert response.status_code == 200, response.content
    assert response.json()["lung_rads"]["category"] == "4A"
    report.refresh_from_db()
    assert report.lung_rads_category == "4A" and report.lung_rads_confirmed_by == doctor
    audit = AuditLog.objects.filter(target_type="report", target_id=str(report.pk), action="update").latest("pk")
    assert audit.detail == {"lung_rads": ["", "4A"]}
    report.impression = "左肺下叶实性结节。"
    report.save()
    final = services.report_finalize(user=doctor, report=report)
    assert final.snapshot["lung_rads"]["category"] == "4A"


def test_confirmation_refuses_bad_categories_signed_reports_other_hospitals_and_annotators(
        doctor, other_doctor, annotator, small_ct_study):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    url = reverse("report-lung-rads", args=[report.pk])
    response = api_client(doctor).post(url, {"category": "5"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_category"
    assert api_client(other_doctor).post(url, {"category": "2"}, format="json").status_code == 404
    assert api_client(annotator).post(url, {"category": "2"}, format="json").status_code == 403
    Report.objects.filter(pk=report.pk).update(status=Report.Status.FINAL)
    response = api_client(doctor).post(url, {"category": "2"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "report_final"
    report.refresh_from_db()
    assert report.lung_rads_category == ""
