"""Datasets, Dice, checkpoints, and training a UNet that then works through the one-click path."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import torch

from annotation.imaging.overlap import dice_per_label
from annotation.imaging.volume import Geometry, Volume, volume_from_sitk
from annotation.interop.msd import dataset_read, read_nifti_pairs
from annotation.ml.inference import InferenceCancelled, NetworkSegmenter, Preprocessing, load_segmenter
from annotation.ml.networks import build_network
from annotation.ml.training import (
    TrainingConfig,
    TrainingResult,
    save_checkpoint,
    train_segmentation,
)
from tests.conftest import shared_data

CPU = torch.device("cpu")


# --- datasets --------------------------------------------------------------------------------------


def test_reads_the_hippocampus_msd_dataset():
    dataset = dataset_read(shared_data("msd_task04_hippocampus"))

    assert len(dataset.cases) == 220
    assert dataset.label_names == {1: "Anterior", 2: "Posterior"}
    assert dataset.modality == "MR"  # dataset.json's "MRI" as a DICOM modality code
    image, label = dataset.cases[0]
    assert image.name == label.name == "hippocampus_001.nii.gz"
    assert image.parent.name == "imagesTr" and label.parent.name == "labelsTr"


def _fake_msd(root, images=("a.nii.gz", "b.nii.gz"), labels=("a.nii.gz", "b.nii.gz"), meta=True):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for name in images:
        (root / "imagesTr" / name).write_bytes(b"")
    for name in labels:
        (root / "labelsTr" / name).write_bytes(b"")
    if meta:
        training = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in images if not n.startswith(".")]
        labels_json = {"0": "background", "1": "liver"}
        meta = {"name": "Fake", "modality": {"0": "CT"}, "labels": labels_json, "training": training}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_reads_a_minimal_msd_layout_and_ignores_hidden_files(tmp_path):
    root = _fake_msd(tmp_path / "Task", images=("a.nii.gz", "b.nii.gz", "._a.nii.gz"))

    dataset = dataset_read(root)

    assert [i.name for i, _ in dataset.cases] == ["a.nii.gz", "b.nii.gz"]
    assert dataset.label_names == {1: "liver"} and dataset.modality == "CT" and dataset.name == "Fake"


def test_rejects_a_folder_without_dataset_json(tmp_path):
    with pytest.raises(ValueError, match="dataset.json is missing"):
        dataset_read(_fake_msd(tmp_path / "Task", meta=False))


def test_rejects_a_folder_without_labels_tr(tmp_path):
    root = _fake_msd(tmp_path / "Task")
    for path in (root / "labelsTr").iterdir():
        path.unlink()
    (root / "labelsTr").rmdir()

    with pytest.raises(ValueError, match="labelsTr is missing"):
        dataset_read(root)


def test_rejects_unpaired_files(tmp_path):
    with pytest.raises(ValueError, match="unpaired files: 1 image"):
        dataset_read(_fake_msd(tmp_path / "Task", images=("a.nii.gz", "b.nii.gz"), labels=("a.nii.gz",)))


def test_pairs_nnunet_channel_suffix_with_plain_label_names(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("case1_0000.nii.gz", "case2.nii"):
        (tmp_path / "images" / name).write_bytes(b"")
    for name in ("case1.nii.gz", "case2.nii"):
        (tmp_path / "labels" / name).write_bytes(b"")

    pairs = read_nifti_pairs(tmp_path / "images", tmp_path / "labels")

    assert [(i.name, l.name) for i, l in pairs] == [("case1_0000.nii.gz", "case1.nii.gz"), ("case2.nii", "case2.nii")]


# --- Dice ------------------------------------------------------------------------------------------


def test_dice_per_label_matches_a_hand_computed_example():
    prediction = np.array([0, 1, 1, 2, 2, 0])
    truth = np.array([0, 1, 2, 2, 0, 0])

    scores = dice_per_label(prediction, truth, [1, 2, 3])

    assert scores[1] == pytest.approx(2 * 1 / (2 + 1))
    assert scores[2] == pytest.approx(2 * 1 / (2 + 2))
    assert scores[3] == 1.0  # absent from both


def test_dice_rejects_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        dice_per_label(np.zeros((2, 2)), np.zeros((2, 3)), [1])


# --- configuration and checkpoints ----------------------------------------------------------------


def test_training_config_needs_preprocessing_and_epochs():
    with pytest.raises(TypeError):
        TrainingConfig(epochs=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="epochs"):
        TrainingConfig(preprocessing=Preprocessing(target_spacing_mm=None), epochs=0)


def test_rejects_training_without_cases():
    config = TrainingConfig(preprocessing=Preprocessing(target_spacing_mm=None), epochs=1)
    with pytest.raises(ValueError, match="at least one case"):
        train_segmentation([], [], labels={1: "x"}, config=config, device=CPU)


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    network_config = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
    torch.manual_seed(0)
    network = build_network("unet", in_channels=1, out_channels=3, config=network_config).eval()
    pre = Preprocessing(target_spacing_mm=(1.0, 1.0, 1.0), intensity="zscore", patch_size=(16, 16, 16))
    result = TrainingResult(
        state_dict=network.state_dict(), network_config=network_config, preprocessing=pre,
        val_dice_per_label={1: 0.8, 2: 0.7}, mean_dice=0.75, history=[], num_train=1, num_val=1,
        duration_s=1.0, device="cpu", architecture="unet", labels={1: "Anterior", 2: "Posterior"},
    )
    path = tmp_path / "models" / "model.pt"

    save_checkpoint(result, path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)

    assert set(checkpoint) == {
        "state_dict", "architecture", "network_config", "preprocessing", "labels", "val_dice_per_label"
    }
    assert Preprocessing.from_dict(checkpoint["preprocessing"]) == pre
    assert checkpoint["labels"] == {1: "Anterior", 2: "Posterior"}
    segmenter = load_segmenter(
        architecture=checkpoint["architecture"], network_config=checkpoint["network_config"],
        preprocessing=checkpoint["preprocessing"], num_classes=3, weights_path=path, device=CPU,
    )
    geometry = Geometry(shape=(12, 20, 18), spacing_mm=(2.0, 1.0, 1.0))
    volume = Volume(np.random.default_rng(0).normal(size=geometry.shape).astype(np.float32), geometry)
    np.testing.assert_array_equal(segmenter(volume), NetworkSegmenter(network, pre, device=CPU)(volume))


def test_training_reports_progress_and_can_be_cancelled():
    cases = list(dataset_read(shared_data("msd_task04_hippocampus")).cases[:5])
    config = TrainingConfig(
        network_config={"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
        preprocessing=Preprocessing(target_spacing_mm=None, patch_size=(48, 64, 48)), epochs=5, batch_size=2,
    )
    seen = []

    def cancel_after_two_steps(percent, stage):
        seen.append((percent, stage))
        if len(seen) == 2:
            raise InferenceCancelled("stop")

    with pytest.raises(InferenceCancelled):
        train_segmentation(cases[:4], cases[4:], labels={1: "Anterior", 2: "Posterior"}, config=config, device=CPU,
                           progress=cancel_after_two_steps)
    assert [s for _, s in seen] == ["training", "training"] and seen[0][0] < seen[1][0] < 100


# --- the key test: train, save, and segment a held-out case through load_segmenter ----------------


@pytest.mark.slow
def test_trained_unet_segments_held_out_hippocampus_through_the_one_click_path(tmp_path):
    import SimpleITK as sitk

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dataset = dataset_read(shared_data("msd_task04_hippocampus"))
        cases = list(dataset.cases)
        random.Random(0).shuffle(cases)
        train_cases, val_cases, held_out = cases[:100], cases[100:110], cases[110:115]
        config = TrainingConfig(
            architecture="unet",
            preprocessing=Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=(48, 64, 48)),
            epochs=4,
            batch_size=2,
            learning_rate=3e-3,
            seed=0,
        )
        started = time.perf_counter()

        result = train_segmentation(train_cases, val_cases, labels=dataset.label_names, config=config, device=CPU)
        path = tmp_path / "hippocampus.pt"
        save_checkpoint(result, path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        segmenter = load_segmenter(
            architecture=checkpoint["architecture"], network_config=checkpoint["network_config"],
            preprocessing=checkpoint["preprocessing"], num_classes=max(checkpoint["labels"]) + 1,
            weights_path=path, device=CPU,
        )
        scores = []
        for image_path, label_path in held_out:
            volume = volume_from_sitk(sitk.ReadImage(str(image_path)), modality="MR")
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
            labels = segmenter(volume)
            assert labels.shape == truth.shape == volume.array.shape
            scores.append(dice_per_label(labels, truth, [1, 2]))
        duration_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)

    mean_dice = float(np.mean([[s[1], s[2]] for s in scores]))
    print(f"held-out Dice {scores}, mean {mean_dice:.3f}; validation {result.val_dice_per_label}; {duration_s:.1f} s")
    assert result.num_train == 100 and result.num_val == 10 and len(result.history) == 4
    # Measured with this seed on 2 threads (25 s): held-out Dice 0.73–0.89 per label and case, mean
    # 0.84; validation 0.85 / 0.82 (NOTES.md: 0.80 / 0.79 after 3 epochs on 208 cases). The bars
    # (mean 0.7, every label 0.5) leave room for other BLAS builds and devices, yet a mismatch between
    # training and inference preprocessing, or a wrong inverse onto the input grid, falls far below them.
    assert mean_dice >= 0.7
    assert min(min(s.values()) for s in scores) >= 0.5
    assert result.mean_dice >= 0.7


# --- augmentation, early stopping, per-epoch state and resume (issue 18) ---------------------------

_TINY_NET = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


def _hippocampus_cases(n: int):
    return list(dataset_read(shared_data("msd_task04_hippocampus")).cases[:n])


def _tiny_config(**overrides) -> TrainingConfig:
    return TrainingConfig(**{"network_config": _TINY_NET, "batch_size": 2, "epochs": 2,
                             "preprocessing": Preprocessing(target_spacing_mm=None, patch_size=(16, 16, 16)), **overrides})


def test_augmentation_adds_flips_rotations_scaling_and_intensity_changes_only_when_asked():
    from annotation.ml.training import _train_transforms

    plain = [type(t).__name__ for t in _train_transforms(Preprocessing(target_spacing_mm=None)).transforms]
    augmented = [type(t).__name__ for t in
                 _train_transforms(Preprocessing(target_spacing_mm=None), augmentation=True).transforms]
    added = augmented[len(plain):]
    assert augmented[:len(plain)] == plain
    assert added == ["RandFlipd", "RandFlipd", "RandFlipd", "RandAffined", "RandScaleIntensityd", "RandShiftIntensityd"]


def test_patience_stops_early_and_every_epoch_reports_a_resumable_state(monkeypatch):
    import annotation.ml.training as training

    cases = _hippocampus_cases(3)
    # Validation Dice that never improves after epoch 1: patience 1 stops after epoch 2.
    monkeypatch.setattr(training, "_validate", lambda *a, **k: {1: 0.5, 2: 0.5})
    reported = []
    result = train_segmentation(cases[:2], cases[2:], labels={1: "a", 2: "p"}, config=_tiny_config(epochs=5, patience=1),
                                device=CPU, on_epoch=lambda record, state: reported.append((record, state)))

    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 2
    assert [r["epoch"] for r, _ in reported] == [1, 2] and reported[-1][0]["stopped_early"]
    state = reported[0][1]
    assert state["format"] == training.STATE_FORMAT and state["epoch"] == 1 and state["best_epoch"] == 1
    assert set(state["model"]) == set(result.state_dict)


def test_resume_continues_after_the_saved_epoch(tmp_path):
    cases = _hippocampus_cases(3)
    states = []
    train_segmentation(cases[:2], cases[2:], labels={1: "a", 2: "p"}, config=_tiny_config(epochs=1), device=CPU,
                       on_epoch=lambda record, state: states.append(state))
    torch.save(states[0], tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # what the portal stores and loads

    resumed = train_segmentation(cases[:2], cases[2:], labels={1: "a", 2: "p"}, config=_tiny_config(epochs=2),
                                 device=CPU, resume=state)

    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0]["loss"] == states[0]["history"][0]["loss"]
    with pytest.raises(ValueError, match="state"):
        train_segmentation(cases[:2], cases[2:], labels={1: "a", 2: "p"},
                           config=_tiny_config(architecture="segresnet", network_config={}), device=CPU, resume=state)


def test_a_nan_loss_raises_training_diverged(monkeypatch):
    from monai.losses import DiceCELoss

    from annotation.ml.training import TrainingDiverged

    monkeypatch.setattr(DiceCELoss, "forward", lambda self, input, target: input.sum() * float("inf") * 0)
    cases = _hippocampus_cases(2)
    with pytest.raises(TrainingDiverged) as caught:
        train_segmentation(cases[:1], cases[1:], labels={1: "a", 2: "p"}, config=_tiny_config(), device=CPU)
    assert (caught.value.epoch, caught.value.step) == (1, 1)
