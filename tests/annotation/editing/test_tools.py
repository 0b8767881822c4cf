"""Brush, eraser, threshold brush, flood fill and polygon fill on label maps."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.editing.tools import EditError, brush_mask, erase, flood_fill_mask, paint, polygon_mask


def test_sphere_brush_is_round_in_mm_on_anisotropic_spacing():
    # 2 mm slices, 0.5 mm pixels, radius 2 mm: 1 voxel up/down along k, 4 voxels along j and i.
    mask = brush_mask((11, 21, 21), (2.0, 0.5, 0.5), (5, 10, 10), 2.0)
    ks, js, is_ = np.nonzero(mask)
    assert (ks.min(), ks.max()) == (4, 6)
    assert (js.min(), js.max()) == (6, 14) and (is_.min(), is_.max()) == (6, 14)
    # middle slice: lattice points with dj² + di² <= 16 (49); the slices at ±2 mm hold one voxel each
    assert mask[5].sum() == 49 and mask.sum() == 51
    fine = brush_mask((41, 81, 81), (0.5, 0.25, 0.25), (20, 40, 40), 5.0)
    assert fine.sum() * 0.5 * 0.0625 == pytest.approx(4 / 3 * np.pi * 125, rel=0.03)


def test_disc_brush_stays_on_its_slice_and_covers_pi_r_squared():
    mask = brush_mask((5, 101, 101), (3.0, 0.5, 0.5), (2, 50, 50), 10.0, axis=0)
    assert mask[2].sum() == mask.sum()
    assert mask.sum() * 0.25 == pytest.approx(np.pi * 100, rel=0.02)
    coronal = brush_mask((41, 5, 41), (0.5, 1.0, 0.5), (20, 2, 20), 5.0, axis=1)
    assert coronal[:, 2, :].sum() == coronal.sum() > 0


def test_brush_is_clipped_at_the_border():
    mask = brush_mask((3, 3, 3), (1, 1, 1), (0, 0, 0), 1.0)
    assert mask.sum() == 4


@pytest.mark.parametrize("kwargs", [{"radius_mm": 0}, {"radius_mm": 1, "axis": 3}, {"radius_mm": 1, "centre": (9, 0, 0)}])
def test_brush_rejects_bad_arguments(kwargs):
    args = {"shape": (3, 3, 3), "spacing_mm": (1, 1, 1), "centre": (1, 1, 1), **kwargs}
    with pytest.raises(EditError):
        brush_mask(args["shape"], args["spacing_mm"], args["centre"], args["radius_mm"], axis=args.get("axis"))


def test_paint_and_erase_respect_locked_labels():
    base = np.zeros((1, 1, 4), np.uint8)
    base[0, 0, 0] = 1
    everywhere = np.ones_like(base, dtype=bool)
    painted = paint(base, everywhere, 2, locked_labels={1})
    assert painted.tolist() == [[[1, 2, 2, 2]]]
    assert erase(painted, everywhere, locked_labels={1}).tolist() == [[[1, 0, 0, 0]]]
    assert erase(painted, everywhere, label=1).tolist() == [[[0, 2, 2, 2]]]
    with pytest.raises(EditError) as err:
        paint(base, everywhere, 1, locked_labels={1})
    assert err.value.code == "locked_label"
    assert base.tolist() == [[[1, 0, 0, 0]]]


def test_threshold_brush_paints_only_voxels_in_the_hu_range_of_real_ct(lung1):
    image, label = lung1["image"], np.zeros_like(lung1["label"])
    mask = brush_mask(label.shape, lung1["spacing_mm"], (24, 48, 48), 20.0)
    out = paint(label, mask, 1, image=image, intensity_range=(-100, 200))
    painted = out == 1
    assert painted.any() and (~mask[painted]).sum() == 0
    assert image[painted].min() >= -100 and image[painted].max() <= 200
    assert painted.sum() == (mask & (image >= -100) & (image <= 200)).sum()
    with pytest.raises(EditError):
        paint(label, mask, 1, image=image, intensity_range=(200, -100))
    with pytest.raises(EditError):
        paint(label, mask, 1, intensity_range=(0, 1))


def test_flood_fill_stops_at_other_labels_in_2d_and_3d():
    lab = np.zeros((3, 5, 5), np.uint8)
    lab[:, :, 2] = 1  # a wall splits each slice in two
    region2d = flood_fill_mask(lab, (1, 0, 0), axis=0)
    assert region2d.sum() == 10 and region2d[1, :, :2].all()
    region3d = flood_fill_mask(lab, (1, 0, 0))
    assert region3d.sum() == 30
    wall = flood_fill_mask(lab, (0, 0, 2), axis=1)
    assert wall.sum() == 3


def test_flood_fill_with_hu_range_follows_the_real_nodule(lung1):
    image = lung1["image"]
    k, j, i = np.argwhere(lung1["label"] > 0)[len(np.argwhere(lung1["label"] > 0)) // 2]
    if not -400 <= image[k, j, i] <= 400:
        pytest.skip("nodule centre voxel is outside the soft-tissue range")
    region = flood_fill_mask(np.zeros_like(lung1["label"]), (k, j, i), axis=0, image=image, intensity_range=(-400, 400))
    assert region[k, j, i] and region.sum() < region[k].size
    assert (image[region] >= -400).all()
    with pytest.raises(EditError):
        flood_fill_mask(np.zeros_like(lung1["label"]), (k, j, i), image=image, intensity_range=(3000, 4000))


def test_polygon_fill_covers_the_square_on_one_slice():
    mask = polygon_mask((4, 10, 10), axis=0, slice_index=2, vertices=[(2, 2), (2, 6), (6, 6), (6, 2)])
    assert mask[2, 2:7, 2:7].all() and mask.sum() == 25
    sag = polygon_mask((6, 6, 3), axis=2, slice_index=1, vertices=[(0, 0), (0, 5), (5, 5), (5, 0)])
    assert sag[:, :, 1].sum() == sag.sum() == 36
    with pytest.raises(EditError):
        polygon_mask((4, 10, 10), axis=0, slice_index=2, vertices=[(0, 0), (1, 1)])
    with pytest.raises(EditError):
        polygon_mask((4, 10, 10), axis=0, slice_index=4, vertices=[(0, 0), (1, 1), (2, 0)])
