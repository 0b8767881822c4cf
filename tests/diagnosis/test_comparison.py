"""The detector's findings compared with the readers' nodules of LIDC-IDRI-0001, per nodule, over the API
and on the study page, with the LUNA16 rule the FROC benchmark uses."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from annotation import services as annotation_services
from diagnosis import services
from diagnosis.models import Finding
from tests.conftest import shared_data
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

LIDC_NODULE_LPS_MM = np.array([56.2, 86.2, -115.9])


@pytest.fixture
def lidc_series(doctor, hospital):
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    series = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                              paths=[folder]).series[0]
    services.lidc_reads_import(user=doctor, series=series,
                               xml_path=shared_data("lidc_idri_0001_ct_nodules", "annotations", "069.xml"))
    return series


def _detect_at(series, point, confidence):
    return services.finding_create(user=None, series=series, source=Finding.Source.DETECTOR, centroid_lps_mm=list(point),
                                   confidence=confidence, source_name="ct-lung-nodule", source_version="1")


def test_each_nodule_is_hit_or_missed_and_each_detection_hit_extra_or_ignored(doctor, lidc_series,
                                                                             django_assert_max_num_queries):
    consensus = Finding.objects.get(source=Finding.Source.CONSENSUS)
    radius = consensus.details["reference_diameter_mm"] / 2  # 32.8 mm / 2
    non_nodule = Finding.objects.filter(kind=Finding.Kind.NON_NODULE).first()
    inside = _detect_at(lidc_series, LIDC_NODULE_LPS_MM + [0, 0, radius - 1.0], 0.9)
    just_outside = _detect_at(lidc_series, LIDC_NODULE_LPS_MM + [radius + 1.0, 0, 0], 0.8)
    on_non_nodule = _detect_at(lidc_series, np.asarray(non_nodule.centroid_lps_mm) + [1.0, 0, 0], 0.5)

    with django_assert_max_num_queries(6):
        response = api_client(doctor).get(reverse("study-finding-comparison", args=[lidc_series.study_id]))
    assert response.status_code == 200
    body = response.json()
    assert body["reference_source"] == "consensus" and body["detector"] == {"name": "ct-lung-nodule", "version": "1"}
    [nodule] = body["nodules"]
    assert nodule["finding_id"] == consensus.pk and nodule["agreement"] == 4
    assert nodule["outcome"] == "hit" and nodule["detections"] == [inside.pk]
    outcomes = {d["finding_id"]: d["outcome"] for d in body["detections"]}
    assert outcomes == {inside.pk: "hit", just_outside.pk: "extra", on_non_nodule.pk: "ignored"}
    assert body["summary"] == {"nodules": 1, "hit": 1, "missed": 0, "extra": 1, "ignored": 1}
    assert "LUNA16" in body["rule"]


def test_a_nodule_no_detection_reaches_is_missed_and_the_study_page_shows_the_table(doctor, lidc_series):
    extra = _detect_at(lidc_series, LIDC_NODULE_LPS_MM + [0, 60.0, 0], 0.7)
    body = api_client(doctor).get(reverse("study-finding-comparison", args=[lidc_series.study_id])).json()
    assert body["nodules"][0]["outcome"] == "missed" and body["summary"]["missed"] == 1
    client = Client()
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-detail", args=[lidc_series.study_id]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    html = page.content.decode()
    assert 'id="comparison-table"' in html and f"#{extra.pk}" in html
    assert "漏检" in html and "多检" in html  # missed, extra


def test_the_detectors_own_run_hits_the_four_reader_nodule(doctor, lidc_series):
    call_command("detect", str(lidc_series.pk), "--model", "ct-lung-nodule", "--inline", "--json", stdout=StringIO())
    body = api_client(doctor).get(reverse("study-finding-comparison", args=[lidc_series.study_id])).json()
    assert [n["outcome"] for n in body["nodules"]] == ["hit"]
    # Ranked by confidence, the detector's first detection is the hit (as the FROC benchmark reports).
    assert body["detections"][0]["outcome"] == "hit"


def test_comparison_of_another_hospitals_study_is_not_found_and_patients_are_refused(other_doctor, patient_user,
                                                                                    small_ct_study):
    url = reverse("study-finding-comparison", args=[small_ct_study.pk])
    assert api_client(other_doctor).get(url).status_code == 404
    assert api_client(patient_user).get(url).status_code == 403
