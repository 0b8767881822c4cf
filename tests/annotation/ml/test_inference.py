"""NetworkSegmenter pipeline, progress and cancellation, and loading models of every kind."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
import torch

from annotation.imaging.overlap import dice_per_label
from annotation.imaging.volume import Geometry, Volume
from annotation.ml.inference import (
    InferenceCancelled,
    LungSegmenter,
    NetworkSegmenter,
    Preprocessing,
    Segmenter,
    count_window_batches,
    load_segmenter,
)
from annotation.ml.networks import build_network
from tests.conftest import shared_data

CPU = torch.device("cpu")
SMALL_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
PATCH = (16, 16, 16)


def _oblique_direction() -> tuple[float, ...]:
    """Columns: axis k → patient left-ish, j → superior, i → anterior-ish, rotated 0.3 rad about z."""
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    permutation = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return tuple((rotation @ permutation).ravel())


def _sphere_volume(shape, spacing, direction, radius_mm=12.0, seed=0) -> Volume:
    geometry = Geometry(shape=shape, spacing_mm=spacing, origin_mm=(10.0, -20.0, 5.0), direction=direction)
    index = np.stack(np.indices(shape), axis=-1).reshape(-1, 3)
    lps = geometry.index_to_lps(index)
    centre = geometry.index_to_lps(np.asarray(shape) / 2.0)
    inside = (np.linalg.norm(lps - centre, axis=1) <= radius_mm).reshape(shape)
    noise = np.random.default_rng(seed).normal(0, 1, shape)
    array = np.where(inside, 100.0, -100.0) + noise
    return Volume(array=array.astype(np.float32), geometry=geometry)


class _SignNetwork(torch.nn.Module):
    """Class 1 where the (preprocessed) input is positive: a network whose right answer is known."""

    def forward(self, x):
        return torch.cat([-x, x], dim=1)


class _CountingNetwork(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def _small_unet(seed=0, out_channels=3):
    torch.manual_seed(seed)
    return build_network("unet", in_channels=1, out_channels=out_channels, config=SMALL_UNET)


# --- Preprocessing -------------------------------------------------------------------------------


def test_preprocessing_round_trips_through_json():
    pre = Preprocessing(
        target_spacing_mm=(2.5, 0.7, 0.7), intensity="hu_window", hu_window=(-1000, 400), patch_size=(32, 64, 64)
    )

    again = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))

    assert again == pre
    assert again.target_spacing_mm == (2.5, 0.7, 0.7) and again.patch_size == (32, 64, 64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_spacing_mm": (1.0, 0.0, 1.0)},
        {"target_spacing_mm": None, "intensity": "minmax"},
        {"target_spacing_mm": None, "intensity": "hu_window"},
        {"target_spacing_mm": None, "intensity": "hu_window", "hu_window": (400, -1000)},
        {"target_spacing_mm": None, "patch_size": (96, 96)},
        {"target_spacing_mm": None, "patch_size": (96.5, 96, 96)},
    ],
)
def test_preprocessing_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        Preprocessing(**kwargs)


def test_preprocessing_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({"target_spacing_mm": None, "spacing": [1, 1, 1]})


# --- windows, progress and cancellation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "overlap", "sw_batch_size"),
    [((40, 37, 20), 0.25, 1), ((16, 16, 16), 0.25, 1), ((10, 50, 33), 0.5, 3), ((64, 64, 64), 0.0, 2)],
)
def test_window_count_matches_monai(size, overlap, sw_batch_size):
    from monai.inferers import sliding_window_inference

    counter = _CountingNetwork(torch.nn.Identity())
    sliding_window_inference(torch.zeros(1, 1, *size), PATCH, sw_batch_size, counter, overlap=overlap)

    assert count_window_batches(size, PATCH, overlap, sw_batch_size) == counter.calls


def test_progress_is_monotonic_and_reaches_100():
    volume = _sphere_volume((30, 40, 36), (1.0, 1.0, 1.0), Geometry((1, 1, 1), (1, 1, 1)).direction)
    segmenter = NetworkSegmenter(_small_unet(), Preprocessing(target_spacing_mm=None, patch_size=PATCH), device=CPU)
    reports = []

    segmenter(volume, lambda percent, stage: reports.append((percent, stage)))

    percents = [p for p, _ in reports]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0 and percents[0] == 0.0
    stages = [s for _, s in reports]
    assert stages.index("inference") > stages.index("preprocessing")
    assert stages.index("postprocessing") > max(i for i, s in enumerate(stages) if s == "inference")
    windows = count_window_batches((30, 40, 36), PATCH, 0.25, 1)
    assert stages.count("inference") >= windows > 1


def test_cancelling_from_the_callback_stops_after_the_current_window_batch():
    network = _CountingNetwork(_small_unet())
    volume = _sphere_volume((30, 40, 36), (1.0, 1.0, 1.0), Geometry((1, 1, 1), (1, 1, 1)).direction)
    segmenter = NetworkSegmenter(network, Preprocessing(target_spacing_mm=None, patch_size=PATCH), device=CPU)
    assert count_window_batches((30, 40, 36), PATCH, 0.25, 1) > 10

    def cancel_once_a_window_ran(percent, stage):
        if stage == "inference" and network.calls >= 1:
            raise InferenceCancelled("stop")

    with pytest.raises(InferenceCancelled):
        segmenter(volume, cancel_once_a_window_ran)
    assert network.calls == 1


# --- geometry of post_transforms -----------------------------------------------------------------


def test_label_map_has_the_exact_input_shape_on_an_anisotropic_oblique_volume():
    volume = _sphere_volume((23, 41, 30), (3.0, 0.8, 1.3), _oblique_direction())
    segmenter = NetworkSegmenter(
        _small_unet(), Preprocessing(target_spacing_mm=(1.5, 1.5, 1.5), patch_size=(32, 32, 32)), device=CPU
    )

    data = segmenter.pre_transforms(volume)
    logits = segmenter.inferer(data["image"])
    labels = segmenter.post_transforms(data, logits)

    assert data["image"].shape[1:] != volume.array.shape  # the network grid differs...
    assert labels.shape == volume.array.shape  # ...and the result is back on the input grid
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_reorientation_is_inverted_voxel_for_voxel():
    # Orientation only permutes and flips axes, so a per-voxel network must come back exactly.
    volume = _sphere_volume((23, 41, 30), (3.0, 0.8, 1.3), _oblique_direction())
    pre = Preprocessing(target_spacing_mm=None, intensity="none", patch_size=(32, 32, 32))
    segmenter = NetworkSegmenter(_SignNetwork(), pre, device=CPU)

    labels = segmenter(volume)

    np.testing.assert_array_equal(labels, (volume.array > 0).astype(np.uint8))


def test_resampling_is_inverted_onto_the_input_grid():
    volume = _sphere_volume((23, 41, 30), (3.0, 0.8, 1.3), _oblique_direction())
    pre = Preprocessing(target_spacing_mm=(1.2, 1.2, 1.2), intensity="none", patch_size=(32, 32, 32))
    segmenter = NetworkSegmenter(_SignNetwork(), pre, device=CPU)

    labels = segmenter(volume)

    assert labels.shape == volume.array.shape
    assert dice_per_label(labels, (volume.array > 0).astype(np.uint8), [1])[1] > 0.9


def test_network_sees_the_tensor_training_prepared_from_the_nifti_file():
    import SimpleITK as sitk

    from annotation.imaging.volume import volume_from_sitk
    from annotation.ml import training
    from monai.transforms import Compose

    root = shared_data("msd_task04_hippocampus")
    image_path, label_path = root / "imagesTr" / "hippocampus_003.nii.gz", root / "labelsTr" / "hippocampus_003.nii.gz"
    pre = Preprocessing(target_spacing_mm=(1.2, 0.9, 1.1), patch_size=(48, 64, 48))

    trained_on = Compose(training._base_transforms(pre))({"image": str(image_path), "label": str(label_path)})["image"]
    segmenter = NetworkSegmenter(_small_unet(), pre, device=CPU)
    inferred_on = segmenter.pre_transforms(volume_from_sitk(sitk.ReadImage(str(image_path))))["image"]

    assert trained_on.shape == inferred_on.shape
    torch.testing.assert_close(trained_on.as_tensor(), inferred_on.as_tensor(), atol=1e-5, rtol=0)
    torch.testing.assert_close(trained_on.affine, inferred_on.affine)


# --- load_segmenter ------------------------------------------------------------------------------


def _reference_output(network, volume, pre):
    return NetworkSegmenter(network, pre, device=CPU)(volume)


@pytest.fixture
def small_case():
    volume = _sphere_volume((20, 24, 28), (2.0, 1.0, 1.5), Geometry((1, 1, 1), (1, 1, 1)).direction)
    pre = Preprocessing(target_spacing_mm=None, patch_size=PATCH)
    network = _small_unet(seed=3).eval()
    return volume, pre, network


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "data_parallel"])
def test_loads_checkpoints_in_common_layouts(tmp_path, small_case, layout):
    volume, pre, network = small_case
    state = network.state_dict()
    payload = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer_name": "adam"},
        "data_parallel": {f"module.{k}": v for k, v in state.items()},
    }[layout]
    path = tmp_path / "weights.pt"
    torch.save(payload, path)

    segmenter = load_segmenter(
        architecture="unet", network_config=SMALL_UNET, preprocessing=pre.to_dict(), num_classes=3,
        weights_path=path, device=CPU,
    )

    assert isinstance(segmenter, Segmenter)
    np.testing.assert_array_equal(segmenter(volume), _reference_output(network, volume, pre))


def test_rejects_unknown_architecture(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        load_segmenter(architecture="nnformer", network_config={}, preprocessing={"target_spacing_mm": None},
                       num_classes=2, weights_path=tmp_path / "x.pt", device=CPU)


def test_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(ValueError, match="weights not found"):
        load_segmenter(architecture="unet", network_config=SMALL_UNET, preprocessing={"target_spacing_mm": None},
                       num_classes=3, weights_path=tmp_path / "absent.pt", device=CPU)
    with pytest.raises(ValueError, match="needs a weights file"):
        load_segmenter(architecture="segresnet", network_config={}, preprocessing={"target_spacing_mm": None},
                       num_classes=3, weights_path=None, device=CPU)


def test_rejects_weights_that_do_not_fit_the_network(tmp_path, small_case):
    _, pre, network = small_case
    path = tmp_path / "weights.pt"
    torch.save(network.state_dict(), path)

    # Other widths: every tensor shape differs.
    with pytest.raises(ValueError, match="do not fit the network"):
        narrower = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
        load_segmenter(architecture="unet", network_config=narrower, preprocessing=pre, num_classes=3,
                       weights_path=path, device=CPU)
    # Four classes instead of three: the output layer's shape differs.
    with pytest.raises(ValueError, match="size mismatch"):
        load_segmenter(architecture="unet", network_config=SMALL_UNET, preprocessing=pre, num_classes=4,
                       weights_path=path, device=CPU)


def test_rejects_files_that_hold_no_state_dict(tmp_path, small_case):
    _, pre, _ = small_case
    not_weights = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "note": "no weights here"}, not_weights)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")

    with pytest.raises(ValueError, match="holds no state_dict"):
        load_segmenter(architecture="unet", network_config=SMALL_UNET, preprocessing=pre, num_classes=3,
                       weights_path=not_weights, device=CPU)
    with pytest.raises(ValueError, match="cannot read weights file"):
        load_segmenter(architecture="unet", network_config=SMALL_UNET, preprocessing=pre, num_classes=3,
                       weights_path=garbage, device=CPU)


def test_torchscript_round_trip(tmp_path, small_case):
    volume, pre, network = small_case
    path = tmp_path / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates TorchScript in favour of torch.export
        torch.jit.save(torch.jit.script(network), str(path))
        segmenter = load_segmenter(architecture="torchscript", network_config={}, preprocessing=pre, num_classes=3,
                                   weights_path=path, device=CPU)
        labels = segmenter(volume)

    np.testing.assert_array_equal(labels, _reference_output(network, volume, pre))


def _write_bundle(root, network, network_def=None):
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {
        "num_classes": 3,
        "network_def": network_def
        or {
            "_target_": "monai.networks.nets.UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": "@num_classes",
            **SMALL_UNET,
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(PATCH)},
    }
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def test_bundle_folder_round_trip(tmp_path, small_case):
    volume, pre, network = small_case
    bundle = _write_bundle(tmp_path / "hippocampus_unet", network)

    segmenter = load_segmenter(architecture="bundle", network_config={}, preprocessing=pre, num_classes=3,
                               weights_path=bundle, device=CPU)

    np.testing.assert_array_equal(segmenter(volume), _reference_output(network, volume, pre))


def test_bundle_zip_round_trip(tmp_path, small_case):
    volume, pre, network = small_case
    bundle = _write_bundle(tmp_path / "src" / "hippocampus_unet", network)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in bundle.rglob("*"):
            zf.write(path, path.relative_to(bundle.parent))

    segmenter = load_segmenter(architecture="bundle", network_config={}, preprocessing=pre, num_classes=3,
                               weights_path=archive, device=CPU)

    np.testing.assert_array_equal(segmenter(volume), _reference_output(network, volume, pre))


@pytest.mark.parametrize(
    ("network_def", "message"),
    [
        ({"_target_": "monai.networks.nets.UNet", "spatial_dims": "$__import__('os').getpid()"}, "expression"),
        ({"_target_": "subprocess.Popen", "args": ["true"]}, "only build monai.networks"),
    ],
)
def test_bundle_rejects_network_definitions_that_run_code(tmp_path, small_case, network_def, message):
    _, pre, network = small_case
    bundle = _write_bundle(tmp_path / "evil", network, network_def=network_def)

    with pytest.raises(ValueError, match=message):
        load_segmenter(architecture="bundle", network_config={}, preprocessing=pre, num_classes=3,
                       weights_path=bundle, device=CPU)


def test_bundle_without_weights_is_rejected(tmp_path, small_case):
    _, pre, network = small_case
    bundle = _write_bundle(tmp_path / "b", network)
    (bundle / "models" / "model.pt").unlink()

    with pytest.raises(ValueError, match="no models/model.pt"):
        load_segmenter(architecture="bundle", network_config={}, preprocessing=pre, num_classes=3,
                       weights_path=bundle, device=CPU)


def test_classical_lung_needs_no_weights():
    segmenter = load_segmenter(architecture="classical_lung", network_config={}, preprocessing={}, num_classes=3,
                               weights_path=None, device=CPU)

    assert isinstance(segmenter, LungSegmenter)
    assert isinstance(segmenter, Segmenter)
