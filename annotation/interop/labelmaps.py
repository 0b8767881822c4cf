"""Label maps from NIfTI, NRRD or MetaImage files, checked against a series' grid.

Arrays are ``[k, j, i]``; geometry in LPS mm (``annotation.imaging.volume``). A label map that does
not lie on the series' grid (other shape, spacing, origin or orientation beyond a tolerance) is
refused with a message naming what differs; nothing is resampled silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotation.imaging.volume import Geometry

from .dicom_seg import SegInteropError
from annotation.imaging.errors import N_


def geometry_mismatch(found: Geometry, expected: Geometry, *, tolerance_mm: float = 0.05) -> str | None:
    """Describe how grid ``found`` differs from ``expected`` or return None when they coincide.

    Positions are compared at the grid's corner voxels within ``tolerance_mm`` (mm).
    """
    if found.shape != expected.shape:
        return f"its shape (k, j, i) {list(found.shape)} differs from the series' {list(expected.shape)}"
    if not np.allclose(found.spacing_mm, expected.spacing_mm, atol=1e-3, rtol=1e-4):
        return (f"its voxel spacing {[round(v, 4) for v in found.spacing_mm]} mm differs from the series' "
                f"{[round(v, 4) for v in expected.spacing_mm]} mm")
    if not np.allclose(found.direction_matrix, expected.direction_matrix, atol=1e-3):
        return "its orientation differs from the series'"
    if not found.matches(expected, tolerance_mm=tolerance_mm):
        return (f"its origin {[round(v, 2) for v in found.origin_mm]} mm (LPS) differs from the series' "
                f"{[round(v, 2) for v in expected.origin_mm]} mm")
    return None


def labelmap_read(path: Path, geometry: Geometry) -> np.ndarray:
    """Read an integer label map file and check that it lies on ``geometry``.

    Parameters
    ----------
    path : Path
        ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd``.
    geometry : Geometry
        The series grid.

    Returns
    -------
    ndarray, shape (k, j, i), uint8 or uint16

    Raises
    ------
    annotation.imaging.ImagingError
        When the file cannot be read.
    SegInteropError
        ``wrong_grid`` (with what differs) when it is not on the series grid, ``bad_labelmap`` for
        non-integer, negative or too large values.
    """
    from annotation.imaging.formats import read_volume

    volume = read_volume(Path(path))
    problem = geometry_mismatch(volume.geometry, geometry)
    if problem:
        raise SegInteropError(N_("The label map does not fit this series: %(problem)s."),
                              params={"problem": problem}, code="wrong_grid")
    return labelmap_values_check(volume.array)


def labelmap_values_check(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as uint8/uint16 after checking it holds whole numbers 0..65535.

    Raises SegInteropError ``bad_labelmap`` otherwise.
    """
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise SegInteropError(N_("The label map holds non-integer values; a label map needs whole numbers."),
                                  code="bad_labelmap")
    elif array.dtype.kind == "b":
        return array.astype(np.uint8)
    elif array.dtype.kind not in "iu":
        raise SegInteropError(N_("The label map must hold integer labels."), code="bad_labelmap")
    low, high = float(array.min(initial=0)), float(array.max(initial=0))
    if low < 0 or high > 65535:
        raise SegInteropError(N_("Labels must lie between 0 and 65535."), code="bad_labelmap")
    return array.astype(np.uint8 if high < 256 else np.uint16)


def default_label_table(label_map: np.ndarray, names: dict[int, str] | None = None) -> list[dict]:
    """Return a label table for the labels present in ``label_map`` (names from ``names`` when given),
    with colours from a fixed qualitative palette."""
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
               "#fabebe", "#008080", "#e6beff", "#9a6324"]
    values = [int(v) for v in np.unique(label_map) if v != 0]
    names = names or {}
    return [{"index": v, "name": names.get(v, f"label {v}"), "color": palette[(v - 1) % len(palette)]} for v in values]
