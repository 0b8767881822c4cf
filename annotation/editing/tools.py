"""Editing tools on label maps: brush, eraser, threshold brush, flood fill, polygon fill.

Every function takes label maps indexed ``[k, j, i]`` with ``spacing_mm`` in the same order (see
``annotation.imaging.volume``) and returns a *new* array; inputs are never modified, so the parent
version of a segmentation stays as it was. The browser implements the same tools; these functions
are the reference the server and the tests use.

A "plane" is named by the array axis normal to it: ``axis=0`` is a k-slice (axial for an axial
series), ``axis=1`` a j-slice, ``axis=2`` an i-slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage


class EditError(ValueError):
    """A tool call that cannot be carried out (a stable ``code`` and a message safe to show)."""

    def __init__(self, message: str, *, code: str = "bad_edit"):
        super().__init__(message)
        self.message = message
        self.code = code


def _check_index(shape: Sequence[int], index: Sequence[int]) -> tuple[int, int, int]:
    if len(index) != 3:
        raise EditError("a voxel index needs three values (k, j, i)")
    idx = tuple(int(v) for v in index)
    if any(v < 0 or v >= n for v, n in zip(idx, shape)):
        raise EditError(f"voxel {list(idx)} lies outside the grid {list(shape)}", code="out_of_bounds")
    return idx


def brush_mask(shape: Sequence[int], spacing_mm: Sequence[float], centre: Sequence[int], radius_mm: float,
               *, axis: int | None = None) -> np.ndarray:
    """Return the voxels a round brush covers.

    Parameters
    ----------
    shape : (K, J, I)
        Grid shape.
    spacing_mm : (sk, sj, si)
        Voxel spacing in mm; anisotropic spacing gives an elliptical footprint in voxels, round in mm.
    centre : (k, j, i)
        Voxel under the brush centre.
    radius_mm : float
        Brush radius in mm (> 0). A voxel is covered when its centre lies within the radius; the
        centre voxel is always covered.
    axis : int or None
        None: a 3-D sphere. 0, 1 or 2: a 2-D disc in the plane normal to that axis (the slice
        through ``centre``).

    Returns
    -------
    ndarray of bool, shape (K, J, I)

    Raises
    ------
    EditError
        For a non-positive radius, a centre outside the grid or an axis other than 0, 1, 2.
    """
    if not radius_mm or radius_mm <= 0:
        raise EditError("the brush radius must be positive (mm)")
    if axis not in (None, 0, 1, 2):
        raise EditError("the plane axis must be 0, 1 or 2")
    c = _check_index(shape, centre)
    sp = np.asarray(spacing_mm, dtype=float)
    reach = np.floor(radius_mm / sp).astype(int)
    if axis is not None:
        reach[axis] = 0
    lo = [max(0, c[a] - reach[a]) for a in range(3)]
    hi = [min(shape[a], c[a] + reach[a] + 1) for a in range(3)]
    grids = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    dist2 = sum(((g - c[a]) * sp[a]) ** 2 for a, g in enumerate(grids))
    mask = np.zeros(tuple(shape), dtype=bool)
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = dist2 <= radius_mm ** 2 + 1e-9
    return mask


def paint(label_map: np.ndarray, mask: np.ndarray, label: int, *, locked_labels: Iterable[int] = (),
          image: np.ndarray | None = None, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """Set ``label`` on the voxels of ``mask``; voxels of locked labels keep their value.

    With ``image`` and ``intensity_range`` (low, high) this is the threshold brush: only voxels with
    ``low <= image <= high`` (HU for CT) are painted.

    Parameters
    ----------
    label_map : ndarray (K, J, I), integer
    mask : ndarray of bool (K, J, I)
    label : int
        1..65535; 0 is the eraser (see :func:`erase`).
    locked_labels : iterable of int
        Labels whose voxels are never changed; painting a locked label is refused.

    Raises
    ------
    EditError
        For a label outside 1..65535, a locked label, a mask of another shape, or an intensity range
        without an image of the same shape or with low > high.
    """
    locked = {int(v) for v in locked_labels}
    if not 1 <= int(label) <= 65535:
        raise EditError("a label must be between 1 and 65535")
    if int(label) in locked:
        raise EditError(f"label {label} is locked", code="locked_label")
    region = _region(label_map, mask, image, intensity_range)
    out = _widen(label_map, int(label))
    if locked:
        region &= ~np.isin(label_map, list(locked))
    out[region] = label
    return out


def erase(label_map: np.ndarray, mask: np.ndarray, *, label: int | None = None, locked_labels: Iterable[int] = ()) -> np.ndarray:
    """Set the voxels of ``mask`` to background (0); with ``label`` only the voxels of that label.

    Voxels of locked labels keep their value. Raises EditError for a mask of another shape.
    """
    region = _region(label_map, mask, None, None)
    if label is not None:
        region &= label_map == label
    locked = {int(v) for v in locked_labels}
    if locked:
        region &= ~np.isin(label_map, list(locked))
    out = label_map.copy()
    out[region] = 0
    return out


def _region(label_map, mask, image, intensity_range) -> np.ndarray:
    if mask.shape != label_map.shape:
        raise EditError(f"the mask {mask.shape} does not match the label map {label_map.shape}", code="wrong_grid")
    region = mask.astype(bool, copy=True)
    if intensity_range is not None:
        if image is None or image.shape != label_map.shape:
            raise EditError("the threshold brush needs the image on the label map's grid", code="wrong_grid")
        low, high = float(intensity_range[0]), float(intensity_range[1])
        if low > high:
            raise EditError("the intensity range's low end is above its high end")
        region &= (image >= low) & (image <= high)
    return region


def _widen(label_map: np.ndarray, label: int) -> np.ndarray:
    if label > 255 and label_map.dtype == np.uint8:
        return label_map.astype(np.uint16)
    return label_map.copy()


def flood_fill_mask(label_map: np.ndarray, seed: Sequence[int], *, axis: int | None = None,
                    image: np.ndarray | None = None, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """Return the region a flood fill from ``seed`` reaches.

    The region is the face-connected (6-connectivity in 3-D, 4 in 2-D) set of voxels that have the
    seed's label and, when ``intensity_range`` is given, an image value within it (HU for CT).

    Parameters
    ----------
    seed : (k, j, i)
    axis : int or None
        None fills in 3-D; 0, 1 or 2 fills only the slice through the seed normal to that axis.

    Raises
    ------
    EditError
        For a seed outside the grid, or a seed voxel outside the intensity range.
    """
    s = _check_index(label_map.shape, seed)
    candidate = label_map == label_map[s]
    if intensity_range is not None:
        candidate &= _region(label_map, np.ones_like(candidate), image, intensity_range)
        if not candidate[s]:
            raise EditError("the seed voxel lies outside the intensity range")
    if axis is None:
        labelled, _ = ndimage.label(candidate)
        return labelled == labelled[s]
    if axis not in (0, 1, 2):
        raise EditError("the plane axis must be 0, 1 or 2")
    plane = [slice(None)] * 3
    plane[axis] = s[axis]
    labelled, _ = ndimage.label(candidate[tuple(plane)])
    seed2 = tuple(v for a, v in enumerate(s) if a != axis)
    out = np.zeros(label_map.shape, dtype=bool)
    out[tuple(plane)] = labelled == labelled[seed2]
    return out


def polygon_mask(shape: Sequence[int], *, axis: int, slice_index: int, vertices: Sequence[Sequence[float]]) -> np.ndarray:
    """Return the voxels inside a polygon drawn on one slice (scissors fill).

    Parameters
    ----------
    axis : 0, 1 or 2
        Axis normal to the slice.
    slice_index : int
        Index of the slice along ``axis``.
    vertices : sequence of (row, col)
        Voxel coordinates in the slice: for axis 0 (j, i), axis 1 (k, i), axis 2 (k, j). At least 3.

    Raises
    ------
    EditError
        Fewer than three vertices, or a slice or axis outside the grid.
    """
    from skimage.draw import polygon

    if axis not in (0, 1, 2):
        raise EditError("the plane axis must be 0, 1 or 2")
    if not 0 <= int(slice_index) < shape[axis]:
        raise EditError(f"slice {slice_index} lies outside the grid", code="out_of_bounds")
    pts = np.asarray(vertices, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise EditError("a polygon needs at least three (row, col) vertices")
    plane_shape = tuple(n for a, n in enumerate(shape) if a != axis)
    rr, cc = polygon(pts[:, 0], pts[:, 1], shape=plane_shape)
    plane = np.zeros(plane_shape, dtype=bool)
    plane[rr, cc] = True
    # Vertices themselves count as inside, so a thin polygon still covers its outline voxels.
    inside = np.round(pts).astype(int)
    ok = (inside[:, 0] >= 0) & (inside[:, 0] < plane_shape[0]) & (inside[:, 1] >= 0) & (inside[:, 1] < plane_shape[1])
    plane[inside[ok, 0], inside[ok, 1]] = True
    out = np.zeros(tuple(shape), dtype=bool)
    index = [slice(None)] * 3
    index[axis] = int(slice_index)
    out[tuple(index)] = plane
    return out
