"""Model uncertainty on a volume, to rank unlabelled studies for annotation (active learning).

Two scores, as MONAI Label's active-learning strategies use:

- ``entropy``: the Shannon entropy of the softmax, ``H = -Σ_c p_c log p_c``, normalised by
  ``log C`` so that it lies in [0, 1] (Settles, *Active Learning Literature Survey*, 2009, §3.1),
  averaged over the region of interest (voxels where any foreground class has probability ≥ 0.05;
  without one, the whole volume would be dominated by confident background).
- ``mc_dropout``: Monte-Carlo dropout (Gal & Ghahramani, ICML 2016): dropout stays active for
  ``samples`` passes; the score is the mean over the region of interest of the per-voxel variance
  of the softmax, summed over classes (MONAI Label's "epistemic" strategy).

Tensors are (1, C, k', j', i') logits on the network grid (``NetworkSegmenter.inferer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

METHODS = ("entropy", "mc_dropout")


@dataclass(frozen=True)
class UncertaintyResult:
    """Score in [0, 1] for entropy (variance for MC dropout; 0 = certain), the region size in voxels
    and the number of forward passes."""

    method: str
    score: float
    roi_voxels: int
    samples: int

    def to_dict(self) -> dict:
        return {"method": self.method, "score": self.score, "roi_voxels": self.roi_voxels, "samples": self.samples}


def _roi(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities[:, 1:].amax(dim=1) >= 0.05


def entropy_score(logits: torch.Tensor) -> UncertaintyResult:
    """Return the mean normalised softmax entropy over the region of interest.

    Parameters
    ----------
    logits : torch.Tensor, shape (1, C, ...), C >= 2

    Raises
    ------
    ValueError
        For fewer than two classes.
    """
    if logits.ndim < 3 or logits.shape[1] < 2:
        raise ValueError("entropy needs logits of shape (1, C, ...) with at least two classes")
    p = torch.softmax(logits.float(), dim=1)
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1) / math.log(logits.shape[1])
    roi = _roi(p)
    n = int(roi.sum())
    return UncertaintyResult("entropy", float(h[roi].mean()) if n else 0.0, n, 1)


def enable_dropout(network: torch.nn.Module) -> int:
    """Put only the dropout layers of ``network`` in training mode; return how many drop anything
    (MONAI builds Dropout(p=0) layers when dropout is off; those do not count)."""
    count = 0
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train()
            count += int(module.p > 0)
    return count


def mc_dropout_score(network: torch.nn.Module, predict, *, samples: int = 8) -> UncertaintyResult:
    """Return the Monte-Carlo dropout variance of ``predict()`` over ``samples`` passes.

    Parameters
    ----------
    network : torch.nn.Module
        The network ``predict`` runs (its dropout layers are switched on, then off again).
    predict : callable() -> torch.Tensor (1, C, ...)
        One forward pass over the whole image (e.g. sliding-window inference), returning logits.
    samples : int
        Number of passes, at least 2.

    Raises
    ------
    ValueError
        When the network has no dropout layer (every pass would be identical) or samples < 2.
    """
    if samples < 2:
        raise ValueError("Monte-Carlo dropout needs at least two samples")
    if enable_dropout(network) == 0:
        raise ValueError("this model has no dropout layers; use the entropy method")
    try:
        total = None
        total_sq = None
        for _ in range(samples):
            p = torch.softmax(predict().float(), dim=1)
            total = p if total is None else total + p
            total_sq = p * p if total_sq is None else total_sq + p * p
    finally:
        network.eval()
    mean = total / samples
    variance = (total_sq / samples - mean * mean).clamp_min(0).sum(dim=1)
    roi = _roi(mean)
    n = int(roi.sum())
    return UncertaintyResult("mc_dropout", float(variance[roi].mean()) if n else 0.0, n, samples)


def segmenter_uncertainty(segmenter, volume, *, method: str = "entropy", samples: int = 8) -> UncertaintyResult:
    """Score ``volume`` with a ``NetworkSegmenter`` (its pre-processing and sliding-window inferer).

    Raises ValueError for an unknown method, a segmenter without a network (the classical method)
    or, for ``mc_dropout``, a network without dropout.
    """
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    network = getattr(segmenter, "network", None)
    if network is None:
        raise ValueError("this model has no network whose probabilities could be scored")
    image = segmenter.pre_transforms(volume)["image"]
    if method == "entropy":
        return entropy_score(segmenter.inferer(image))
    return mc_dropout_score(network, lambda: segmenter.inferer(image), samples=samples)


# --------------------------------------------------------------------------------------------------
# Voxel-wise maps for one-click runs (issue 18)
# --------------------------------------------------------------------------------------------------


def normalised_entropy_map(logits: torch.Tensor) -> torch.Tensor:
    """Return the per-voxel normalised softmax entropy of class logits.

    ``H(x) = -Σ_c p_c(x) log p_c(x) / log C`` with ``p = softmax(logits)`` over the class axis
    (Shannon entropy normalised by its maximum, Settles 2009, §3.1): 0 where one class has
    probability 1, 1 where all C classes are equally likely.

    Parameters
    ----------
    logits : torch.Tensor, shape (N, C, *spatial), C >= 2
        Class logits, class axis 1 (e.g. ``NetworkSegmenter.inferer``: (1, C, k', j', i')).

    Returns
    -------
    torch.Tensor, shape (N, *spatial), float32, values in [0, 1]

    Raises
    ------
    ValueError
        For fewer than two classes or fewer than three dimensions.
    """
    if logits.ndim < 3 or logits.shape[1] < 2:
        raise ValueError("entropy needs logits of shape (N, C, ...) with at least two classes")
    log_p = torch.log_softmax(logits.float(), dim=1)
    h = -(log_p.exp() * log_p).sum(dim=1) / math.log(logits.shape[1])
    return h.clamp_(0.0, 1.0)


def label_confidence(label_map: np.ndarray, entropy_map: np.ndarray) -> dict[int, float]:
    """Return each label's mean confidence, ``1 - mean normalised entropy`` over its voxels.

    Per-structure mean entropy as the segment-level uncertainty follows Mehrtash et al.,
    *Confidence Calibration and Predictive Uncertainty Estimation for Deep Medical Image
    Segmentation*, IEEE TMI 39(12), 2020 (§III-C); it is reported here as confidence so that
    1 = certain and 0 = uniform softmax.

    Parameters
    ----------
    label_map : ndarray, shape (k, j, i), integer (0 = background, not reported)
    entropy_map : ndarray, shape (k, j, i), float in [0, 1]
        From :func:`normalised_entropy_map`, on the same grid and axis order as ``label_map``.

    Returns
    -------
    dict
        ``{label: confidence in [0, 1]}`` for every non-zero label present in ``label_map``.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    if label_map.shape != entropy_map.shape:
        raise ValueError(f"label map shape {label_map.shape} differs from entropy map shape {entropy_map.shape}")
    labels = label_map.ravel().astype(np.int64, copy=False)
    values = np.clip(entropy_map.ravel().astype(np.float64, copy=False), 0.0, 1.0)
    counts = np.bincount(labels)
    sums = np.bincount(labels, weights=values, minlength=counts.size)
    return {
        int(label): float(1.0 - sums[label] / counts[label])
        for label in range(1, counts.size) if counts[label]
    }


def quantise_unit_map(values: np.ndarray) -> np.ndarray:
    """Return a [0, 1] float map as uint8 ``round(255 v)`` (step 1/255, error ≤ 0.002); same shape."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
