"""Server-side refinements of a label map, each a pure function returning a new array.

Label maps are ``[k, j, i]`` with ``spacing_mm`` in the same order. Each operation works per
label (``labels=None`` means every label present) and never lets one label grow over another:
voxels a refinement adds are taken only from background (0).

Connectivity is 26 (full 3-D neighbourhood) for components, the convention of 3D Slicer's
"Islands" effect; radii are in mm and become ellipsoidal structuring elements in voxels on
anisotropic grids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .errors import EditError, N_

OPERATIONS = ("largest_component", "remove_small_components", "fill_holes", "opening", "closing", "restrict_to_mask")


def _labels(label_map: np.ndarray, labels: Iterable[int] | None) -> list[int]:
    present = [int(v) for v in np.unique(label_map) if v != 0]
    if labels is None:
        return present
    return [int(v) for v in labels if int(v) in present]


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))


def keep_largest_component(label_map: np.ndarray, *, labels: Iterable[int] | None = None) -> np.ndarray:
    """Keep only the largest 26-connected component of each label; other components become 0.

    Ties keep the component found first in C order. Returns a new array of the same dtype.
    """
    out = label_map.copy()
    for value in _labels(label_map, labels):
        comp, n = _components(label_map == value)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[(comp != 0) & (comp != int(np.argmax(sizes)))] = 0
    return out


def remove_small_components(label_map: np.ndarray, spacing_mm: Sequence[float], *, min_volume_ml: float,
                            labels: Iterable[int] | None = None) -> np.ndarray:
    """Remove 26-connected components smaller than ``min_volume_ml`` (1 mL = 1000 mm³).

    Raises EditError for a negative volume.
    """
    if min_volume_ml is None or min_volume_ml < 0:
        raise EditError(N_("the minimum component volume must be zero or more (mL)"))
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    out = label_map.copy()
    for value in _labels(label_map, labels):
        comp, n = _components(label_map == value)
        if n == 0:
            continue
        sizes_ml = np.bincount(comp.ravel()) * voxel_ml
        small = np.flatnonzero(sizes_ml < min_volume_ml)
        small = small[small != 0]
        if small.size:
            out[np.isin(comp, small)] = 0
    return out


def fill_holes(label_map: np.ndarray, *, mode: str = "3d", axis: int = 0, labels: Iterable[int] | None = None) -> np.ndarray:
    """Fill background holes enclosed by a label.

    Parameters
    ----------
    mode : "3d" or "2d"
        "3d" fills cavities closed in 3-D; "2d" fills holes closed within each slice normal to
        ``axis`` (a vessel running through an organ is a hole per slice but not in 3-D).
    axis : 0, 1 or 2
        Slice normal for ``mode="2d"``.

    Raises EditError for another mode or axis.
    """
    if mode not in ("2d", "3d"):
        raise EditError(N_("fill-holes mode must be '2d' or '3d'"))
    if axis not in (0, 1, 2):
        raise EditError(N_("the plane axis must be 0, 1 or 2"))
    out = label_map.copy()
    for value in _labels(label_map, labels):
        mask = label_map == value
        if mode == "3d":
            filled = ndimage.binary_fill_holes(mask)
        else:
            moved = np.moveaxis(mask, axis, 0)
            filled = np.moveaxis(np.stack([ndimage.binary_fill_holes(s) for s in moved]), 0, axis)
        out[filled & (out == 0)] = value
    return out


def ball(spacing_mm: Sequence[float], radius_mm: float) -> np.ndarray:
    """Return an ellipsoidal structuring element of ``radius_mm`` on a grid of ``spacing_mm`` (k, j, i).

    Raises EditError for a radius that is not positive.
    """
    if not radius_mm or radius_mm <= 0:
        raise EditError(N_("the radius must be positive (mm)"))
    sp = np.asarray(spacing_mm, dtype=float)
    reach = np.floor(radius_mm / sp).astype(int)
    grids = np.ogrid[-reach[0]:reach[0] + 1, -reach[1]:reach[1] + 1, -reach[2]:reach[2] + 1]
    return sum((g * sp[a]) ** 2 for a, g in enumerate(grids)) <= radius_mm ** 2 + 1e-9


def morphology(label_map: np.ndarray, spacing_mm: Sequence[float], *, operation: str, radius_mm: float,
               labels: Iterable[int] | None = None) -> np.ndarray:
    """Apply morphological opening (removes protrusions thinner than the ball) or closing (bridges
    gaps narrower than the ball) per label with a ball of ``radius_mm``.

    Closing grows a label only into background. Raises EditError for another operation or a
    non-positive radius.
    """
    if operation not in ("opening", "closing"):
        raise EditError(N_("the operation must be 'opening' or 'closing'"))
    structure = ball(spacing_mm, radius_mm)
    pad = [(n // 2, n // 2) for n in structure.shape]
    out = label_map.copy()
    for value in _labels(label_map, labels):
        # Pad so that structures touching the border are not eroded by the outside.
        mask = np.pad(label_map == value, pad, mode="constant")
        if operation == "opening":
            result = ndimage.binary_opening(mask, structure=structure)
        else:
            result = ndimage.binary_closing(mask, structure=structure)
        result = result[tuple(slice(p, -p or None) for p, _ in pad)]
        out[(label_map == value) & ~result] = 0
        out[result & (out == 0)] = value
    return out


def restrict_to_mask(label_map: np.ndarray, mask: np.ndarray, *, labels: Iterable[int] | None = None) -> np.ndarray:
    """Set labelled voxels outside ``mask`` (bool, same shape) to background.

    Raises EditError when the mask has another shape.
    """
    if mask.shape != label_map.shape:
        raise EditError(N_("the mask %(shape)s does not match the label map %(shape2)s"),
                        params={"shape": mask.shape, "shape2": label_map.shape}, code="wrong_grid")
    chosen = _labels(label_map, labels)
    out = label_map.copy()
    out[np.isin(label_map, chosen) & ~mask.astype(bool)] = 0
    return out


def refine(label_map: np.ndarray, spacing_mm: Sequence[float], operation: str, params: dict,
           *, mask: np.ndarray | None = None) -> np.ndarray:
    """Dispatch one named refinement (see ``OPERATIONS``) with its JSON parameters.

    ``params`` may hold ``labels`` (list of int) and the operation's own values:
    ``min_volume_ml``; ``mode`` and ``axis``; ``radius_mm``. ``restrict_to_mask`` needs ``mask``.

    Raises EditError for an unknown operation or bad parameters.
    """
    labels = params.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(v, int) for v in labels)):
        raise EditError(N_("labels must be a list of integers"))
    try:
        if operation == "largest_component":
            return keep_largest_component(label_map, labels=labels)
        if operation == "remove_small_components":
            return remove_small_components(label_map, spacing_mm, min_volume_ml=float(params["min_volume_ml"]), labels=labels)
        if operation == "fill_holes":
            return fill_holes(label_map, mode=str(params.get("mode", "3d")), axis=int(params.get("axis", 0)), labels=labels)
        if operation in ("opening", "closing"):
            return morphology(label_map, spacing_mm, operation=operation, radius_mm=float(params["radius_mm"]), labels=labels)
        if operation == "restrict_to_mask":
            if mask is None:
                raise EditError(N_("restrict-to-mask needs a mask segmentation"))
            return restrict_to_mask(label_map, mask, labels=labels)
    except KeyError as exc:
        raise EditError(N_("the operation %(operation)r needs the parameter %(args)r"),
                        params={"operation": operation, "args": exc.args[0]}) from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, EditError):
            raise
        raise EditError(N_("bad parameter for %(operation)r: %(exc)s"),
                        params={"operation": operation, "exc": exc}) from None
    raise EditError(N_("unknown refinement %(operation)r; choose one of %(operations)s"),
                    params={"operation": operation, "operations": ', '.join(OPERATIONS)})
