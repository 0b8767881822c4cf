"""Tenancy: a doctor sees their hospital's studies, a patient only their own, nobody another hospital's."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Segmentation
from portal.models import AuditLog
from portal.models import Role
from tests.helpers import api_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def segmentation(small_ct_study):
    series = small_ct_study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[5:10, 20:30, 20:30] = 1
    return services.segmentation_create(
        series=series, label_map=label_map, label_table=[{"index": 1, "name": "box", "color": "#ff0000"}],
        name="manual box", source=Segmentation.Source.MANUAL,
    )


def _urls(study, segmentation):
    series = study.series.get()
    return [
        reverse("study-detail-api", args=[study.pk]),
        reverse("series-volume", args=[series.pk]),
        reverse("series-inference-runs", args=[series.pk]),
        reverse("segmentation-labelmap", args=[segmentation.pk]),
        reverse("segmentation-measurements", args=[segmentation.pk]),
        reverse("study-reports", args=[study.pk]),
    ]


def test_doctor_of_the_hospital_reads_everything(doctor, small_ct_study, segmentation):
    client = api_client(doctor)
    for url in _urls(small_ct_study, segmentation):
        response = client.get(url)
        assert response.status_code == 200, url


def test_another_hospitals_doctor_is_denied_everywhere(other_doctor, small_ct_study, segmentation):
    client = api_client(other_doctor)
    for url in _urls(small_ct_study, segmentation):
        assert client.get(url).status_code == 404, url
    series = small_ct_study.series.get()
    response = client.post(reverse("series-inference-runs", args=[series.pk]), {"model": 1}, format="json")
    assert response.status_code == 404
    assert client.get(reverse("study-list-api")).json()["results"] == []


def test_another_hospitals_annotator_is_denied_the_web_page(client, small_ct_study):
    stranger = UserFactory(role=Role.ANNOTATOR)
    client.force_login(stranger)
    assert client.get(reverse("annotation:study-detail", args=[small_ct_study.pk])).status_code == 404
    assert str(small_ct_study.pk) not in client.get(reverse("annotation:study-list")).content.decode().split("study-table")[1]


def test_patient_reads_only_their_own_study(patient_user, small_ct_study, segmentation, hospital):
    client = api_client(patient_user)
    assert client.get(reverse("study-detail-api", args=[small_ct_study.pk])).status_code == 200
    assert [s["id"] for s in client.get(reverse("study-list-api")).json()["results"]] == [small_ct_study.pk]
    other_patient = UserFactory(role=Role.PATIENT, hospital=hospital)
    other = api_client(other_patient)
    for url in _urls(small_ct_study, segmentation):
        # 404 where patients may read their own records; 403 on staff-only endpoints.
        assert other.get(url).status_code in (403, 404), url


def test_patient_cannot_start_segmentation(patient_user, small_ct_study):
    series = small_ct_study.series.get()
    response = api_client(patient_user).post(reverse("series-inference-runs", args=[series.pk]), {"model": 1}, format="json")
    assert response.status_code == 403


def test_volume_download_is_audited(doctor, small_ct_study):
    series = small_ct_study.series.get()
    response = api_client(doctor).get(reverse("series-volume", args=[series.pk]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body[:2] == b"\x1f\x8b"  # gzip: a .nii.gz
    row = AuditLog.objects.get(action="download", target_type="series", target_id=str(series.pk))
    assert row.actor == doctor and row.channel == "api"


def test_study_list_query_count_does_not_grow_with_studies(doctor, small_ct_study, django_assert_max_num_queries, hospital, small_ct_path, tmp_path):
    import shutil

    for n in range(3):
        copy = tmp_path / f"copy{n}.nii.gz"
        shutil.copy(small_ct_path, copy)
        services.study_import(user=doctor, hospital=hospital, patient_mrn=f"MRN-{n + 10}", paths=[copy], modality="CT")
    client = api_client(doctor)
    with django_assert_max_num_queries(6):
        response = client.get(reverse("study-list-api"))
    assert len(response.json()["results"]) == 4


def test_patient_pages_show_their_own_study_and_hide_others(client, patient_user, hospital, small_ct_study):
    client.force_login(patient_user)
    page = client.get(reverse("annotation:study-detail", args=[small_ct_study.pk]))
    assert page.status_code == 200
    assert b"start-segmentation" not in page.content or b'"canSegment": false' in page.content
    assert client.get(reverse("annotation:study-upload")).status_code == 404
    client.force_login(UserFactory(role=Role.PATIENT, hospital=hospital))
    assert client.get(reverse("annotation:study-detail", args=[small_ct_study.pk])).status_code == 404


def test_report_pages_are_denied_to_another_hospital(client, doctor, other_doctor, small_ct_study):
    from diagnosis.services import report_create_draft

    report = report_create_draft(user=doctor, study=small_ct_study)
    client.force_login(other_doctor)
    assert client.get(reverse("diagnosis:report-detail", args=[report.pk])).status_code == 404
    assert client.get(reverse("diagnosis:report-pdf", args=[report.pk])).status_code == 404
    assert client.post(reverse("diagnosis:report-create", args=[small_ct_study.pk])).status_code == 404
