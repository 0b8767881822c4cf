"""One-click segmentation through the run row, as the Celery worker executes it."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from annotation import services
from annotation.models import InferenceRun, SegmentationModel
from annotation.selectors import segmentation_model_by_name
from diagnosis.models import Measurement
from tests.helpers import api_client
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def lidc_series(doctor, hospital):
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    result = services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001", paths=[folder])
    return result.series[0]


def test_one_click_lung_segmentation_of_the_lidc_chest_ct(doctor, lidc_series, django_capture_on_commit_callbacks):
    model = segmentation_model_by_name(name="ct-lung")
    client = api_client(doctor)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("series-inference-runs", args=[lidc_series.pk]), {"model": model.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 2  # enqueue + notify, both only after commit

    run = services.inference_run_execute(run_id=response.json()["id"])

    assert run.status == InferenceRun.Status.SUCCEEDED, run.error_message
    assert run.progress_percent == 100.0 and run.device == "cpu"
    label_map = services.segmentation_labelmap_load(run.segmentation)
    assert label_map.shape == tuple(lidc_series.shape)
    assert set(np.unique(label_map)) == {0, 1, 2}
    rows = {m.label: m for m in Measurement.objects.filter(segmentation=run.segmentation)}
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert 800 < row.volume_ml < 4500  # adult lung volumes on a clinical CT
        assert row.mean_intensity < -600  # aerated lung parenchyma in HU
    # LPS: x grows towards the patient's left, so the right lung lies at smaller x.
    assert rows[1].centroid_lps_mm[0] < rows[2].centroid_lps_mm[0]
    detail = client.get(reverse("inference-run-detail", args=[run.pk])).json()
    assert detail["status"] == "succeeded" and detail["segmentation_id"] == run.segmentation_id
    measurements = client.get(reverse("segmentation-measurements", args=[run.segmentation_id])).json()
    assert [s["label"] for s in measurements["segments"]] == [1, 2]


def test_cancelling_a_queued_run_stops_it_before_it_starts(doctor, small_ct_study):
    series = small_ct_study.series.get()
    run = services.inference_run_create(user=doctor, series=series, model=segmentation_model_by_name(name="ct-lung"))
    response = api_client(doctor).post(reverse("inference-run-cancel", args=[run.pk]))
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert services.inference_run_execute(run_id=run.pk).status == "cancelled"
    assert run.series.segmentations.count() == 0
    again = api_client(doctor).post(reverse("inference-run-cancel", args=[run.pk]))
    assert again.status_code == 409


def test_a_run_that_fails_records_its_message(doctor, small_ct_study):
    broken = SegmentationModel.objects.create(
        name="broken-unet", body_part="chest", modality="CT", architecture="unet",
        label_table=[{"index": 1, "name": "x", "color": "#ff0000"}], weights_file="models/missing/nothing.pt",
        weights_sha256="0" * 64,
    )
    series = small_ct_study.series.get()
    run = services.inference_run_create(user=doctor, series=series, model=broken)
    run = services.inference_run_execute(run_id=run.pk)
    assert run.status == InferenceRun.Status.FAILED
    assert run.error_message
    assert series.segmentations.count() == 0


def test_a_model_for_another_modality_is_refused(doctor, small_ct_study):
    mr_model = SegmentationModel.objects.create(
        name="mr-only", body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "x", "color": "#ff0000"}],
    )
    series = small_ct_study.series.get()
    response = api_client(doctor).post(reverse("series-inference-runs", args=[series.pk]), {"model": mr_model.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "modality_mismatch"


def test_unknown_model_is_not_found(doctor, small_ct_study):
    series = small_ct_study.series.get()
    response = api_client(doctor).post(reverse("series-inference-runs", args=[series.pk]), {"model": 99999}, format="json")
    assert response.status_code == 404


def test_segment_and_export_commands(doctor, small_ct_study, tmp_path):
    import json
    from io import StringIO

    import SimpleITK as sitk
    from django.core.management import call_command

    series = small_ct_study.series.get()
    out = StringIO()
    call_command("segment", str(series.pk), "--model", "ct-lung", "--inline", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["status"] == "succeeded"
    target = tmp_path / "seg.nii.gz"
    call_command("export_segmentation", str(payload["segmentation_id"]), "--format", "nii.gz", "--out", str(target), stdout=StringIO())
    exported = sitk.ReadImage(str(target))
    assert list(reversed(exported.GetSize())) == series.shape
    assert exported.GetSpacing() == pytest.approx(tuple(reversed(series.spacing_mm)))
    assert exported.GetOrigin() == pytest.approx(tuple(series.origin_mm), abs=1e-3)
    measured = StringIO()
    call_command("measure", str(payload["segmentation_id"]), "--json", stdout=measured)
    assert json.loads(measured.getvalue())["segmentation_id"] == payload["segmentation_id"]
