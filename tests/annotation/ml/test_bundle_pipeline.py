"""The allowlist check of a bundle's preprocessing/inferer/postprocessing sections, and the in-memory image
fed to them, without Django (plain-Python package annotation.ml.bundle_pipeline)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from annotation.imaging.formats import read_volume
from annotation.ml.bundle_pipeline import (
    BundleSegmenter,
    bundle_pipeline_validate,
    pipeline_patch_size,
    volume_to_loadimage_tensor,
)
from annotation.ml.networks import build_network
from tests.conftest import shared_data

CONFIG = {
    "preprocessing": {"_target_": "monai.transforms.Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [2.0, 2.0, 2.0], "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "_desc_": "z-score"},
        {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"},
    ]},
    "inferer": {"_target_": "monai.inferers.SimpleInferer"},
    "postprocessing": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "device": "@device"},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": [1, 2]},
    ],
}


def test_accepts_the_allowlisted_sections_as_plain_data():
    pipeline = bundle_pipeline_validate(CONFIG)

    assert [t["_target_"] for t in pipeline["preprocessing"]] == [
        "LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd", "NormalizeIntensityd", "CropForegroundd"]
    assert "_desc_" not in pipeline["preprocessing"][4]
    assert pipeline["inferer"] == {"_target_": "SimpleInferer"}
    assert pipeline_patch_size(pipeline) == (96, 96, 96)
    assert pipeline["postprocessing"][1]["transform"] == "@preprocessing"


def test_a_config_without_preprocessing_keeps_the_portal_path():
    exported = {"network_def": {"_target_": "UNet"}, "inferer": {"_target_": "SlidingWindowInferer"},
                "portal_preprocessing": {"intensity": "zscore"}}

    assert bundle_pipeline_validate(exported) is None


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda c: c["preprocessing"]["transforms"][3].update(pixdim="$[1, 1, 1]"), r"#3#pixdim: the expression"),
    (lambda c: c["preprocessing"]["transforms"][3].update(_target_="torch.load"), r"#3#_target_: 'torch.load'"),
    (lambda c: c["preprocessing"]["transforms"][3].update(_requires_="@x"), r"#3#_requires_: not accepted"),
    (lambda c: c["postprocessing"][0].update(_mode_="partial"), r"#0#_mode_"),
    (lambda c: c["postprocessing"][1].update(transform="@postprocessing"), r"#1#transform: the reference"),
    (lambda c: c["postprocessing"][1].update(transform=None), r"Invertd must invert"),
    (lambda c: c["postprocessing"][0].update(softmax="@network"), r"cannot be given to a transform the portal runs"),
    (lambda c: c["postprocessing"][0].update(other={"_target_": "Compose"}), r"#other#_target_: a nested"),
    (lambda c: c["inferer"].update(roi_size=float("nan")), r"inferer#roi_size"),
    (lambda c: c.pop("preprocessing"), r"postprocessing: the bundle has this section but no preprocessing"),
    (lambda c: c["preprocessing"]["transforms"][2].pop("keys"), r"#2: cannot build Orientationd"),
    (lambda c: c["preprocessing"]["transforms"][3].update(pixdim=[0.001, 1, 1]), r"#3#pixdim: .* out of range"),
    (lambda c: c["inferer"].update(_target_="SlidingWindowInferer", roi_size=[4096, 96, 96]), r"roi_size: .* out of"),
])
def test_refuses_and_names_the_offending_key(mutate, match):
    config = copy.deepcopy(CONFIG)
    mutate(config)

    with pytest.raises(ValueError, match=match):
        bundle_pipeline_validate(config)


def test_in_memory_image_is_what_loadimaged_reads_from_the_file():
    from monai.transforms import LoadImaged

    path = shared_data("msd_task04_hippocampus") / "imagesTr" / "hippocampus_003.nii.gz"
    loaded = LoadImaged(keys="image", image_only=True)({"image": str(path)})["image"]

    ours = volume_to_loadimage_tensor(read_volume(path))

    assert tuple(ours.shape) == tuple(loaded.shape) == (34, 52, 35)
    np.testing.assert_allclose(ours.numpy(), loaded.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.affine.numpy(), loaded.affine.numpy(), atol=1e-5)


def test_segmenter_returns_a_label_map_on_the_input_grid_with_its_uncertainty():
    path = shared_data("msd_task04_hippocampus") / "imagesTr" / "hippocampus_003.nii.gz"
    volume = read_volume(path)
    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3,
                            config={"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1})
    config = copy.deepcopy(CONFIG)
    config["inferer"] = {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1}

    result = BundleSegmenter(network, bundle_pipeline_validate(config), device=torch.device("cpu")) \
        .segment_with_uncertainty(volume)

    assert result.label_map.shape == volume.array.shape and result.label_map.dtype == np.uint8
    assert set(np.unique(result.label_map)) <= {0, 1, 2}
    assert result.uncertainty.shape == volume.array.shape and 0 <= result.uncertainty.min() <= 1


def test_active_learning_can_score_a_series_with_a_bundle_segmenter():
    from annotation.ml.uncertainty import segmenter_uncertainty

    volume = read_volume(shared_data("msd_task04_hippocampus") / "imagesTr" / "hippocampus_003.nii.gz")
    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3,
                            config={"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1})
    config = copy.deepcopy(CONFIG)
    config["inferer"] = {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1}
    segmenter = BundleSegmenter(network, bundle_pipeline_validate(config), device=torch.device("cpu"))

    result = segmenter_uncertainty(segmenter, volume, method="entropy")

    assert result.method == "entropy" and 0.0 < result.score <= 1.0
