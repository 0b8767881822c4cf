"""The report's findings table (accepted findings, one key image each) and its Lung-RADS suggestion beside the
doctor's confirmed category, on the report page and in the PDF."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Segmentation
from diagnosis import services
from diagnosis.models import Finding, Report

pytestmark = pytest.mark.django_db


@pytest.fixture
def nodules(doctor, small_ct_study):
    """Two accepted nodules on the small CT (one outlined by a segment, one a point) and a rejected one."""
    series = small_ct_study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[12:16, 40:52, 40:52] = 1
    segmentation = annotation_services.segmentation_create(
        series=series, label_map=label_map, label_table=[{"index": 1, "name": "nodule", "color": "#ffd600"}],
        name="nodules", source=Segmentation.Source.MANUAL)
    outlined = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                       centroid_voxel=[14, 46, 46], segmentation=segmentation, segment_label=1,
                                       long_axis_mm=16.0, short_axis_mm=14.0, composition="solid")
    point = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                    centroid_voxel=[10, 30, 70], long_axis_mm=5.0, short_axis_mm=4.0,
                                    composition="solid")
    rejected = services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                       centroid_voxel=[5, 20, 20], long_axis_mm=9.0, composition="solid")
    for f in (outlined, point):
        services.finding_accept(user=doctor, finding=f)
    services.finding_reject(user=doctor, finding=rejected)
    return outlined, point, rejected


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _pdf(pdf: bytes, tmp_path) -> tuple[str, list[str]]:
    if shutil.which("pdftotext") is None or shutil.which("pdfimages") is None:
        pytest.skip("pdftotext/pdfimages (poppler-utils) are not installed")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    listing = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True).stdout
    images = [line for line in listing.splitlines()[2:] if line.strip()]
    return text, images


def test_the_report_page_lists_the_accepted_findings_with_a_key_image_each_and_the_suggestion(
        doctor, small_ct_study, nodules):
    outlined, point, _rejected = nodules
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    html = _client(doctor).get(reverse("diagnosis:report-detail", args=[report.pk]),
                               HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    table = html[html.index('id="report-findings"'):html.index('id="lung-rads"')]
    rows = re.findall(r'<tr data-finding-id="(\d+)">', table)
    assert rows == [str(outlined.pk), str(point.pk)]  # the rejected one is not reported
    assert table.count('class="finding-key-image" src="data:image/png;base64,') == 2
    assert "16.0 × 14.0" in table and "实性" in table
    # 16 × 14 mm solid at baseline: mean 15 mm -> 4B, with the rule and the ACR source; nothing confirmed.
    assert re.search(r'id="lung-rads-suggested-category">4B<', html)
    assert "基线实性结节 ≥ 15 mm。" in html and "Lung-RADS) v2022" in html
    assert 'id="lung-rads-unconfirmed"' in html
    report.refresh_from_db()
    assert report.lung_rads_category == ""


def test_the_doctor_confirms_the_category_and_the_pdf_holds_rows_images_and_both_categories(
        doctor, small_ct_study, nodules, tmp_path):
    outlined, point, _ = nodules
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    client = _client(doctor)
    confirmed = client.post(reverse("diagnosis:report-lung-rads-confirm", args=[report.pk]),
                            {"category": "4B", "rule": "基线实性结节 ≥ 15 mm。"})
    assert confirmed.status_code == 302
    report.refresh_from_db()
    assert report.lung_rads_category == "4B" and report.lung_rads_confirmed_by == doctor
    html = client.get(reverse("diagnosis:report-detail", args=[report.pk])).content.decode()
    assert re.search(r'id="lung-rads-confirmed">[^<]*<strong>4B</strong>', html)

    services.report_update(user=doctor, report=report, impression="右下肺实性结节。")
    services.report_finalize(user=doctor, report=report)
    report.refresh_from_db()
    assert [row["id"] for row in report.snapshot["accepted_findings"]] == [outlined.pk, point.pk]
    text, images = _pdf(client.get(reverse("diagnosis:report-pdf", args=[report.pk])).content, tmp_path)
    assert re.search(rf"\b{outlined.pk}\s+肺结节\s+16\.0 × 14\.0", text), text
    assert re.search(rf"\b{point.pk}\s+肺结节\s+5\.0 × 4\.0", text), text
    assert re.search(r"软件建议：\s*4B", text) and re.search(r"医师确认：\s*4B", text)
    # The small CT's only segmentation is the nodules': three plane images plus one key image per finding.
    assert len(images) == 3 + 2, images


def test_a_bad_category_is_refused_and_nothing_is_stored(doctor, small_ct_study, nodules):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    response = _client(doctor).post(reverse("diagnosis:report-lung-rads-confirm", args=[report.pk]),
                                    {"category": "9Z"}, follow=True)
    assert response.status_code == 200 and "9Z" in response.content.decode()
    report.refresh_from_db()
    assert report.lung_rads_category == ""


def test_annotators_and_other_hospitals_cannot_confirm(annotator, other_doctor, doctor, small_ct_study, nodules):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    url = reverse("diagnosis:report-lung-rads-confirm", args=[report.pk])
    assert _client(annotator).post(url, {"category": "4B"}).status_code == 403
    assert _client(other_doctor).post(url, {"category": "4B"}).status_code == 404
    report.refresh_from_db()
    assert report.lung_rads_category == ""


def test_a_signed_report_refuses_a_confirmation(doctor, small_ct_study, nodules):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    services.report_update(user=doctor, report=report, impression="见表。")
    services.report_finalize(user=doctor, report=report)
    _client(doctor).post(reverse("diagnosis:report-lung-rads-confirm", args=[report.pk]), {"category": "2"})
    report.refresh_from_db()
    assert report.lung_rads_category == "" and report.status == Report.Status.FINAL
