"""A MONAI model-zoo bundle made outside the portal runs with its own preprocessing, inferer and
postprocessing: one-click `segment` gives the label map MONAI itself gives for the same config (a trusted
ConfigParser run in the test), not the one of the portal's default preprocessing; a config that would run
code or build anything outside the allowlist is refused and registers nothing (MSD Task04 hippocampus)."""

from __future__ import annotations

import copy
import json
import shutil
from io import StringIO

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import translation

from annotation import services
from annotation.ml.networks import build_network
from annotation.models import Segmentation, SegmentationModel
from portal.models import Role
from tests.conftest import shared_data
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CASE = "hippocampus_003"
SMALL_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
LABELS_ARG = "1=anterior,2=posterior"
NETWORK_DEF = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, **SMALL_UNET}

# A model-zoo style config with non-default values: RAS orientation, 1.5 mm voxels (the image has 1 mm),
# an intensity window of [0, 600] to [0, 1], a 24³ sliding window; softmax, Invertd, argmax, saving.
CONFIG = {
    "imports": ["$import torch"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "device": "$torch.device('cpu')",
    "network_def": NETWORK_DEF,
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 1.5], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 600, "b_min": 0.0,
         "b_max": 1.0, "clip": True},
        {"_target_": "EnsureTyped", "keys": "image"},
    ]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [24, 24, 24], "sw_batch_size": 2, "overlap": 0.5},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
         "separate_folder": False},
    ]},
}


def _write_bundle(root, config, *, seed: int = 0):
    """Write a bundle folder in model-zoo layout (configs/, models/model.pt) and return it."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0", "name": root.name}),
                                                   encoding="utf-8")
    torch.manual_seed(seed)
    network = build_network("unet", in_channels=1, out_channels=3, config=SMALL_UNET)
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def _zip(root):
    return shutil.make_archive(str(root), "zip", root.parent, root.name)


@pytest.fixture
def bundle(tmp_path):
    return _write_bundle(tmp_path / "hippo_zoo", CONFIG)


@pytest.fixture
def hippocampus_series(doctor, hospital):
    root = shared_data("msd_task04_hippocampus")
    imported = services.study_import(user=doctor, hospital=hospital, patient_mrn="HIPPO-ZOO",
                                     paths=[root / "imagesTr" / f"{CASE}.nii.gz"], modality="MR")
    return imported.series[0]


def _command(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def _segment(series, model_name: str) -> np.ndarray:
    out = StringIO()
    call_command("segment", str(series.pk), "--model", model_name, "--inline", stdout=out)
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded", result
    return services.segmentation_labelmap_load(Segmentation.objects.get(pk=result["segmentation_id"]))


def _monai_reference(root, image_path, output_dir) -> np.ndarray:
    """The trusted run: MONAI's ConfigParser evaluates the bundle's own config on the NIfTI file."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    parser["output_dir"] = str(output_dir)
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer")
    postprocessing = parser.get_parsed_content("postprocessing")
    data = preprocessing({"image": str(image_path)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    data = postprocessing(data)
    # LoadImaged gives the NIfTI's (i, j, k) axes; the portal's label maps are (k, j, i).
    return np.transpose(np.asarray(data["pred"][0]), (2, 1, 0)).astype(np.int64)


def _registry() -> list[tuple]:
    return list(SegmentationModel.objects.order_by("pk").values_list(
        "pk", "name", "version", "architecture", "weights_sha256", "network_config", "preprocessing"))


# --- the bundle's sections are honoured -----------------------------------------------------------------


def test_one_click_matches_monai_running_the_bundle_config(bundle, hippocampus_series, tmp_path):
    image = shared_data("msd_task04_hippocampus") / "imagesTr" / f"{CASE}.nii.gz"

    imported = _command("import_model", _zip(bundle), "--name", "hippo-zoo", "--modality", "MR",
                        "--body-part", "brain", "--labels", LABELS_ARG)
    portal = _segment(hippocampus_series, "hippo-zoo")
    reference = _monai_reference(bundle, image, tmp_path / "eval")

    model = SegmentationModel.objects.get(pk=imported["model_id"])
    assert model.architecture == SegmentationModel.Architecture.BUNDLE
    assert model.provenance["preprocessing_source"] == "bundle"
    pipeline = model.network_config["bundle_pipeline"]
    assert [t["_target_"] for t in pipeline["preprocessing"]][3:5] == ["Spacingd", "ScaleIntensityRanged"]
    assert pipeline["inferer"]["roi_size"] == [24, 24, 24]
    assert portal.shape == reference.shape == (35, 52, 34)  # (k, j, i) of the 34×52×35 NIfTI
    assert min((reference == label).mean() for label in (0, 1, 2)) > 0.01  # every class present: a real comparison
    assert np.array_equal(portal, reference), f"{(portal != reference).sum()} voxels differ"
    stored = Segmentation.objects.filter(series=hippocampus_series, model=model).get()
    assert stored.uncertainty_file and set(stored.label_confidence) == {"1", "2"}  # entropy map and confidences stored


def test_the_bundle_sections_change_the_result_against_the_portal_default(bundle, hippocampus_series):
    _command("import_model", _zip(bundle), "--name", "hippo-zoo", "--modality", "MR",
             "--body-part", "brain", "--labels", LABELS_ARG)
    services.segmentation_model_register(
        name="hippo-default", body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "anterior", "color": "#e6550d"},
                     {"index": 2, "name": "posterior", "color": "#3182bd"}],
        network_config=SMALL_UNET, weights_path=bundle / "models" / "model.pt",
        preprocessing={"target_spacing_mm": None, "intensity": "zscore", "hu_window": None,
                       "patch_size": [24, 24, 24]})

    by_bundle = _segment(hippocampus_series, "hippo-zoo")
    by_default = _segment(hippocampus_series, "hippo-default")

    assert by_bundle.shape == by_default.shape
    assert (by_bundle != by_default).mean() > 0.05


def test_a_bundle_without_invertd_is_brought_back_onto_the_series_grid(tmp_path, hippocampus_series):
    config = copy.deepcopy(CONFIG)
    config["postprocessing"]["transforms"] = [{"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]
    root = _write_bundle(tmp_path / "no_invert", config)

    _command("import_model", str(root), "--name", "hippo-noinv", "--modality", "MR",
             "--body-part", "brain", "--labels", LABELS_ARG)
    labels = _segment(hippocampus_series, "hippo-noinv")

    assert labels.shape == (35, 52, 34)  # (k, j, i) of the 34×52×35 NIfTI, not the 1.5 mm grid
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_export_refuses_a_bundle_model_whose_preprocessing_lives_in_its_sections(bundle, tmp_path):
    _command("import_model", _zip(bundle), "--name", "hippo-zoo", "--modality", "MR",
             "--body-part", "brain", "--labels", LABELS_ARG)

    for fmt in ("onnx", "torchscript", "bundle"):
        with translation.override("en"), pytest.raises(CommandError, match="use the original bundle"):
            call_command("export_model", "hippo-zoo", "--format", fmt, "--out", str(tmp_path / f"out.{fmt}"))
        assert not (tmp_path / f"out.{fmt}").exists()


# --- forbidden constructs ---------------------------------------------------------------------------------


def _mutate(path: str, value):
    def apply(config):
        node = config
        keys = path.split("#")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return config
    return apply


FORBIDDEN = [
    ("preprocessing#transforms#4#a_min", "$__import__('os').system('true')", r"preprocessing#transforms#4#a_min"),
    ("preprocessing#transforms#2#_target_", "RandFlipd", r"preprocessing#transforms#2#_target_: 'RandFlipd'"),
    ("preprocessing#transforms#2#_target_", "monai.apps.utils.download_url",
     r"preprocessing#transforms#2#_target_: 'monai.apps.utils.download_url'"),
    ("preprocessing#transforms#2#_requires_", "@network", r"preprocessing#transforms#2#_requires_"),
    ("postprocessing#transforms#0#_mode_", "callable", r"postprocessing#transforms#0#_mode_"),
    ("postprocessing#transforms#1#transform", "@network_def#channels", r"postprocessing#transforms#1#transform"),
    ("preprocessing#transforms#3#pixdim", "%configs/other.json#pixdim", r"preprocessing#transforms#3#pixdim"),
    ("inferer", "$monai.inferers.SlidingWindowInferer(roi_size=[24, 24, 24])", r"inferer: expected an object"),
    ("inferer#_target_", "monai.inferers.utils.sliding_window_inference", r"inferer#_target_"),
    ("preprocessing#transforms", "$@transforms", r"preprocessing#transforms: expected a list"),
]


@pytest.mark.parametrize(("path", "value", "match"), FORBIDDEN, ids=[f[0] + "=" + str(f[1])[:20] for f in FORBIDDEN])
def test_import_refuses_a_config_that_runs_code_or_leaves_the_allowlist(tmp_path, doctor, path, value, match):
    config = _mutate(path, value)(copy.deepcopy(CONFIG))
    root = _write_bundle(tmp_path / "evil", config)
    before = _registry()

    with translation.override("en"), pytest.raises(CommandError, match=match):
        call_command("import_model", _zip(root), "--name", "hippo-evil", "--modality", "MR", "--body-part", "brain",
                     "--labels", LABELS_ARG)

    assert _registry() == before
    assert not SegmentationModel.objects.filter(name="hippo-evil").exists()


def test_import_refuses_the_onnx_backend_for_a_bundle_with_its_own_sections(bundle):
    before = _registry()

    with translation.override("en"), pytest.raises(CommandError, match="only with the PyTorch backend"):
        call_command("import_model", _zip(bundle), "--name", "hippo-zoo", "--modality", "MR", "--body-part", "brain",
                     "--labels", LABELS_ARG, "--backend", "onnx")

    assert _registry() == before


# --- the web page -----------------------------------------------------------------------------------------


@pytest.fixture
def hospital_admin(hospital):
    return UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)


def _upload(client, path, name):
    with open(path, "rb") as handle:
        upload = SimpleUploadedFile("hippo_zoo.zip", handle.read())
    return client.post(reverse("annotation:model-import"), {
        "file": upload, "name": name, "modality": "MR", "body_part": "brain", "labels": LABELS_ARG})


def test_admin_imports_a_zoo_bundle_through_the_page_and_the_card_says_from_the_bundle(hospital_admin, bundle):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(hospital_admin)

    response = _upload(client, _zip(bundle), "hippo-zoo-web")

    model = SegmentationModel.objects.get(name="hippo-zoo-web")
    assert response.status_code == 302 and response["Location"] == reverse("annotation:model-card", args=[model.pk])
    assert model.network_config["bundle_pipeline"]["inferer"]["_target_"] == "SlidingWindowInferer"
    card = client.get(response["Location"]).content.decode()
    assert "Preprocessing: from the bundle" in card and "ScaleIntensityRanged" in card and "Invertd" in card


def test_page_refuses_a_bundle_with_an_expression_and_names_the_key(hospital_admin, tmp_path):
    config = _mutate("preprocessing#transforms#4#a_max", "$600 + 0")(copy.deepcopy(CONFIG))
    root = _write_bundle(tmp_path / "evil", config)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(hospital_admin)
    before = _registry()

    response = _upload(client, _zip(root), "hippo-evil-web")

    assert response.status_code == 400
    assert "preprocessing#transforms#4#a_max" in response.content.decode()
    assert _registry() == before


def test_card_in_chinese_says_preprocessing_from_the_bundle(hospital_admin, bundle):
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(hospital_admin)

    response = _upload(client, _zip(bundle), "hippo-zoo-zh")

    card = client.get(response["Location"]).content.decode()
    assert "预处理：来自 bundle 本身" in card
