"""The workbench on the study page and the 'next studies to annotate' page."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import SegmentationModel, UncertaintyScore

pytestmark = pytest.mark.django_db


def _config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="viewer-config" type="application/json">') + len('<script id="viewer-config" type="application/json">')
    return json.loads(html[start:html.index("</script>", start)])


def test_study_page_offers_the_workbench_to_staff_and_only_current_versions(client, annotator, series, first_version):
    services.segmentation_refine(user=annotator, parent=first_version, operation="largest_component", params={})
    client.force_login(annotator)
    response = client.get(reverse("annotation:study-detail", args=[series.study_id]))
    assert response.status_code == 200 and 'id="workbench"' in response.content.decode()
    config = _config(response)
    assert [s["version"] for s in config["segmentations"]] == [2]
    assert config["workbench"]["blankUrl"] == reverse("series-segmentation-create", args=[series.pk])


def test_patient_sees_no_workbench(client, patient_user, series, first_version):
    client.force_login(patient_user)
    response = client.get(reverse("annotation:study-detail", args=[series.study_id]))
    assert response.status_code == 200
    assert 'id="workbench"' not in response.content.decode() and "workbench" not in _config(response)


def test_review_only_assignment_hides_one_click_segmentation(client, doctor, annotator, series):
    services.study_assign(user=doctor, study=series.study, annotator=annotator, review_only=True)
    client.force_login(annotator)
    config = _config(client.get(reverse("annotation:study-detail", args=[series.study_id])))
    assert config["canSegment"] is False and config["workbench"]["reviewOnly"] is True


def test_next_studies_page_lists_scores_and_refuses_patients(client, doctor, patient_user, series, hospital):
    model = SegmentationModel.objects.create(name="unet-x", body_part="chest", modality="CT", architecture="unet",
                                             label_table=[{"index": 1, "name": "x", "color": "#ff0000"}])
    UncertaintyScore.objects.create(series=series, model=model, method="entropy", score=0.4321)
    client.force_login(doctor)
    response = client.get(reverse("annotation:next-studies"), {"model": model.pk})
    assert response.status_code == 200 and "0.4321" in response.content.decode()
    client.force_login(patient_user)
    assert client.get(reverse("annotation:next-studies")).status_code == 404


def test_label_set_page_creates_recolours_and_searches(client, annotator, patient_user, series, first_version):
    client.force_login(annotator)
    url = reverse("annotation:label-sets")
    client.post(url, {"action": "create_set", "name": "abdomen", "project": "p1"})
    from annotation.models import LabelSet

    label_set = LabelSet.objects.get(name="abdomen")
    client.post(url, {"action": "upsert_label", "label_set": label_set.pk, "index": "1", "name": "box", "color": "#00ff00",
                      "snomed_code": "10200004"})
    client.post(url, {"action": "upsert_label", "label_set": label_set.pk, "index": "1", "color": "#123456"})
    response = client.post(url, {"action": "upsert_label", "label_set": label_set.pk, "index": "2", "name": "x",
                                 "color": "blue"}, follow=True)
    assert "#rrggbb" in response.content.decode()
    assert [(l.index, l.name, l.color, l.snomed_code) for l in label_set.labels.all()] == [(1, "box", "#123456", "10200004")]
    page = client.get(url, {"q": "box"}).content.decode()
    assert f'href="{reverse("annotation:study-detail", args=[series.study_id])}"' in page
    client.force_login(patient_user)
    assert client.get(url).status_code == 404


def test_doctors_get_the_hospitals_staff_to_assign_and_annotators_do_not(client, doctor, annotator, other_doctor, series):
    client.force_login(doctor)
    staff = _config(client.get(reverse("annotation:study-detail", args=[series.study_id])))["workbench"]["staff"]
    assert staff[0]["id"] == annotator.pk and other_doctor.pk not in [s["id"] for s in staff]
    client.force_login(annotator)
    assert _config(client.get(reverse("annotation:study-detail", args=[series.study_id])))["workbench"]["staff"] == []
