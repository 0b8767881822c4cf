"""Unit tests of diagnosis.reporting.keyimages: PNG output, aspect, overlay and radiological orientation."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from PIL import Image

from annotation.imaging.volume import Geometry
from annotation.imaging.windowing import apply_window
from diagnosis.reporting import render_key_images


def decode(png: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG"
    return np.asarray(picture.convert("RGB"))


def test_returns_three_pngs_with_square_mm_pixels():
    # Extents: k 40 × 2.0 = 80 mm (z), j 60 × 0.8 = 48 mm (y), i 100 × 0.6 = 60 mm (x).
    geometry = Geometry(shape=(40, 60, 100), spacing_mm=(2.0, 0.8, 0.6))
    image = np.zeros(geometry.shape, dtype=np.int16)

    pngs = render_key_images(image, None, geometry, center_index=(20, 30, 50), window=(40, 400), colors={},
                             size_px=300)

    assert set(pngs) == {"axial", "coronal", "sagittal"}
    sizes = {plane: Image.open(io.BytesIO(png)).size for plane, png in pngs.items()}  # (width, height)
    # axial: x across, y down; coronal: x across, z down; sagittal: y across, z down.
    assert sizes["axial"] == (300, 240)
    assert sizes["coronal"] == (round(300 * 60 / 80), 300)
    assert sizes["sagittal"] == (round(300 * 48 / 80), 300)


def test_overlay_is_drawn_exactly_where_the_mask_is():
    geometry = Geometry(shape=(64, 64, 64), spacing_mm=(1.0, 1.0, 1.0))
    image = np.zeros(geometry.shape, dtype=np.float32)
    label_map = np.zeros(geometry.shape, dtype=np.uint8)
    label_map[20:40, 10:30, 30:50] = 1
    label_map[0:5, 0:5, 0:5] = 2  # no colour given: never drawn

    pngs = render_key_images(image, label_map, geometry, center_index=(30, 20, 40), window=(0, 100),
                             colors={1: (255, 0, 0)}, opacity=0.4, size_px=384)

    axial = decode(pngs["axial"]).astype(int)
    coloured = axial[:, :, 0] != axial[:, :, 1]
    # Default direction: j → +y (rows, anterior at top), i → +x (columns, right at left); 6 px per mm.
    expected = np.zeros(coloured.shape, dtype=bool)
    expected[10 * 6 : 30 * 6, 30 * 6 : 50 * 6] = True
    assert np.array_equal(coloured, expected)
    gray = int(apply_window(np.array(0.0), 0, 100))
    assert tuple(axial[100, 240]) == (round(0.6 * gray + 0.4 * 255), round(0.6 * gray), round(0.6 * gray))
    assert tuple(axial[10 * 6, 240]) == (255, 0, 0)  # outline row
    assert tuple(axial[0, 0]) == (gray, gray, gray)


def test_no_overlay_without_label_map():
    geometry = Geometry(shape=(8, 8, 8), spacing_mm=(1.0, 1.0, 1.0))
    image = np.linspace(-100, 100, 512).reshape(geometry.shape)

    pngs = render_key_images(image, None, geometry, center_index=(4, 4, 4), window=(0, 200),
                             colors={1: (0, 255, 0)}, size_px=64)

    for png in pngs.values():
        rgb = decode(png)
        assert np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2])


def _rotation_about_y(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


# Direction matrices (columns = LPS unit vectors of array axes k, j, i).
DIRECTIONS = {
    "head-first axial": np.column_stack([(0, 0, 1), (0, 1, 0), (1, 0, 0)]),
    "feet-first flipped": np.column_stack([(0, 0, -1), (0, -1, 0), (-1, 0, 0)]),
    # DICOM sagittal: row cosine (0, 1, 0) → i, column cosine (0, 0, -1) → j, normal +x → k.
    "sagittal acquisition": np.column_stack([(1, 0, 0), (0, 0, -1), (0, 1, 0)]),
    # DICOM coronal: row cosine (1, 0, 0) → i, column cosine (0, 0, -1) → j, normal +y → k.
    "coronal acquisition": np.column_stack([(0, 1, 0), (0, 0, -1), (1, 0, 0)]),
    "oblique 15 deg": _rotation_about_y(15) @ np.column_stack([(0, 0, 1), (0, 1, 0), (1, 0, 0)]),
}

# Corner of the patient box as (right or left, anterior or posterior, superior or inferior).
CORNERS = list(itertools.product("RL", "AP", "SI"))


@pytest.mark.parametrize("direction_name", DIRECTIONS)
@pytest.mark.parametrize("corner", CORNERS, ids=lambda c: "".join(c))
def test_marker_at_lps_corner_appears_in_radiological_position(direction_name, corner):
    direction = DIRECTIONS[direction_name].astype(float)
    geometry = Geometry(shape=(18, 22, 26), spacing_mm=(2.0, 1.0, 1.5), origin_mm=(10.0, -20.0, 30.0),
                        direction=tuple(direction.ravel()))
    # Pick the array corner that lies furthest towards the wanted patient corner (R = -x, A = -y, S = +z).
    want = np.array([1 if corner[0] == "L" else -1, 1 if corner[1] == "P" else -1, 1 if corner[2] == "S" else -1])
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in geometry.shape])))
    index = corners[np.argmax(geometry.index_to_lps(corners) @ want)]
    image = np.zeros(geometry.shape, dtype=np.int16)
    block = tuple(slice(max(c - 2, 0), c + 3) for c in index)
    image[block] = 1000

    pngs = render_key_images(image, None, geometry, center_index=tuple(int(c) for c in index),
                             window=(500, 1000), colors={}, size_px=120)

    right, anterior, superior = corner[0] == "R", corner[1] == "A", corner[2] == "S"
    expected = {  # (marker in top half, marker in left half)
        "axial": (anterior, right),
        "coronal": (superior, right),
        "sagittal": (superior, anterior),
    }
    for plane, (top, left) in expected.items():
        rgb = decode(pngs[plane])
        rows, cols = np.nonzero(rgb[:, :, 0] > 200)
        assert rows.size, f"{plane}: marker not visible"
        height, width = rgb.shape[:2]
        assert (rows.mean() < height / 2, cols.mean() < width / 2) == (top, left), plane


def test_plane_extents_follow_anatomy_for_a_sagittal_acquisition():
    # x extent 18 × 2.0 = 36 mm (k), z extent 22 × 1.0 = 22 mm (j), y extent 26 × 1.5 = 39 mm (i).
    direction = DIRECTIONS["sagittal acquisition"].astype(float)
    geometry = Geometry(shape=(18, 22, 26), spacing_mm=(2.0, 1.0, 1.5), direction=tuple(direction.ravel()))
    image = np.zeros(geometry.shape, dtype=np.int16)

    pngs = render_key_images(image, None, geometry, center_index=(9, 11, 13), window=(0, 10), colors={},
                             size_px=390)

    sizes = {plane: Image.open(io.BytesIO(png)).size for plane, png in pngs.items()}
    assert sizes["axial"] == (360, 390)  # x across (36 mm), y down (39 mm)
    assert sizes["coronal"] == (390, 238)  # x across (36 mm → 390 px sets the scale 390/36), z down (22 mm)
    assert sizes["sagittal"] == (390, 220)  # y across (39 mm), z down (22 mm)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"center_index": (8, 0, 0)}, "outside the grid"),
        ({"window": (40, 0.5)}, "window width"),
        ({"opacity": 1.5}, "opacity"),
        ({"colors": {1: (300, 0, 0)}}, "colour"),
    ],
)
def test_rejects_invalid_arguments(kwargs, message):
    geometry = Geometry(shape=(8, 8, 8), spacing_mm=(1, 1, 1))
    arguments = {"center_index": (4, 4, 4), "window": (40, 400), "colors": {1: (255, 0, 0)}} | kwargs

    with pytest.raises(ValueError, match=message):
        render_key_images(np.zeros((8, 8, 8)), np.zeros((8, 8, 8), dtype=np.uint8), geometry, **arguments)


def test_rejects_arrays_that_do_not_match_the_geometry():
    geometry = Geometry(shape=(8, 8, 8), spacing_mm=(1, 1, 1))
    common = {"center_index": (4, 4, 4), "window": (40, 400), "colors": {}}

    with pytest.raises(ValueError, match="image shape"):
        render_key_images(np.zeros((8, 8, 7)), None, geometry, **common)
    with pytest.raises(ValueError, match="label map shape"):
        render_key_images(np.zeros((8, 8, 8)), np.zeros((8, 8, 7), dtype=np.uint8), geometry, **common)
    with pytest.raises(ValueError, match="integer dtype"):
        render_key_images(np.zeros((8, 8, 8)), np.zeros((8, 8, 8), dtype=np.float32), geometry, **common)
