"""Lung-nodule figures from Hounsfield units: composition (solid / part-solid / ground-glass). Imports no Django."""

from __future__ import annotations

import numpy as np

__all__ = ["GROUND_GLASS_HU", "SOLID_HU", "nodule_composition"]

GROUND_GLASS_HU = -750.0
"""Lower bound of ground-glass attenuation (HU): hazier than aerated lung (about -850 HU)."""
SOLID_HU = -300.0
"""Lower bound of solid attenuation (HU): soft tissue obscures the vessels and bronchial walls above it."""

_SOLID_SHARE = 0.5
_GROUND_GLASS_SHARE = 0.1


def nodule_composition(hu_values: np.ndarray) -> str:
    """Classify a lung nodule as ``"solid"``, ``"part_solid"`` or ``"ground_glass"`` from its voxels.

    Parameters
    ----------
    hu_values : ndarray, any shape, numeric
        The nodule's voxel values in Hounsfield units (e.g. ``image[mask]``).

    Returns
    -------
    str
        ``"solid"`` when at least half of the nodule's non-aerated voxels (≥ -750 HU) are solid
        (≥ -300 HU); ``"ground_glass"`` when under 10 % are; ``"part_solid"`` in between. An
        empty input, or one with no voxel at or above -750 HU, is ``"ground_glass"``.

    Notes
    -----
    Fleischner Society glossary (Hansell et al., Radiology 246:697–722, 2008; Bankier et al.,
    Radiology 310:e232558, 2024) defines ground-glass opacity as hazy increased attenuation that
    preserves the bronchial and vascular margins, and a part-solid nodule as one with both
    ground-glass and solid components. The HU bands (-750 / -300) follow the quantitative CT
    literature on subsolid nodules (e.g. Kim et al., AJR 190:1363–1368, 2008); the shares of 50 % and
    10 % are this product's choice, made because a segmented solid nodule's rim is partial-volume
    ground glass. The result is a suggestion for the doctor, never a diagnosis.
    """
    values = np.asarray(hu_values, dtype=np.float64).ravel()
    dense = values[values >= GROUND_GLASS_HU]
    if dense.size == 0:
        return "ground_glass"
    solid_share = float(np.count_nonzero(dense >= SOLID_HU)) / dense.size
    if solid_share >= _SOLID_SHARE:
        return "solid"
    if solid_share < _GROUND_GLASS_SHARE:
        return "ground_glass"
    return "part_solid"
