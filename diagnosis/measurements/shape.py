"""Shape measurements of the segments of a label map: volume, surface area, diameters, components.

Conventions are those of :mod:`annotation.imaging.volume`: arrays are indexed ``[k, j, i]``,
``geometry.spacing_mm`` is in that order, and positions are LPS millimetres.

Definitions (each figure states its source in :func:`measure_segments`):

- the surface is the triangle mesh that marching cubes (Lorensen & Cline, "Marching cubes: a high
  resolution 3D surface construction algorithm", SIGGRAPH 1987) builds on the binary mask padded by
  one voxel at level 0.5, so every vertex is the midpoint of a grid edge joining a voxel inside the
  segment to one outside. This is the mesh pyradiomics' shape class builds (pyradiomics
  ``shape.RadiomicsShape``; IBSI reference manual, section 3.1 "Morphological features"), so the
  surface area and the diameters computed here agree with pyradiomics ``SurfaceArea``,
  ``Maximum3DDiameter`` and ``Maximum2DDiameterSlice``. That mesh is a chamfered staircase whose area
  overestimates a smooth surface (a sphere by about 9 %), so a second, unbiased area estimate is
  given too: the Cauchy–Crofton estimate ``surface_area_crofton_mm2`` (see :func:`crofton_surface_area`);
- the longest axial diameter and its perpendicular follow RECIST 1.1 (Eisenhauer et al., "New response
  evaluation criteria in solid tumours: revised RECIST guideline (version 1.1)", Eur J Cancer 2009;
  45:228-247): the longest diameter in the axial plane, measured on one slice;
- components are 26-connected (voxels touching at a face, an edge or a corner belong together).

Distances are computed from index differences scaled by ``spacing_mm`` alone. That is exact because the
direction matrix of an image grid is a rotation (orthonormal columns), which preserves lengths;
:func:`measure_segments` rejects a geometry whose direction matrix is not orthonormal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import itertools
import math
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, SphericalVoronoi
from skimage.measure import marching_cubes, mesh_surface_area

from annotation.imaging.volume import Geometry

__all__ = [
    "ComponentMeasurement",
    "SegmentMeasurement",
    "crofton_surface_area",
    "largest_finding",
    "measure_segments",
]

# 26-connectivity: the full 3×3×3 neighbourhood.
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)

# Above this many points a convex hull is cheaper than comparing every pair.
_HULL_MIN_POINTS = 64

# Direction matrices read from files carry rounding noise of about 1e-6; a shear is far larger.
_ORTHONORMAL_TOLERANCE = 1e-3

# Label maps whose largest value is above this are scanned with np.unique instead of
# ndimage.find_objects, which allocates one entry per possible label value.
_FIND_OBJECTS_MAX_LABEL = 1 << 20

# Slices whose longest diameters differ by less than this (mm) are treated as tied.
_TIE_MM = 1e-6


@dataclass(frozen=True)
class ComponentMeasurement:
    """Shape figures of one 26-connected component of a segment.

    Attributes
    ----------
    voxel_count : int
        Voxels in the component.
    volume_ml : float
        ``voxel_count`` × voxel volume, in mL (pyradiomics ``VoxelVolume`` / 1000).
    surface_area_mm2 : float
        Area of the marching-cubes mesh in mm² (pyradiomics ``SurfaceArea``).
    surface_area_crofton_mm2 : float
        Cauchy–Crofton estimate of the area of the smooth surface the mask samples, in mm²
        (:func:`crofton_surface_area`); within about 1 % of 4πr² for spheres, where the mesh area is
        about 9 % high.
    max_diameter_mm : float
        Largest distance between two mesh vertices in mm (pyradiomics ``Maximum3DDiameter``).
    axial_long_mm : float
        Longest in-plane diameter over the slices perpendicular to ``geometry.axial_axis()``, in mm
        (RECIST 1.1 longest diameter).
    axial_short_mm : float
        Longest diameter perpendicular to the long axis on the same slice, in mm.
    axial_slice_index : int
        Index along ``geometry.axial_axis()`` of the slice holding ``axial_long_mm``; -1 when empty.
    centroid_lps_mm : tuple of 3 float
        Mean position of the voxel centres, LPS mm.
    """

    voxel_count: int
    volume_ml: float
    surface_area_mm2: float
    surface_area_crofton_mm2: float
    max_diameter_mm: float
    axial_long_mm: float
    axial_short_mm: float
    axial_slice_index: int
    centroid_lps_mm: tuple[float, float, float]

    def to_dict(self) -> dict:
        """Return the figures as a JSON-safe dict (plain ints, floats and lists)."""
        return {
            "voxel_count": self.voxel_count,
            "volume_ml": self.volume_ml,
            "surface_area_mm2": self.surface_area_mm2,
            "surface_area_crofton_mm2": self.surface_area_crofton_mm2,
            "max_diameter_mm": self.max_diameter_mm,
            "axial_long_mm": self.axial_long_mm,
            "axial_short_mm": self.axial_short_mm,
            "axial_slice_index": self.axial_slice_index,
            "centroid_lps_mm": list(self.centroid_lps_mm),
        }


@dataclass(frozen=True)
class SegmentMeasurement:
    """Shape and intensity figures of one segment (one label value) of a label map.

    The shape figures are defined as in :class:`ComponentMeasurement` but over the whole segment, so
    for a segment of several components the diameters may span two of them; per-lesion figures are
    in ``components``.

    Attributes
    ----------
    label : int
        The label value.
    voxel_count, volume_ml, surface_area_mm2, surface_area_crofton_mm2, max_diameter_mm, axial_long_mm, axial_short_mm, axial_slice_index
        As in :class:`ComponentMeasurement`, over the whole segment.
    slice_areas_mm2 : dict of int to float
        Axial slice index (along ``geometry.axial_axis()``) → segment area on that slice in mm²
        (voxel count × in-plane pixel area); only slices holding the segment.
    component_count : int
        Number of 26-connected components.
    components : tuple of ComponentMeasurement
        One per component, largest voxel count first (ties in raster order of their first voxel).
    centroid_lps_mm : tuple of 3 float
        Mean position of the voxel centres, LPS mm.
    mean_intensity, std_intensity : float or None
        Mean and population standard deviation (ddof = 0, as pyradiomics ``firstorder``) of the image
        inside the segment, in image units (HU for CT); None when no image was given or the segment
        is empty.
    """

    label: int
    voxel_count: int
    volume_ml: float
    surface_area_mm2: float
    surface_area_crofton_mm2: float
    max_diameter_mm: float
    axial_long_mm: float
    axial_short_mm: float
    axial_slice_index: int
    slice_areas_mm2: dict[int, float]
    component_count: int
    components: tuple[ComponentMeasurement, ...]
    centroid_lps_mm: tuple[float, float, float]
    mean_intensity: float | None
    std_intensity: float | None

    def to_dict(self) -> dict:
        """Return the figures as a JSON-safe dict (``slice_areas_mm2`` keys become strings)."""
        return {
            "label": self.label,
            "voxel_count": self.voxel_count,
            "volume_ml": self.volume_ml,
            "surface_area_mm2": self.surface_area_mm2,
            "surface_area_crofton_mm2": self.surface_area_crofton_mm2,
            "max_diameter_mm": self.max_diameter_mm,
            "axial_long_mm": self.axial_long_mm,
            "axial_short_mm": self.axial_short_mm,
            "axial_slice_index": self.axial_slice_index,
            "slice_areas_mm2": {str(k): v for k, v in self.slice_areas_mm2.items()},
            "component_count": self.component_count,
            "components": [c.to_dict() for c in self.components],
            "centroid_lps_mm": list(self.centroid_lps_mm),
            "mean_intensity": self.mean_intensity,
            "std_intensity": self.std_intensity,
        }


def measure_segments(
    label_map: np.ndarray,
    geometry: Geometry,
    *,
    image: np.ndarray | None = None,
    labels: Sequence[int] | None = None,
) -> list[SegmentMeasurement]:
    """Measure every segment of a label map.

    Parameters
    ----------
    label_map : ndarray, shape (k, j, i), integer or bool dtype
        Label value per voxel; 0 is background, negative values are invalid. A bool array is read as
        label 1.
    geometry : Geometry
        The grid of ``label_map`` (``geometry.shape == label_map.shape``); its direction matrix must be
        orthonormal.
    image : ndarray, shape (k, j, i), optional
        Intensities on the same grid (HU for CT) for ``mean_intensity`` / ``std_intensity``.
    labels : sequence of int, optional
        Labels to measure, in this order. A listed label with no voxels gives a measurement with
        ``voxel_count == 0``, all other figures 0, ``axial_slice_index == -1``, no components and
        ``None`` intensities. By default every label present, ascending.

    Returns
    -------
    list of SegmentMeasurement
        One per measured label.

    Raises
    ------
    ValueError
        When ``label_map`` is not a 3-D integer (or bool) array, holds negative values, or its shape
        differs from ``geometry.shape``; when ``image`` is given with another shape or a non-numeric
        dtype; when ``labels`` holds a value < 1 or a duplicate; when the direction matrix is not
        orthonormal.

    Notes
    -----
    Figures and their sources:

    - volume: voxel count × voxel volume (pyradiomics ``VoxelVolume``, IBSI "approximate volume"),
      mm³ / 1000 → mL;
    - surface area: marching cubes (Lorensen & Cline 1987; ``skimage.measure.marching_cubes``,
      ``method="lorensen"``, level 0.5) on the mask padded by one voxel, with vertices scaled by the
      spacing, and ``skimage.measure.mesh_surface_area`` (pyradiomics ``SurfaceArea``, IBSI "surface
      area"). On a binary mask the vertices are edge midpoints, so the mesh is a chamfered staircase:
      it overestimates the area of a smooth surface (a sphere by about 9 % on isotropic grids at any
      resolution, more on anisotropic ones). That is the definition, shared with pyradiomics;
    - Crofton surface area: the Cauchy–Crofton estimate of :func:`crofton_surface_area`, which does
      not carry the staircase bias (spheres within about 1 % on isotropic and anisotropic grids);
    - maximum 3-D diameter: largest distance between two mesh vertices (pyradiomics
      ``Maximum3DDiameter``, IBSI "maximum 3D diameter"). Only vertices on the convex hull can be the
      ends of it, so the hull (``scipy.spatial.ConvexHull``) is taken first and its vertices compared
      pairwise; a degenerate hull falls back to comparing all points;
    - longest axial diameter (RECIST 1.1): on each slice perpendicular to ``geometry.axial_axis()`` the
      mesh vertices lying in that slice's plane (integer coordinate along the axis) are exactly the
      marching-squares contour of the slice; the longest distance between two of them is the slice's
      diameter, and the largest over slices is ``axial_long_mm``. pyradiomics
      ``Maximum2DDiameterSlice`` uses the same vertices but also compares the vertices on the planes
      halfway between two slices, which mix the outlines of both neighbours (even of two separate
      components); those planes hold no image, so this RECIST figure leaves them out and can be
      smaller than pyradiomics' (47.97 against 53.59 mm on pyradiomics' brain1 case; equal or within a
      pixel on its other cases). Slices tied within 1e-6 mm go to the one nearest the centroid. Slices
      are "axial" in array terms: an oblique acquisition is measured in its own slice planes;
    - short axis: on the same slice, the longest extent perpendicular to the long axis, taken over
      pairs of contour vertices whose offset along the long axis is at most one in-plane pixel
      (the larger in-plane spacing) and measured as the pair's separation perpendicular to the long
      axis. Contour vertices lie at most half a pixel apart along the contour, so every perpendicular
      chord has such a pair at its ends;
    - centroid: mean voxel index mapped by ``geometry.index_to_lps`` (DICOM PS3.3 C.7.6.2.1.1);
    - intensity: mean and population standard deviation of ``image`` over the segment's voxels.

    Everything heavy runs on the segment's bounding box, so the cost grows with the segment, not with
    the volume: one pass over the whole map finds the bounding boxes.
    """
    label_map = _validated_label_map(label_map, geometry)
    if image is not None:
        image = np.asarray(image)
        if image.shape != label_map.shape:
            raise ValueError(f"image shape {image.shape} does not match label map shape {label_map.shape}")
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise ValueError(f"image must be an integer or floating-point array, got dtype {image.dtype}")
    wanted = _validated_labels(labels)
    boxes = _bounding_boxes(label_map, wanted)
    labels_to_measure = wanted if wanted is not None else sorted(boxes)
    axial = geometry.axial_axis()

    results = []
    for label in labels_to_measure:
        box = boxes.get(label)
        if box is None:
            results.append(_empty_segment(label))
            continue
        mask = label_map[box] == label
        offset = tuple(s.start for s in box)
        results.append(_measure_segment(label, mask, offset, geometry, axial, image, box))
    return results


def largest_finding(measurements: Sequence[SegmentMeasurement]) -> tuple[int, ComponentMeasurement] | None:
    """Return the label and the largest component over all segments, or None when there is none.

    The largest is the component with the most voxels (ties: the larger ``axial_long_mm``, then the
    earlier segment); its ``axial_slice_index`` and ``centroid_lps_mm`` place key images.

    Parameters
    ----------
    measurements : sequence of SegmentMeasurement
        As returned by :func:`measure_segments`.

    Returns
    -------
    tuple of (int, ComponentMeasurement) or None
        ``(label, component)``; None when every segment is empty.
    """
    best: tuple[int, ComponentMeasurement] | None = None
    for segment in measurements:
        for component in segment.components:
            if best is None or (component.voxel_count, component.axial_long_mm) > (
                best[1].voxel_count,
                best[1].axial_long_mm,
            ):
                best = (segment.label, component)
    return best


# --------------------------------------------------------------------------------------------------
# Validation and bounding boxes


def _validated_label_map(label_map: np.ndarray, geometry: Geometry) -> np.ndarray:
    if not isinstance(label_map, np.ndarray):
        raise ValueError(f"label map must be a numpy array, got {type(label_map).__name__}")
    if label_map.ndim != 3:
        raise ValueError(f"label map must be 3-D (k, j, i), got shape {label_map.shape}")
    if label_map.dtype == bool:
        label_map = label_map.view(np.uint8)
    elif not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"label map must have an integer dtype, got {label_map.dtype}")
    if tuple(label_map.shape) != geometry.shape:
        raise ValueError(f"label map shape {label_map.shape} does not match geometry shape {geometry.shape}")
    if np.issubdtype(label_map.dtype, np.signedinteger) and label_map.size and label_map.min() < 0:
        raise ValueError("label map holds negative values; labels are 0 (background) or positive integers")
    rotation = geometry.direction_matrix
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=_ORTHONORMAL_TOLERANCE):
        raise ValueError(
            "geometry.direction is not orthonormal; distances from voxel spacing would be wrong "
            f"(direction = {geometry.direction})"
        )
    return label_map


def _validated_labels(labels: Sequence[int] | None) -> list[int] | None:
    if labels is None:
        return None
    result = []
    for value in labels:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"labels must be integers, got {value!r}")
        if value < 1:
            raise ValueError(f"labels must be positive (0 is background), got {value}")
        result.append(int(value))
    if len(set(result)) != len(result):
        raise ValueError(f"labels must not repeat, got {list(labels)}")
    return result


def _bounding_boxes(label_map: np.ndarray, wanted: list[int] | None) -> dict[int, tuple[slice, slice, slice]]:
    """Return ``{label: bounding-box slices}`` for the labels present (restricted to ``wanted``)."""
    if label_map.size == 0:
        return {}
    highest = int(label_map.max())
    if highest == 0:
        return {}
    if wanted is not None:
        highest = min(highest, max(wanted))
        if highest < 1:
            return {}
    if highest <= _FIND_OBJECTS_MAX_LABEL:
        # One C pass over the map for all labels at once.
        found = ndimage.find_objects(label_map, max_label=highest)
        boxes = {value: box for value, box in enumerate(found, start=1) if box is not None}
    else:
        present = {int(v) for v in np.unique(label_map) if v > 0}
        boxes = {}
        for value in sorted(present if wanted is None else present.intersection(wanted)):
            nonzero = np.nonzero(label_map == value)
            boxes[value] = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in nonzero)
    if wanted is not None:
        listed = set(wanted)
        boxes = {value: box for value, box in boxes.items() if value in listed}
    return boxes


def _empty_segment(label: int) -> SegmentMeasurement:
    return SegmentMeasurement(
        label=label,
        voxel_count=0,
        volume_ml=0.0,
        surface_area_mm2=0.0,
        surface_area_crofton_mm2=0.0,
        max_diameter_mm=0.0,
        axial_long_mm=0.0,
        axial_short_mm=0.0,
        axial_slice_index=-1,
        slice_areas_mm2={},
        component_count=0,
        components=(),
        centroid_lps_mm=(0.0, 0.0, 0.0),
        mean_intensity=None,
        std_intensity=None,
    )


# --------------------------------------------------------------------------------------------------
# Measuring one mask


def _measure_segment(
    label: int,
    mask: np.ndarray,
    offset: tuple[int, int, int],
    geometry: Geometry,
    axial: int,
    image: np.ndarray | None,
    box: tuple[slice, slice, slice],
) -> SegmentMeasurement:
    whole, axial_counts = _measure_mask(mask, offset, geometry, axial)

    components, count = ndimage.label(mask, structure=_STRUCTURE_26)
    if count == 1:
        # The only component is the segment itself: reuse its figures rather than meshing twice.
        parts = [whole]
    else:
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        order = sorted(range(count), key=lambda n: (-sizes[n], n))
        part_boxes = ndimage.find_objects(components)
        parts = []
        for n in order:
            part_box = part_boxes[n]
            part_offset = tuple(o + s.start for o, s in zip(offset, part_box))
            part, _ = _measure_mask(components[part_box] == n + 1, part_offset, geometry, axial)
            parts.append(part)

    pixel_area = float(np.prod([s for a, s in enumerate(geometry.spacing_mm) if a != axial]))
    slice_areas = {
        int(offset[axial] + n): float(c) * pixel_area for n, c in enumerate(axial_counts.tolist()) if c > 0
    }

    mean = std = None
    if image is not None:
        # Gathering only the segment's values keeps the float64 copy as small as the segment.
        values = image[box][mask]
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))

    return SegmentMeasurement(
        label=int(label),
        voxel_count=whole.voxel_count,
        volume_ml=whole.volume_ml,
        surface_area_mm2=whole.surface_area_mm2,
        surface_area_crofton_mm2=whole.surface_area_crofton_mm2,
        max_diameter_mm=whole.max_diameter_mm,
        axial_long_mm=whole.axial_long_mm,
        axial_short_mm=whole.axial_short_mm,
        axial_slice_index=whole.axial_slice_index,
        slice_areas_mm2=slice_areas,
        component_count=int(count),
        components=tuple(parts),
        centroid_lps_mm=whole.centroid_lps_mm,
        mean_intensity=mean,
        std_intensity=std,
    )


def _measure_mask(
    mask: np.ndarray, offset: tuple[int, int, int], geometry: Geometry, axial: int
) -> tuple[ComponentMeasurement, np.ndarray]:
    """Measure a non-empty bool mask cropped at ``offset``; also return its voxel counts per axial slice."""
    spacing = np.asarray(geometry.spacing_mm, dtype=float)
    voxel_count = int(np.count_nonzero(mask))

    # The centroid from the three axis projections avoids materialising every voxel index.
    projections = [np.count_nonzero(mask, axis=tuple(b for b in range(3) if b != a)) for a in range(3)]
    centroid_index = np.array(
        [offset[a] + float(np.arange(p.size) @ p) / voxel_count for a, p in enumerate(projections)]
    )
    centroid_lps = tuple(float(x) for x in geometry.index_to_lps(centroid_index))

    vertices_index, faces = _mesh(mask)
    area = float(mesh_surface_area(vertices_index * spacing, faces))

    # Diameters are defined on the edge-midpoint vertices (pyradiomics' vertex set); scaled by 2 they
    # are exact integers, which makes "lies in slice plane n" an exact test.
    doubled = np.rint(vertices_index * 2.0)
    on_edges = np.all(np.abs(vertices_index * 2.0 - doubled) < 1e-6, axis=1)
    doubled = doubled[on_edges].astype(np.int64)

    max_diameter = _max_diameter_3d(doubled, spacing, mask.shape)
    long_mm, short_mm, slice_local = _axial_diameters(
        doubled, spacing, axial, centroid_index[axial] - offset[axial]
    )

    measurement = ComponentMeasurement(
        voxel_count=voxel_count,
        volume_ml=voxel_count * geometry.voxel_volume_mm3 / 1000.0,
        surface_area_mm2=area,
        surface_area_crofton_mm2=crofton_surface_area(mask, spacing),
        max_diameter_mm=max_diameter,
        axial_long_mm=long_mm,
        axial_short_mm=short_mm,
        axial_slice_index=int(offset[axial] + slice_local),
        centroid_lps_mm=centroid_lps,
    )
    return measurement, projections[axial]


def _crofton_directions() -> tuple[tuple[int, int, int], ...]:
    """Return the 13 grid directions of the 26-neighbourhood, one of each ± pair."""
    out: list[tuple[int, int, int]] = []
    for d in itertools.product((-1, 0, 1), repeat=3):
        if d != (0, 0, 0) and tuple(-x for x in d) not in out:
            out.append(d)
    return tuple(out)


_CROFTON_DIRECTIONS = _crofton_directions()


@lru_cache(maxsize=64)
def _crofton_weights(spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Return (weights (13,), step lengths in mm (13,)) of the Crofton directions on this grid.

    Each direction's weight is the share of the unit sphere nearer to it (or to its opposite) than to
    any other of the 26 physical directions: the spherical Voronoi cell areas over 4π, which depend on
    the voxel spacing. The weights sum to 1.
    """
    steps = np.array(_CROFTON_DIRECTIONS, dtype=float) * np.asarray(spacing_mm, dtype=float)
    lengths = np.linalg.norm(steps, axis=1)
    units = steps / lengths[:, None]
    voronoi = SphericalVoronoi(np.vstack([units, -units]), radius=1.0)
    areas = voronoi.calculate_areas()
    n = len(_CROFTON_DIRECTIONS)
    return (areas[:n] + areas[n:]) / (4.0 * math.pi), lengths


def crofton_surface_area(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Estimate the area of the surface bounding a binary mask with the Cauchy–Crofton formula.

    For lines of a fixed direction u, the number of times they cross a surface, integrated over the
    plane perpendicular to u, is ∫|n·u| dS; averaged over all directions that is S/2 (Cauchy–Crofton;
    stereologically S_V = 2·P_L). On the voxel grid the lines are the grid lines along the 13 directions
    of the 26-neighbourhood: each pair of neighbours (x, x + d) with one inside and one outside is one
    crossing, and the lines of direction d have one per voxel, so the area perpendicular per line is
    voxel volume / |d|. The directions are averaged with spherical-Voronoi weights computed for the
    actual spacing, which is what makes the estimate valid on anisotropic grids. Method: Lehmann &
    Legland, "Efficient N-dimensional surface estimation using Crofton formula and run-length
    encoding", Insight Journal 2012 (as in MorphoLibJ's 13-direction surface area); Ohser & Mücklich,
    "Statistical analysis of microstructures in materials science", Wiley 2000, ch. 4.

    Parameters
    ----------
    mask : ndarray, shape (k, j, i), bool
        The object; voxels outside the array count as outside.
    spacing_mm : sequence of 3 float
        Voxel spacing along (k, j, i) in mm; the grid axes are taken as orthogonal.

    Returns
    -------
    float
        Estimated surface area in mm² (0 for an empty mask). A sphere of radius r gives 4πr² within
        about 1 % once r spans a few voxels (tested on 0.5 mm isotropic and 2.5×0.7×0.9 mm grids).

    Raises
    ------
    ValueError
        When ``mask`` is not 3-D or ``spacing_mm`` does not hold three positive numbers.
    """
    mask = np.asarray(mask, dtype=bool)
    spacing = tuple(float(s) for s in spacing_mm)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D (k, j, i), got shape {mask.shape}")
    if len(spacing) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing_mm must be three positive numbers, got {spacing_mm!r}")
    padded = np.pad(mask, 1)
    shape = padded.shape
    weights, lengths = _crofton_weights(spacing)
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    total = 0.0
    for d, weight, length in zip(_CROFTON_DIRECTIONS, weights, lengths):
        here = tuple(slice(max(0, -x), n - max(0, x)) for n, x in zip(shape, d))
        there = tuple(slice(max(0, x), n - max(0, -x)) for n, x in zip(shape, d))
        crossings = np.count_nonzero(padded[here] != padded[there])
        total += weight * crossings * voxel_mm3 / length
    return float(2.0 * total)


def _mesh(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return marching-cubes vertices (index units of ``mask``, shape (V, 3)) and faces (F, 3)."""
    # Padding closes the surface where the segment touches the crop (or volume) border.
    padded = np.zeros(tuple(n + 2 for n in mask.shape), dtype=np.float32)
    padded[1:-1, 1:-1, 1:-1] = mask
    # method="lorensen" is the classic table pyradiomics also uses; on these binary masks it gives the
    # same area as Lewiner's variant and adds no cube-centre vertices.
    vertices, faces, _, _ = marching_cubes(padded, level=0.5, method="lorensen")
    return vertices.astype(np.float64) - 1.0, faces


def _line_extremes(points: np.ndarray, line_axis: int) -> np.ndarray:
    """Return indices of the points that are extreme along ``line_axis`` among points sharing the other coordinates.

    Points sharing the other coordinates lie on one line parallel to ``line_axis``; the inner ones are
    convex combinations of the two ends, so dropping them changes neither the convex hull nor any
    farthest pair.
    """
    others = [a for a in range(points.shape[1]) if a != line_axis]
    keys = [points[:, line_axis]] + [points[:, a] for a in reversed(others)]
    order = np.lexsort(keys)
    grouped = points[order][:, others]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = np.any(grouped[1:] != grouped[:-1], axis=1)
    ends = np.ones(len(order), dtype=bool)
    ends[:-1] = starts[1:]
    return order[starts | ends]


def _farthest_pair(points: np.ndarray) -> tuple[float, int, int]:
    """Return the largest pairwise distance of ``points`` (n, d) and the indices of a pair attaining it."""
    n = len(points)
    if n < 2:
        return 0.0, 0, 0
    candidates = np.arange(n)
    if n > _HULL_MIN_POINTS:
        try:
            candidates = ConvexHull(points).vertices
        except (QhullError, ValueError):
            # Flat or degenerate point sets: compare all pairs instead.
            candidates = np.arange(n)
    hull = points[candidates]

    # A quick lower bound (farthest point from the centre, then farthest from that) prunes points that
    # cannot belong to a longer pair: |p - q| <= |p - c| + max |q - c|.
    centre = hull.mean(axis=0)
    radius = np.linalg.norm(hull - centre, axis=1)
    first = int(np.argmax(radius))
    second = int(np.argmax(np.linalg.norm(hull - hull[first], axis=1)))
    best_sq = float(np.sum((hull[first] - hull[second]) ** 2))
    best = (first, second)
    keep = np.nonzero(radius + radius.max() >= np.sqrt(best_sq) - 1e-9)[0]

    reduced = hull[keep]
    block = 256  # rows per step: temporaries of block × n × d floats stay a few tens of MB
    for start in range(0, len(reduced), block):
        rows = reduced[start : start + block]
        # Only pairs (p, q) with q at or after p: the distance is symmetric.
        squared = np.sum((rows[:, None, :] - reduced[None, start:, :]) ** 2, axis=2)
        flat = int(np.argmax(squared))
        r, c = divmod(flat, squared.shape[1])
        if squared[r, c] > best_sq:
            best_sq = float(squared[r, c])
            best = (int(keep[start + r]), int(keep[start + c]))
    return float(np.sqrt(best_sq)), int(candidates[best[0]]), int(candidates[best[1]])


def _max_diameter_3d(doubled: np.ndarray, spacing: np.ndarray, crop_shape: tuple[int, ...]) -> float:
    """Return the largest distance (mm) between vertices given as doubled integer indices (n, 3)."""
    # Collapse lines along the longest crop axis: it removes the most points.
    line_axis = int(np.argmax(crop_shape))
    kept = doubled[_line_extremes(doubled, line_axis)]
    distance, _, _ = _farthest_pair(kept * (spacing / 2.0))
    return distance


def _axial_diameters(
    doubled: np.ndarray, spacing: np.ndarray, axial: int, centroid_axial: float
) -> tuple[float, float, int]:
    """Return (long mm, short mm, crop-local slice index) of the RECIST axial diameters."""
    in_plane = [a for a in range(3) if a != axial]
    on_slice = doubled[doubled[:, axial] % 2 == 0]
    plane_spacing = spacing[in_plane] / 2.0

    # Per slice, collapse each row to its two ends (hull-preserving), then sort rows by slice.
    reduced = on_slice[_line_extremes(on_slice, in_plane[1])]
    reduced = reduced[np.argsort(reduced[:, axial], kind="stable")]
    slice_values, starts = np.unique(reduced[:, axial], return_index=True)
    stops = np.append(starts[1:], len(reduced))

    # Visit slices from the widest bounding box down, and stop once no box can beat the best.
    groups = []
    for value, start, stop in zip(slice_values, starts, stops):
        points = reduced[start:stop][:, in_plane] * plane_spacing
        bound = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
        groups.append((bound, int(value) // 2, points))
    groups.sort(key=lambda g: -g[0])

    best_long = -1.0
    tied: list[tuple[int, np.ndarray, np.ndarray]] = []
    for bound, slice_index, points in groups:
        if bound < best_long - _TIE_MM:
            break
        distance, p, q = _farthest_pair(points)
        if distance > best_long + _TIE_MM:
            best_long = distance
            tied = [(slice_index, points[p], points[q])]
        elif distance >= best_long - _TIE_MM:
            tied.append((slice_index, points[p], points[q]))

    slice_index, end_a, end_b = min(tied, key=lambda t: (abs(t[0] - centroid_axial), t[0]))
    contour = on_slice[on_slice[:, axial] == 2 * slice_index][:, in_plane] * plane_spacing
    short = _perpendicular_diameter(contour, end_b - end_a, tolerance_mm=float(spacing[in_plane].max()))
    return float(best_long), short, slice_index


def _perpendicular_diameter(contour: np.ndarray, long_axis: np.ndarray, *, tolerance_mm: float) -> float:
    """Return the longest extent of ``contour`` (n, 2) mm perpendicular to ``long_axis``.

    Pairs of contour points whose offset along the long axis is at most ``tolerance_mm`` count as
    perpendicular; their separation across the long axis is the candidate length.
    """
    length = float(np.linalg.norm(long_axis))
    if length == 0.0:
        return 0.0
    along_unit = long_axis / length
    across_unit = np.array([-along_unit[1], along_unit[0]])
    along = contour @ along_unit
    across = contour @ across_unit
    best = 0.0
    block = 512
    for start in range(0, len(contour), block):
        d_along = np.abs(along[start : start + block, None] - along[None, start:])
        d_across = np.abs(across[start : start + block, None] - across[None, start:])
        d_across[d_along > tolerance_mm] = 0.0
        best = max(best, float(d_across.max()))
    return best
