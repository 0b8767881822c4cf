"""Nodule composition from Hounsfield units, on hand-made voxel sets."""

import numpy as np

from diagnosis.measurements.nodules import nodule_composition


def test_a_soft_tissue_nodule_is_solid():
    assert nodule_composition(np.full(100, 40.0)) == "solid"


def test_a_hazy_nodule_is_ground_glass():
    assert nodule_composition(np.full(100, -600.0)) == "ground_glass"


def test_a_ground_glass_nodule_with_a_solid_core_is_part_solid():
    values = np.concatenate([np.full(80, -600.0), np.full(20, 30.0)])
    assert nodule_composition(values) == "part_solid"


def test_aerated_lung_around_the_nodule_does_not_count():
    values = np.concatenate([np.full(1000, -880.0), np.full(60, 20.0), np.full(40, -500.0)])
    assert nodule_composition(values) == "solid"


def test_no_dense_voxel_is_ground_glass():
    assert nodule_composition(np.array([])) == "ground_glass"
    assert nodule_composition(np.full(10, -900.0)) == "ground_glass"
