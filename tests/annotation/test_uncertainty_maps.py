"""Every one-click run of a network stores a voxel-wise uncertainty map and a mean confidence per
segment (issue 18); a segment below the review threshold flags the segmentation for review."""

from __future__ import annotations

import gzip
import json
import math
from io import StringIO

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from annotation.ml.uncertainty import label_confidence, normalised_entropy_map, quantise_unit_map

# --- plain functions (no Django) -------------------------------------------------------------------


def test_certain_softmax_has_zero_entropy_and_uniform_has_one():
    logits = torch.zeros(1, 3, 2, 2, 2)
    logits[0, 1, 0] = 1e4  # slice 0: class 1 certain
    # slice 1: all logits equal, the uniform softmax
    h = normalised_entropy_map(logits)
    assert h.shape == (1, 2, 2, 2)
    assert torch.allclose(h[0, 0], torch.zeros(2, 2), atol=1e-6)
    assert torch.allclose(h[0, 1], torch.ones(2, 2), atol=1e-6)


def test_entropy_of_two_classes_matches_the_formula():
    p = 0.9
    logits = torch.tensor([math.log(1 - p), math.log(p)]).reshape(1, 2, 1, 1, 1)
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    assert float(normalised_entropy_map(logits)) == pytest.approx(expected, abs=1e-5)


def test_entropy_rejects_a_single_class():
    with pytest.raises(ValueError):
        normalised_entropy_map(torch.zeros(1, 1, 2, 2, 2))


def test_label_confidence_is_one_minus_mean_entropy_per_label():
    labels = np.array([[[0, 1, 1, 2]]], dtype=np.uint8)
    entropy = np.array([[[0.9, 0.0, 0.5, 1.0]]], dtype=np.float32)
    assert label_confidence(labels, entropy) == {1: pytest.approx(0.75), 2: pytest.approx(0.0)}
    with pytest.raises(ValueError):
        label_confidence(labels, entropy[..., :2])


def test_quantisation_maps_zero_to_zero_and_one_to_255():
    assert quantise_unit_map(np.array([0.0, 0.5, 1.0, 1.2])).tolist() == [0, 128, 255, 255]


# --- one-click path with a small network trained on real hippocampus MRIs ------------------------------


@pytest.mark.django_db
@pytest.mark.slow
def test_one_click_network_run_stores_uncertainty_map_and_confidence(doctor, hospital, other_doctor, tmp_path, settings):
    from annotation import services
    from annotation.imaging.formats import read_volume
    from annotation.models import InferenceRun, SegmentationModel
    from tests.annotation.test_trained_model_oneclick import _subset
    from tests.conftest import shared_data
    from tests.helpers import api_client

    root = shared_data("msd_task04_hippocampus")
    names = sorted(p.name for p in (root / "imagesTr").glob("*.nii.gz"))
    out = StringIO()
    call_command(
        "train_segmentation", "--data", str(_subset(root, tmp_path / "msd", names[:8])), "--architecture", "unet",
        "--epochs", "1", "--batch-size", "2", "--name", "hippocampus-uncertainty", "--body-part", "brain",
        "--patch", "32,32,32", "--json", stdout=out,
    )
    model = SegmentationModel.objects.get(pk=json.loads(out.getvalue())["model_id"])
    series = services.study_import(
        user=doctor, hospital=hospital, patient_mrn="HIPPO-U", paths=[root / "imagesTr" / names[-1]], modality="MR"
    ).series[0]

    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 1.01  # no segment is that confident
    run = services.inference_run_execute(run_id=services.inference_run_create(user=doctor, series=series, model=model).pk)
    assert run.status == InferenceRun.Status.SUCCEEDED, run.error_message
    segmentation = run.segmentation
    label_map = services.segmentation_labelmap_load(segmentation)

    assert segmentation.uncertainty_file
    response = api_client(doctor).get(reverse("segmentation-uncertainty", args=[segmentation.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    path = tmp_path / "uncertainty.nii.gz"
    path.write_bytes(b"".join(response.streaming_content))
    gzip.decompress(path.read_bytes())  # a real gzip stream
    stored = read_volume(path).array
    assert stored.shape == label_map.shape == tuple(series.shape)
    assert stored.dtype == np.uint8 and stored.max() <= 255

    present = {str(v) for v in np.unique(label_map) if v}
    assert present and set(segmentation.label_confidence) == present
    assert all(0.0 <= c <= 1.0 for c in segmentation.label_confidence.values())
    # The stored confidence agrees with the stored (quantised) map within the quantisation step.
    for label, confidence in segmentation.label_confidence.items():
        from_map = 1 - stored[label_map == int(label)].mean() / 255
        assert confidence == pytest.approx(from_map, abs=0.003)
    assert segmentation.needs_review is True

    assert api_client(other_doctor).get(reverse("segmentation-uncertainty", args=[segmentation.pk])).status_code == 404

    # The measurement table and the report show each segment's confidence, flagged below the threshold.
    segments = api_client(doctor).get(reverse("segmentation-measurements", args=[segmentation.pk])).json()["segments"]
    assert segments and all(s["confidence"] == pytest.approx(segmentation.label_confidence[str(s["label"])], abs=1e-3)
                            and s["low_confidence"] for s in segments)
    from diagnosis import services as diagnosis_services

    report = diagnosis_services.report_create_draft(user=doctor, study=series.study, segmentation=segmentation)
    content = diagnosis_services.report_content(report)
    assert content["confidence_shown"] and content["low_confidence"]
    browser = Client()
    browser.force_login(doctor)
    page = browser.get(reverse("diagnosis:report-detail", args=[report.pk]))
    assert page.status_code == 200 and b"report-low-confidence" in page.content
    next_page = browser.get(reverse("annotation:next-studies"))
    assert f'data-segmentation="{segmentation.pk}"'.encode() in next_page.content

    settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD = 0.0
    run = services.inference_run_execute(run_id=services.inference_run_create(user=doctor, series=series, model=model).pk)
    assert run.status == InferenceRun.Status.SUCCEEDED and run.segmentation.needs_review is False


@pytest.mark.django_db
def test_classical_model_stores_no_uncertainty(doctor, small_ct_study, ct_lung_model):
    from annotation import services
    from annotation.models import InferenceRun
    from tests.helpers import api_client

    series = small_ct_study.series.get()
    run = services.inference_run_execute(
        run_id=services.inference_run_create(user=doctor, series=series, model=ct_lung_model).pk)
    assert run.status == InferenceRun.Status.SUCCEEDED, run.error_message
    segmentation = run.segmentation
    assert not segmentation.uncertainty_file and segmentation.label_confidence == {} and not segmentation.needs_review
    assert api_client(doctor).get(reverse("segmentation-uncertainty", args=[segmentation.pk])).status_code == 404
