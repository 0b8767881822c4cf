"""Comparison of two label maps: per-label voxels added and removed, and the Dice coefficient.

Dice is :func:`annotation.imaging.overlap.dice` (1.0 when both masks are empty: two annotators
agreeing that a label is absent agree perfectly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

from annotation.imaging.overlap import dice


@dataclass(frozen=True)
class LabelChange:
    """How one label differs between version A (before) and version B (after).

    ``added`` voxels carry the label in B but not A, ``removed`` in A but not B; volumes in mL.
    """

    label: int
    voxels_a: int
    voxels_b: int
    added: int
    removed: int
    added_ml: float
    removed_ml: float
    dice: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare_label_maps(a: np.ndarray, b: np.ndarray, *, spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
                       labels: Iterable[int] | None = None) -> list[LabelChange]:
    """Compare label maps ``a`` (before) and ``b`` (after), both (k, j, i) on the same grid.

    Parameters
    ----------
    labels : iterable of int, optional
        Labels to report; default every non-zero label in either map.

    Raises ValueError when the grids differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"the label maps are on different grids: {a.shape} vs {b.shape}")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    if labels is None:
        labels = sorted(set(np.unique(a).tolist()) | set(np.unique(b).tolist()) - {0})
    out = []
    for value in labels:
        ma, mb = a == value, b == value
        added = int(np.logical_and(mb, ~ma).sum())
        removed = int(np.logical_and(ma, ~mb).sum())
        out.append(LabelChange(
            label=int(value), voxels_a=int(ma.sum()), voxels_b=int(mb.sum()), added=added, removed=removed,
            added_ml=added * voxel_ml, removed_ml=removed * voxel_ml, dice=dice(ma, mb),
        ))
    return out


def change_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return a uint8 map of differences for the viewer: 0 same, 1 added (labelled in B, not in A
    or another label), 2 removed (labelled in A, background in B)."""
    if a.shape != b.shape:
        raise ValueError(f"the label maps are on different grids: {a.shape} vs {b.shape}")
    out = np.zeros(a.shape, dtype=np.uint8)
    out[(a != b) & (b != 0)] = 1
    out[(a != b) & (b == 0)] = 2
    return out


def inter_annotator_dice(label_maps: Sequence[np.ndarray], *, labels: Iterable[int]) -> dict[int, float]:
    """Return the mean pairwise Dice per label over several annotators' label maps of one series.

    With fewer than two maps the result is empty.
    """
    labels = list(labels)
    if len(label_maps) < 2:
        return {}
    scores: dict[int, list[float]] = {int(v): [] for v in labels}
    for a, b in combinations(label_maps, 2):
        for value in labels:
            scores[int(value)].append(dice(a == value, b == value))
    return {k: float(np.mean(v)) for k, v in scores.items()}
