"""ONNX / TorchScript export and import, and ONNX Runtime as a second backend of the one sliding-window path."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from annotation.imaging.formats import read_volume
from annotation.imaging.overlap import dice_per_label
from annotation.ml.exchange import (
    OnnxNetwork,
    export_onnx,
    export_torchscript,
    inspect_onnx,
    load_torchscript,
    probe_network,
    quantize_onnx_int8,
)
from annotation.ml.inference import NetworkSegmenter, Preprocessing, load_segmenter
from annotation.ml.networks import build_network
from tests.conftest import shared_data

CPU = torch.device("cpu")
SMALL_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
PRE = Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=(32, 32, 32))
METADATA = {"preprocessing": PRE.to_dict(), "label_table": [{"index": 1, "name": "anterior", "color": "#e6550d"}]}


@pytest.fixture(scope="module")
def hippocampus_volume():
    root = shared_data("msd_task04_hippocampus")
    return read_volume(root / "imagesTr" / "hippocampus_001.nii.gz", modality="MR")


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network("unet", in_channels=1, out_channels=3, config=SMALL_UNET).eval()


@pytest.fixture(scope="module")
def onnx_files(network, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = folder / "model.onnx"
    export_onnx(network, fp32, patch_size=PRE.patch_size, metadata=METADATA)
    int8 = folder / "model-int8.onnx"
    quantize_onnx_int8(fp32, int8)
    return fp32, int8


@pytest.fixture(scope="module")
def torch_labels(network, hippocampus_volume):
    labels = NetworkSegmenter(network, PRE, device=CPU)(hippocampus_volume)
    # The random network marks every class on this case, so agreement below is not trivial.
    assert min(np.bincount(labels.ravel(), minlength=3) / labels.size) > 0.05
    return labels


def test_exported_onnx_passes_the_checker_with_dynamic_axes_and_metadata(onnx_files):
    fp32, _ = onnx_files
    onnx.checker.check_model(onnx.load(str(fp32)), full_check=True)

    info = inspect_onnx(fp32)

    assert info.spatial_shape == (None, None, None)
    assert info.out_channels == 3
    assert info.metadata == METADATA
    assert not info.quantized


def test_onnx_runtime_segments_a_hippocampus_like_pytorch(onnx_files, hippocampus_volume, torch_labels):
    fp32, _ = onnx_files

    labels = NetworkSegmenter(OnnxNetwork(fp32), PRE, device=CPU)(hippocampus_volume)

    assert labels.shape == hippocampus_volume.array.shape
    dice = dice_per_label(labels, torch_labels, [1, 2])
    assert min(dice.values()) >= 0.99, dice


def test_load_segmenter_runs_an_onnx_file_through_onnx_runtime(onnx_files, hippocampus_volume, torch_labels):
    fp32, _ = onnx_files

    segmenter = load_segmenter(architecture="onnx", network_config={}, preprocessing=PRE.to_dict(), num_classes=3,
                               weights_path=fp32, device=CPU)
    labels = segmenter(hippocampus_volume)

    assert isinstance(segmenter.network, OnnxNetwork)
    assert segmenter.network.providers[-1] == "CPUExecutionProvider"
    assert min(dice_per_label(labels, torch_labels, [1, 2]).values()) >= 0.99


def test_int8_quantisation_shrinks_the_file_and_keeps_the_segmentation_close(
    onnx_files, hippocampus_volume, torch_labels
):
    fp32, int8 = onnx_files

    info = inspect_onnx(int8)
    labels = NetworkSegmenter(OnnxNetwork(int8), PRE, device=CPU)(hippocampus_volume)

    assert info.quantized and info.metadata == METADATA
    assert int8.stat().st_size < 0.8 * fp32.stat().st_size  # transposed convolutions stay float32
    # 8-bit weights move some boundary voxels; the label map stays close to the float one.
    assert min(dice_per_label(labels, torch_labels, [1, 2]).values()) >= 0.9


def test_torchscript_export_round_trips_with_its_description(network, tmp_path, hippocampus_volume, torch_labels):
    path = tmp_path / "model.ts"
    export_torchscript(network, path, metadata=METADATA)

    module, metadata = load_torchscript(path)
    labels = NetworkSegmenter(module, PRE, device=CPU)(hippocampus_volume)

    assert metadata == METADATA
    np.testing.assert_array_equal(labels, torch_labels)


# --- bad files --------------------------------------------------------------------------------------


def test_rejects_a_file_that_is_not_an_onnx_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"this is a text file, not a protobuf\n" * 10)

    with pytest.raises(ValueError, match="not an ONNX model"):
        inspect_onnx(path)
    with pytest.raises(ValueError, match="not an ONNX model"):
        OnnxNetwork(path)


def test_rejects_an_onnx_model_of_the_wrong_input_rank(tmp_path):
    two_d = torch.nn.Conv2d(1, 3, 3, padding=1).eval()
    path = tmp_path / "slice.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(two_d, (torch.zeros(1, 1, 16, 16),), str(path), dynamo=False)

    with pytest.raises(ValueError, match="rank 4.*rank 5"):
        inspect_onnx(path)


def test_rejects_an_onnx_model_with_several_input_channels(tmp_path):
    path = tmp_path / "two-channel.onnx"
    conv = torch.nn.Conv3d(2, 3, 3, padding=1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv, (torch.zeros(1, 2, 8, 8, 8),), str(path), dynamo=False)

    with pytest.raises(ValueError, match="2 input channels"):
        inspect_onnx(path)


def test_rejects_an_onnx_graph_the_checker_refuses(onnx_files, tmp_path):
    fp32, _ = onnx_files
    model = onnx.load(str(fp32))
    model.graph.node[0].op_type = "NoSuchOperator"
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))

    with pytest.raises(ValueError, match="fails the ONNX checker"):
        inspect_onnx(path)


def test_rejects_a_torchscript_file_that_does_not_load(network, tmp_path):
    state_dict = tmp_path / "weights.pt"
    torch.save(network.state_dict(), state_dict)

    with pytest.raises(ValueError, match="cannot load TorchScript model weights.pt"):
        load_torchscript(state_dict)


def test_probe_refuses_a_network_whose_classes_do_not_match_the_labels(network):
    probe_network(network, patch_size=(16, 16, 16), num_classes=3)

    with pytest.raises(ValueError, match="returns 3 channels but the labels need 5"):
        probe_network(network, patch_size=(16, 16, 16), num_classes=5)


def test_probe_refuses_a_patch_the_network_cannot_take(network):
    with pytest.raises(ValueError, match="does not run on a"):
        probe_network(torch.nn.Conv2d(1, 3, 3), patch_size=(16, 16, 16), num_classes=3)


def test_probe_refuses_nan_logits():
    class NanNetwork(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x * float("nan")] * 2, dim=1)

    with pytest.raises(ValueError, match="NaN"):
        probe_network(NanNetwork(), patch_size=(8, 8, 8), num_classes=2)

