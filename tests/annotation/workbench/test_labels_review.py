"""Label sets (create, rename, recolour, SNOMED CT, overlap as layers), label searches, the review
workflow with inter-annotator Dice, and active-learning ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from django.urls import reverse

from annotation import services
from annotation.editing import diff_compute, diff_encode
from annotation.models import ReviewComment, StudyAssignment, UncertaintyScore
from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

LIVER = {"index": 1, "name": "liver", "color": "#aa3300", "snomed_code": "10200004", "snomed_meaning": "Liver"}


def _label_set(client, **extra):
    body = {"name": "abdomen", "project": "trial-1", "labels": [LIVER, {"index": 2, "name": "tumour", "color": "#00ff00"}], **extra}
    return client.post(reverse("label-set-list"), body, format="json")


def test_label_set_create_rename_recolour_and_code(annotator):
    client = api_client(annotator)
    created = _label_set(client)
    assert created.status_code == 201, created.content
    set_id = created.json()["id"]
    assert created.json()["labels"][0]["snomed_code"] == "10200004"

    client.patch(reverse("label-set-detail", args=[set_id]), {"name": "abdomen CT"}, format="json")
    edited = client.post(reverse("label-upsert", args=[set_id]), {"index": 2, "name": "lesion", "color": "#123456"}, format="json")
    added = client.post(reverse("label-upsert", args=[set_id]), {"index": 3, "name": "spleen", "snomed_code": "78961009"}, format="json")

    assert edited.status_code == added.status_code == 200
    body = client.get(reverse("label-set-detail", args=[set_id])).json()
    assert body["name"] == "abdomen CT"
    assert [(l["index"], l["name"], l["color"]) for l in body["labels"]] == [
        (1, "liver", "#aa3300"), (2, "lesion", "#123456"), (3, "spleen", "#ff0000")]


@pytest.mark.parametrize("label", [{"index": 0, "name": "x"}, {"index": 1, "name": "x", "color": "red"},
                                   {"index": 1, "name": "x", "snomed_code": "abc"}, {"index": 4}])
def test_bad_labels_are_refused(annotator, label):
    client = api_client(annotator)
    set_id = _label_set(client).json()["id"]
    response = client.post(reverse("label-upsert", args=[set_id]), label, format="json")
    assert response.status_code == 400


def test_duplicate_label_set_is_a_conflict_and_other_hospitals_see_none(annotator, other_doctor):
    client = api_client(annotator)
    set_id = _label_set(client).json()["id"]
    assert _label_set(client).status_code == 409
    stranger = api_client(other_doctor)
    assert stranger.get(reverse("label-set-list")).json()["results"] == []
    assert stranger.get(reverse("label-set-detail", args=[set_id])).status_code == 404
    assert stranger.post(reverse("label-upsert", args=[set_id]), {"index": 5, "name": "x"}, format="json").status_code == 404


def test_overlapping_label_set_makes_one_layer_per_label_and_search_finds_it(doctor, series):
    client = api_client(doctor)
    set_id = _label_set(client, allow_overlap=True).json()["id"]
    response = client.post(reverse("series-segmentation-from-label-set", args=[series.pk]), {"label_set": set_id}, format="json")
    assert response.status_code == 201
    layers = response.json()["results"]
    assert len(layers) == 2 and len({l["layer_group"] for l in layers}) == 1
    assert [l["label_table"][0]["name"] for l in layers] == ["liver", "tumour"]

    found = client.get(reverse("label-search"), {"name": "LIVER"}).json()
    assert [s["id"] for s in found["studies"]] == [series.study_id]
    by_code = client.get(reverse("label-search"), {"snomed_code": "10200004"}).json()
    assert [s["id"] for s in by_code["studies"]] == [series.study_id]
    lung = client.get(reverse("label-search"), {"name": "right lung"}).json()
    assert lung["studies"] == [] and [m["name"] for m in lung["models"]] == ["ct-lung"]
    assert client.get(reverse("label-search")).status_code == 400


def test_review_workflow_draft_submitted_rejected_resubmitted_approved(doctor, annotator, series):
    doctor_client, annotator_client = api_client(doctor), api_client(annotator)
    assign = doctor_client.post(reverse("study-assignments", args=[series.study_id]), {"annotator": annotator.pk}, format="json")
    assert assign.status_code == 201
    mine = annotator_client.get(reverse("assignment-list")).json()["results"]
    assert [a["study"] for a in mine] == [series.study_id]
    seg = services.segmentation_create_blank(user=annotator, series=series, name="a",
                                             label_table=[{"index": 1, "name": "liver", "color": "#aa3300"}])
    url = reverse("segmentation-review", args=[seg.pk])

    assert annotator_client.post(url, {"decision": "approve"}, format="json").status_code == 403
    assert doctor_client.post(url, {"decision": "approve"}, format="json").status_code == 409  # still a draft
    assert annotator_client.post(url, {"decision": "submit"}, format="json").json()["review_status"] == "submitted"
    assert StudyAssignment.objects.get(annotator=annotator).status == "submitted"
    assert doctor_client.post(url, {"decision": "reject"}, format="json").json()["error"]["code"] == "comment_required"
    assert doctor_client.post(url, {"decision": "reject", "text": "misses the left lobe"}, format="json").status_code == 201
    assert annotator_client.post(url, {"decision": "submit"}, format="json").status_code == 201
    assert doctor_client.post(url, {"decision": "approve", "text": "ok"}, format="json").json()["review_status"] == "approved"
    assert StudyAssignment.objects.get(annotator=annotator).status == "done"
    comments = doctor_client.get(reverse("study-review", args=[series.study_id])).json()["comments"]
    assert [c["decision"] for c in comments] == ["submit", "reject", "submit", "approve"]


def test_reviewer_cannot_approve_own_version_and_patients_or_strangers_cannot_review(doctor, other_doctor, patient_user, series, first_version):
    client = api_client(doctor)
    url = reverse("segmentation-review", args=[first_version.pk])
    client.post(url, {"decision": "submit"}, format="json")
    assert client.post(url, {"decision": "approve"}, format="json").status_code == 403
    assert api_client(other_doctor).post(url, {"decision": "approve"}, format="json").status_code == 404
    assert api_client(patient_user).post(url, {"decision": "approve"}, format="json").status_code == 403
    stranger = UserFactory(role=Role.ANNOTATOR, hospital=other_doctor.hospital)
    response = client.post(reverse("study-assignments", args=[series.study_id]), {"annotator": stranger.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_annotator"
    assert not ReviewComment.objects.filter(decision="approve").exists()


def test_inter_annotator_dice_per_label(doctor, annotator, series):
    table = [{"index": 1, "name": "liver", "color": "#aa3300"}]
    a = np.zeros(tuple(series.shape), np.uint8)
    a[5:10, 20:30, 20:30] = 1            # 500 voxels
    b = np.zeros_like(a)
    b[5:10, 20:30, 25:35] = 1            # 500 voxels, 250 shared
    for user, label_map in ((doctor, a), (annotator, b)):
        blank = services.segmentation_create_blank(user=user, series=series, name="x", label_table=table)
        services.segmentation_save_diff(user=user, parent=blank, diff=diff_encode(diff_compute(np.zeros_like(a), label_map)))

    body = api_client(doctor).get(reverse("study-review", args=[series.study_id])).json()

    [entry] = body["agreement"]
    assert len(entry["annotators"]) == 2
    assert entry["dice"] == [{"label": 1, "name": "liver", "dice": pytest.approx(0.5)}]


def test_active_learning_ranks_unlabelled_studies_by_entropy(doctor, hospital, hippocampus_studies, tmp_path):
    from annotation.ml.networks import build_network

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = {"channels": [4, 8], "strides": [2], "num_res_units": 0, "dropout": 0.3}
    weights = tmp_path / "w.pt"
    torch.save(build_network("unet", in_channels=1, out_channels=3, config=config).state_dict(), weights)
    model = services.segmentation_model_register(
        name="hippo-al", body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "Anterior", "color": "#ff0000"}, {"index": 2, "name": "Posterior", "color": "#00ff00"}],
        network_config=config, preprocessing={"intensity": "zscore", "patch_size": [16, 16, 16], "target_spacing_mm": None},
        weights_path=weights, hospital=hospital)
    labelled = hippocampus_studies[2]
    services.segmentation_create_blank(user=doctor, series=labelled, name="done", label_table=model.label_table)
    client = api_client(doctor)

    queued = client.post(reverse("active-learning"), {"model": model.pk}, format="json")
    assert queued.status_code == 202
    assert sorted(queued.json()["queued_series"]) == sorted(s.pk for s in hippocampus_studies[:2])
    for series_id in queued.json()["queued_series"]:   # what the worker does for each queued series
        services.uncertainty_score_compute(series_id=series_id, model_id=model.pk, method="entropy")
    services.uncertainty_score_compute(series_id=hippocampus_studies[0].pk, model_id=model.pk, method="mc_dropout", samples=3)

    ranked = client.get(reverse("active-learning"), {"model": model.pk}).json()["results"]
    assert [r["series"] for r in ranked] == [s.series_id for s in sorted(UncertaintyScore.objects.filter(method="entropy"),
                                                                  key=lambda s: -s.score)]
    assert all(0 < r["score"] <= 1 for r in ranked) and labelled.pk not in [r["series"] for r in ranked]
    assert UncertaintyScore.objects.get(method="mc_dropout").score > 0
    from annotation.models import SegmentationModel

    lung = client.post(reverse("active-learning"), {"model": SegmentationModel.objects.get(name="ct-lung").pk}, format="json")
    assert lung.status_code == 400 and lung.json()["error"]["code"] == "not_scorable"
