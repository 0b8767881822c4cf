"""Classical lung segmentation: a phantom with a known answer, the LIDC chest CT and an abdominal CT."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from annotation.imaging.overlap import dice_per_label
from annotation.imaging.volume import Geometry, Volume, volume_from_sitk
from annotation.ml.inference import LungSegmenter
from annotation.ml.lung import LEFT_LUNG, LUNG_LABEL_TABLE, RIGHT_LUNG, segment_lungs
from tests.conftest import shared_data

# --- phantom --------------------------------------------------------------------------------------
# A body (30 HU) in air, two ellipsoidal lungs (-850 HU) centred at x = ∓60 mm (LPS: patient right is -x),
# a vessel inside the right lung, and a trachea (air) at the midline from the top of the volume down to
# z = 30 mm, joined to both lungs by bronchi.

LUNG_AXES_MM = (42.0, 62.0, 85.0)


def _segment_distance(points, a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip(((points - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1)


def _phantom(geometry: Geometry) -> tuple[Volume, np.ndarray]:
    index = np.stack(np.indices(geometry.shape), axis=-1).reshape(-1, 3)
    x, y, z = geometry.index_to_lps(index).T
    p = np.stack([x, y, z], axis=1)
    hu = np.full(x.shape, -1000.0)
    hu[(x / 140) ** 2 + (y / 105) ** 2 <= 1] = 30.0
    truth = np.zeros(x.shape, dtype=np.uint8)
    ax, ay, az = LUNG_AXES_MM
    for centre, label in ((-60.0, RIGHT_LUNG), (60.0, LEFT_LUNG)):
        inside = ((x - centre) / ax) ** 2 + ((y - 5) / ay) ** 2 + (z / az) ** 2 <= 1
        hu[inside] = -850.0
        truth[inside] = label
    hu[(np.hypot(x + 60, y - 5) <= 5) & (np.abs(z) < 50)] = 40.0  # a vessel: must be filled in
    airway = (np.hypot(x, y + 35) <= 9) & (z >= 30)
    for side in (-40.0, 40.0):
        airway |= _segment_distance(p, (0, -35, 30), (side, -10, 10)) <= 6
    hu[airway & (truth == 0)] = -1000.0
    rng = np.random.default_rng(0)
    hu += rng.normal(0, 15, hu.shape)
    return Volume(hu.reshape(geometry.shape).astype(np.float32), geometry, modality="CT"), truth.reshape(geometry.shape)


AXIAL = Geometry(shape=(51, 121, 151), spacing_mm=(4.0, 2.0, 2.0), origin_mm=(-150.0, -120.0, -100.0))
# Slices from head to feet, rows along -x, columns along +y: nothing like the default layout.
SHUFFLED = Geometry(
    shape=(51, 151, 121),
    spacing_mm=(4.0, 2.0, 2.0),
    origin_mm=(150.0, -120.0, 100.0),
    direction=(0.0, -1.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0),
)


@pytest.mark.parametrize("geometry", [AXIAL, SHUFFLED], ids=["axial", "shuffled_axes"])
def test_phantom_lungs_are_found_and_named_from_patient_coordinates(geometry):
    volume, truth = _phantom(geometry)

    labels = segment_lungs(volume)

    assert labels.shape == volume.array.shape and labels.dtype == np.uint8
    dice = dice_per_label(labels, truth, [RIGHT_LUNG, LEFT_LUNG])
    assert dice[RIGHT_LUNG] > 0.95 and dice[LEFT_LUNG] > 0.95, dice
    expected_ml = 4 / 3 * np.pi * np.prod(LUNG_AXES_MM) / 1000
    for label in (RIGHT_LUNG, LEFT_LUNG):
        volume_ml = (labels == label).sum() * geometry.voxel_volume_mm3 / 1000
        assert volume_ml == pytest.approx(expected_ml, rel=0.08)


def test_phantom_trachea_is_excluded_and_vessels_filled():
    volume, _ = _phantom(AXIAL)

    labels = segment_lungs(volume)

    index = np.stack(np.indices(AXIAL.shape), axis=-1).reshape(-1, 3)
    x, y, z = AXIAL.index_to_lps(index).T
    trachea = ((np.hypot(x, y + 35) <= 7) & (z >= 35)).reshape(AXIAL.shape)
    vessel = ((np.hypot(x + 60, y - 5) <= 4) & (np.abs(z) < 45)).reshape(AXIAL.shape)
    assert trachea.sum() > 100 and not labels[trachea].any()
    assert (labels[vessel] == RIGHT_LUNG).all()


def test_soft_tissue_only_gives_an_empty_map():
    geometry = Geometry(shape=(20, 64, 64), spacing_mm=(3.0, 2.0, 2.0))
    volume = Volume(np.full(geometry.shape, 40.0, dtype=np.float32), geometry, modality="CT")

    assert not segment_lungs(volume).any()


def test_rejects_mr():
    geometry = Geometry(shape=(4, 8, 8), spacing_mm=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="needs CT"):
        segment_lungs(Volume(np.zeros(geometry.shape), geometry, modality="MR"))


def test_label_table_names_both_lungs_in_english_and_chinese():
    assert [(e["index"], e["name"], e["name_zh"]) for e in LUNG_LABEL_TABLE] == [
        (1, "right lung", "右肺"),
        (2, "left lung", "左肺"),
    ]
    assert LungSegmenter().label_table is LUNG_LABEL_TABLE


# --- LIDC-IDRI-0001 (real chest CT, 133 × 512 × 512) ----------------------------------------------


def _read_dicom_series(folder) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return volume_from_sitk(reader.Execute(), modality="CT")


@pytest.fixture(scope="module")
def lidc():
    import time

    volume = _read_dicom_series(shared_data("lidc_idri_0001_ct_nodules", "dicom"))
    reports = []
    started = time.perf_counter()
    labels = LungSegmenter()(volume, lambda percent, stage: reports.append((percent, stage)))
    return volume, labels, time.perf_counter() - started, reports


def _x_of(volume: Volume, mask: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask)[::50]
    return volume.geometry.index_to_lps(index)[:, 0]


def test_lidc_runs_in_a_few_seconds_and_reports_progress(lidc):
    volume, labels, duration_s, reports = lidc
    assert labels.shape == volume.array.shape == (133, 512, 512)
    assert duration_s < 15  # about 2–3 s on 2 cores; generous for a loaded machine
    assert reports[-1] == (100.0, "lungs")
    assert [p for p, _ in reports] == sorted(p for p, _ in reports)


def test_lidc_has_one_component_per_lung_with_adult_volumes(lidc):
    volume, labels, _, _ = lidc
    assert set(np.unique(labels)) == {0, RIGHT_LUNG, LEFT_LUNG}
    for label in (RIGHT_LUNG, LEFT_LUNG):
        _, count = ndimage.label(labels == label, structure=np.ones((3, 3, 3)))
        assert count == 1
        volume_ml = (labels == label).sum() * volume.geometry.voxel_volume_mm3 / 1000
        # Measured: right 2017 mL, left 1771 mL (adult lungs, 1.5–3.5 L each on a breath-hold scan).
        assert 1500 < volume_ml < 3500, (label, volume_ml)


def test_lidc_right_lung_is_on_the_patients_right(lidc):
    volume, labels, _, _ = lidc
    right_x, left_x = _x_of(volume, labels == RIGHT_LUNG), _x_of(volume, labels == LEFT_LUNG)
    # LPS: x grows towards the patient's left.
    assert np.median(right_x) < np.median(left_x)
    assert np.percentile(right_x, 95) < np.percentile(left_x, 5) + 40  # at most a small overlap at the junctions


def _body_mask(hu: np.ndarray) -> np.ndarray:
    """Per axial slice: the largest non-air region with its holes filled (independent of the method)."""
    body = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[0]):
        tissue, n = ndimage.label(hu[k] > -320)
        if n:
            largest = np.argmax(np.bincount(tissue.ravel())[1:]) + 1
            body[k] = ndimage.binary_fill_holes(tissue == largest)
    return body


def test_lidc_lungs_stay_inside_the_body(lidc):
    volume, labels, _, _ = lidc
    assert not (labels > 0)[~_body_mask(volume.array)].any()


def test_lidc_trachea_is_excluded(lidc):
    volume, labels, _, _ = lidc
    geometry = volume.geometry
    assert geometry.axial_axis() == 0 and geometry.direction_matrix[2, 0] > 0  # slice 132 is the top
    pixel_mm2 = geometry.spacing_mm[1] * geometry.spacing_mm[2]
    found = 0
    for k in range(132, 132 - 16, -1):  # the top 40 mm
        body = _body_mask(volume.array[k : k + 1])[0]
        centre_i = np.argwhere(body)[:, 1].mean()
        air, n = ndimage.label((volume.array[k] < -900) & body)
        for region in range(1, n + 1):
            mask = air == region
            area = mask.sum() * pixel_mm2
            offset_mm = abs(np.argwhere(mask)[:, 1].mean() - centre_i) * geometry.spacing_mm[2]
            if 100 < area < 600 and offset_mm < 25:  # a tracheal lumen: 11–28 mm across, on the midline
                found += 1
                assert not labels[k][mask].any(), f"trachea labelled as lung in slice {k}"
    assert found >= 10


# --- TotalSegmentator example: abdominal CT at 3 mm that ends at the lung bases ------------------


def test_abdominal_ct_finds_only_the_lung_bases_not_bowel_gas():
    import SimpleITK as sitk

    volume = volume_from_sitk(sitk.ReadImage(str(shared_data("totalsegmentator_example", "example_ct.nii.gz"))))

    labels = segment_lungs(volume)

    assert labels.shape == volume.array.shape
    geometry = volume.geometry
    z = geometry.index_to_lps(np.argwhere(labels > 0))[:, 2]
    top_z = geometry.index_to_lps(np.array([[0, 0, 0], [n - 1 for n in geometry.shape]]))[:, 2].max()
    # The lung bases occupy the top ~40 mm; the bowel gas further down must stay unlabelled.
    assert z.min() > top_z - 60
    for label in (RIGHT_LUNG, LEFT_LUNG):
        volume_ml = (labels == label).sum() * geometry.voxel_volume_mm3 / 1000
        assert 10 < volume_ml < 500, (label, volume_ml)
    assert np.median(_x_of(volume, labels == RIGHT_LUNG)) < np.median(_x_of(volume, labels == LEFT_LUNG))
