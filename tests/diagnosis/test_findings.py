"""Findings: placed by hand, stored from a detector's label map, and decided by the doctor, with tenant scoping."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import Segmentation
from annotation.storage import series_geometry, series_volume_load
from diagnosis import services
from diagnosis.models import Finding
from portal.models import AuditLog
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def series(small_ct_study):
    return small_ct_study.series.get()


@pytest.fixture
def finding(doctor, series):
    geometry = series_geometry(series)
    return services.finding_create(user=doctor, series=series, source=Finding.Source.DETECTOR, centroid_voxel=[10, 40, 40],
                                   confidence=0.8, long_axis_mm=8.0, short_axis_mm=6.0, source_name="ct-lung-nodule",
                                   geometry=geometry)


def test_doctor_places_a_finding_at_a_clicked_point_in_mm(doctor, series, small_ct_study):
    geometry = series_geometry(series)
    point = geometry.index_to_lps(np.array([12.0, 30.0, 50.0]))
    response = api_client(doctor).post(
        reverse("study-findings", args=[small_ct_study.pk]),
        {"series": series.pk, "centroid_lps_mm": point.tolist(), "long_axis_mm": 9.5, "short_axis_mm": 7.0,
         "composition": "solid"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["centroid_voxel"] == [12, 30, 50]
    assert np.allclose(body["centroid_lps_mm"], point, atol=1e-3)
    assert body["status"] == "suggested" and body["source"] == "manual" and body["long_axis_mm"] == 9.5
    assert AuditLog.objects.filter(target_type="finding", target_id=str(body["id"]), action="create").exists()


def test_a_point_given_as_voxel_index_gets_its_patient_coordinates(doctor, series, small_ct_study):
    response = api_client(doctor).post(reverse("study-findings", args=[small_ct_study.pk]),
                                       {"series": series.pk, "centroid_voxel": [5, 6, 7]}, format="json")
    assert response.status_code == 201, response.content
    expected = series_geometry(series).index_to_lps(np.array([5.0, 6.0, 7.0]))
    assert np.allclose(response.json()["centroid_lps_mm"], expected, atol=1e-3)


@pytest.mark.parametrize("payload, code", [
    ({"centroid_voxel": [5, 6, 100000]}, "outside_grid"),
    ({"centroid_voxel": [-1, 6, 7]}, "outside_grid"),
    ({}, "invalid"),
    ({"centroid_voxel": [5, 6, 7], "centroid_lps_mm": [0, 0, 0]}, "invalid"),
    ({"centroid_voxel": [5, 6]}, "invalid"),
    ({"centroid_voxel": [5, 6, 7], "long_axis_mm": 3.0, "short_axis_mm": 5.0}, "invalid"),
    ({"centroid_voxel": [5, 6, 7], "kind": "tumour"}, "invalid"),
])
def test_bad_points_and_sizes_are_refused_and_nothing_is_stored(doctor, series, small_ct_study, payload, code):
    response = api_client(doctor).post(reverse("study-findings", args=[small_ct_study.pk]),
                                       {"series": series.pk, **payload}, format="json")
    assert response.status_code == 400, response.content
    if code != "invalid":
        assert response.json()["error"]["code"] == code
    assert not Finding.objects.exists()


def test_list_of_a_study_is_most_confident_first_in_a_fixed_number_of_queries(doctor, series, small_ct_study,
                                                                              django_assert_max_num_queries):
    for confidence in (0.2, 0.9, 0.5):
        services.finding_create(user=doctor, series=series, source=Finding.Source.DETECTOR, centroid_voxel=[1, 2, 3],
                                confidence=confidence)
    with django_assert_max_num_queries(8):
        response = api_client(doctor).get(reverse("study-findings", args=[small_ct_study.pk]))
    assert response.status_code == 200
    assert [f["confidence"] for f in response.json()["results"]] == [0.9, 0.5, 0.2]


def test_accept_reject_and_edit_record_who_when_and_an_audit_row(doctor, finding):
    client = api_client(doctor)
    accepted = client.post(reverse("finding-accept", args=[finding.pk])).json()
    assert accepted["status"] == "accepted" and accepted["decided_by"] == doctor.pk and accepted["decided_at"]
    rejected = client.post(reverse("finding-reject", args=[finding.pk]), {"note": "血管断面"}, format="json").json()
    assert rejected["status"] == "rejected" and rejected["note"] == "血管断面"
    edited = client.patch(reverse("finding-detail", args=[finding.pk]), {"long_axis_mm": 11.0, "side": "left"},
                          format="json").json()
    assert edited["status"] == "edited" and edited["long_axis_mm"] == 11.0 and edited["side"] == "left"
    rows = AuditLog.objects.filter(target_type="finding", target_id=str(finding.pk), action="update").order_by("pk")
    assert [r.detail["status"] for r in rows] == [["suggested", "accepted"], ["accepted", "rejected"], ["rejected", "edited"]]


def test_edit_validation_failures_change_nothing(doctor, finding):
    client = api_client(doctor)
    assert client.patch(reverse("finding-detail", args=[finding.pk]), {}, format="json").status_code == 400
    assert client.patch(reverse("finding-detail", args=[finding.pk]), {"long_axis_mm": -1}, format="json").status_code == 400
    assert client.patch(reverse("finding-detail", args=[finding.pk]), {"composition": "glass"}, format="json").status_code == 400
    finding.refresh_from_db()
    assert finding.status == "suggested" and finding.long_axis_mm == 8.0


def test_another_hospitals_finding_and_study_are_not_found(other_doctor, finding, small_ct_study, series):
    client = api_client(other_doctor)
    assert client.get(reverse("study-findings", args=[small_ct_study.pk])).status_code == 404
    assert client.get(reverse("finding-detail", args=[finding.pk])).status_code == 404
    assert client.post(reverse("finding-accept", args=[finding.pk])).status_code == 404
    assert client.post(reverse("finding-reject", args=[finding.pk])).status_code == 404
    assert client.post(reverse("study-findings", args=[small_ct_study.pk]),
                       {"series": series.pk, "centroid_voxel": [1, 1, 1]}, format="json").status_code == 404
    finding.refresh_from_db()
    assert finding.status == "suggested"


def test_a_patient_is_denied_findings_even_of_their_own_study(patient_user, finding, small_ct_study):
    client = api_client(patient_user)
    assert client.get(reverse("study-findings", args=[small_ct_study.pk])).status_code == 403
    assert client.get(reverse("finding-detail", args=[finding.pk])).status_code == 403
    assert client.post(reverse("finding-accept", args=[finding.pk])).status_code == 403
    finding.refresh_from_db()
    assert finding.status == "suggested"


def test_an_annotator_reads_findings_but_cannot_decide(annotator, finding, small_ct_study):
    client = api_client(annotator)
    assert client.get(reverse("study-findings", args=[small_ct_study.pk])).status_code == 200
    assert client.post(reverse("finding-accept", args=[finding.pk])).status_code == 403


def test_confidence_outside_zero_one_is_refused(doctor, series):
    with pytest.raises(ValidationError):
        services.finding_create(user=doctor, series=series, source=Finding.Source.DETECTOR, centroid_voxel=[1, 2, 3],
                                confidence=1.5)
    assert not Finding.objects.exists()


def test_detector_label_map_becomes_measured_findings(doctor, series):
    volume = series_volume_load(series)
    label_map = np.zeros(volume.array.shape, dtype=np.uint8)
    label_map[10:14, 20:30, 20:30] = 1  # a box: its axial long axis is the diagonal of a 10×10-voxel square
    label_map[20:22, 50:53, 50:53] = 2
    table = [{"index": 1, "name": "nodule 1", "confidence": 0.9, "side": "right", "features": {"sphericity": 0.7}},
             {"index": 2, "name": "nodule 2", "confidence": 0.3}]
    segmentation = annotation_services.segmentation_create(series=series, label_map=label_map, label_table=table,
                                                           name="nodules", source=Segmentation.Source.MODEL)
    findings = services.findings_from_detection(segmentation=segmentation, label_map=label_map, volume=volume)
    assert [f.segment_label for f in findings] == [1, 2]
    first = findings[0]
    spacing = volume.geometry.spacing_mm
    assert first.volume_ml == pytest.approx(4 * 10 * 10 * np.prod(spacing) / 1000)
    assert first.long_axis_mm == pytest.approx(np.hypot(10 * spacing[1], 10 * spacing[2]), rel=0.15)
    assert first.mean_hu == pytest.approx(float(volume.array[10:14, 20:30, 20:30].mean()), abs=1e-3)
    assert first.max_hu == float(volume.array[10:14, 20:30, 20:30].max())
    assert first.confidence == 0.9 and first.side == "right" and first.details["features"] == {"sphericity": 0.7}
    assert first.composition in {"solid", "part_solid", "ground_glass"}
    assert first.centroid_voxel == [12, 25, 25]
    # Idempotent: storing again replaces, never duplicates.
    services.findings_from_detection(segmentation=segmentation, label_map=label_map, volume=volume)
    assert Finding.objects.filter(segmentation=segmentation).count() == 2
