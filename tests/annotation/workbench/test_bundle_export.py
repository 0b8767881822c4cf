"""A registered MONAI network exports as a bundle that MONAI itself loads, with TorchScript."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
from django.urls import reverse

from annotation import services
from annotation.ml.networks import build_network
from annotation.models import SegmentationModel
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

CONFIG = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


@pytest.fixture
def unet_model(tmp_path, hospital):
    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3, config=CONFIG)
    weights = tmp_path / "weights.pt"
    torch.save(network.state_dict(), weights)
    return services.segmentation_model_register(
        name="hippo-test", body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "Anterior", "color": "#ff0000"}, {"index": 2, "name": "Posterior", "color": "#00ff00"}],
        network_config=CONFIG, preprocessing={"intensity": "zscore", "patch_size": [16, 16, 16], "target_spacing_mm": None},
        weights_path=weights, hospital=hospital,
    ), network


def test_bundle_loads_in_monai_and_torchscript_gives_the_same_logits(doctor, unet_model, tmp_path):
    from monai.bundle import ConfigParser

    model, network = unet_model
    torch.set_num_threads(1)
    response = api_client(doctor).get(reverse("segmentation-model-bundle", args=[model.pk]))

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path)
    [root] = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "configs").exists()]
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    assert metadata["label_names"] == {"0": "background", "1": "Anterior", "2": "Posterior"}

    parser = ConfigParser()
    parser.read_config(root / "configs" / "inference.json")
    parser.read_meta(root / "configs" / "metadata.json")
    loaded = parser.get_parsed_content("network_def")
    loaded.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    scripted = torch.jit.load(str(root / "models" / "model.ts"))
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        expected = network.eval()(x)
        torch.testing.assert_close(loaded.eval()(x), expected)
        torch.testing.assert_close(scripted(x), expected)

    from annotation.ml.inference import load_segmenter

    segmenter = load_segmenter(architecture="bundle", network_config={}, preprocessing=model.preprocessing,
                               num_classes=3, weights_path=root, device=torch.device("cpu"))
    assert segmenter is not None


def test_classical_model_cannot_be_exported_and_other_hospitals_get_404(doctor, other_doctor, unet_model):
    lung = SegmentationModel.objects.get(name="ct-lung")
    response = api_client(doctor).get(reverse("segmentation-model-bundle", args=[lung.pk]))
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_exportable"
    model, _ = unet_model
    assert api_client(other_doctor).get(reverse("segmentation-model-bundle", args=[model.pk])).status_code == 404
