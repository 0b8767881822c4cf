"""Classical lung-nodule detection: synthetic spheres and tubes with hand-known answers, and the
juxtapleural correction of the lung mask on the real LIDC-IDRI-0001 reads."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from annotation.imaging.volume import Geometry, Volume
from annotation.ml.nodules import correct_lung_mask, detect_nodules

SPACING = (2.0, 0.8, 0.8)
SHAPE = (48, 140, 140)
LUNG_HU, TISSUE_HU = -850.0, 40.0


def _phantom(rng_seed: int = 0):
    """A block of aerated lung inside soft tissue; returns (hu, lungs, index grid in mm)."""
    hu = np.full(SHAPE, TISSUE_HU, dtype=np.float32)
    lungs = np.zeros(SHAPE, dtype=np.uint8)
    lungs[4:44, 10:130, 10:130] = 1
    hu[lungs == 1] = LUNG_HU
    rng = np.random.default_rng(rng_seed)
    hu += rng.normal(0.0, 15.0, SHAPE).astype(np.float32)  # CT noise
    k, j, i = np.meshgrid(*(np.arange(n) * s for n, s in zip(SHAPE, SPACING)), indexing="ij")
    return hu, lungs, (k, j, i)


def _volume(hu):
    return Volume(array=hu.astype(np.int16), geometry=Geometry(shape=SHAPE, spacing_mm=SPACING), modality="CT")


def _sphere(grid, centre_mm, radius_mm):
    k, j, i = grid
    return (k - centre_mm[0]) ** 2 + (j - centre_mm[1]) ** 2 + (i - centre_mm[2]) ** 2 <= radius_mm**2


def _tube(grid, centre_mm, radius_mm):
    """A vessel along the i axis through the whole lung."""
    k, j, _ = grid
    return (k - centre_mm[0]) ** 2 + (j - centre_mm[1]) ** 2 <= radius_mm**2


def _near(candidates, centre_mm, tolerance_mm):
    spacing = np.asarray(SPACING)
    return [c for c in candidates if np.linalg.norm(np.asarray(c.centre_index) * spacing - centre_mm) <= tolerance_mm]


def test_a_solid_sphere_is_found_at_its_centre_with_its_size():
    hu, lungs, grid = _phantom()
    centre = np.array([46.0, 56.0, 56.0])
    hu[_sphere(grid, centre, 5.0)] = TISSUE_HU
    detection = detect_nodules(_volume(hu), lungs=lungs)
    found = _near(detection.candidates, centre, 2.0)
    assert len(found) == 1
    nodule = found[0]
    assert nodule.confidence >= 0.5
    assert nodule.diameter_mm == pytest.approx(10.0, rel=0.15)
    assert nodule.features["sphericity"] > 0.7 and nodule.features["blobness"] > 0.5
    assert detection.candidates[0] is nodule  # the most confident one
    # Its label on the grid is the candidate's rank.
    label = detection.label_map[tuple(np.round(nodule.centre_index).astype(int))]
    assert label == 1 and detection.label_table[0]["confidence"] == nodule.confidence


def test_a_vessel_is_rejected_while_a_nodule_beside_it_is_kept():
    hu, lungs, grid = _phantom(1)
    nodule_centre = np.array([46.0, 80.0, 40.0])
    vessel_centre = np.array([46.0, 40.0, 0.0])
    hu[_tube(grid, vessel_centre, 2.0) & (lungs == 1)] = TISSUE_HU
    hu[_sphere(grid, nodule_centre, 4.0)] = TISSUE_HU
    detection = detect_nodules(_volume(hu), lungs=lungs)
    on_vessel = [c for c in detection.candidates if abs(c.centre_index[0] * SPACING[0] - 46.0) < 4
                 and abs(c.centre_index[1] * SPACING[1] - 40.0) < 4]
    assert all(c.confidence < 0.5 for c in on_vessel)
    nodule = _near(detection.candidates, nodule_centre, 2.0)
    assert len(nodule) == 1 and nodule[0].confidence >= 0.5
    assert all(nodule[0].confidence > c.confidence for c in on_vessel)


def test_an_empty_lung_gives_no_confident_nodule():
    hu, lungs, _ = _phantom(2)
    detection = detect_nodules(_volume(hu), lungs=lungs)
    assert all(c.confidence < 0.5 for c in detection.candidates)


def test_non_ct_and_lungless_scans_are_refused():
    hu, lungs, _ = _phantom()
    with pytest.raises(ValueError, match="CT"):
        detect_nodules(Volume(array=hu, geometry=Geometry(shape=SHAPE, spacing_mm=SPACING), modality="MR"), lungs=lungs)
    with pytest.raises(ValueError, match="no lung"):
        detect_nodules(_volume(hu), lungs=np.zeros(SHAPE, dtype=np.uint8))


def test_juxtapleural_notch_is_closed_but_a_wide_concavity_is_not():
    lungs = np.zeros((3, 200, 200), dtype=np.uint8)
    lungs[:, 20:180, 20:180] = 1
    spacing = (2.0, 0.7, 0.7)
    jj, ii = np.mgrid[0:200, 0:200]
    # A 20-mm nodule on the chest wall (the lung's right edge) bites a half-disk out of the mask.
    notch = (jj - 100) ** 2 + (ii - 179) ** 2 <= (10 / 0.7) ** 2
    # A 70-mm-wide, 35-mm-deep concavity (the heart's impression) on the left edge.
    heart = (jj - 100) ** 2 + (ii - 20) ** 2 <= (35 / 0.7) ** 2
    lungs[:, notch] = 0
    lungs[:, heart] = 0
    corrected = correct_lung_mask(lungs, spacing, axial_axis=0)
    # A 15-mm disk reaches 15 - sqrt(15² - 10²) = 3.8 mm into a 10-mm-radius notch from outside:
    # everything deeper is filled, and that is most of the nodule.
    assert corrected[1][notch & (ii < 180 - 4.0 / 0.7)].all()
    assert corrected[1][notch & (ii < 180)].mean() > 0.6  # only the lens at the mouth stays open
    assert corrected[1][(jj - 100) ** 2 + (ii - 20) ** 2 <= (20 / 0.7) ** 2].sum() == 0
    assert (corrected[lungs == 1] == 1).all()  # nothing of the lung is lost


def test_correction_never_gives_one_lungs_voxels_to_the_other():
    lungs = np.zeros((2, 120, 120), dtype=np.uint8)
    lungs[:, 10:110, 10:55] = 1
    lungs[:, 10:110, 65:110] = 2
    corrected = correct_lung_mask(lungs, (2.0, 0.7, 0.7))
    assert (corrected[lungs == 1] == 1).all() and (corrected[lungs == 2] == 2).all()


def test_every_nodule_marked_by_three_of_four_lidc_readers_lies_in_the_corrected_lung_mask():
    from annotation.imaging.dicom.read import read_dicom_series
    from annotation.ml.lung import segment_lungs
    from tests.conftest import shared_data

    folder = shared_data("lidc_idri_0001_ct_nodules")
    series = read_dicom_series(sorted((folder / "dicom").glob("*.dcm")))[0]
    volume = series.volume
    slice_of = {uid: k for k, uid in enumerate(series.sop_instance_uids)}
    ns = {"n": "http://www.nih.gov"}
    marks = []  # (reader, centroid index)
    for reader, session in enumerate(ET.parse(folder / "annotations" / "069.xml").getroot().findall("n:readingSession", ns)):
        for nodule in session.findall("n:unblindedReadNodule", ns):
            points = [(slice_of[roi.find("n:imageSOP_UID", ns).text.strip()], int(e.find("n:yCoord", ns).text),
                       int(e.find("n:xCoord", ns).text))
                      for roi in nodule.findall("n:roi", ns) for e in roi.findall("n:edgeMap", ns)]
            marks.append((reader, np.mean(points, axis=0)))
    spacing = np.asarray(volume.geometry.spacing_mm)
    groups: list[list] = []
    for reader, centre in marks:
        for group in groups:
            if np.linalg.norm((group[0][1] - centre) * spacing) < 10.0:
                group.append((reader, centre))
                break
        else:
            groups.append([(reader, centre)])
    agreed = [np.mean([c for _, c in g], axis=0) for g in groups if len({r for r, _ in g}) >= 3]
    assert len(agreed) == 4  # one nodule of about 2 cm and three under 3 mm, as LIDC lists for this case

    lungs = segment_lungs(volume)
    corrected = correct_lung_mask(lungs, spacing, axial_axis=volume.geometry.axial_axis())
    inside = [int(corrected[tuple(np.round(c).astype(int))]) for c in agreed]
    assert all(inside), inside
    # The threshold mask alone misses the large juxtapleural nodule: the correction is what brings it in.
    assert not all(int(lungs[tuple(np.round(c).astype(int))]) for c in agreed)
