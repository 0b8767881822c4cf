"""Overlap of segmentations: the Dice coefficient, the portal's one implementation.

Dice (Dice, Ecology 26(3):297, 1945; Sørensen, 1948) of masks A and B is ``2 |A ∩ B| / (|A| + |B|)``.
We define it as 1.0 when both masks are empty: two annotators (or a model and the truth) agreeing
that a label is absent agree perfectly. Used by the version comparison and inter-annotator agreement
(``annotation.editing.compare``), held-out evaluation of trained models (tests, one-click checks) and
federated evaluation (``federation.fl.local.evaluate_dice``). Validation during training uses
``monai.metrics.DiceMetric`` on tensors instead, which leaves a label absent from both out (NaN).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["dice", "dice_per_label"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Dice coefficient of two masks of the same shape (1.0 when both are empty).

    Parameters
    ----------
    a, b : ndarray, same shape (any)
        Masks; any non-zero value counts as inside.

    Returns
    -------
    float
        ``2 |A ∩ B| / (|A| + |B|)`` in [0, 1]; 1.0 when both masks are empty.

    Raises
    ------
    ValueError
        The shapes differ.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    a = a.astype(bool, copy=False)
    b = b.astype(bool, copy=False)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_label(prediction: np.ndarray, truth: np.ndarray, labels: Iterable[int]) -> dict[int, float]:
    """Return the Dice coefficient (:func:`dice`) of each label of two label maps.

    Parameters
    ----------
    prediction, truth : ndarray
        Integer label maps of the same shape (any axis order, as long as it is the same).
    labels : iterable of int
        The labels to score; each is compared as the masks ``prediction == label`` and
        ``truth == label`` (1.0 when the label is in neither).

    Returns
    -------
    dict of int to float

    Raises
    ------
    ValueError
        The shapes differ.
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    return {int(label): dice(prediction == label, truth == label) for label in labels}
