"""Real label maps and images for the editing tests (small crops, read from ../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_data


@pytest.fixture(scope="session")
def lung1():
    """pyradiomics lung1: a chest CT (HU) and its nodule label, cropped to 48 slices × 96 × 96
    around the nodule; arrays (k, j, i) and spacing (k, j, i) in mm."""
    from annotation.imaging.formats import read_volume

    image = read_volume(shared_data("pyradiomics_tumour_masks", "lung1_image.nrrd"))
    label = read_volume(shared_data("pyradiomics_tumour_masks", "lung1_label.nrrd"))
    _, j, i = (round(float(c)) for c in np.argwhere(label.array > 0).mean(axis=0))
    crop = (slice(None), slice(max(0, j - 48), j + 48), slice(max(0, i - 48), i + 48))
    return {
        "image": image.array[crop].astype(np.int16),
        "label": (label.array[crop] > 0).astype(np.uint8),
        "spacing_mm": image.geometry.spacing_mm,
    }
