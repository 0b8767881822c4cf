"""Fixtures for the workbench integration tests: a real small CT with a first segmentation version."""

from __future__ import annotations

import numpy as np
import pytest

from annotation import services
from annotation.models import Segmentation

LABELS = [
    {"index": 1, "name": "box", "color": "#ff0000"},
    {"index": 2, "name": "ball", "color": "#00ff00"},
]


@pytest.fixture
def series(small_ct_study):
    return small_ct_study.series.get()


@pytest.fixture
def first_version(series, doctor):
    """Version 1: a 5×10×10 box of label 1 on the real CT's grid (k, j, i) = (30, 101, 122)."""
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[5:10, 20:30, 20:30] = 1
    return services.segmentation_create(
        series=series, label_map=label_map, label_table=LABELS, name="manual box",
        source=Segmentation.Source.MANUAL, user=doctor,
    )
