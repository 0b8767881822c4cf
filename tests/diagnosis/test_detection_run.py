"""One-click lung-nodule detection: the registered ct-lung-nodule model run like a segmentation, its
objects stored as suggested findings, and the `detect` command's JSON contract."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.utils import translation
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import InferenceRun, SegmentationModel
from annotation.selectors import segmentation_model_by_name
from diagnosis.models import Finding
from tests.conftest import shared_data
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

# Centroid of the one nodule all four LIDC-IDRI-0001 readers outlined (mean of their contours, LPS mm).
LIDC_NODULE_LPS_MM = np.array([56.2, 86.2, -115.9])


@pytest.fixture
def lidc_series(doctor, hospital):
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001", paths=[folder])
    return result.series[0]


@pytest.fixture
def mr_series(doctor, hospital):
    folder = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MR-1", paths=[folder])
    return result.series[0]


def test_the_classical_detector_is_registered_as_a_detection_model(doctor):
    model = segmentation_model_by_name(name="ct-lung-nodule")
    assert model.kind == SegmentationModel.Kind.DETECTION and model.modality == "CT"
    assert segmentation_model_by_name(name="ct-lung").kind == SegmentationModel.Kind.SEGMENTATION
    listed = api_client(doctor).get(reverse("segmentation-model-list")).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert {m["name"]: m["kind"] for m in rows}["ct-lung-nodule"] == "detection"


def test_detect_command_finds_the_readers_nodule_on_lidc_idri_0001(doctor, lidc_series):
    out = StringIO()
    call_command("detect", str(lidc_series.pk), "--model", "ct-lung-nodule", "--inline", "--json", stdout=out)
    payload = json.loads(out.getvalue())  # exactly one JSON object
    assert payload["status"] == "succeeded"
    findings = payload["findings"]
    assert findings, payload
    for finding in findings:
        assert {"id", "centroid_lps_mm", "long_axis_mm", "short_axis_mm", "volume_ml", "composition",
                "confidence"} <= set(finding)
        assert 0.0 <= finding["confidence"] <= 1.0
    top = findings[0]
    assert np.linalg.norm(np.asarray(top["centroid_lps_mm"]) - LIDC_NODULE_LPS_MM) < 5.0
    assert 15.0 < top["long_axis_mm"] < 35.0 and top["short_axis_mm"] <= top["long_axis_mm"]
    assert top["composition"] == "solid" and top["side"] == "left"  # LPS x > 0: the patient's left
    assert top["confidence"] == max(f["confidence"] for f in findings)

    stored = Finding.objects.get(pk=top["id"])
    assert stored.status == Finding.Status.SUGGESTED and stored.source == Finding.Source.DETECTOR
    assert stored.source_name == "ct-lung-nodule" and stored.segmentation_id == payload["segmentation_id"]
    run = InferenceRun.objects.get(pk=payload["run_id"])
    assert run.progress_percent == 100.0 and run.stage == "done"
    listed = api_client(doctor).get(reverse("study-findings", args=[lidc_series.study_id])).json()["results"]
    assert [f["id"] for f in listed] == [f["id"] for f in findings]


def test_detection_on_an_mr_series_is_refused_with_a_clear_message(doctor, mr_series):
    with translation.override("en"), pytest.raises(CommandError, match="ct-lung-nodule is for CT; this series is MR"):
        call_command("detect", str(mr_series.pk), "--model", "ct-lung-nodule", "--inline", "--json", stdout=StringIO())
    model = segmentation_model_by_name(name="ct-lung-nodule")
    response = api_client(doctor).post(reverse("series-inference-runs", args=[mr_series.pk]), {"model": model.pk},
                                       format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "modality_mismatch"
    assert not InferenceRun.objects.exists() and not Finding.objects.exists()


def test_detect_refuses_a_segmentation_model(small_ct_study):
    series = small_ct_study.series.get()
    with pytest.raises(CommandError, match="not a detector"):
        call_command("detect", str(series.pk), "--model", "ct-lung", "--inline", stdout=StringIO())
    assert not InferenceRun.objects.exists()


def test_a_ct_without_lungs_fails_the_run_with_its_reason(doctor, hospital, tmp_path):
    import nibabel as nib

    # Soft tissue in air, no lung: what an abdominal CT below the lung bases shows.
    hu = np.full((64, 64, 20), -1000, dtype=np.int16)
    hu[8:56, 8:56, :] = 40
    path = tmp_path / "abdomen.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([-1.5, -1.5, 3.0, 1.0])), path)
    study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="ABD-1", paths=[path],
                                             modality="CT").studies[0]
    series = study.series.get()
    with pytest.raises(CommandError):
        call_command("detect", str(series.pk), "--model", "ct-lung-nodule", "--inline", "--json", stdout=StringIO())
    run = InferenceRun.objects.get(series=series)
    assert run.status == InferenceRun.Status.FAILED and "no lung" in run.error_message
    assert not Finding.objects.exists()
