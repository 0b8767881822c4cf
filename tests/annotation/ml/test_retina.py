"""The RetinaNet detector's plain-Python parts: its config, the network it builds, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotation.imaging.volume import Geometry, Volume
from annotation.ml.retina import (
    RetinaNetConfig,
    RetinaNetNoduleDetector,
    build_retinanet_detector,
    load_retinanet_checkpoint,
    save_retinanet_checkpoint,
)

TINY = {"block_inplanes": [4, 8, 16, 32], "fpn_channels": 8, "base_anchor_shapes": [[4, 6, 6]],
        "preprocessing": {"target_spacing_mm": None, "intensity": "hu_window", "hu_window": [-1000, 400],
                          "patch_size": [16, 32, 32]}, "score_thresh": 0.0, "detections_per_img": 2}


@pytest.mark.parametrize("bad, message", [
    ({"block": "dense"}, "block must be 'basic' or 'bottleneck'"),
    ({"layers": [1, 1, 1]}, "layers must be 4 positive integers"),
    ({"returned_layers": [1, 5], "feature_map_scales": [1, 2, 4]}, "returned_layers must be in 1..4"),
    ({"feature_map_scales": [1, 2]}, "feature_map_scales must be 3 positive integers"),
    ({"base_anchor_shapes": [[4, 6]]}, "base_anchor_shapes must be 3 positive integers"),
    ({"overlap": 1.0}, "overlap must be in"),
    ({"preprocessing": {"target_spacing_mm": None, "patch_size": [0, 8, 8]}}, "patch_size"),
    ({"weights": "x"}, "unknown retinanet config keys"),
])
def test_config_refuses_bad_values_with_the_field_named(bad, message):
    with pytest.raises(ValueError, match=message):
        RetinaNetConfig.from_dict({**TINY, **bad})


def test_config_round_trips_through_json_lists():
    config = RetinaNetConfig.from_dict(TINY)
    again = RetinaNetConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict()["base_anchor_shapes"] == [[4, 6, 6]]


def test_network_has_monai_backbone_with_fpn_keys_and_the_configured_widths():
    detector = build_retinanet_detector(RetinaNetConfig.from_dict(TINY))
    keys = detector.network.state_dict()
    # BackboneWithFPN's names, so a checkpoint of MONAI's own extractor loads too.
    assert "feature_extractor.body.conv1.weight" in keys and "feature_extractor.body.layer2.0.conv1.weight" in keys
    assert keys["feature_extractor.fpn.inner_blocks.0.weight"].shape[:2] == (8, 4)
    assert "feature_extractor.body.layer3.0.conv1.weight" not in keys  # layers after the last returned one are cut
    out = detector.network(torch.zeros(1, 1, 16, 32, 32))
    # Three pyramid levels (two returned stages + max pooling), one anchor per position.
    assert len(out[detector.network.cls_key]) == 3


def test_checkpoint_with_other_widths_is_refused_naming_the_mismatch(tmp_path):
    config = RetinaNetConfig.from_dict(TINY)
    path = save_retinanet_checkpoint(build_retinanet_detector(config), config, tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match="do not fit the RetinaNet its config describes"):
        load_retinanet_checkpoint(path, {**TINY, "fpn_channels": 16})
    detector, loaded = load_retinanet_checkpoint(path)
    assert loaded == config and not detector.training


def test_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read RetinaNet checkpoint junk.pt"):
        load_retinanet_checkpoint(path)
    with pytest.raises(ValueError, match="not found"):
        load_retinanet_checkpoint(tmp_path / "missing.pt")


def test_detector_refuses_a_non_ct_volume():
    config = RetinaNetConfig.from_dict(TINY)
    detector = RetinaNetNoduleDetector(build_retinanet_detector(config), config, device=torch.device("cpu"))
    volume = Volume(array=np.zeros((16, 32, 32), dtype=np.float32),
                    geometry=Geometry(shape=(16, 32, 32), spacing_mm=(1.0, 1.0, 1.0)), modality="MR")
    with pytest.raises(ValueError, match="needs CT in Hounsfield units, got modality 'MR'"):
        detector(volume)


def test_boxes_map_to_the_input_grid_through_the_affine():
    """A volume with spacing 2 × 1 × 1 mm: boxes found on the same grid (no resampling) keep their centre
    index, and their extent in mm is the voxel extent times the spacing."""
    config = RetinaNetConfig.from_dict(TINY)
    torch.manual_seed(0)
    detector = RetinaNetNoduleDetector(build_retinanet_detector(config), config, device=torch.device("cpu"))
    geometry = Geometry(shape=(16, 32, 32), spacing_mm=(2.0, 1.0, 1.0), origin_mm=(-10.0, 5.0, 30.0))
    volume = Volume(array=np.full((16, 32, 32), -800, dtype=np.float32), geometry=geometry, modality="CT")
    with torch.no_grad():  # the same image as the volume after the HU window
        raw = detector.detector([torch.full((1, 16, 32, 32), 200.0 / 1400.0)], use_inferer=True)[0]
    boxes = detector.boxes(volume)
    assert len(boxes) == len(raw["boxes"]) >= 1
    first = raw["boxes"][int(torch.argmax(raw["labels_scores"]))].numpy()
    expected_centre = (first[:3] + first[3:]) / 2
    np.testing.assert_allclose(boxes[0].centre_index, expected_centre, atol=1e-3)
    extent = (first[3:] - first[:3]) * np.array([2.0, 1.0, 1.0])
    np.testing.assert_allclose(boxes[0].extent_mm, extent, atol=0.01)
    assert boxes[0].long_axis_mm == pytest.approx(max(extent[1:]), abs=0.01)
