"""AttentionUnet and SwinUNETR: they build, keep the input's spatial shape, refuse sizes they cannot
take with a clear message, and AttentionUnet trains through the portal's training loop."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from annotation.ml.inference import Preprocessing
from annotation.ml.networks import ARCHITECTURES, build_network, check_patch_size
from annotation.ml.training import TrainingConfig, train_segmentation

CPU = torch.device("cpu")
TINY_SWIN = {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [3, 6, 12, 24]}
TINY_ATTENTION = {"channels": [4, 8, 16], "strides": [2, 2]}


def test_the_new_architectures_are_offered():
    assert {"attentionunet", "swinunetr"} <= set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("architecture", "config", "shape"),
    [
        ("attentionunet", TINY_ATTENTION, (2, 1, 16, 24, 32)),
        ("swinunetr", TINY_SWIN, (1, 1, 64, 64, 96)),
    ],
)
def test_forward_pass_gives_logits_of_shape_n_c_d_h_w(architecture, config, shape):
    torch.manual_seed(0)
    network = build_network(architecture, in_channels=1, out_channels=3, config=config).eval()

    with torch.no_grad():
        logits = network(torch.randn(*shape))

    assert logits.shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("feature_size", [16, 0, 6, "24"])
def test_swinunetr_refuses_a_feature_size_that_is_not_a_multiple_of_12(feature_size):
    with pytest.raises(ValueError, match="feature_size that is a positive multiple of 12"):
        build_network("swinunetr", in_channels=1, out_channels=2, config={"feature_size": feature_size})


@pytest.mark.parametrize("patch", [(96, 96, 40), (32, 32, 32), (100, 96, 96)])
def test_swinunetr_refuses_a_patch_size_not_divisible_by_32(patch):
    with pytest.raises(ValueError, match="divisible by 32"):
        check_patch_size("swinunetr", patch)


def test_other_networks_take_any_patch_size():
    check_patch_size("unet", (40, 40, 40))
    check_patch_size("attentionunet", (48, 40, 56))
    check_patch_size("swinunetr", (64, 96, 128))


def test_training_config_refuses_a_swinunetr_patch_before_any_work():
    with pytest.raises(ValueError, match="swinunetr needs a patch size divisible by 32"):
        TrainingConfig(architecture="swinunetr", preprocessing=Preprocessing(target_spacing_mm=None,
                                                                           patch_size=(48, 48, 48)), epochs=1)


def _write_case(folder, name, rng):
    """A 24³ volume with a bright cube (label 1) and noise; spacing 1 mm."""
    image = rng.normal(0.0, 0.2, (24, 24, 24)).astype(np.float32)
    label = np.zeros((24, 24, 24), np.uint8)
    label[6:16, 8:18, 5:15] = 1
    image[label == 1] += 1.0
    image_path, label_path = folder / f"{name}_img.nii.gz", folder / f"{name}_seg.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(image_path))
    sitk.WriteImage(sitk.GetImageFromArray(label), str(label_path))
    return image_path, label_path


def test_attention_unet_trains_through_the_training_loop(tmp_path):
    rng = np.random.default_rng(0)
    cases = [_write_case(tmp_path, f"case{i}", rng) for i in range(3)]
    config = TrainingConfig(
        architecture="attentionunet", network_config=TINY_ATTENTION, epochs=2, batch_size=2,
        preprocessing=Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=(16, 16, 16)),
    )

    result = train_segmentation(cases[:2], cases[2:], labels={1: "cube"}, config=config, device=CPU)

    assert result.architecture == "attentionunet"
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert set(result.val_dice_per_label) == {1} and 0.0 <= result.val_dice_per_label[1] <= 1.0
    network = build_network("attentionunet", in_channels=1, out_channels=2, config=result.network_config)
    network.load_state_dict(result.state_dict)  # the stored config rebuilds the trained network
