"""Unit tests of diagnosis.reporting.render_finding_key_image on the real LIDC-IDRI-0001 chest CT and the
readers' consensus outline of its nodule (no Django)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from annotation.imaging.dicom.read import read_dicom_series
from annotation.interop.lidc import consensus_mask_voxels, group_nodules, parse_lidc_xml, place_marks
from diagnosis.reporting import render_finding_key_image
from tests.conftest import shared_data

LUNG_WINDOW = (-600, 1500)
YELLOW = (255, 214, 0)


@pytest.fixture(scope="module")
def lidc():
    """The LIDC-IDRI-0001 volume, and the label map (1 = nodule) of the four readers' consensus."""
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    [series] = read_dicom_series(sorted(folder.glob("*.dcm")))
    reads = parse_lidc_xml(shared_data("lidc_idri_0001_ct_nodules", "annotations", "069.xml"))
    placed = place_marks(reads, series.volume.geometry, sop_instance_uids=series.sop_instance_uids)
    nodule = max(group_nodules(placed, series.volume.geometry), key=lambda n: n.agreement)
    voxels = consensus_mask_voxels([placed[m] for m in nodule.members])
    label_map = np.zeros(series.volume.geometry.shape, dtype=np.uint8)
    label_map[tuple(voxels.T)] = 1
    centre = tuple(int(v) for v in np.rint(voxels.mean(axis=0)))
    return series.volume, label_map, centre, nodule


def _pixels(png: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG"
    return np.asarray(picture.convert("RGB"))


def _yellow(rgb: np.ndarray) -> np.ndarray:
    return np.all(rgb == np.asarray(YELLOW, dtype=np.uint8), axis=2)


def test_the_crop_holds_the_nodule_centre_and_its_contour_is_drawn(lidc):
    volume, label_map, centre, nodule = lidc
    key = render_finding_key_image(volume.array, volume.geometry, center_index=centre, window=LUNG_WINDOW,
                                   label_map=label_map, label=1, long_axis_mm=nodule.diameter_mm, color=YELLOW)

    rgb = _pixels(key.png)
    assert key.outline == "contour" and key.slice_index == centre[0]
    r0, r1, c0, c1 = key.crop
    # LIDC-IDRI-0001 is axial head-first supine: display rows are j, columns i (no flip).
    assert r0 <= centre[1] < r1 and c0 <= centre[2] < c1
    assert 0 <= key.centroid_px[0] < rgb.shape[0] and 0 <= key.centroid_px[1] < rgb.shape[1]
    # Three times the ~33 mm nodule: about 100 mm of a 0.7 mm-pixel slice, not the whole 360 mm.
    assert (c1 - c0) * volume.geometry.spacing_mm[2] == pytest.approx(3 * nodule.diameter_mm, abs=2.0)
    contour = _yellow(rgb)
    assert contour.sum() == key.outline_pixels > 50
    # The outline surrounds the centre: yellow pixels lie on both sides of it in both directions.
    rows, cols = np.nonzero(contour)
    row, col = key.centroid_px
    assert rows.min() < row < rows.max() and cols.min() < col < cols.max()
    # Lung window (L -600, W 1500: -1350 HU black, 150 HU white): the nodule (soft tissue, ~0 HU) is
    # light grey (~230), aerated lung (~-850 HU) dark grey (~85).
    gray = rgb[..., 0].astype(int)
    assert gray[row, col] > 200 and np.percentile(gray[~contour], 10) < 100


def test_without_a_segment_the_finding_gets_a_box_as_wide_as_its_long_axis(lidc):
    volume, _, centre, _ = lidc
    key = render_finding_key_image(volume.array, volume.geometry, center_index=centre, window=LUNG_WINDOW,
                                   long_axis_mm=10.0, color=YELLOW, size_px=200)

    rgb = _pixels(key.png)
    assert key.outline == "box"
    rows, cols = np.nonzero(_yellow(rgb))
    # Minimum crop 40 mm over 200 px: 5 px per mm, so a 12 mm box is about 60 px wide.
    assert cols.max() - cols.min() == pytest.approx(60, abs=3)
    assert rows.min() < key.centroid_px[0] < rows.max()


def test_a_label_absent_from_the_slice_falls_back_to_the_box(lidc):
    volume, label_map, centre, _ = lidc
    key = render_finding_key_image(volume.array, volume.geometry, center_index=centre, window=LUNG_WINDOW,
                                   label_map=label_map, label=7, long_axis_mm=8.0)
    assert key.outline == "box" and key.outline_pixels > 0


@pytest.mark.parametrize("kwargs, message", [
    ({"center_index": (10_000, 0, 0)}, "outside the grid"),
    ({"window": (-600, 0)}, "window width"),
    ({"long_axis_mm": float("nan")}, "long_axis_mm"),
    ({"size_px": 4}, "size_px"),
    ({"color": (300, 0, 0)}, "color"),
])
def test_bad_input_is_refused_with_a_clear_message(lidc, kwargs, message):
    volume, _, centre, _ = lidc
    arguments = {"center_index": centre, "window": LUNG_WINDOW, **kwargs}
    with pytest.raises(ValueError, match=message):
        render_finding_key_image(volume.array, volume.geometry, **arguments)


def test_a_label_map_of_another_grid_is_refused(lidc):
    volume, _, centre, _ = lidc
    with pytest.raises(ValueError, match="label map shape"):
        render_finding_key_image(volume.array, volume.geometry, center_index=centre, window=LUNG_WINDOW,
                                 label_map=np.zeros((2, 2, 2), dtype=np.uint8), label=1)
