"""Local training and evaluation of a hospital's model (FedAvg / FedProx clients, coordinator checks).

Networks come from :func:`annotation.ml.networks.build_network`; the loss (Dice + cross-entropy) and
optimiser (Adam) are those of :func:`annotation.ml.training.train_segmentation`; Dice is
:func:`annotation.imaging.overlap.dice_per_label`. Cases are whole hippocampus crops padded to the patch
size (:func:`federation.fl.data.load_cases`), so one forward pass covers a case.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .aggregation import arrays_to_state, proximal_term, state_to_arrays
from .data import CaseArrays

__all__ = ["ModelSpec", "LocalResult", "build_model", "initial_arrays", "train_local", "evaluate_dice", "arrays_sha256"]

# A network small enough to train on 2 CPU cores in seconds per round; overridable per task.
SMALL_UNET = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}


@dataclass(frozen=True)
class ModelSpec:
    """What every participant needs to build the same network.

    Attributes
    ----------
    architecture : str
        ``unet``, ``segresnet`` or ``dynunet`` (see :func:`annotation.ml.networks.build_network`).
    network_config : dict
        Constructor overrides.
    num_classes : int
        Output channels, background included.
    patch_size : tuple of 3 int
        (k, j, i) voxels every case is padded or cropped to.
    learning_rate : float
    batch_size : int
    """

    architecture: str = "unet"
    network_config: dict = field(default_factory=lambda: dict(SMALL_UNET))
    num_classes: int = 3
    patch_size: tuple = (48, 64, 48)
    learning_rate: float = 2e-3
    batch_size: int = 4


@dataclass
class LocalResult:
    """One client's local training: new weights, examples, mean loss, seconds."""

    arrays: list
    num_examples: int
    loss: float
    duration_s: float


def build_model(spec: ModelSpec):
    """Return a freshly initialised network for ``spec`` (CPU, training mode)."""
    from annotation.ml.networks import build_network

    return build_network(spec.architecture, in_channels=1, out_channels=spec.num_classes, config=spec.network_config)


def initial_arrays(spec: ModelSpec, *, seed: int = 0) -> list[np.ndarray]:
    """Return the round-0 global weights: the network initialised under ``torch.manual_seed(seed)``."""
    import torch

    torch.manual_seed(seed)
    return state_to_arrays(build_model(spec).state_dict())


def arrays_sha256(arrays: Sequence[np.ndarray]) -> str:
    """Return the hex SHA-256 of weights: each array's dtype, shape and C-order bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def train_local(
    arrays: Sequence[np.ndarray], data: CaseArrays, spec: ModelSpec, *, epochs: int, mu: float = 0.0, seed: int = 0
) -> LocalResult:
    """Train the global weights on one hospital's cases for ``epochs`` epochs.

    Loss: ``DiceCELoss(to_onehot_y, softmax)`` plus, when ``mu > 0``, FedProx's proximal term
    ``(μ/2)||w − w_global||²`` (Li et al. 2020); Adam with ``spec.learning_rate``; random left-right
    flips as the only augmentation.

    Parameters
    ----------
    arrays : sequence of ndarray
        Global weights in ``state_dict`` order.
    data : CaseArrays
    spec : ModelSpec
    epochs : int
        Passes over the local cases (≥ 1).
    mu : float
        FedProx coefficient (0 = FedAvg).
    seed : int

    Raises
    ------
    ValueError
        ``epochs < 1``, no case, or weights that do not fit the network.
    """
    import torch
    from monai.losses import DiceCELoss

    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if len(data) == 0:
        raise ValueError("no local case to train on")
    started = time.perf_counter()
    model = build_model(spec)
    model.load_state_dict(arrays_to_state(model.state_dict(), arrays))
    global_params = [p.detach().clone() for p in model.parameters()]
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    n = len(data)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, spec.batch_size):
            idx = order[start : start + spec.batch_size]
            image, label = data.images[idx], data.labels[idx]
            if torch.rand(1, generator=generator).item() < 0.5:
                image, label = image.flip(-1), label.flip(-1)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(image), label)
            if mu > 0:
                loss = loss + proximal_term(model.parameters(), global_params, mu)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    return LocalResult(
        arrays=state_to_arrays(model.state_dict()),
        num_examples=n * epochs,
        loss=float(np.mean(losses)),
        duration_s=time.perf_counter() - started,
    )


def evaluate_dice(arrays: Sequence[np.ndarray], data: CaseArrays, spec: ModelSpec, *, batch_size: int = 8) -> dict:
    """Return the mean Dice per foreground label and their mean on ``data``.

    Dice per case and label by :func:`annotation.imaging.overlap.dice_per_label` (1 when prediction and
    truth are both empty), averaged over cases.

    Returns
    -------
    dict
        ``{"dice": mean over labels, "dice_per_label": {label: mean over cases}, "cases": N}``.
    """
    import torch

    from annotation.imaging.overlap import dice_per_label

    model = build_model(spec)
    model.load_state_dict(arrays_to_state(model.state_dict(), arrays))
    model.eval()
    labels = list(range(1, spec.num_classes))
    per_label: dict[int, list[float]] = {label: [] for label in labels}
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            prediction = model(data.images[start : start + batch_size]).argmax(dim=1).numpy()
            truth = data.labels[start : start + batch_size, 0].numpy()
            for p, t in zip(prediction, truth):
                for label, score in dice_per_label(p, t, labels).items():
                    per_label[label].append(score)
    means = {label: float(np.mean(v)) if v else math.nan for label, v in per_label.items()}
    return {"dice": float(np.nanmean(list(means.values()))), "dice_per_label": means, "cases": len(data)}
