"""A trained detection network (MONAI RetinaNet) registered through the model registry replaces the
classical detector in the same one-click path: ``detect SERIES --model NAME`` picks the backend from
the registered architecture. A tiny, untrained network keeps the test fast on the CPU; the contract
(findings, positions, sizes, confidences) is what is checked, not the network's accuracy."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.utils import translation
import torch
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation import services as annotation_services
from annotation.ml.retina import RetinaNetConfig, build_retinanet_detector, save_retinanet_checkpoint
from annotation.models import InferenceRun, SegmentationModel
from diagnosis.models import Finding
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db

TINY = dict(
    block_inplanes=[4, 8, 16, 32], fpn_channels=8, conv1_t_stride=[2, 2, 2],
    base_anchor_shapes=[[4, 6, 6], [8, 10, 10]], size_divisible=[16, 16, 16],
    preprocessing={"target_spacing_mm": [5.0, 4.0, 4.0], "intensity": "hu_window", "hu_window": [-1024.0, 500.0],
                   "patch_size": [32, 64, 64]},
    # Untrained scores sit near sigmoid(prior) ≈ 0.01: keep every box, at most three.
    score_thresh=0.0, detections_per_img=3,
)
LABELS = [{"index": 1, "name": "lung nodule", "name_zh": "肺结节", "color": "#d95f02"}]


def _register(path, **overrides):
    fields = dict(name="tiny", body_part="chest", modality="CT", architecture="retinanet", kind="detection",
                  label_table=LABELS, weights_path=path)
    fields.update(overrides)
    return annotation_services.segmentation_model_register(**fields)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = RetinaNetConfig.from_dict(TINY)
    return save_retinanet_checkpoint(build_retinanet_detector(config), config, tmp_path / "tiny.pt")


@pytest.fixture
def lidc_series(doctor, hospital):
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                              paths=[folder])
    return result.series[0]


@pytest.fixture
def mr_series(doctor, hospital):
    folder = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MR-1", paths=[folder])
    return result.series[0]


def test_registering_a_checkpoint_stores_its_config_and_kind(tiny_checkpoint):
    model = _register(tiny_checkpoint)
    assert model.kind == SegmentationModel.Kind.DETECTION and model.architecture == "retinanet"
    assert model.network_config["fpn_channels"] == 8 and model.network_config["block_inplanes"] == [4, 8, 16, 32]
    assert model.preprocessing["patch_size"] == [32, 64, 64] and model.weights_sha256


def test_detect_runs_the_registered_retinanet_on_lidc_idri_0001(doctor, lidc_series, tiny_checkpoint):
    model = _register(tiny_checkpoint)
    out = StringIO()
    call_command("detect", str(lidc_series.pk), "--model", "tiny", "--inline", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["status"] == "succeeded", payload
    assert payload["model"] == "tiny" and payload["model_version"] == model.version
    findings = payload["findings"]
    assert 1 <= len(findings) <= 3
    volume = annotation_services.series_volume_load(lidc_series)
    shape = np.asarray(volume.array.shape)
    for finding in findings:
        assert {"id", "centroid_lps_mm", "long_axis_mm", "short_axis_mm", "volume_ml", "composition",
                "confidence"} <= set(finding)
        assert 0.0 <= finding["confidence"] <= 1.0
        assert finding["volume_ml"] > 0 and 0 < finding["short_axis_mm"] <= finding["long_axis_mm"]
        index = volume.geometry.lps_to_index(np.asarray(finding["centroid_lps_mm"]))
        assert np.all(index >= -0.5) and np.all(index <= shape - 0.5), (finding["centroid_lps_mm"], index)
        assert finding["details"]["box"]["segmentation"] in ("region_growing", "box_ellipsoid")
    confidences = [f["confidence"] for f in findings]
    assert confidences == sorted(confidences, reverse=True)
    stored = Finding.objects.get(pk=findings[0]["id"])
    assert stored.source == Finding.Source.DETECTOR and stored.source_name == "tiny"
    assert InferenceRun.objects.get(pk=payload["run_id"]).stage == "done"


def test_a_checkpoint_whose_config_does_not_fit_its_weights_is_refused_and_nothing_is_registered(tmp_path):
    config = RetinaNetConfig.from_dict(TINY)
    detector = build_retinanet_detector(config)
    wrong = RetinaNetConfig.from_dict({**TINY, "block_inplanes": [8, 16, 32, 64]})
    path = tmp_path / "mismatch.pt"
    torch.save({"state_dict": detector.network.state_dict(), "config": json.dumps(wrong.to_dict())}, path)
    with pytest.raises(ValidationError, match="do not fit the RetinaNet"):
        _register(path)
    assert not SegmentationModel.objects.filter(name="tiny").exists()


def test_a_checkpoint_without_config_or_with_an_unknown_key_is_refused(tmp_path):
    detector = build_retinanet_detector(RetinaNetConfig.from_dict(TINY))
    bare = tmp_path / "bare.pt"
    torch.save(detector.network.state_dict(), bare)
    with pytest.raises(ValidationError, match="has no RetinaNet config"):
        _register(bare)
    with pytest.raises(ValidationError, match="unknown retinanet config keys"):
        _register(bare, network_config={**TINY, "depth": 50})
    assert not SegmentationModel.objects.filter(name="tiny").exists()


def test_a_bundle_folder_zip_registers_like_a_checkpoint(tmp_path, tiny_checkpoint):
    import shutil
    import zipfile

    root = tmp_path / "tiny_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "retinanet.json").write_text(json.dumps(TINY))
    state = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    torch.save(state, root / "models" / "model.pt")
    archive = shutil.make_archive(str(tmp_path / "tiny_bundle"), "zip", tmp_path, "tiny_bundle")
    assert zipfile.is_zipfile(archive)
    model = _register(archive)
    assert model.weights_file.name.endswith(".zip") and model.network_config["fpn_channels"] == 8


def test_the_retinanet_refuses_an_mr_series(doctor, mr_series, tiny_checkpoint):
    _register(tiny_checkpoint)
    with translation.override("en"), pytest.raises(CommandError, match="tiny is for CT; this series is MR"):
        call_command("detect", str(mr_series.pk), "--model", "tiny", "--inline", "--json", stdout=StringIO())
    assert not InferenceRun.objects.filter(model__name="tiny").exists()


def test_register_detector_command_registers_a_bundle_folder_and_refuses_a_config_that_does_not_fit(tmp_path,
                                                                                                     tiny_checkpoint):
    root = tmp_path / "bundle"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "retinanet.json").write_text(json.dumps(TINY))
    torch.save(torch.load(tiny_checkpoint, weights_only=True)["state_dict"], root / "models" / "model.pt")
    out = StringIO()
    call_command("register_detector", "--name", "tiny-bundle", "--weights", str(root), "--json", stdout=out)
    registered = json.loads(out.getvalue())
    model = SegmentationModel.objects.get(pk=registered["model_id"])
    assert model.kind == "detection" and model.architecture == "retinanet" and model.weights_file.name.endswith(".zip")

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**TINY, "fpn_channels": 16}))
    with pytest.raises(CommandError, match="do not fit the RetinaNet"):
        call_command("register_detector", "--name", "tiny-wrong", "--weights", str(tiny_checkpoint),
                     "--config", str(wrong), stdout=StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("register_detector", "--name", "tiny-wrong", "--weights", str(tmp_path / "nope.pt"),
                     stdout=StringIO())
    assert not SegmentationModel.objects.filter(name="tiny-wrong").exists()
