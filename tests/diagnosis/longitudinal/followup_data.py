"""A baseline and a follow-up chest CT with known changes, derived from the real LIDC-IDRI-0001 CT.

The baseline is the LIDC-IDRI-0001 series (TCIA, CC BY 3.0; ../shared/data/lidc_idri_0001_ct_nodules)
averaged over 4 × 4 in-plane blocks (133 × 128 × 128 voxels of 2.5 × 2.8 × 2.8 mm), with a 7 mm sphere
of soft tissue added in the right lung (a nodule that resolves). The follow-up is made from it by

- growing the real nodule of LIDC-IDRI-0001 (its voxels above -500 HU within 20 mm of the readers'
  centre) by a smooth dilation: every lung voxel within ``GROWTH_MM`` of it takes the nodule's mean HU;
- removing the 7 mm sphere and adding a new 6 mm sphere in the left lung;
- resampling the whole image with a known rigid transform (``ROTATION_DEG`` about the image centre,
  then ``TRANSLATION_MM``): follow-up(x) = modified baseline(G(x)), so a baseline point p lies at
  G⁻¹(p) in the follow-up.

The known figures (volumes before the resampling, positions through G⁻¹) are in :class:`Pair`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from annotation.imaging.volume import Geometry, Volume, array_to_sitk, volume_from_sitk

LIDC_NODULE_LPS_MM = np.array([56.2, 86.2, -115.9])
ROTATION_DEG = (3.0, -2.0, 4.0)
TRANSLATION_MM = (4.0, -3.0, 5.0)
GROWTH_MM = 3.0
BASELINE_DATE = dt.date(2025, 1, 10)
FOLLOW_UP_DATE = dt.date(2025, 5, 10)
INTERVAL_DAYS = (FOLLOW_UP_DATE - BASELINE_DATE).days
NODULE_HU = 40.0


@dataclass
class Pair:
    """The two volumes with their label maps (1 = the LIDC nodule, 2 = the resolved or the new sphere)."""

    baseline: Volume
    follow_up: Volume
    baseline_labels: np.ndarray
    follow_up_labels: np.ndarray
    baseline_volume_ml: float      # the nodule at baseline
    grown_volume_ml: float         # the nodule grown, before resampling (the known value)
    transform: object              # SimpleITK Euler3DTransform G (follow-up → baseline frame)
    resolved_centre_lps_mm: np.ndarray
    new_centre_follow_up_lps_mm: np.ndarray

    def to_follow_up(self, points_lps_mm: np.ndarray) -> np.ndarray:
        """Map baseline-frame points (n, 3) to where they lie in the follow-up (G⁻¹)."""
        inverse = self.transform.GetInverse()
        return np.array([inverse.TransformPoint(tuple(float(v) for v in p)) for p in np.atleast_2d(points_lps_mm)])

    @property
    def known_vdt_days(self) -> float:
        return INTERVAL_DAYS * np.log(2.0) / np.log(self.grown_volume_ml / self.baseline_volume_ml)


def _ball(volume: Volume, centre_lps_mm, radius_mm: float) -> np.ndarray:
    g = volume.geometry
    centre = g.lps_to_index(np.asarray(centre_lps_mm, float))
    reach = np.ceil(radius_mm / np.asarray(g.spacing_mm)) + 1
    low = np.clip(np.floor(centre - reach), 0, None).astype(int)
    high = np.minimum(np.ceil(centre + reach).astype(int) + 1, g.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    index = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high)], indexing="ij"), axis=-1)
    mask = np.zeros(g.shape, bool)
    mask[box] = np.linalg.norm(g.index_to_lps(index) - np.asarray(centre_lps_mm), axis=-1) <= radius_mm
    return mask


def _deepest(mask: np.ndarray, geometry: Geometry, away_from: np.ndarray, min_distance_mm: float) -> np.ndarray:
    depth = ndimage.distance_transform_edt(mask, sampling=geometry.spacing_mm)
    points = geometry.index_to_lps(np.argwhere(depth > 0))
    far = np.linalg.norm(points - away_from, axis=1) >= min_distance_mm
    values = depth[depth > 0][far]
    return points[far][int(np.argmax(values))]


def build_pair(dicom_folder: Path) -> Pair:
    """Build the baseline and follow-up from the LIDC-IDRI-0001 DICOM folder (see the module docstring)."""
    import SimpleITK as sitk

    from annotation.imaging.loader import load_inputs
    from annotation.ml.lung import segment_lungs

    with tempfile.TemporaryDirectory() as scratch:
        original = load_inputs([dicom_folder], workdir=Path(scratch)).series[0].volume
    g = original.geometry
    k, rows, columns = g.shape
    array = original.array.astype(np.float32).reshape(k, rows // 4, 4, columns // 4, 4).mean(axis=(2, 4))
    spacing = (g.spacing_mm[0], g.spacing_mm[1] * 4, g.spacing_mm[2] * 4)
    # The centre of a 4 × 4 block lies 1.5 original voxels in from its first voxel.
    half_block = np.array([0.0, 1.5 * g.spacing_mm[1], 1.5 * g.spacing_mm[2]])
    origin = np.asarray(g.origin_mm) + g.direction_matrix @ half_block
    geometry = Geometry(shape=array.shape, spacing_mm=spacing, origin_mm=tuple(origin), direction=g.direction)
    baseline = Volume(array=np.rint(array).astype(np.int16), geometry=geometry, modality="CT")

    lungs = segment_lungs(baseline)
    near = _ball(baseline, LIDC_NODULE_LPS_MM, 20.0) & (baseline.array > -500)
    components, _ = ndimage.label(near)
    centre_index = tuple(int(v) for v in np.rint(geometry.lps_to_index(LIDC_NODULE_LPS_MM)))
    nodule = components == components[centre_index]
    assert components[centre_index] > 0, "the LIDC nodule centre is not above -500 HU"

    resolved_centre = _deepest(lungs == 1, geometry, LIDC_NODULE_LPS_MM, 60.0)
    new_centre = _deepest(lungs == 2, geometry, LIDC_NODULE_LPS_MM, 50.0)
    resolved = _ball(baseline, resolved_centre, 7.0) & ~nodule
    new = _ball(baseline, new_centre, 6.0) & ~nodule

    base_array = baseline.array.copy()
    base_array[resolved] = NODULE_HU
    baseline = Volume(array=base_array, geometry=geometry, modality="CT")
    baseline_labels = np.zeros(geometry.shape, np.uint8)
    baseline_labels[nodule] = 1
    baseline_labels[resolved] = 2

    distance = ndimage.distance_transform_edt(~nodule, sampling=geometry.spacing_mm)
    grown = nodule | ((distance <= GROWTH_MM) & (lungs > 0))
    modified = baseline.array.astype(np.float32).copy()
    modified[grown] = float(np.mean(baseline.array[nodule]))
    modified[resolved] = float(np.median(baseline.array[lungs > 0]))
    modified[new] = NODULE_HU
    modified_labels = np.zeros(geometry.shape, np.uint8)
    modified_labels[grown] = 1
    modified_labels[new] = 2

    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2.0)
    transform = sitk.Euler3DTransform(tuple(float(v) for v in centre), *np.deg2rad(ROTATION_DEG), TRANSLATION_MM)
    reference = array_to_sitk(modified, geometry)
    moved = sitk.Resample(reference, reference, transform, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    moved_labels = sitk.Resample(array_to_sitk(modified_labels, geometry), reference, transform,
                                 sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    follow_up = volume_from_sitk(moved, modality="CT")
    follow_up = Volume(array=np.rint(follow_up.array).astype(np.int16), geometry=follow_up.geometry, modality="CT")
    voxel_ml = geometry.voxel_volume_mm3 / 1000.0
    pair = Pair(
        baseline=baseline, follow_up=follow_up, baseline_labels=baseline_labels,
        follow_up_labels=sitk.GetArrayFromImage(moved_labels),
        baseline_volume_ml=float(nodule.sum() * voxel_ml), grown_volume_ml=float(grown.sum() * voxel_ml),
        transform=transform, resolved_centre_lps_mm=resolved_centre,
        new_centre_follow_up_lps_mm=np.zeros(3),
    )
    pair.new_centre_follow_up_lps_mm = pair.to_follow_up(new_centre)[0]
    return pair
