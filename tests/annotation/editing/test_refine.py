"""Refinements: components, holes, opening/closing in mm, restrict to mask; and comparison."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.editing import EditError, compare_label_maps, inter_annotator_dice, refine
from annotation.editing.refine import ball, fill_holes, keep_largest_component, morphology, remove_small_components
from annotation.imaging.overlap import dice


def _two_blobs():
    lab = np.zeros((10, 20, 20), np.uint8)
    lab[1:4, 1:4, 1:4] = 1       # 27 voxels
    lab[5:9, 10:15, 10:15] = 1   # 100 voxels
    lab[5:7, 1:3, 1:3] = 2       # 8 voxels
    return lab


def test_largest_component_is_kept_per_label():
    out = keep_largest_component(_two_blobs())
    assert (out == 1).sum() == 100 and (out == 2).sum() == 8


def test_small_components_are_removed_by_volume_in_ml():
    # 2 mm isotropic voxels: 8 mm³ each; 27 voxels = 0.216 mL, 100 = 0.8 mL, 8 = 0.064 mL
    out = remove_small_components(_two_blobs(), (2, 2, 2), min_volume_ml=0.3)
    assert (out == 1).sum() == 100 and (out == 2).sum() == 0
    with pytest.raises(EditError):
        remove_small_components(_two_blobs(), (2, 2, 2), min_volume_ml=-1)


def test_fill_holes_in_3d_and_per_slice():
    lab = np.zeros((7, 7, 7), np.uint8)
    lab[1:6, 1:6, 1:6] = 1
    lab[3, 3, 3] = 0                 # a closed cavity
    lab[0:7, 4, 4] = 0               # a channel open at both ends along k
    filled3d = fill_holes(lab, mode="3d")
    assert filled3d[3, 3, 3] == 1 and filled3d[3, 4, 4] == 0
    filled2d = fill_holes(lab, mode="2d", axis=0)
    assert filled2d[3, 4, 4] == 1
    with pytest.raises(EditError):
        fill_holes(lab, mode="4d")


def test_fill_holes_does_not_overwrite_another_label():
    lab = np.zeros((5, 5, 5), np.uint8)
    lab[1:4, 1:4, 1:4] = 1
    lab[2, 2, 2] = 2
    assert fill_holes(lab)[2, 2, 2] == 2


def test_ball_radius_is_in_mm():
    b = ball((2.0, 1.0, 1.0), 2.0)
    assert b.shape == (3, 5, 5)


def test_opening_removes_a_thin_spike_and_closing_bridges_a_gap():
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[5:15, 5:15, 5:15] = 1
    lab[10, 10, 15:19] = 1           # a 1-voxel spike
    opened = morphology(lab, (1, 1, 1), operation="opening", radius_mm=1.5)
    assert opened[10, 10, 17] == 0 and opened[10, 10, 10] == 1
    gap = lab.copy()
    gap[:, :, 9] = 0                 # a 1-voxel gap through the cube
    closed = morphology(gap, (1, 1, 1), operation="closing", radius_mm=1.5)
    assert closed[10, 10, 9] == 1
    with pytest.raises(EditError):
        morphology(lab, (1, 1, 1), operation="dilate", radius_mm=1)
    with pytest.raises(EditError):
        morphology(lab, (1, 1, 1), operation="opening", radius_mm=0)


def test_restrict_to_mask_and_dispatch_errors():
    lab = _two_blobs()
    mask = np.zeros(lab.shape, bool)
    mask[:, :10, :10] = True
    out = refine(lab, (1, 1, 1), "restrict_to_mask", {}, mask=mask)
    assert (out == 1).sum() == 27 and (out == 2).sum() == 8
    for op, params in [("restrict_to_mask", {}), ("no_such", {}), ("opening", {}), ("largest_component", {"labels": "x"})]:
        with pytest.raises(EditError):
            refine(lab, (1, 1, 1), op, params)


def test_refinements_on_a_real_nodule_keep_it_and_drop_a_painted_speck(lung1):
    lab = lung1["label"].copy()
    lab[5, 5, 5] = 1  # a 0.5 mm brush dab: one voxel (spacing 5 × 0.57 × 0.57 mm)
    assert (lab != lung1["label"]).sum() >= 1
    out = refine(lab, lung1["spacing_mm"], "largest_component", {"labels": [1]})
    np.testing.assert_array_equal(out, keep_largest_component(lung1["label"]))


def test_compare_reports_added_removed_and_dice():
    a = np.zeros((1, 1, 10), np.uint8)
    b = a.copy()
    a[0, 0, 0:4] = 1
    b[0, 0, 2:8] = 1
    b[0, 0, 9] = 2
    changes = {c.label: c for c in compare_label_maps(a, b, spacing_mm=(10, 10, 10))}
    assert (changes[1].added, changes[1].removed) == (4, 2)
    assert changes[1].dice == pytest.approx(2 * 2 / 10)
    assert changes[2].dice == 0.0 and changes[2].added_ml == pytest.approx(1.0)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    with pytest.raises(ValueError):
        compare_label_maps(a, np.zeros((1, 1, 9), np.uint8))


def test_inter_annotator_dice_is_the_mean_of_pairs():
    a = np.array([[[1, 1, 0, 0]]])
    b = np.array([[[1, 0, 0, 0]]])
    c = np.array([[[1, 1, 0, 0]]])
    scores = inter_annotator_dice([a, b, c], labels=[1])
    assert scores[1] == pytest.approx((2 / 3 + 1.0 + 2 / 3) / 3)
    assert inter_annotator_dice([a], labels=[1]) == {}
