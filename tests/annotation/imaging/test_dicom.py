"""DICOM series reading on real data, compared with SimpleITK (GDCM) and dcm2niix."""

from __future__ import annotations

import logging
import shutil
import subprocess
from datetime import date

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from annotation.imaging import (
    CorruptFileError,
    InconsistentSeriesError,
    UnsupportedFileError,
    read_dicom_series,
    read_volume,
)
from annotation.imaging.dicom import read_dicom_files
from annotation.imaging.volume import volume_from_sitk, volume_to_sitk
from tests.conftest import shared_data


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return volume_from_sitk(reader.Execute())


def _assert_matches_reference(volume, reference, tol=1e-4):
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.geometry.shape == reference.geometry.shape
    np.testing.assert_allclose(volume.geometry.spacing_mm, reference.geometry.spacing_mm, atol=tol)
    np.testing.assert_allclose(volume.geometry.origin_mm, reference.geometry.origin_mm, atol=tol)
    np.testing.assert_allclose(volume.geometry.direction, reference.geometry.direction, atol=tol)


def _edit(path, **attributes):
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


# ---- real series -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lidc_series(lidc_dir):
    series = read_dicom_series(sorted(lidc_dir.glob("*.dcm")))
    assert len(series) == 1
    return series[0]


def test_reads_lidc_ct_as_int16_hounsfield_volume(lidc_series):
    volume = lidc_series.volume

    assert volume.array.shape == (133, 512, 512)
    assert volume.array.dtype == np.int16
    assert volume.geometry.spacing_mm == pytest.approx((2.5, 0.703125, 0.703125))
    assert volume.geometry.origin_mm == pytest.approx((-166.0, -171.699997, -340.0))
    assert volume.modality == lidc_series.modality == "CT"
    # Air about -1000 HU (padding -2048 outside the field of view), bone well above +1000 HU.
    assert volume.array.min() <= -1024 and volume.array.max() > 1000
    assert np.median(volume.array[66]) < -500  # a chest slice is mostly air/lung
    assert len(lidc_series.files) == len(lidc_series.sop_instance_uids) == 133
    assert lidc_series.instance_numbers[0] == 133 and lidc_series.instance_numbers[-1] == 1  # sorted by z, not number
    assert lidc_series.body_part == "CHEST"
    assert lidc_series.study_date == date(2000, 1, 1)


def test_lidc_matches_simpleitk_series_reader(lidc_dir, lidc_series):
    _assert_matches_reference(lidc_series.volume, _sitk_series(lidc_dir), tol=1e-6)


def test_lidc_geometry_and_values_match_dcm2niix(tmp_path, lidc_dir, lidc_series):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed")
    subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "lidc", "-o", str(tmp_path), str(lidc_dir)],
        check=True,
        capture_output=True,
    )
    reference = read_volume(tmp_path / "lidc.nii")

    # dcm2niix flips rows to its own voxel order: compare both in the same (LPS) voxel order.
    ours = volume_from_sitk(sitk.DICOMOrient(volume_to_sitk(lidc_series.volume), "LPS"))
    theirs = volume_from_sitk(sitk.DICOMOrient(volume_to_sitk(reference), "LPS"))
    np.testing.assert_array_equal(ours.array, theirs.array)
    np.testing.assert_allclose(ours.geometry.spacing_mm, theirs.geometry.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(ours.geometry.origin_mm, theirs.geometry.origin_mm, atol=1e-3)
    np.testing.assert_allclose(ours.geometry.direction, theirs.geometry.direction, atol=1e-6)


def test_reads_jpeg2000_compressed_ct_with_blank_uids():
    folder = shared_data("totalsegmentator_example", "example_ct_dicom")

    (series,) = read_dicom_series(sorted(folder.iterdir()))

    assert series.volume.array.shape == (20, 512, 512)
    assert series.volume.geometry.spacing_mm == pytest.approx((2.0, 0.9765625, 0.9765625))
    _assert_matches_reference(series.volume, _sitk_series(folder), tol=1e-6)
    # The example's UIDs were blanked by de-identification: a fresh series UID is issued.
    assert series.series_instance_uid.startswith("1.2.826.0.1.3680043.8.498.")
    assert series.series_description == "CT Body 3.0"


def test_reads_oblique_mr_series():
    folder = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")

    (series,) = read_dicom_series(sorted(folder.iterdir()))

    assert series.modality == "MR" and series.series_description == "T1post"
    assert series.volume.array.shape == (22, 512, 512)
    direction = series.volume.geometry.direction_matrix
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-5)
    assert abs(direction[2, 0]) < 0.999  # tilted slices: the normal is not the z axis
    _assert_matches_reference(series.volume, _sitk_series(folder), tol=1e-4)


def test_skips_dicom_seg_beside_its_ct_slices():
    folder = shared_data("dcmqi_ct_dicom_seg")
    files = sorted((folder / "ct").iterdir()) + sorted((folder / "seg").iterdir())

    result = read_dicom_files(files)

    assert len(result.series) == 1 and result.series[0].volume.array.shape == (3, 512, 512)
    assert {name for name, _ in result.skipped} == {"liver.dcm", "partial_overlaps.dcm"}
    assert all("SEG" in reason for _, reason in result.skipped)


def test_skips_rtstruct_beside_its_ct_slices():
    folder = shared_data("rtutils_phantom_ct_rtstruct")

    result = read_dicom_files(sorted(folder.glob("*.dcm")))

    assert len(result.series) == 1 and result.series[0].volume.array.shape == (2, 512, 512)
    assert result.skipped == (("rt.dcm", result.skipped[0][1]),)
    assert "RT Structure Set" in result.skipped[0][1]


def test_patient_identifiers_are_returned_but_hidden_from_repr(lidc_series):
    ds = pydicom.dcmread(lidc_series.files[0], stop_before_pixels=True)

    assert lidc_series.patient_id == str(ds.PatientID)
    assert str(ds.PatientID) not in repr(lidc_series)


def test_reads_enhanced_multiframe_ct_like_its_single_frames(tmp_path, lidc_files_by_z):
    slices = lidc_files_by_z[40:45]
    sources = [pydicom.dcmread(f) for f in slices]
    first = sources[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), first.StudyInstanceUID, "CT"
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.NumberOfFrames = 1, "MONOCHROME2", len(sources)
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = first.ImageOrientationPatient
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = first.PixelSpacing
    shared.PixelMeasuresSequence[0].SliceThickness = first.SliceThickness
    shared.PixelValueTransformationSequence = [Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleSlope = first.RescaleSlope
    shared.PixelValueTransformationSequence[0].RescaleIntercept = first.RescaleIntercept
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = list(reversed(sources))  # frames stored top-down: the reader must sort them
    ds.PerFrameFunctionalGroupsSequence = []
    for source in frames:
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = source.ImagePositionPatient
        ds.PerFrameFunctionalGroupsSequence.append(item)
    ds.PixelData = b"".join(source.PixelData for source in frames)
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)

    (multiframe,) = read_dicom_series([tmp_path / "enhanced.dcm"])
    (single,) = read_dicom_series(slices)

    assert multiframe.files == (tmp_path / "enhanced.dcm",)
    _assert_matches_reference(multiframe.volume, single.volume, tol=1e-9)


def test_single_slice_series_takes_spacing_from_slice_thickness(lidc_files_by_z):
    (series,) = read_dicom_series(lidc_files_by_z[10:11])

    assert series.volume.array.shape == (1, 512, 512)
    assert series.volume.geometry.spacing_mm == pytest.approx((2.5, 0.703125, 0.703125))


def test_non_integer_rescale_gives_float32(tmp_path, lidc_files_by_z, copy_files):
    copies = copy_files(lidc_files_by_z[20:23], tmp_path)
    for path in copies:
        _edit(path, RescaleSlope="0.5")
    (reference,) = read_dicom_series(lidc_files_by_z[20:23])

    (series,) = read_dicom_series(copies)

    assert series.volume.array.dtype == np.float32
    stored = reference.volume.array.astype(np.float64) + 1024  # LIDC intercept -1024, slope 1
    np.testing.assert_allclose(series.volume.array, stored * 0.5 - 1024)


# ---- failures ----------------------------------------------------------------------------------


def test_rejects_truncated_dicom_naming_the_file(tmp_path, lidc_files_by_z, copy_files):
    copies = copy_files(lidc_files_by_z[30:34], tmp_path)
    damaged = copies[2]
    damaged.write_bytes(damaged.read_bytes()[:200_000])

    with pytest.raises(CorruptFileError, match=damaged.name) as excinfo:
        read_dicom_series(copies)
    assert excinfo.value.filename == damaged.name


def test_rejects_dicom_truncated_inside_its_header(tmp_path, lidc_files_by_z, copy_files):
    (damaged,) = copy_files(lidc_files_by_z[30:31], tmp_path)
    damaged.write_bytes(damaged.read_bytes()[:1000])

    with pytest.raises(CorruptFileError, match=damaged.name):
        read_dicom_series([damaged])


def test_rejects_jpeg2000_dicom_truncated_inside_compressed_pixels(tmp_path, copy_files):
    folder = shared_data("totalsegmentator_example", "example_ct_dicom")
    copies = copy_files(sorted(folder.iterdir())[:3], tmp_path)
    copies[1].write_bytes(copies[1].read_bytes()[:20_000])

    with pytest.raises(CorruptFileError, match=copies[1].name):
        read_dicom_series(copies)


def test_rejects_series_with_a_missing_slice(tmp_path, lidc_files_by_z, copy_files):
    chosen = lidc_files_by_z[50:60]
    copies = copy_files(chosen[:4] + chosen[6:], tmp_path)  # two slices dropped

    with pytest.raises(InconsistentSeriesError, match="about 2 slice") as excinfo:
        read_dicom_series(copies)
    assert excinfo.value.code == "inconsistent_series"


def test_rejects_series_with_a_duplicated_slice(tmp_path, lidc_files_by_z, copy_files):
    chosen = lidc_files_by_z[50:55]
    copies = copy_files(chosen + [chosen[2]], tmp_path, names=[f.name for f in chosen] + ["copy.dcm"])

    with pytest.raises(InconsistentSeriesError, match="duplicated slice at position"):
        read_dicom_series(copies)


def test_rejects_series_with_varying_orientation(tmp_path, lidc_files_by_z, copy_files):
    copies = copy_files(lidc_files_by_z[50:55], tmp_path)
    angle = np.deg2rad(5)
    _edit(copies[3], ImageOrientationPatient=[1, 0, 0, 0, float(np.cos(angle)), float(np.sin(angle))])

    with pytest.raises(InconsistentSeriesError, match="orientation"):
        read_dicom_series(copies)


def test_rejects_irregular_slice_gap(tmp_path, lidc_files_by_z, copy_files):
    copies = copy_files(lidc_files_by_z[50:56], tmp_path)
    position = [float(v) for v in pydicom.dcmread(copies[3]).ImagePositionPatient]
    _edit(copies[3], ImagePositionPatient=[position[0], position[1], position[2] + 0.6])

    with pytest.raises(InconsistentSeriesError, match="irregular slice spacing"):
        read_dicom_series(copies)


def test_rejects_gantry_tilted_stack(tmp_path, lidc_files_by_z, copy_files):
    copies = copy_files(lidc_files_by_z[50:55], tmp_path)
    for n, path in enumerate(copies):
        position = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
        _edit(path, ImagePositionPatient=[position[0], position[1] + 0.67 * n, position[2]])  # 15° tilt

    with pytest.raises(InconsistentSeriesError, match="gantry tilt"):
        read_dicom_series(copies)


def test_splits_two_series_in_one_folder_into_two_results(tmp_path, lidc_files_by_z, copy_files):
    mr = sorted(shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post").iterdir())
    copies = copy_files(lidc_files_by_z[:5], tmp_path) + copy_files(mr, tmp_path, names=[f"mr{f.name}" for f in mr])

    series = read_dicom_series(copies)

    assert sorted(s.modality for s in series) == ["CT", "MR"]
    assert sorted(s.volume.array.shape[0] for s in series) == [5, 22]
    assert len({s.series_instance_uid for s in series}) == 2


def test_rejects_non_dicom_file(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("hello")

    with pytest.raises(UnsupportedFileError, match="report.txt"):
        read_dicom_series([path])


def test_reads_dicom_files_without_preamble(tmp_path, lidc_files_by_z):
    for source in lidc_files_by_z[70:73]:
        (tmp_path / source.stem).write_bytes(source.read_bytes()[132:])  # no preamble, no "DICM"
    (reference,) = read_dicom_series(lidc_files_by_z[70:73])

    (series,) = read_dicom_series(sorted(tmp_path.iterdir()))

    _assert_matches_reference(series.volume, reference.volume, tol=0)


def test_values_quoted_by_pydicom_warnings_are_redacted_from_logs(lidc_files_by_z, caplog):
    read_dicom_series(lidc_files_by_z[5:6])  # installs the redaction on the "pydicom" logger
    caplog.clear()

    with caplog.at_level("WARNING"):
        # The form of pydicom.valuerep.validate_value's messages for an invalid value.
        logging.getLogger("pydicom").warning("Invalid value for VR PN: 'ZHANG^SAN'.")

    assert "ZHANG^SAN" not in caplog.text
    assert "Invalid value for VR PN: '<redacted>'" in caplog.text


def test_truncated_jpeg2000_is_rejected_even_when_pillow_accepts_truncated_images(tmp_path, copy_files, monkeypatch):
    # weasyprint sets this flag process-wide on import; the reader must not depend on it.
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    folder = shared_data("totalsegmentator_example", "example_ct_dicom")
    copies = copy_files(sorted(folder.iterdir())[:3], tmp_path)
    copies[1].write_bytes(copies[1].read_bytes()[:20_000])

    with pytest.raises(CorruptFileError, match=copies[1].name):
        read_dicom_series(copies)
