"""Registration, matching and VDT on a follow-up derived from the real LIDC-IDRI-0001 CT with known changes.

The data (``followup_data``): the real CT, its real nodule grown by a 3 mm smooth dilation, one sphere
removed and one added, the whole follow-up moved by a known rigid transform (3°, -2°, 4°; 4, -3, 5 mm).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diagnosis.longitudinal.growth import growth
from diagnosis.longitudinal.matching import match_lesions
from diagnosis.longitudinal.registration import (
    METHOD,
    RegistrationError,
    chest_ct_mask,
    register_volumes,
    transform_points,
)
from tests.conftest import shared_data

from .followup_data import INTERVAL_DAYS, LIDC_NODULE_LPS_MM, build_pair


@pytest.fixture(scope="module")
def pair():
    return build_pair(shared_data("lidc_idri_0001_ct_nodules", "dicom"))


@pytest.fixture(scope="module")
def masks(pair):
    return chest_ct_mask(pair.baseline), chest_ct_mask(pair.follow_up)


@pytest.fixture(scope="module")
def landmarks(pair):
    """Baseline points (the nodule, the resolved sphere, four points spread through the chest) and where
    the known transform puts them in the follow-up."""
    g = pair.baseline.geometry
    centre = g.index_to_lps((np.asarray(g.shape) - 1) / 2.0)
    points = np.array([LIDC_NODULE_LPS_MM, pair.resolved_centre_lps_mm, centre, centre + [80, 30, -60],
                       centre + [-80, -20, 60], centre + [0, 60, 100]])
    return points, pair.to_follow_up(points)


@pytest.fixture(scope="module")
def registration(pair, masks, landmarks):
    fixed_mask, moving_mask = masks
    return register_volumes(pair.baseline, pair.follow_up, fixed_mask=fixed_mask, moving_mask=moving_mask,
                            landmarks_fixed_lps_mm=landmarks[0], landmarks_moving_lps_mm=landmarks[1])


def _centroids(labels: np.ndarray, geometry) -> dict[int, np.ndarray]:
    found = [int(v) for v in np.unique(labels) if v]
    centres = ndimage.center_of_mass(labels > 0, labels, found)
    return {label: geometry.index_to_lps(np.asarray(c)) for label, c in zip(found, centres)}


def test_registration_error_at_landmarks_is_within_2_mm(registration, landmarks):
    errors = np.asarray(registration.landmark_errors_mm)
    assert errors.shape == (len(landmarks[0]),)
    assert errors.max() <= 2.0, errors
    # The stored matrix maps the same points the same way (what the portal keeps is what was measured).
    mapped = transform_points(registration.matrix, landmarks[0])
    assert np.allclose(np.linalg.norm(mapped - landmarks[1], axis=1), errors)


def test_quality_figures_and_the_serialised_transform(registration):
    body = registration.to_dict()
    assert body["method"] == METHOD
    assert body["quality"]["mask_dice"] > 0.9
    assert body["quality"]["metric_value"] < 0  # Mattes MI is negated by ITK
    assert body["quality"]["landmark_error_max_mm"] <= 2.0
    matrix = np.asarray(body["transform"]["matrix_lps_mm"])
    assert matrix.shape == (4, 4) and np.allclose(matrix[3], [0, 0, 0, 1])
    # Rebuilt from the SimpleITK parameters it maps points as the matrix does.
    import SimpleITK as sitk

    rebuilt = sitk.AffineTransform(3)
    rebuilt.SetFixedParameters(body["transform"]["sitk_fixed_parameters"])
    rebuilt.SetParameters(body["transform"]["sitk_parameters"])
    point = np.array([10.0, -20.0, -150.0])
    assert np.allclose(rebuilt.TransformPoint(tuple(point)), transform_points(matrix, point), atol=1e-3)


def test_grown_nodule_is_matched_and_the_spheres_are_resolved_and_new(pair, registration):
    prior = _centroids(pair.baseline_labels, pair.baseline.geometry)
    current = _centroids(pair.follow_up_labels, pair.follow_up.geometry)
    prior_mapped = transform_points(registration.matrix, np.array([prior[1], prior[2]]))
    result = match_lesions(prior_mapped, np.array([current[1], current[2]]))
    assert result.pairs == ((0, 0),)
    assert result.resolved == (1,) and result.new == (1,)
    assert np.linalg.norm(current[2] - pair.new_centre_follow_up_lps_mm) < 1.0


def test_vdt_of_the_grown_nodule_matches_the_known_growth(pair):
    voxel_ml = pair.baseline.geometry.voxel_volume_mm3 / 1000.0
    prior_ml = float((pair.baseline_labels == 1).sum() * voxel_ml)
    current_ml = float((pair.follow_up_labels == 1).sum() * voxel_ml)
    measured = growth(prior_ml, current_ml, INTERVAL_DAYS)
    assert pair.grown_volume_ml / pair.baseline_volume_ml > 1.5  # a real change, not noise
    # Resampling the grown mask by nearest neighbour changes its volume by a few voxels: 5 % tolerance.
    assert measured.vdt_days == pytest.approx(pair.known_vdt_days, rel=0.05)
    assert measured.category == "fast"


def test_rigid_only_registration_is_as_close(pair, masks, landmarks):
    result = register_volumes(pair.baseline, pair.follow_up, fixed_mask=masks[0], affine=False, sampling=0.05,
                              landmarks_fixed_lps_mm=landmarks[0], landmarks_moving_lps_mm=landmarks[1])
    assert "affine" not in result.iterations and max(result.landmark_errors_mm) <= 2.0
    assert result.mask_dice is None


def test_registration_refuses_bad_input(pair, masks):
    fixed_mask = masks[0]
    cases = [
        dict(fixed_mask=fixed_mask[:-1]),
        dict(fixed_mask=np.zeros_like(fixed_mask)),
        dict(moving_mask=fixed_mask[:, :-1]),
        dict(landmarks_fixed_lps_mm=np.zeros((2, 3))),
        dict(landmarks_fixed_lps_mm=np.zeros((2, 3)), landmarks_moving_lps_mm=np.zeros((3, 3))),
        dict(sampling=0.0),
    ]
    for kwargs in cases:
        with pytest.raises(RegistrationError):
            register_volumes(pair.baseline, pair.follow_up, **kwargs)


def test_resample_volume_coarsens_only_finer_axes_and_keeps_the_extent(pair):
    from diagnosis.longitudinal.registration import resample_volume

    volume = pair.baseline
    coarse = resample_volume(volume, 3.0)
    assert coarse.geometry.spacing_mm == (3.0, 3.0, 3.0) and coarse.modality == "CT"
    g, c = volume.geometry, coarse.geometry
    centre = g.index_to_lps((np.asarray(g.shape) - 1) / 2.0)
    assert np.linalg.norm(c.index_to_lps((np.asarray(c.shape) - 1) / 2.0) - centre) < 1.5
    # Mean HU of the chest is kept (anti-aliased, not subsampled).
    assert abs(float(coarse.array.mean()) - float(volume.array.mean())) < 10.0
    assert resample_volume(coarse, 3.0) is coarse
    with pytest.raises(ValueError):
        resample_volume(volume, 0.0)


def test_a_follow_up_scanned_over_a_shorter_range_registers_as_well(pair, masks, landmarks):
    """The follow-up lacks its 30 most inferior slices (75 mm), so the two grids' centres are 37 mm apart."""
    from annotation.imaging.volume import Geometry, Volume

    g, cut = pair.follow_up.geometry, 30
    shorter = Volume(array=pair.follow_up.array[cut:].copy(), modality="CT",
                     geometry=Geometry(shape=(g.shape[0] - cut, g.shape[1], g.shape[2]), spacing_mm=g.spacing_mm,
                                       origin_mm=tuple(g.index_to_lps(np.array([cut, 0, 0]))), direction=g.direction))
    result = register_volumes(pair.baseline, shorter, fixed_mask=masks[0], working_spacing_mm=4.0, sampling=0.1,
                              landmarks_fixed_lps_mm=landmarks[0], landmarks_moving_lps_mm=landmarks[1])
    assert max(result.landmark_errors_mm) <= 2.0
