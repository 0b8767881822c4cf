"""Train MONAI segmentation networks on NIfTI image/label pairs (MSD layout or plain folders).

Datasets are read with :func:`annotation.interop.msd.dataset_read` (MSD / nnU-Net folders) or
:func:`annotation.interop.msd.read_nifti_pairs` (two plain folders); their cases unpack as the
(image, label) pairs :func:`train_segmentation` takes.

The network sees images prepared by :func:`annotation.ml.inference.preprocessing_transforms`, the
same transforms :class:`annotation.ml.inference.NetworkSegmenter` applies at inference, after
``LoadImaged`` + ``EnsureChannelFirstd``. Training adds only symmetric zero padding up to the patch
size (what the sliding window does at inference) and random patch crops balanced between
foreground and background centres.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .inference import Preprocessing, preprocessing_transforms
from .networks import build_network, check_patch_size, default_network_config
from .progress import ProgressCallback, ProgressReporter

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "save_checkpoint",
    "train_segmentation",
]

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

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers cannot be negative, got {self.num_workers}")
        check_patch_size(self.architecture, self.preprocessing.patch_size)


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


def _train_transforms(preprocessing: Preprocessing):
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
            autocast = torch.autocast("cuda") if amp else torch.autocast("cpu", enabled=False)
            with autocast:
                logits = sliding_window_inference(
                    image, preprocessing.patch_size, sw_batch_size=1, predictor=model, overlap=_VAL_OVERLAP
                )
            prediction = one_hot(torch.argmax(logits, dim=1, keepdim=True), num_classes)
            truth = one_hot(batch["label"].to(device).round().long(), num_classes)
            metric(y_pred=prediction, y=truth)
    scores = metric.aggregate().cpu().numpy()  # one value per class 1..num_classes-1
    metric.reset()
    return {int(label): float(scores[label - 1]) for label in labels}


def train_segmentation(
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    *,
    labels: dict[int, str],
    config: TrainingConfig,
    device: torch.device,
    progress: ProgressCallback | None = None,
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

    Returns
    -------
    TrainingResult

    Raises
    ------
    ValueError
        No training case, or labels that are not positive integers.

    Notes
    -----
    Loss: Dice + cross-entropy (``monai.losses.DiceCELoss``; Milletari et al. 2016 for the soft Dice).
    Optimiser: Adam (Kingma & Ba, 2015). Validation: ``sliding_window_inference`` with the training
    patch size and overlap 0.25, argmax, ``monai.metrics.DiceMetric(include_background=False)``
    averaged per label over the validation cases, on the preprocessed (canonical) grid.
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
    labels = {int(k): str(v) for k, v in labels.items()}
    device = torch.device(device)
    amp = device.type == "cuda"
    num_classes = max(labels) + 1
    preprocessing = config.preprocessing
    report = ProgressReporter(progress)

    set_determinism(seed=config.seed)
    try:
        train_transforms = _train_transforms(preprocessing)
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
        scaler = torch.amp.GradScaler("cuda") if amp else None

        steps_per_epoch = len(train_loader)
        # Progress counts training steps and validation cases alike.
        total_work = config.epochs * (steps_per_epoch + len(val_items))
        work_done = 0
        history: list[dict] = []
        best_state, best_scores, best_mean = None, {}, -math.inf
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            model.train()
            losses = []
            for batch in train_loader:
                image, label = batch["image"].to(device), batch["label"].to(device)
                optimizer.zero_grad(set_to_none=True)
                if amp:
                    with torch.autocast("cuda"):
                        loss = loss_function(model(image), label)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss = loss_function(model(image), label)
                    loss.backward()
                    optimizer.step()
                losses.append(float(loss.detach()))
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
            history.append(
                {
                    "epoch": epoch,
                    "loss": float(np.mean(losses)),
                    "val_dice_per_label": dict(scores),
                    "mean_dice": mean,
                    "duration_s": time.perf_counter() - epoch_started,
                }
            )
            # Keep the best epoch; without validation every epoch "improves" and the last one is kept.
            if not val_items or (math.isfinite(mean) and mean > best_mean) or best_state is None:
                best_mean = mean if math.isfinite(mean) else best_mean
                best_scores = dict(scores)
                best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
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



