"""Classical lung-nodule detection on chest CT, with no training.

A computer-aided detection (CAD) pipeline in the tradition of the pre-deep-learning systems the
LUNA16 challenge compared (Setio et al., Med. Image Anal. 42:1–13, 2017; Jacobs et al., Med. Image
Anal. 18:374–384, 2014; Murphy et al., Med. Image Anal. 13:757–770, 2009):

1. Lung mask: the classical segmentation of :mod:`annotation.ml.lung` (Hu et al. 2001), corrected
   for juxtapleural nodules. A threshold mask leaves out a nodule that touches the chest wall (it is
   soft tissue next to soft tissue) and leaves a notch in the lung outline. Each lung is closed per
   axial slice with a disk of :data:`JUXTAPLEURAL_RADIUS_MM` (the "rolling ball" of Armato et al.,
   Radiology 213:485–492, 1999, and Sluimer et al., IEEE TMI 25:385–405, 2006), which fills notches
   narrower than the disk but not the wide mediastinal concavity; then holes are filled per slice.
2. Blob enhancement: the scale-normalised Laplacian of Gaussian ``-σ² ∇²G_σ * I`` (Lindeberg,
   IJCV 30:79–116, 1998) at σ = r / √3 for nodule radii r from 1.5 to 15 mm (diameters 3–30 mm),
   σ given in mm and converted per axis with the voxel spacing, on a grid of about 1.4 mm in-plane
   with everything outside the corrected lung set to aerated lung (-1000 HU), so that the chest
   wall itself does not respond.
3. Candidates: local maxima of the response over scales inside the corrected lung whose response
   and smoothed density exceed fixed thresholds.
4. Segmentation of each candidate: region growing from the peak in its neighbourhood (the
   connected voxels above a threshold half-way between the nodule's density and aerated lung,
   inside a sphere of twice the detected radius and inside the corrected lung), then an opening
   with a ball of a third of the radius that cuts thin vessels touching the nodule.
5. False-positive reduction from shape and intensity features: sphericity
   ``π^{1/3} (6V)^{2/3} / A`` (Wadell 1935; surface ``A`` from marching cubes), elongation (square
   root of the ratio of the smallest to the largest principal moment), the blob measure of the
   Hessian at the detected scale (Frangi et al., MICCAI 1998; Li, Sone & Doi, Med. Phys. 30:2040–2051,
   2003: a blob has three negative eigenvalues of similar size, a vessel two), the fraction of the
   segment on its search sphere (a vessel runs out of it) and the mean and maximum HU.
6. Confidence: a logistic function of those features with hand-set weights (no training data),
   in [0, 1]; candidates below ``min_confidence`` are dropped.

Limitations: calcified and very dense nodules are found like any solid nodule; nodules under 3 mm
and pure ground-glass nodules fainter than about -650 HU are mostly missed; a nodule inside a wide
notch of the lung outline (over :data:`JUXTAPLEURAL_RADIUS_MM` deep) is outside the corrected mask.

Input is CT in Hounsfield units, array (k, j, i) with its geometry. Output: one label per nodule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from annotation.imaging.volume import Volume

from .lung import LEFT_LUNG, RIGHT_LUNG, segment_lungs
from .progress import ProgressCallback, ProgressReporter

__all__ = [
    "DETECTOR_NAME",
    "DETECTOR_VERSION",
    "JUXTAPLEURAL_RADIUS_MM",
    "NoduleCandidate",
    "NoduleDetection",
    "NoduleDetector",
    "candidate_features",
    "correct_lung_mask",
    "detect_nodules",
    "segment_nodule",
]

DETECTOR_NAME = "ct-lung-nodule"
DETECTOR_VERSION = "1"
JUXTAPLEURAL_RADIUS_MM = 15.0
"""Radius of the disk that closes the lung outline per slice: notches up to about 30 mm wide, the
size of the largest nodules (3 cm), are closed."""

_AERATED_HU = -1000.0
_WORK_SPACING_MM = 1.4
_RADII_MM = (1.5, 2.25, 3.4, 5.0, 7.5, 11.0, 15.0)
_MIN_RESPONSE_HU = 120.0
_MIN_PEAK_HU = -650.0
_MAX_CANDIDATES = 150
_LUNG_HU = -850.0
_MIN_DIAMETER_MM = 3.0
_MAX_DIAMETER_MM = 35.0

_INPLANE_FACES = np.zeros((3, 3, 3), dtype=bool)
_INPLANE_FACES[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class NoduleCandidate:
    """One detected nodule (or candidate) with its segmentation and features.

    Attributes
    ----------
    centre_index : tuple of 3 float
        Centroid of the segmented nodule, continuous (k, j, i) voxel index on the input grid.
    centre_lps_mm : tuple of 3 float
        The same point in LPS mm.
    radius_mm : float
        Radius of the detected blob scale (σ √3).
    diameter_mm : float
        Diameter of the sphere with the segmented volume.
    confidence : float
        In [0, 1].
    side : str
        ``"right"``, ``"left"`` or ``""`` (lung label at the centre; right lung at smaller LPS x).
    features : dict of str to float
        ``sphericity``, ``elongation``, ``blobness``, ``vessel_likeness``, ``border_fraction``,
        ``mean_hu``, ``max_hu``, ``response``, ``volume_ml``.
    box : tuple of 3 slice
        Bounding box of ``mask`` in the input grid.
    mask : ndarray of bool
        The nodule's voxels inside ``box``.
    """

    centre_index: tuple[float, float, float]
    centre_lps_mm: tuple[float, float, float]
    radius_mm: float
    diameter_mm: float
    confidence: float
    side: str
    features: dict
    box: tuple = field(repr=False)
    mask: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class NoduleDetection:
    """The result of :func:`detect_nodules`.

    Attributes
    ----------
    candidates : list of NoduleCandidate
        Most confident first; all of them at or above ``min_confidence``.
    lung_mask : ndarray of uint8, shape of the input
        The corrected lung labels (1 right, 2 left) the detection ran in.
    label_map : ndarray of uint16, shape of the input
        Candidate *n* (1-based, in ``candidates`` order) as label *n*.
    label_table : list of dict
        One entry per label: ``index``, ``name``, ``name_zh``, ``color``, ``kind`` (``"lung_nodule"``),
        ``confidence``, ``side`` and ``features``.
    """

    candidates: list[NoduleCandidate]
    lung_mask: np.ndarray = field(repr=False)
    label_map: np.ndarray = field(repr=False)
    label_table: list[dict]


# --------------------------------------------------------------------------------------------------
# Lung mask with juxtapleural nodules
# --------------------------------------------------------------------------------------------------


def correct_lung_mask(
    lungs: np.ndarray, spacing_mm, *, axial_axis: int = 0, radius_mm: float = JUXTAPLEURAL_RADIUS_MM
) -> np.ndarray:
    """Close each lung's outline per axial slice with a disk, so that juxtapleural nodules are inside.

    Parameters
    ----------
    lungs : ndarray, integer, shape (k, j, i)
        Lung labels (1 right, 2 left; 0 background), e.g. from :func:`annotation.ml.lung.segment_lungs`.
    spacing_mm : sequence of 3 float
        Voxel spacing in the array's axis order (mm).
    axial_axis : int
        The array axis across axial slices.
    radius_mm : float
        Disk radius (mm); notches narrower than twice this are closed.

    Returns
    -------
    ndarray of uint8, same shape
        The corrected labels: every voxel of ``lungs`` keeps its label, closed notches and filled
        holes get the label of their lung (never a voxel of the other lung).

    Notes
    -----
    Morphological closing = dilation then erosion by the disk, computed exactly with Euclidean
    distance transforms (a voxel is in the dilation when its distance to the mask is ≤ r, and stays
    after erosion when its distance to the dilation's outside is > r), on a grid of about 1.4 mm
    in-plane (the closing fills notches of centimetres, so the coarse grid loses nothing of them;
    the original voxels are always kept).
    """
    lungs = np.asarray(lungs)
    spacing = np.asarray(spacing_mm, dtype=float)
    order = [axial_axis] + [a for a in range(3) if a != axial_axis]
    work = np.transpose(lungs, order)
    sp = spacing[order]
    factors = (1,) + tuple(max(1, int(round(_WORK_SPACING_MM / s))) for s in sp[1:])
    out = work.astype(np.uint8, copy=True)
    for value in (RIGHT_LUNG, LEFT_LUNG):
        mask = work == value
        objects = ndimage.find_objects(mask.astype(np.uint8))
        if not objects:
            continue
        pad = [0] + [int(math.ceil(radius_mm / s)) + 2 for s in sp[1:]]
        box = tuple(slice(max(0, o.start - p), min(n, o.stop + p)) for o, p, n in zip(objects[0], pad, work.shape))
        sub = mask[box]
        coarse_sp = sp * np.asarray(factors)
        # Room for the disk on every side, even where the box meets the array's edge.
        margin = [(0, 0)] + [(int(math.ceil(radius_mm / c)) + 2,) * 2 for c in coarse_sp[1:]]
        coarse = np.pad(_block_any(sub, factors), margin)
        # A huge spacing along the axial axis makes the transforms per slice.
        sampling = (1e6, coarse_sp[1], coarse_sp[2])
        dilated = ndimage.distance_transform_edt(~coarse, sampling=sampling) <= radius_mm
        closed = ndimage.distance_transform_edt(dilated, sampling=sampling) > radius_mm
        closed = closed[:, margin[1][0]:-margin[1][1], margin[2][0]:-margin[2][1]]
        closed = ndimage.binary_fill_holes(closed, structure=_INPLANE_FACES)
        up = closed
        for axis, f in enumerate(factors):
            if f > 1:
                up = np.repeat(up, f, axis=axis)
        up = up[: sub.shape[0], : sub.shape[1], : sub.shape[2]]
        # The coarse closing only adds: the fine outline stays where it was, notches are added.
        region = (up | sub) & (work[box] == 0) | sub
        region = ndimage.binary_fill_holes(region, structure=_INPLANE_FACES)
        target = out[box]
        target[region & (target == 0)] = value
    return np.ascontiguousarray(np.transpose(out, np.argsort(order)))


def _block_any(mask: np.ndarray, factors) -> np.ndarray:
    pads = [(0, (-n) % f) for n, f in zip(mask.shape, factors)]
    padded = np.pad(mask, pads) if any(p[1] for p in pads) else mask
    s = [n // f for n, f in zip(padded.shape, factors)]
    return padded.reshape(s[0], factors[0], s[1], factors[1], s[2], factors[2]).any(axis=(1, 3, 5))


def _block_mean(array: np.ndarray, factors) -> np.ndarray:
    pads = [(0, (-n) % f) for n, f in zip(array.shape, factors)]
    padded = np.pad(array, pads, mode="edge") if any(p[1] for p in pads) else array
    s = [n // f for n, f in zip(padded.shape, factors)]
    return padded.reshape(s[0], factors[0], s[1], factors[1], s[2], factors[2]).mean(axis=(1, 3, 5), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------


def _sphericity(mask: np.ndarray, spacing: np.ndarray) -> float:
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(spacing), method="lorensen")
    area = mesh_surface_area(verts, faces)
    volume = float(mask.sum()) * float(np.prod(spacing))
    if area <= 0:
        return 0.0
    return float(min(1.0, math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area))


def _elongation(mask: np.ndarray, spacing: np.ndarray) -> float:
    points = np.argwhere(mask) * spacing
    if len(points) < 4:
        return 1.0
    eig = np.linalg.eigvalsh(np.cov(points.T))
    eig = np.clip(eig, 1e-9, None)
    return float(math.sqrt(eig[0] / eig[-1]))


def _hessian_eigenvalues(hu: np.ndarray, centre: np.ndarray, sigma_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Eigenvalues of the Gaussian-scale Hessian (HU / mm², σ² normalised) at ``centre``, sorted by magnitude."""
    from skimage.feature import hessian_matrix

    half = np.ceil(3 * sigma_mm / spacing).astype(int) + 2
    lo = np.maximum(np.round(centre).astype(int) - half, 0)
    hi = np.minimum(np.round(centre).astype(int) + half + 1, hu.shape)
    patch = hu[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float32)
    # Resample nothing: the Hessian in mm comes from derivatives in voxels scaled by the spacing.
    sigma_vox = sigma_mm / spacing
    elements = hessian_matrix(patch, sigma=tuple(sigma_vox), order="rc", use_gaussian_derivatives=False)
    at = tuple(np.clip(np.round(centre).astype(int) - lo, 0, np.asarray(patch.shape) - 1))
    h = np.zeros((3, 3))
    index = 0
    for a in range(3):
        for b in range(a, 3):
            h[a, b] = h[b, a] = elements[index][at] / (spacing[a] * spacing[b])
            index += 1
    eig = np.linalg.eigvalsh(h * sigma_mm**2)
    return eig[np.argsort(np.abs(eig))]


def candidate_features(
    mask: np.ndarray, hu_box: np.ndarray, spacing_mm, *, hessian_eigenvalues: np.ndarray, border_fraction: float
) -> dict:
    """Return the shape and intensity features of one segmented candidate.

    Parameters
    ----------
    mask : ndarray of bool, shape (k, j, i)
        The candidate's voxels (a crop).
    hu_box : ndarray, same shape
        HU on the crop.
    spacing_mm : sequence of 3 float
    hessian_eigenvalues : ndarray, shape (3,)
        σ²-normalised Hessian eigenvalues at the blob centre, sorted by magnitude |λ1| ≤ |λ2| ≤ |λ3|.
    border_fraction : float
        Share of the mask's surface voxels on its search sphere.

    Returns
    -------
    dict of str to float
        ``sphericity`` (1 for a ball), ``elongation`` (1 isotropic, → 0 for a line), ``blobness``
        (|λ1| / |λ3| when all three are negative: about 1 for a ball, about 0 for a tube),
        ``vessel_likeness`` (|λ2| / |λ3| × (1 - blobness) when λ2, λ3 < 0: high for a tube),
        ``border_fraction``, ``mean_hu``, ``max_hu``, ``volume_ml``, ``diameter_mm``.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    l1, l2, l3 = (float(v) for v in hessian_eigenvalues)
    blobness = abs(l1) / abs(l3) if l3 < 0 and l2 < 0 and l1 < 0 and l3 != 0 else 0.0
    vessel = (abs(l2) / abs(l3)) * (1 - blobness) if l3 < 0 and l2 < 0 and l3 != 0 else 0.0
    values = hu_box[mask]
    volume_ml = float(mask.sum()) * float(np.prod(spacing)) / 1000.0
    return {
        "sphericity": round(_sphericity(mask, spacing), 4),
        "elongation": round(_elongation(mask, spacing), 4),
        "blobness": round(blobness, 4),
        "vessel_likeness": round(vessel, 4),
        "border_fraction": round(float(border_fraction), 4),
        "mean_hu": round(float(values.mean()), 1),
        "max_hu": round(float(values.max()), 1),
        "volume_ml": round(volume_ml, 5),
        "diameter_mm": round((6 * volume_ml * 1000 / math.pi) ** (1 / 3), 3),
    }


def _confidence(features: dict) -> float:
    """Hand-set logistic score: round, compact, blob-like, self-contained and dense candidates score high."""
    z = (
        -4.0
        + 5.0 * features["sphericity"]
        + 3.0 * features["elongation"]
        + 3.0 * features["blobness"]
        - 3.0 * features["vessel_likeness"]
        - 6.0 * features["border_fraction"]
        + 1.0 * min(1.0, max(0.0, (features["mean_hu"] + 600.0) / 600.0))
    )
    return 1.0 / (1.0 + math.exp(-z))


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------


def _segment_candidate(hu, lung, peak, radius_mm, spacing):
    """Region growing around a peak; return (box, mask, border_fraction) or None."""
    reach = max(2.0 * radius_mm, 6.0)
    half = np.ceil(reach / spacing).astype(int) + 1
    lo = np.maximum(peak - half, 0)
    hi = np.minimum(peak + half + 1, hu.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = hu[box].astype(np.float32)
    inside = lung[box] > 0
    centre = peak - lo
    grid = np.ogrid[tuple(slice(0, n) for n in sub.shape)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    sphere = dist2 <= reach**2
    core = float(np.percentile(sub[(dist2 <= max(radius_mm * 0.5, 1.0) ** 2)], 75))
    threshold = max(min((core + _LUNG_HU) / 2.0, -300.0), -700.0)
    region = (sub > threshold) & sphere & inside
    opening_r = max(1, int(round(radius_mm / 3.0 / spacing[1:].mean())))
    if opening_r > 1 and region.any():
        ball = _ellipsoid(radius_mm / 3.0, spacing)
        opened = ndimage.binary_opening(region, structure=ball)
        region = opened if opened[tuple(centre)] else region
    labels, n = ndimage.label(region)
    if n == 0:
        return None
    label = labels[tuple(centre)]
    if label == 0:
        # The peak can sit a voxel off a small nodule: take the component nearest to it.
        _, nearest = ndimage.distance_transform_edt(labels == 0, sampling=spacing, return_indices=True)
        label = labels[tuple(nearest[:, centre[0], centre[1], centre[2]])]
    mask = labels == label
    shell = sphere & ~ndimage.binary_erosion(sphere)
    surface = mask & ~ndimage.binary_erosion(mask)
    border = float((surface & shell).sum()) / max(1, int(surface.sum()))
    return box, mask, border


def require_ct(volume: Volume) -> None:
    """Refuse a volume whose modality is set and is not CT (nodule detection reads Hounsfield units).

    Raises
    ------
    ValueError
        Naming the modality found.
    """
    if volume.modality and volume.modality.upper() != "CT":
        raise ValueError(f"nodule detection needs CT in Hounsfield units, got modality {volume.modality!r}")


def segment_nodule(hu: np.ndarray, lung: np.ndarray, peak, radius_mm: float, spacing_mm):
    """Segment the nodule around ``peak`` by the detector's region growing (step 4 of the module docstring).

    Used by the classical detector for its candidates and by :mod:`annotation.ml.retina` for a
    network's boxes, so both measure the same kind of segment.

    Parameters
    ----------
    hu : ndarray, shape (k, j, i)
        CT in HU.
    lung : ndarray, integer, same shape
        Corrected lung labels (:func:`correct_lung_mask`); growing stays inside them.
    peak : sequence of 3 int
        Seed voxel (k, j, i).
    radius_mm : float
        Expected nodule radius; growing stays inside a sphere of twice this (at least 6 mm).
    spacing_mm : sequence of 3 float

    Returns
    -------
    (box, mask, border_fraction) or None
        ``box``: tuple of 3 slices of the input grid; ``mask``: bool array of the box's shape;
        ``border_fraction``: share of the mask's surface on its search sphere. None when nothing grows.
    """
    return _segment_candidate(hu, lung, np.asarray(peak, dtype=int), float(radius_mm), np.asarray(spacing_mm, dtype=float))


def _ellipsoid(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    half = np.maximum(np.floor(radius_mm / spacing).astype(int), 0)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum(((g * s) / radius_mm) ** 2 for g, s in zip(grid, spacing)) <= 1.0


def detect_nodules(
    volume: Volume,
    progress: ProgressCallback | None = None,
    *,
    lungs: np.ndarray | None = None,
    min_confidence: float = 0.05,
) -> NoduleDetection:
    """Detect and segment lung nodules on a chest CT.

    Parameters
    ----------
    volume : Volume
        CT in Hounsfield units, array (k, j, i), any orientation.
    progress : callable, optional
        ``progress(percent, stage)`` with stage ``"lungs"`` then ``"detection"``; may raise
        :class:`annotation.ml.progress.InferenceCancelled`.
    lungs : ndarray, optional
        Lung labels (1 right, 2 left) on the volume's grid; computed with
        :func:`annotation.ml.lung.segment_lungs` when not given.
    min_confidence : float
        Candidates below this confidence are dropped.

    Returns
    -------
    NoduleDetection

    Raises
    ------
    ValueError
        The modality is set and is not CT; the scan shows no lung.
    """
    require_ct(volume)
    report = ProgressReporter(progress)
    geometry = volume.geometry
    spacing = np.asarray(geometry.spacing_mm, dtype=float)
    axial = geometry.axial_axis()
    if lungs is None:
        lungs = segment_lungs(volume, lambda p, s: report(0.4 * p, "lungs"))
    if not np.any(lungs):
        raise ValueError("no lung found on this scan: nodule detection needs a chest CT showing the lungs")
    corrected = correct_lung_mask(lungs, spacing, axial_axis=axial)
    report(45.0, "detection")

    hu = volume.array
    factors = tuple(1 if a == axial else max(1, int(round(_WORK_SPACING_MM / spacing[a]))) for a in range(3))
    work_spacing = spacing * np.asarray(factors)
    work_hu = _block_mean(hu, factors)
    work_lung = _block_any(corrected > 0, factors)
    work_hu = np.where(work_lung, np.clip(work_hu, _AERATED_HU, 400.0), _AERATED_HU).astype(np.float32)

    # Only the lungs' bounding box (plus the largest kernel's reach) is filtered.
    reach = np.ceil(3 * _RADII_MM[-1] / math.sqrt(3.0) / work_spacing).astype(int)
    lung_box = ndimage.find_objects(work_lung.astype(np.uint8))[0]
    crop = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(lung_box, reach, work_hu.shape))
    region = work_hu[crop]
    best = np.full(work_hu.shape, -np.inf, dtype=np.float32)
    best_scale = np.zeros(work_hu.shape, dtype=np.uint8)
    best_crop, scale_crop = best[crop], best_scale[crop]
    for n, radius in enumerate(_RADII_MM):
        sigma_mm = radius / math.sqrt(3.0)
        # Gaussian then the discrete Laplacian (divided by the spacing squared per axis): three
        # separable passes instead of the nine of ndimage.gaussian_laplace, same response.
        blurred = ndimage.gaussian_filter(region, sigma=tuple(sigma_mm / work_spacing), truncate=3.0)
        laplacian = sum(
            ndimage.correlate1d(blurred, [1.0, -2.0, 1.0], axis=a, mode="nearest") / float(work_spacing[a] ** 2)
            for a in range(3)
        )
        response = -(sigma_mm**2) * laplacian
        better = response > best_crop
        best_crop[better] = response[better]
        scale_crop[better] = n
        report(45.0 + 35.0 * (n + 1) / len(_RADII_MM), "detection")

    smoothed = ndimage.gaussian_filter(work_hu, sigma=tuple(1.0 / work_spacing))
    peaks = (best == ndimage.maximum_filter(best, size=3)) & work_lung & (best > _MIN_RESPONSE_HU)
    peaks &= smoothed > _MIN_PEAK_HU
    coords = np.argwhere(peaks)
    order = np.argsort(-best[peaks])[:_MAX_CANDIDATES]
    coords = coords[order]

    candidates: list[NoduleCandidate] = []
    taken = np.zeros(hu.shape, dtype=bool)
    for count, work_index in enumerate(coords):
        radius = _RADII_MM[int(best_scale[tuple(work_index)])]
        peak = np.minimum(work_index * np.asarray(factors) + np.asarray(factors) // 2, np.asarray(hu.shape) - 1)
        if taken[tuple(peak)]:
            continue
        found = _segment_candidate(hu, corrected, peak, radius, spacing)
        if found is None:
            continue
        box, mask, border = found
        diameter = (6 * mask.sum() * np.prod(spacing) / math.pi) ** (1 / 3)
        if not _MIN_DIAMETER_MM <= diameter <= _MAX_DIAMETER_MM or taken[box][mask].any():
            continue
        eig = _hessian_eigenvalues(hu, peak, radius / math.sqrt(3.0), spacing)
        features = candidate_features(mask, hu[box], spacing, hessian_eigenvalues=eig, border_fraction=border)
        features["response"] = round(float(best[tuple(work_index)]), 1)
        confidence = _confidence(features)
        taken[box] |= mask
        if confidence < min_confidence:
            continue
        offset = np.asarray([s.start for s in box], dtype=float)
        centre = np.argwhere(mask).mean(axis=0) + offset
        lung_value = int(corrected[tuple(np.round(centre).astype(int))])
        side = {RIGHT_LUNG: "right", LEFT_LUNG: "left"}.get(lung_value, "")
        candidates.append(NoduleCandidate(
            centre_index=tuple(float(v) for v in centre),
            centre_lps_mm=tuple(float(v) for v in geometry.index_to_lps(centre)),
            radius_mm=float(radius), diameter_mm=float(diameter), confidence=round(float(confidence), 4), side=side,
            features=features, box=box, mask=mask,
        ))
        if count % 10 == 0:
            report(80.0 + 18.0 * count / max(1, len(coords)), "detection")

    candidates.sort(key=lambda c: -c.confidence)
    label_map = np.zeros(hu.shape, dtype=np.uint16)
    table = []
    for n, candidate in enumerate(candidates, start=1):
        target = label_map[candidate.box]
        target[candidate.mask & (target == 0)] = n
        table.append({
            "index": n, "name": f"nodule {n}", "name_zh": f"结节 {n}", "color": "#e7298a", "kind": "lung_nodule",
            "confidence": candidate.confidence, "side": candidate.side, "features": candidate.features,
        })
    report(100.0, "detection")
    return NoduleDetection(candidates=candidates, lung_mask=corrected, label_map=label_map, label_table=table)


class NoduleDetector:
    """The classical detector as a registry pipeline: ``detector(volume, progress)`` → :class:`NoduleDetection`.

    Its ``kind`` is ``"detection"``: the one-click run stores the label map with the detection's own
    label table (one label per nodule, with its confidence), not the model's.
    """

    kind = "detection"

    def __init__(self, *, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self.label_table = [{"index": 1, "name": "lung nodule", "name_zh": "肺结节", "color": "#e7298a"}]

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None) -> NoduleDetection:
        return detect_nodules(volume, progress, min_confidence=self.min_confidence)
