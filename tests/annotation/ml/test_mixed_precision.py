"""Mixed precision only where CUDA is present (issue 18): the CPU trains and infers in float32 with
neither autocast nor a gradient scaler, and the CUDA path is chosen from the device alone (checked
here without a GPU)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch

from annotation.imaging.formats import read_volume
from annotation.interop.msd import dataset_read
from annotation.ml import training
from annotation.ml.device import amp_autocast, amp_enabled, amp_grad_scaler
from annotation.ml.inference import NetworkSegmenter, Preprocessing
from annotation.ml.networks import build_network
from tests.conftest import shared_data

CPU = torch.device("cpu")
TINY_UNET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}
PATCH = (16, 16, 16)


class _PrecisionProbe:
    """Forward hook recording, for each call, whether autocast was on and the output's dtype."""

    def __init__(self):
        self.calls: list[tuple[bool, bool, torch.dtype]] = []

    def __call__(self, _module, _inputs, output):
        self.calls.append((torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda"), output.dtype))


def _no_scaler(*args, **kwargs):
    raise AssertionError("a GradScaler was created for CPU training")


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_cpu_gets_no_autocast_and_no_scaler(device):
    assert amp_enabled(device) is False
    assert amp_grad_scaler(device) is None
    context = amp_autocast(device)
    assert isinstance(context, contextlib.nullcontext)
    with context:
        assert not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_devices_select_autocast_and_a_grad_scaler(device):
    # Only the device type is read, so the CUDA choice is checked on a machine without a GPU; torch
    # warns (and disables them) when CUDA is absent, which is what a CPU-only build should do.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        context, scaler = amp_autocast(device), amp_grad_scaler(device)
    assert amp_enabled(device) is True
    assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == torch.float16
    assert isinstance(scaler, torch.amp.GradScaler)


def test_cpu_training_runs_float32_without_autocast_or_scaler(monkeypatch):
    cases = list(dataset_read(shared_data("msd_task04_hippocampus")).cases[:3])
    probe = _PrecisionProbe()
    real_build = training.build_network

    def build_with_probe(*args, **kwargs):
        network = real_build(*args, **kwargs)
        network.register_forward_hook(probe)
        return network

    monkeypatch.setattr(training, "build_network", build_with_probe)
    monkeypatch.setattr(torch.amp, "GradScaler", _no_scaler)
    config = training.TrainingConfig(network_config=TINY_UNET, batch_size=2, epochs=1,
                                     preprocessing=Preprocessing(target_spacing_mm=None, patch_size=PATCH))

    result = training.train_segmentation(cases[:2], cases[2:], labels={1: "Anterior", 2: "Posterior"},
                                         config=config, device=CPU)

    assert result.device == "cpu" and np.isfinite(result.history[0]["loss"])
    assert probe.calls, "the network was never called"
    # Training steps and the validation sliding window alike: no autocast, float32 logits.
    assert {call for call in probe.calls} == {(False, False, torch.float32)}


def test_cpu_inference_runs_float32_without_autocast():
    case = dataset_read(shared_data("msd_task04_hippocampus")).cases[0]
    network = build_network("unet", in_channels=1, out_channels=3, config=TINY_UNET)
    probe = _PrecisionProbe()
    network.register_forward_hook(probe)
    segmenter = NetworkSegmenter(network, Preprocessing(target_spacing_mm=None, patch_size=PATCH), device=CPU)
    volume = read_volume(case.image)

    logits = segmenter.inferer(segmenter.pre_transforms(volume)["image"])

    assert segmenter.uses_amp is False
    assert logits.dtype == torch.float32 and probe.calls
    assert {call for call in probe.calls} == {(False, False, torch.float32)}


def test_inference_chooses_autocast_for_a_torch_network_on_cuda_only(tmp_path):
    from annotation.ml.exchange import OnnxNetwork, export_onnx

    network = build_network("unet", in_channels=1, out_channels=3, config=TINY_UNET)
    pre = Preprocessing(target_spacing_mm=None, patch_size=PATCH)
    torch_segmenter = NetworkSegmenter(network, pre, device=CPU)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(network, onnx_path, patch_size=PATCH)
    onnx_segmenter = NetworkSegmenter(OnnxNetwork(onnx_path), pre, device=CPU)
    assert torch_segmenter.uses_amp is False and onnx_segmenter.uses_amp is False

    # The choice reads the device type: a segmenter whose device is CUDA would autocast its PyTorch
    # network, never an ONNX Runtime session (set here without moving anything to a GPU).
    torch_segmenter.device = onnx_segmenter.device = torch.device("cuda")
    assert torch_segmenter.uses_amp is True and onnx_segmenter.uses_amp is False
