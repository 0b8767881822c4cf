"""Structured reports: draft → final, immutable once signed, amendments as new versions, Chinese PDF."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Segmentation
from diagnosis import services
from diagnosis.measurements import crofton_surface_area
from diagnosis.models import Report
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def measured_segmentation(small_ct_study):
    series = small_ct_study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[10:20, 30:50, 30:50] = 1
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=label_map,
        label_table=[{"index": 1, "name": "lesion", "name_zh": "病灶", "color": "#ff0000"}],
        name="lesion", source=Segmentation.Source.MANUAL,
    )
    services.segmentation_measure(segmentation=segmentation)
    return segmentation


def _pdf_text(pdf: bytes, tmp_path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_draft_is_prefilled_with_measurements_and_signed_into_an_immutable_pdf(doctor, small_ct_study, measured_segmentation, tmp_path):
    client = api_client(doctor)
    created = client.post(reverse("study-reports", args=[small_ct_study.pk]), {}, format="json")
    assert created.status_code == 201, created.content
    report_id = created.json()["report_id"]
    volume_ml = created.json()["measurements"][0]["volume_ml"]
    spacing = small_ct_study.series.get().spacing_mm
    assert volume_ml == pytest.approx(10 * 20 * 20 * np.prod(spacing) / 1000, rel=1e-3)
    box = np.ones((10, 20, 20), dtype=bool)
    assert created.json()["measurements"][0]["surface_area_crofton_mm2"] == pytest.approx(
        crofton_surface_area(box, spacing), abs=0.05
    )
    assert "病灶" in created.json()["findings"]

    finalize_early = client.post(reverse("report-finalize", args=[report_id]))
    assert finalize_early.status_code == 400 and finalize_early.json()["error"]["code"] == "impression_required"

    edited = client.patch(reverse("report-detail-api", args=[report_id]), {"impression": "右肺结节，建议随访。"}, format="json")
    assert edited.status_code == 200
    signed = client.post(reverse("report-finalize", args=[report_id]))
    assert signed.status_code == 200 and signed.json()["status"] == "final"

    report = Report.objects.get(pk=report_id)
    assert report.pdf_file and report.signed_by == doctor
    text = _pdf_text(client.get(reverse("report-pdf", args=[report_id])).content, tmp_path)
    assert "影像诊断报告" in text and "右肺结节" in text
    assert f"{volume_ml:.1f}" in text

    refused = client.patch(reverse("report-detail-api", args=[report_id]), {"impression": "changed"}, format="json")
    assert refused.status_code == 409
    report.refresh_from_db()
    assert report.impression == "右肺结节，建议随访。"


def test_amendment_is_a_new_version_and_leaves_the_final_report_untouched(doctor, small_ct_study, measured_segmentation):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    services.report_update(user=doctor, report=report, impression="初步意见")
    report = services.report_finalize(user=doctor, report=report)
    pdf_before = report.pdf_sha256
    response = api_client(doctor).post(reverse("report-amend", args=[report.pk]))
    assert response.status_code == 201
    amendment = Report.objects.get(pk=response.json()["report_id"])
    assert amendment.version == 2 and amendment.supersedes_id == report.pk and amendment.status == "draft"
    report.refresh_from_db()
    assert report.status == "final" and report.pdf_sha256 == pdf_before
    assert api_client(doctor).post(reverse("report-amend", args=[report.pk])).status_code == 409


def test_patient_reads_final_reports_only(doctor, patient_user, small_ct_study, measured_segmentation):
    draft = services.report_create_draft(user=doctor, study=small_ct_study)
    patient = api_client(patient_user)
    assert patient.get(reverse("report-detail-api", args=[draft.pk])).status_code == 404
    services.report_update(user=doctor, report=draft, impression="正常")
    services.report_finalize(user=doctor, report=draft)
    assert patient.get(reverse("report-detail-api", args=[draft.pk])).status_code == 200
    assert patient.get(reverse("report-pdf", args=[draft.pk])).status_code == 200
    assert patient.patch(reverse("report-detail-api", args=[draft.pk]), {"impression": "x"}, format="json").status_code == 403


def test_annotators_cannot_sign_reports(annotator, doctor, small_ct_study, measured_segmentation):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    assert api_client(annotator).post(reverse("report-finalize", args=[report.pk])).status_code == 403


def test_another_hospital_cannot_read_the_report(other_doctor, doctor, small_ct_study, measured_segmentation):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    assert api_client(other_doctor).get(reverse("report-detail-api", args=[report.pk])).status_code == 404
    assert api_client(other_doctor).get(reverse("report-pdf", args=[report.pk])).status_code == 404


def test_hospital_chooses_how_the_patient_is_shown(doctor, hospital, small_ct_study, measured_segmentation):
    small_ct_study.patient.name = "张三"
    small_ct_study.patient.save()
    hospital.report_patient_display = "mrn_only"
    hospital.save()
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    assert "张三" not in services.report_content(report)["patient"]


def test_render_report_command_writes_a_pdf(small_ct_study, measured_segmentation, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    target = tmp_path / "out.pdf"
    call_command("render_report", str(small_ct_study.pk), "--out", str(target), stdout=StringIO())
    assert target.read_bytes()[:5] == b"%PDF-"
