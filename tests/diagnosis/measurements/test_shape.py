"""Unit tests of diagnosis.measurements.shape on synthetic label maps with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from annotation.imaging.volume import Geometry
from diagnosis.measurements import ComponentMeasurement, crofton_surface_area, largest_finding, measure_segments

# Default Geometry direction: array axis k runs superior, so k is the axial axis.
ANISOTROPIC_MM = (2.5, 0.7, 0.9)


def ball(shape, spacing, centre_index, radius_mm):
    """Return a bool mask of the voxels whose centres lie within radius_mm of centre_index."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre_index, spacing))
    return squared <= radius_mm**2


def measure_one(mask, spacing, **geometry_kwargs):
    geometry = Geometry(shape=mask.shape, spacing_mm=spacing, **geometry_kwargs)
    (segment,) = measure_segments(mask.astype(np.uint8), geometry)
    return segment


# ---------------------------------------------------------------------------------------------------
# Sphere of radius 20 mm on an anisotropic grid


@pytest.fixture(scope="module")
def sphere_20mm():
    shape = (24, 66, 52)
    # Off-grid centre so the test does not rely on a symmetric voxelisation.
    centre = (11.8, 32.2, 25.1)
    return measure_one(ball(shape, ANISOTROPIC_MM, centre, 20.0), ANISOTROPIC_MM), centre


def test_sphere_volume_within_one_percent(sphere_20mm):
    segment, _ = sphere_20mm

    assert segment.volume_ml * 1000 == pytest.approx(4 / 3 * math.pi * 20.0**3, rel=0.01)


def test_sphere_surface_area_overestimates_by_the_known_marching_cubes_excess(sphere_20mm):
    # Marching cubes on a binary mask puts vertices on edge midpoints: a chamfered staircase whose
    # area does not converge to 4πr² as the grid gets finer (about +8.8 % on isotropic grids of
    # 1, 0.5 and 0.25 mm) and grows with anisotropy (+17.0 % on this 2.5×0.7×0.9 mm grid).
    # pyradiomics' SurfaceArea gives the same figure; the exact hand check is the box test below.
    segment, _ = sphere_20mm

    ratio = segment.surface_area_mm2 / (4 * math.pi * 20.0**2)

    assert 1.12 < ratio < 1.22


def test_sphere_surface_area_on_fine_isotropic_grid_is_about_nine_percent_high():
    spacing = (0.5, 0.5, 0.5)
    segment = measure_one(ball((86, 86, 86), spacing, (42.6, 42.3, 42.1), 20.0), spacing)

    ratio = segment.surface_area_mm2 / (4 * math.pi * 20.0**2)

    assert 1.07 < ratio < 1.10


def test_sphere_crofton_surface_area_within_three_percent_on_anisotropic_grid(sphere_20mm):
    segment, _ = sphere_20mm

    assert segment.surface_area_crofton_mm2 == pytest.approx(4 * math.pi * 20.0**2, rel=0.03)


@pytest.mark.parametrize(
    ("spacing", "radius_mm"),
    [((0.5, 0.5, 0.5), 20.0), ((1.0, 1.0, 1.0), 4.0), ((5.0, 0.7, 0.7), 20.0), ((1.25, 0.6, 0.6), 8.0)],
)
def test_crofton_surface_area_of_spheres_within_three_percent(spacing, radius_mm):
    shape = tuple(int(2 * radius_mm / s) + 6 for s in spacing)
    # Off-grid centres, different per axis.
    centre = tuple(n / 2 - 0.37 + 0.11 * a for a, n in enumerate(shape))
    mask = ball(shape, spacing, centre, radius_mm)

    assert crofton_surface_area(mask, spacing) == pytest.approx(4 * math.pi * radius_mm**2, rel=0.03)


def test_crofton_surface_area_of_an_empty_mask_is_zero():
    assert crofton_surface_area(np.zeros((4, 5, 6), dtype=bool), (1.0, 2.0, 3.0)) == 0.0


@pytest.mark.parametrize(
    ("mask", "spacing"),
    [(np.ones((3, 3), dtype=bool), (1.0, 1.0, 1.0)), (np.ones((3, 3, 3), dtype=bool), (1.0, 0.0, 1.0)),
     (np.ones((3, 3, 3), dtype=bool), (1.0, 1.0)), (np.ones((3, 3, 3), dtype=bool), (1.0, float("nan"), 1.0))],
)
def test_crofton_surface_area_rejects_bad_input(mask, spacing):
    with pytest.raises(ValueError):
        crofton_surface_area(mask, spacing)


def test_crofton_area_of_components_adds_up_to_the_segment():
    spacing = (2.0, 0.8, 0.8)
    shape = (20, 80, 80)
    mask = ball(shape, spacing, (9.6, 20.3, 20.2), 10.0) | ball(shape, spacing, (9.4, 60.1, 58.7), 7.0)

    segment = measure_one(mask, spacing)

    assert segment.component_count == 2
    assert sum(c.surface_area_crofton_mm2 for c in segment.components) == pytest.approx(
        segment.surface_area_crofton_mm2, rel=1e-9
    )
    assert segment.surface_area_crofton_mm2 == pytest.approx(4 * math.pi * (10.0**2 + 7.0**2), rel=0.03)


def test_sphere_max_diameter_within_one_voxel_diagonal(sphere_20mm):
    segment, _ = sphere_20mm

    assert segment.max_diameter_mm == pytest.approx(40.0, abs=math.hypot(*ANISOTROPIC_MM))


def test_sphere_axial_diameters_are_both_the_diameter(sphere_20mm):
    segment, centre = sphere_20mm
    pixel_diagonal = math.hypot(ANISOTROPIC_MM[1], ANISOTROPIC_MM[2])

    assert segment.axial_long_mm == pytest.approx(40.0, abs=pixel_diagonal)
    assert segment.axial_short_mm == pytest.approx(40.0, abs=pixel_diagonal)
    assert segment.axial_short_mm <= segment.axial_long_mm
    assert segment.axial_slice_index == round(centre[0])


def test_sphere_slice_areas_sum_to_volume(sphere_20mm):
    segment, _ = sphere_20mm

    total_mm3 = sum(segment.slice_areas_mm2.values()) * ANISOTROPIC_MM[0]

    assert total_mm3 == pytest.approx(segment.volume_ml * 1000)
    assert all(area > 0 for area in segment.slice_areas_mm2.values())


# ---------------------------------------------------------------------------------------------------
# Ellipse-shaped slab, rotated in plane: the short axis is measured perpendicular to the long one


def test_rotated_ellipse_long_and_short_axes():
    spacing = (3.0, 0.6, 0.6)
    shape = (5, 120, 120)
    j, i = np.mgrid[:120, :120]
    y, x = (j - 59.7) * spacing[1], (i - 60.2) * spacing[2]
    angle = math.radians(30)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    ellipse = (u / 30.0) ** 2 + (v / 12.0) ** 2 <= 1.0
    mask = np.zeros(shape, dtype=bool)
    mask[1:4] = ellipse

    segment = measure_one(mask, spacing)

    pixel_diagonal = math.hypot(spacing[1], spacing[2])
    assert segment.axial_long_mm == pytest.approx(60.0, abs=pixel_diagonal)
    assert segment.axial_short_mm == pytest.approx(24.0, abs=pixel_diagonal)
    # Three identical slices tie; the one nearest the centroid is reported.
    assert segment.axial_slice_index == 2


# ---------------------------------------------------------------------------------------------------
# Box: every figure by hand


def test_box_figures_match_hand_computation():
    spacing = ANISOTROPIC_MM
    n = (4, 6, 8)  # voxels along k, j, i
    mask = np.zeros((10, 12, 14), dtype=bool)
    mask[2:6, 3:9, 4:12] = True

    segment = measure_one(mask, spacing)

    sk, sj, si = spacing
    nk, nj, ni = n
    assert segment.voxel_count == 4 * 6 * 8
    assert segment.volume_ml == pytest.approx(4 * 6 * 8 * sk * sj * si / 1000)
    # Mesh vertices sit on edge midpoints: flat faces spanning the outer voxel centres, chamfer strips
    # along the 12 edges (width = half the diagonal of the two spacings across the edge) and one
    # triangle per corner with vertices half a spacing from the corner voxel centre along each axis.
    faces = 2 * ((nj - 1) * sj * (ni - 1) * si + (nk - 1) * sk * (ni - 1) * si + (nk - 1) * sk * (nj - 1) * sj)
    edges = 4 * (
        (nk - 1) * sk * 0.5 * math.hypot(sj, si)
        + (nj - 1) * sj * 0.5 * math.hypot(sk, si)
        + (ni - 1) * si * 0.5 * math.hypot(sk, sj)
    )
    corners = 8 * 0.125 * math.sqrt((sj * si) ** 2 + (sk * si) ** 2 + (sk * sj) ** 2)
    assert segment.surface_area_mm2 == pytest.approx(faces + edges + corners, rel=1e-9)
    # The farthest vertices: one axis spans the full extent (face midpoints), the others stop at voxel centres.
    diameters_3d = [
        math.sqrt(sum(((n[b] - 1 + (b == a)) * spacing[b]) ** 2 for b in range(3))) for a in range(3)
    ]
    assert segment.max_diameter_mm == pytest.approx(max(diameters_3d), rel=1e-9)
    diameters_2d = [math.hypot(nj * sj, (ni - 1) * si), math.hypot((nj - 1) * sj, ni * si)]
    assert segment.axial_long_mm == pytest.approx(max(diameters_2d), rel=1e-9)
    assert 0 < segment.axial_short_mm < segment.axial_long_mm
    # Slices 2..5 tie; the centroid lies at 3.5 and the lower of the two nearest wins.
    assert segment.axial_slice_index == 3
    assert segment.slice_areas_mm2 == pytest.approx({k: nj * ni * sj * si for k in range(2, 6)})
    assert segment.component_count == 1
    assert segment.components[0].volume_ml == segment.volume_ml


def test_single_voxel_is_an_octahedron():
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True

    segment = measure_one(mask, (2.0, 1.0, 1.0))

    # Vertices at ±1 mm along k and ±0.5 mm along j and i: 8 faces with cross product (0.25, 0.5, 0.5).
    assert segment.surface_area_mm2 == pytest.approx(8 * 0.5 * 0.75)
    assert segment.max_diameter_mm == pytest.approx(2.0)
    assert segment.axial_long_mm == pytest.approx(1.0)
    assert segment.axial_short_mm == pytest.approx(1.0)


def test_axial_axis_follows_the_direction_matrix():
    # Array axis i runs superior, so axial slices are taken along i.
    # Columns: k → +x (left), j → -y (anterior), i → +z (superior).
    direction = np.column_stack([(1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)])
    spacing = (1.5, 0.5, 2.0)
    mask = np.zeros((8, 10, 6), dtype=bool)
    mask[1:7, 2:9, 2:4] = True
    geometry = Geometry(shape=mask.shape, spacing_mm=spacing, direction=tuple(direction.ravel()))
    assert geometry.axial_axis() == 2

    (segment,) = measure_segments(mask.astype(np.uint8), geometry)

    assert set(segment.slice_areas_mm2) == {2, 3}
    assert segment.slice_areas_mm2[2] == pytest.approx(6 * 7 * 1.5 * 0.5)
    # In-plane (k, j) diagonal with the half-voxel overhang on one axis.
    expected = max(math.hypot(6 * 1.5, 6 * 0.5), math.hypot(5 * 1.5, 7 * 0.5))
    assert segment.axial_long_mm == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------
# Components


def test_two_spheres_are_two_components_sorted_by_volume():
    spacing = (1.0, 1.0, 1.0)
    shape = (40, 40, 70)
    small = ball(shape, spacing, (20, 20, 12), 6.0)
    large = ball(shape, spacing, (20, 20, 48), 10.0)

    segment = measure_one(small | large, spacing)

    assert segment.component_count == 2
    first, second = segment.components
    assert first.voxel_count == int(large.sum())
    assert second.voxel_count == int(small.sum())
    assert first.volume_ml == pytest.approx(large.sum() / 1000)
    assert segment.volume_ml == pytest.approx(first.volume_ml + second.volume_ml)
    assert first.centroid_lps_mm == pytest.approx((48.0, 20.0, 20.0))  # default direction: i→x, j→y, k→z
    assert second.centroid_lps_mm == pytest.approx((12.0, 20.0, 20.0))
    assert first.max_diameter_mm == pytest.approx(20.0, abs=math.sqrt(3))
    assert second.axial_long_mm == pytest.approx(12.0, abs=math.sqrt(2))
    # The segment-level diameter spans both components.
    assert segment.max_diameter_mm > 36 + 6 + 10 - 2


def test_voxels_touching_at_a_corner_are_one_component():
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1, 1, 1] = True
    mask[2, 2, 2] = True

    segment = measure_one(mask, (1.0, 1.0, 1.0))

    assert segment.component_count == 1
    assert segment.components[0].voxel_count == 2


def test_voxels_one_voxel_apart_are_two_components():
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1, 1, 1] = True
    mask[3, 1, 1] = True

    segment = measure_one(mask, (1.0, 1.0, 1.0))

    assert segment.component_count == 2


# ---------------------------------------------------------------------------------------------------
# Intensity, centroid, labels


def test_intensity_mean_and_population_std_inside_the_segment():
    label_map = np.zeros((4, 6, 6), dtype=np.int16)
    label_map[1:3, 1:5, 1:5] = 2
    image = np.full(label_map.shape, -1000.0)
    image[label_map == 2] = np.tile([10.0, 30.0], 16)  # 32 voxels, half 10 HU and half 30 HU
    geometry = Geometry(shape=label_map.shape, spacing_mm=(1.0, 1.0, 1.0))

    (segment,) = measure_segments(label_map, geometry, image=image)

    assert segment.label == 2
    assert segment.mean_intensity == pytest.approx(20.0)
    assert segment.std_intensity == pytest.approx(10.0)


def test_intensity_is_none_without_image():
    label_map = np.zeros((3, 3, 3), dtype=np.uint8)
    label_map[1, 1, 1] = 1

    (segment,) = measure_segments(label_map, Geometry(shape=(3, 3, 3), spacing_mm=(1, 1, 1)))

    assert segment.mean_intensity is None
    assert segment.std_intensity is None


def test_centroid_in_lps_with_permuted_flipped_direction_and_origin():
    # Columns: k → -z (feet-first), j → +x, i → +y.
    direction = np.column_stack([(0.0, 0.0, -1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)])
    geometry = Geometry(
        shape=(9, 21, 41), spacing_mm=(2.0, 0.5, 0.25), origin_mm=(-100.0, 50.0, 30.0),
        direction=tuple(direction.ravel()),
    )
    label_map = np.zeros(geometry.shape, dtype=np.uint8)
    label_map[3:6, 8:13, 18:23] = 1  # centre voxel (4, 10, 20)

    (segment,) = measure_segments(label_map, geometry)

    # x = -100 + 10·0.5, y = 50 + 20·0.25, z = 30 - 4·2
    assert segment.centroid_lps_mm == pytest.approx((-95.0, 55.0, 22.0))


def test_centroid_with_oblique_rotation_matches_index_to_lps():
    angle = math.radians(25)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.column_stack(
        [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    )
    geometry = Geometry(shape=(8, 8, 8), spacing_mm=(3.0, 1.0, 1.0), origin_mm=(5.0, -7.0, 11.0),
                        direction=tuple(rotation.ravel()))
    label_map = np.zeros(geometry.shape, dtype=np.uint8)
    label_map[2:5, 1:4, 3:6] = 1  # centre voxel (3, 2, 4)

    (segment,) = measure_segments(label_map, geometry)

    expected = np.array([5.0, -7.0, 11.0]) + rotation @ (np.array([3, 2, 4]) * np.array([3.0, 1.0, 1.0]))
    assert segment.centroid_lps_mm == pytest.approx(tuple(expected))
    # Distances do not depend on the rotation.
    assert segment.max_diameter_mm == pytest.approx(math.sqrt((3 * 3.0) ** 2 + 2**2 + 2**2))


def test_labels_default_to_present_ones_ascending_and_listed_absent_label_gives_zeros():
    label_map = np.zeros((4, 4, 4), dtype=np.uint8)
    label_map[1, 1, 1] = 5
    label_map[2, 2, 2] = 3
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1))

    default = measure_segments(label_map, geometry)
    listed = measure_segments(label_map, geometry, labels=[7, 5])

    assert [m.label for m in default] == [3, 5]
    assert [m.label for m in listed] == [7, 5]
    absent = listed[0]
    assert (absent.voxel_count, absent.volume_ml, absent.surface_area_mm2, absent.max_diameter_mm) == (0, 0, 0, 0)
    assert absent.component_count == 0 and absent.components == () and absent.slice_areas_mm2 == {}
    assert absent.axial_slice_index == -1


def test_bool_label_map_is_label_one():
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True

    (segment,) = measure_segments(mask, Geometry(shape=(3, 3, 3), spacing_mm=(1, 1, 1)))

    assert segment.label == 1 and segment.voxel_count == 1


def test_to_dict_is_json_safe_with_string_slice_keys():
    label_map = np.zeros((5, 5, 5), dtype=np.int32)
    label_map[1:3, 1:3, 1:3] = 1
    label_map[4, 4, 4] = 1
    geometry = Geometry(shape=(5, 5, 5), spacing_mm=(1, 1, 1))
    (segment,) = measure_segments(label_map, geometry, image=np.ones(label_map.shape, dtype=np.int16))

    data = json.loads(json.dumps(segment.to_dict()))

    assert data["slice_areas_mm2"] == {"1": 4.0, "2": 4.0, "4": 1.0}
    assert data["component_count"] == 2 and len(data["components"]) == 2
    assert data["components"][0]["voxel_count"] == 8
    assert data["mean_intensity"] == 1.0


def test_largest_finding_returns_label_and_largest_component():
    label_map = np.zeros((10, 10, 30), dtype=np.uint8)
    label_map[2:4, 2:4, 2:4] = 1  # 8 voxels
    label_map[2:5, 2:5, 10:13] = 2  # 27 voxels
    label_map[2:4, 2:4, 20:22] = 2  # 8 voxels
    geometry = Geometry(shape=label_map.shape, spacing_mm=(1, 1, 1))

    label, component = largest_finding(measure_segments(label_map, geometry))

    assert label == 2
    assert isinstance(component, ComponentMeasurement)
    assert component.voxel_count == 27


def test_largest_finding_is_none_without_voxels():
    geometry = Geometry(shape=(3, 3, 3), spacing_mm=(1, 1, 1))
    label_map = np.zeros(geometry.shape, dtype=np.uint8)

    assert largest_finding(measure_segments(label_map, geometry)) is None
    assert largest_finding(measure_segments(label_map, geometry, labels=[1])) is None


# ---------------------------------------------------------------------------------------------------
# Failure paths


def test_rejects_label_map_with_shape_other_than_geometry():
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1))

    with pytest.raises(ValueError, match="does not match geometry"):
        measure_segments(np.zeros((4, 4, 5), dtype=np.uint8), geometry)


def test_rejects_float_label_map():
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1))

    with pytest.raises(ValueError, match="integer dtype"):
        measure_segments(np.zeros((4, 4, 4), dtype=np.float32), geometry)


def test_rejects_image_with_other_shape():
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1))

    with pytest.raises(ValueError, match="image shape"):
        measure_segments(np.zeros((4, 4, 4), dtype=np.uint8), geometry, image=np.zeros((4, 4, 3)))


def test_rejects_negative_labels_background_in_labels_and_non_3d_maps():
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1))
    label_map = np.zeros((4, 4, 4), dtype=np.int16)

    with pytest.raises(ValueError, match="positive"):
        measure_segments(label_map, geometry, labels=[0])
    with pytest.raises(ValueError, match="3-D"):
        measure_segments(np.zeros((4, 4), dtype=np.uint8), geometry)
    label_map[0, 0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        measure_segments(label_map, geometry)


def test_rejects_sheared_direction():
    sheared = (1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(shape=(4, 4, 4), spacing_mm=(1, 1, 1), direction=sheared)

    with pytest.raises(ValueError, match="orthonormal"):
        measure_segments(np.zeros((4, 4, 4), dtype=np.uint8), geometry)
