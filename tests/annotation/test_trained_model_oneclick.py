"""The platform trains a network on labelled MRIs and runs it through the same one-click path on a
case it did not train on (Medical Segmentation Decathlon Task04, hippocampus)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.management import call_command

from annotation import services
from annotation.imaging.overlap import dice_per_label
from annotation.models import InferenceRun, SegmentationModel
from tests.conftest import shared_data

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TRAIN_CASES = 80


def _subset(root: Path, dest: Path, names: list[str]) -> Path:
    """An MSD folder of links to ``names`` (nothing is copied)."""
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["training"] = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in names]
    dataset["numTraining"] = len(names)
    (dest / "dataset.json").write_text(json.dumps(dataset))
    for n in names:
        (dest / "imagesTr" / n).symlink_to(root / "imagesTr" / n)
        (dest / "labelsTr" / n).symlink_to(root / "labelsTr" / n)
    return dest


def test_trained_unet_segments_an_unseen_hippocampus_through_one_click(doctor, hospital, tmp_path):
    root = shared_data("msd_task04_hippocampus")
    names = sorted(p.name for p in (root / "imagesTr").glob("*.nii.gz"))
    held_out = names[-1]
    data = _subset(root, tmp_path / "msd", names[:TRAIN_CASES])

    out = StringIO()
    call_command(
        "train_segmentation", "--data", str(data), "--architecture", "unet", "--epochs", "4",
        "--name", "hippocampus-test", "--body-part", "brain", "--patch", "48,64,48", "--json", stdout=out,
    )
    trained = json.loads(out.getvalue())
    model = SegmentationModel.objects.get(pk=trained["model_id"])
    assert model.modality == "MR" and model.weights_sha256 and model.validation_metrics["mean_dice"] > 0.5
    assert [entry["index"] for entry in model.label_table] == [1, 2]

    imported = services.study_import(
        user=doctor, hospital=hospital, patient_mrn="HIPPO-1", paths=[root / "imagesTr" / held_out], modality="MR"
    )
    series = imported.series[0]
    run = services.inference_run_create(user=doctor, series=series, model=model)
    run = services.inference_run_execute(run_id=run.pk)
    assert run.status == InferenceRun.Status.SUCCEEDED, run.error_message

    prediction = services.segmentation_labelmap_load(run.segmentation)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr" / held_out)))
    assert prediction.shape == truth.shape
    dice = dice_per_label(prediction, truth, [1, 2])
    # Four epochs on 64 cases; nnU-Net reaches about 0.90 with full training (Isensee et al., 2021).
    assert np.mean(list(dice.values())) >= 0.6, dice
