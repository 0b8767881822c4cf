"""Train MONAI segmentation networks on NIfTI image/label pairs (MSD layout or plain folders).

Datasets are read with :func:`annotation.interop.msd.dataset_read` (MSD / nnU-Net folders) or
:func:`annotation.interop.msd.read_nifti_pairs` (two plain folders); their cases unpack as the
(image, label) pairs :func:`train_segmentation` takes.

The network sees images prepared by :func:`annotation.ml.inference.preprocessing_transforms`, the
same transforms :class:`annotation.ml.inference.NetworkSegmenter` applies at inference, after
``LoadImaged`` + ``EnsureChannelFirstd``. Training adds symmetric zero padding up to the patch
size (what the sliding window does at inference) and random patch crops balanced between
foreground and background centres; with ``TrainingConfig.augmentation`` also random flips,
rotations, scaling and intensity scaling/shifts of each patch.

A run can report every epoch (``on_epoch``) with a resumable state (weights, optimiser, history),
be resumed from such a state, stop early when validation Dice stops improving (``patience``), and
stops with :class:`TrainingDiverged` when the loss is no longer finite.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .device import amp_autocast, amp_enabled, amp_grad_scaler
from .inference import Preprocessing, preprocessing_transforms
from .networks import build_network, check_patch_size, default_network_config
from .progress import ProgressCallback, ProgressReporter

__all__ = [
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingResult",
    "save_checkpoint",
    "split_by_patient",
    "train_segmentation",
]

STATE_FORMAT = "yixin-training-state/1"

# Validation uses the same sliding-window settings as NetworkSegmenter's defaults.
_VAL_OVERLAP = 0.25

Case = tuple[Path, Path]


# --------------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Hyper-parameters of one training run.

    Attributes
    ----------
    architecture : str
        See :func:`annotation.ml.networks.build_network`.
    network_config : dict
        Constructor overrides for the architecture.
    preprocessing : Preprocessing
        Spacing, intensity and patch size; stored with the weights and reused at inference.
    epochs : int
    batch_size : int
        Patches per optimiser step.
    learning_rate : float
        Adam step size.
    seed : int
        Seeds torch, numpy, Python and the transforms' random states (``monai.utils.set_determinism``).
    num_workers : int
        DataLoader worker processes (0 = load in the training process).
    cache : bool
        Keep the deterministic preprocessing of every case in memory (``monai.data.CacheDataset``).
    augmentation : bool
        Randomly flip (each axis), rotate (up to 15° about each axis), scale (±10 %) and scale/shift
        the intensities (±10 %) of every training patch.
    patience : int or None
        Stop when the validation mean Dice has not improved for this many epochs (None: never).
    """

    architecture: str = "unet"
    network_config: dict = field(default_factory=dict)
    preprocessing: Preprocessing
    epochs: int
    batch_size: int = 4
    learning_rate: float = 1e-3
    seed: int = 0
    num_workers: int = 0
    cache: bool = True
    augmentation: bool = False
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers cannot be negative, got {self.num_workers}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, got {self.patience}")
        check_patch_size(self.architecture, self.preprocessing.patch_size)


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite; ``epoch`` and ``step`` (1-based) say where."""

    def __init__(self, epoch: int, step: int, loss: float):
        super().__init__(f"the training loss became {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


@dataclass
class TrainingResult:
    """What a training run produced.

    Attributes
    ----------
    state_dict : dict of str to torch.Tensor
        Weights (on the CPU) of the epoch with the best validation mean Dice (the last epoch when
        there is no validation set).
    network_config : dict
        The full constructor config (defaults merged with overrides, lists for tuples; JSON-ready).
    preprocessing : Preprocessing
    val_dice_per_label : dict of int to float
        Dice per label of the kept weights on the validation cases (NaN for a label absent from
        every validation label map).
    mean_dice : float
        Mean of ``val_dice_per_label`` (NaN without validation).
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean training DiceCE), ``val_dice_per_label``, ``mean_dice``,
        ``duration_s``.
    num_train, num_val : int
        Cases used.
    duration_s : float
        Wall time of the whole run.
    device : str
        Where it ran (``"cpu"``, ``"cuda:0"``).
    architecture : str
    labels : dict of int to str
        Label values and names trained (background excluded).
    stopped_early : bool
        True when ``patience`` epochs passed without improvement before ``epochs``.
    best_epoch : int
        The epoch whose weights were kept.
    """

    state_dict: dict
    network_config: dict
    preprocessing: Preprocessing
    val_dice_per_label: dict[int, float]
    mean_dice: float
    history: list[dict]
    num_train: int
    num_val: int
    duration_s: float
    device: str
    architecture: str = "unet"
    labels: dict[int, str] = field(default_factory=dict)
    stopped_early: bool = False
    best_epoch: int = 0


def split_by_patient(
    case_patients: Mapping[str, str], *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split cases into training and validation so that no patient is on both sides.

    Parameters
    ----------
    case_patients : mapping of str to str
        Case id → patient pseudonym (any opaque string; several cases may share one).
    val_fraction : float
        Share of the *patients* (not cases) held out for validation, in (0, 1); at least one
        patient goes to each side.
    seed : int
        The patients are shuffled with ``random.Random(seed)`` after sorting, so a split is
        reproducible.

    Returns
    -------
    (list of str, list of str)
        Training and validation case ids, each sorted.

    Raises
    ------
    ValueError
        Fewer than two patients, or ``val_fraction`` outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    patients = sorted(set(case_patients.values()))
    if len(patients) < 2:
        raise ValueError(f"a split by patient needs at least two patients, got {len(patients)}")
    random.Random(seed).shuffle(patients)
    n_val = min(len(patients) - 1, max(1, round(len(patients) * val_fraction)))
    held_out = set(patients[:n_val])
    train = sorted(c for c, p in case_patients.items() if p not in held_out)
    val = sorted(c for c, p in case_patients.items() if p in held_out)
    return train, val


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _base_transforms(preprocessing: Preprocessing) -> list:
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    keys = ["image", "label"]
    return [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        *preprocessing_transforms(preprocessing, image_keys=["image"], label_keys=["label"]),
    ]


def _augmentation_transforms() -> list:
    """Random flips, rotations, scaling and intensity changes of a (channel, k, j, i) patch pair.

    Geometric transforms move image and label together (label with nearest-neighbour sampling);
    intensity transforms touch the image only. Ranges follow the common nnU-Net / MONAI tutorial
    choices, kept mild because the patch is already cropped.
    """
    from monai.transforms import RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

    keys = ["image", "label"]
    rotate = math.radians(15.0)
    return [
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
        RandAffined(
            keys=keys, prob=0.3, rotate_range=(rotate, rotate, rotate), scale_range=(0.1, 0.1, 0.1),
            mode=("bilinear", "nearest"), padding_mode="zeros",
        ),
        RandScaleIntensityd(keys=["image"], factors=0.1, prob=0.5),
        RandShiftIntensityd(keys=["image"], offsets=0.1, prob=0.5),
    ]


def _train_transforms(preprocessing: Preprocessing, *, augmentation: bool = False):
    from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd

    keys = ["image", "label"]
    return Compose(
        [
            *_base_transforms(preprocessing),
            # Zero padding, centred, as sliding_window_inference pads an image smaller than the window.
            SpatialPadd(keys=keys, spatial_size=preprocessing.patch_size, mode="constant", value=0),
            RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=preprocessing.patch_size, pos=1, neg=1, num_samples=1
            ),
            *(_augmentation_transforms() if augmentation else []),
        ]
    )


def _validate(model, loader, *, preprocessing, num_classes, labels, device, amp) -> dict[int, float]:
    from monai.inferers import sliding_window_inference
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            image = batch["image"].to(device)
            with amp_autocast(device) if amp else contextlib.nullcontext():
                logits = sliding_window_inference(
                    image, preprocessing.patch_size, sw_batch_size=1, predictor=model, overlap=_VAL_OVERLAP
                )
            prediction = one_hot(torch.argmax(logits, dim=1, keepdim=True), num_classes)
            truth = one_hot(batch["label"].to(device).round().long(), num_classes)
            metric(y_pred=prediction, y=truth)
    scores = metric.aggregate().cpu().numpy()  # one value per class 1..num_classes-1
    metric.reset()
    return {int(label): float(scores[label - 1]) for label in labels}


EpochCallback = Callable[[dict, dict], None]
"""``on_epoch(record, state)``: ``record`` is the epoch's history entry; ``state`` the resumable
training state (see :func:`train_segmentation`'s ``resume``), saved with ``torch.save``."""


def train_segmentation(
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    *,
    labels: dict[int, str],
    config: TrainingConfig,
    device: torch.device,
    progress: ProgressCallback | None = None,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> TrainingResult:
    """Train a segmentation network with MONAI and validate it after every epoch.

    Parameters
    ----------
    train_cases, val_cases : sequence of (Path, Path)
        NIfTI (image, label) pairs; label maps hold the values of ``labels`` and 0. ``val_cases`` may
        be empty (no validation; the last epoch's weights are kept).
    labels : dict of int to str
        Foreground labels (values 1..N); the network gets ``max(labels) + 1`` output channels.
    config : TrainingConfig
    device : torch.device
        Mixed precision is used on CUDA only.
    progress : callable, optional
        ``progress(percent, stage)`` with stage ``"training"`` after every step and ``"validation"``
        after every validation pass; an exception it raises (e.g. ``InferenceCancelled``) stops training.
    on_epoch : callable, optional
        ``on_epoch(record, state)`` after every epoch: ``record`` is the epoch's history entry and
        ``state`` a dict of tensors and plain values (``format``, ``epoch``, ``model``,
        ``optimizer``, ``history``, ``best_state``, ``best_scores``, ``best_mean``, ``best_epoch``,
        ``architecture``, ``network_config``) that ``resume`` accepts; an exception it raises stops
        training.
    resume : dict, optional
        A ``state`` given to ``on_epoch`` by an earlier run with the same cases and config (loaded
        with ``torch.load(weights_only=True)``): training continues at the epoch after it. The random
        streams restart from the seed, so a resumed run is not bitwise identical to an unbroken one.

    Returns
    -------
    TrainingResult

    Raises
    ------
    ValueError
        No training case, labels that are not positive integers, or a ``resume`` state of another
        format or architecture.
    TrainingDiverged
        The loss of a training step was NaN or infinite.

    Notes
    -----
    Loss: Dice + cross-entropy (``monai.losses.DiceCELoss``; Milletari et al. 2016 for the soft Dice).
    Optimiser: Adam (Kingma & Ba, 2015). Validation: ``sliding_window_inference`` with the training
    patch size and overlap 0.25, argmax, ``monai.metrics.DiceMetric(include_background=False)``
    averaged per label over the validation cases, on the preprocessed (canonical) grid. Early
    stopping (``config.patience``) watches the validation mean Dice (Prechelt, 1998).
    """
    from monai.data import CacheDataset, DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.transforms import Compose
    from monai.utils import set_determinism

    started = time.perf_counter()
    if not train_cases:
        raise ValueError("training needs at least one case")
    if not labels or any(int(k) < 1 for k in labels):
        raise ValueError(f"labels must be positive integers (0 is background), got {sorted(labels)}")
    if resume is not None and (
        resume.get("format") != STATE_FORMAT or resume.get("architecture") != config.architecture
    ):
        raise ValueError("the state to resume from is not a training state of this architecture")
    labels = {int(k): str(v) for k, v in labels.items()}
    device = torch.device(device)
    amp = amp_enabled(device)  # mixed precision on CUDA only; the CPU trains in float32
    num_classes = max(labels) + 1
    preprocessing = config.preprocessing
    report = ProgressReporter(progress)

    set_determinism(seed=config.seed)
    try:
        train_transforms = _train_transforms(preprocessing, augmentation=config.augmentation)
        train_transforms.set_random_state(seed=config.seed)
        val_transforms = Compose(_base_transforms(preprocessing))
        train_items = [{"image": str(i), "label": str(l)} for i, l in train_cases]
        val_items = [{"image": str(i), "label": str(l)} for i, l in val_cases]
        if config.cache:
            train_ds = CacheDataset(train_items, train_transforms, cache_rate=1.0, num_workers=None, progress=False)
            val_ds = CacheDataset(val_items, val_transforms, cache_rate=1.0, num_workers=None, progress=False)
        else:
            train_ds, val_ds = Dataset(train_items, train_transforms), Dataset(val_items, val_transforms)
        generator = torch.Generator().manual_seed(config.seed)
        train_loader = DataLoader(
            train_ds, batch_size=config.batch_size, shuffle=True, num_workers=config.num_workers, generator=generator
        )
        val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=config.num_workers)

        network_config = default_network_config(config.architecture)
        network_config.update(config.network_config)
        network_config = _jsonable(network_config)
        model = build_network(config.architecture, in_channels=1, out_channels=num_classes, config=network_config)
        model = model.to(device)
        loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        scaler = amp_grad_scaler(device)

        history: list[dict] = []
        best_state, best_scores, best_mean, best_epoch = None, {}, -math.inf, 0
        first_epoch = 1
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            history = [dict(h) for h in resume["history"]]
            best_state = resume["best_state"]
            best_scores = {int(k): float(v) for k, v in resume["best_scores"].items()}
            best_mean, best_epoch = float(resume["best_mean"]), int(resume["best_epoch"])
            first_epoch = int(resume["epoch"]) + 1

        steps_per_epoch = len(train_loader)
        # Progress counts training steps and validation cases alike.
        total_work = config.epochs * (steps_per_epoch + len(val_items))
        work_done = (first_epoch - 1) * (steps_per_epoch + len(val_items))
        stopped_early = False
        for epoch in range(first_epoch, config.epochs + 1):
            epoch_started = time.perf_counter()
            model.train()
            losses = []
            for step, batch in enumerate(train_loader, start=1):
                image, label = batch["image"].to(device), batch["label"].to(device)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    with amp_autocast(device):
                        loss = loss_function(model(image), label)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(epoch, step, value)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss = loss_function(model(image), label)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(epoch, step, value)
                    loss.backward()
                    optimizer.step()
                losses.append(value)
                work_done += 1
                report(100.0 * work_done / total_work, "training")
            scores: dict[int, float] = {}
            mean = math.nan
            if val_items:
                scores = _validate(
                    model, val_loader, preprocessing=preprocessing, num_classes=num_classes, labels=labels,
                    device=device, amp=amp,
                )
                mean = float(np.nanmean(list(scores.values()))) if any(np.isfinite(list(scores.values()))) else math.nan
                work_done += len(val_items)
                report(100.0 * work_done / total_work, "validation")
            record = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "val_dice_per_label": dict(scores),
                "mean_dice": mean,
                "duration_s": time.perf_counter() - epoch_started,
            }
            history.append(record)
            # Keep the best epoch; without validation every epoch "improves" and the last one is kept.
            if not val_items or (math.isfinite(mean) and mean > best_mean) or best_state is None:
                best_mean = mean if math.isfinite(mean) else best_mean
                best_scores = dict(scores)
                best_epoch = epoch
                best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
            stopped_early = bool(
                val_items and config.patience is not None and epoch < config.epochs
                and epoch - best_epoch >= config.patience
            )
            record["stopped_early"] = stopped_early
            if on_epoch is not None:
                on_epoch(dict(record), {
                    "format": STATE_FORMAT, "epoch": epoch, "architecture": config.architecture,
                    "network_config": network_config,
                    "model": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "history": [dict(h) for h in history],
                    "best_state": best_state, "best_scores": dict(best_scores), "best_mean": best_mean,
                    "best_epoch": best_epoch,
                })
            if stopped_early:
                break
    finally:
        set_determinism(seed=None)

    return TrainingResult(
        state_dict=best_state,
        network_config=network_config,
        preprocessing=preprocessing,
        val_dice_per_label=best_scores,
        mean_dice=float(np.nanmean(list(best_scores.values()))) if best_scores else math.nan,
        history=history,
        num_train=len(train_items),
        num_val=len(val_items),
        duration_s=time.perf_counter() - started,
        device=str(device),
        architecture=config.architecture,
        labels=labels,
        stopped_early=stopped_early,
        best_epoch=best_epoch,
    )


def save_checkpoint(result: TrainingResult, path: Path) -> None:
    """Write a training result as a ``torch.save`` file readable with ``weights_only=True``.

    The file holds ``{"state_dict", "architecture", "network_config", "preprocessing" (a dict, see
    Preprocessing.to_dict), "labels" ({int: name}), "val_dice_per_label"}``;
    :func:`annotation.ml.inference.load_segmenter` reads its ``state_dict``.

    Parameters
    ----------
    result : TrainingResult
    path : Path
        Written atomically (a temporary file in the same folder, then renamed); parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": result.state_dict,
        "architecture": result.architecture,
        "network_config": _jsonable(copy.deepcopy(result.network_config)),
        "preprocessing": result.preprocessing.to_dict(),
        "labels": {int(k): str(v) for k, v in result.labels.items()},
        "val_dice_per_label": {int(k): float(v) for k, v in result.val_dice_per_label.items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



