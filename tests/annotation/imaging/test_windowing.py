"""Linear VOI windowing (DICOM PS3.3 C.11.2.1.2.1) with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.imaging import WINDOW_PRESETS, apply_window


def test_abdomen_window_maps_bounds_and_centre_as_the_dicom_formula():
    center, width = WINDOW_PRESETS["abdomen"]  # (40, 400): linear from -160 to 239 HU
    hu = np.array([-1000, -160, -159.5, 40, 239, 239.5, 3000], dtype=np.float32)

    grey = apply_window(hu, center, width)

    # ((x - 39.5) / 399 + 0.5) * 255: -160 -> 0, -159.5 -> 0.32 -> 0, 40 -> 127.82 -> 128, 239 -> 255
    assert grey.dtype == np.uint8
    assert grey.tolist() == [0, 0, 0, 128, 255, 255, 255]


def test_window_keeps_shape_of_a_volume_and_does_not_modify_input():
    hu = np.linspace(-1200, 1200, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    before = hu.copy()

    grey = apply_window(hu, *WINDOW_PRESETS["lung"])

    assert grey.shape == (2, 3, 4)
    np.testing.assert_array_equal(hu, before)
    assert np.all(np.diff(grey.ravel().astype(int)) >= 0)  # monotone


def test_width_one_is_a_threshold_at_center_minus_half():
    grey = apply_window(np.array([9, 9.5, 10, 11]), 10, 1)

    assert grey.tolist() == [0, 0, 255, 255]


def test_window_follows_dicom_linear_voi_function():
    values = np.array([-1000.0, -160.5, -160.0, 40.0, 239.5, 240.0, 3000.0])

    mapped = apply_window(values, 40.0, 400.0)

    # thresholds: c - 0.5 ∓ (w - 1) / 2 = -160 and 239
    expected = [0, 0, 0, round(((40 - 39.5) / 399 + 0.5) * 255), 255, 255, 255]
    assert mapped.tolist() == expected


@pytest.mark.parametrize(("center", "width"), [(40, 0.5), (40, -10), (np.nan, 400)])
def test_rejects_invalid_window(center, width):
    with pytest.raises(ValueError):
        apply_window(np.zeros(3), center, width)


def test_presets_are_centre_width_pairs_in_hu():
    assert WINDOW_PRESETS == {
        "lung": (-600, 1500),
        "mediastinum": (50, 350),
        "bone": (400, 1800),
        "brain": (40, 80),
        "abdomen": (40, 400),
    }


def test_initial_window_prefers_the_series_dicom_window():
    from annotation.imaging.windowing import initial_window

    window = initial_window(modality="CT", hints=("CHEST",), dicom_center=-600, dicom_width=1600)

    assert window.as_dict() == {"source": "dicom", "preset": None, "center": -600.0, "width": 1600.0}


@pytest.mark.parametrize(
    ("hints", "preset"),
    [(("CHEST", ""), "lung"), (("", "Thorax 1.0 B70f"), "lung"), (("ABDOMEN",), "abdomen"), ((), "abdomen")],
)
def test_initial_window_of_a_ct_without_one_is_the_preset_of_its_body_part(hints, preset):
    from annotation.imaging.windowing import initial_window

    window = initial_window(modality="CT", hints=hints, dicom_center=None, dicom_width=None)

    assert (window.source, window.preset, (window.center, window.width)) == ("preset", preset, WINDOW_PRESETS[preset])


@pytest.mark.parametrize(("center", "width"), [(None, None), (300.0, 600.0), (float("nan"), 400.0), (40.0, 0.5)])
def test_initial_window_of_mr_is_auto_and_never_hu(center, width):
    from annotation.imaging.windowing import initial_window

    window = initial_window(modality="MR", hints=("BRAIN",), dicom_center=center, dicom_width=width)

    if center == 300.0:  # an MR's own DICOM window is in its own units: kept
        assert window.source == "dicom"
    else:
        assert (window.source, window.preset, window.center, window.width) == ("auto", None, None, None)


def test_an_invalid_dicom_window_falls_back_to_the_preset():
    from annotation.imaging.windowing import initial_window

    assert initial_window(modality="CT", hints=("CHEST",), dicom_center=-600, dicom_width=0).preset == "lung"
