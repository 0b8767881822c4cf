"""NIfTI / MetaImage / NRRD reading and writing, and format sniffing."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from annotation.imaging import (
    CorruptFileError,
    Geometry,
    MissingCompanionFileError,
    UnsupportedFileError,
    Volume,
    read_volume,
    sniff_format,
    write_labelmap_nifti,
    write_nifti,
)
from tests.conftest import shared_data

OBLIQUE = Geometry(
    shape=(4, 5, 6),
    spacing_mm=(2.5, 0.703125, 0.8),
    origin_mm=(-166.0, -171.7, -340.25),
    # Columns (axes k, j, i) of a rotation about z by 30° with k = i × j: an oblique, right-handed grid.
    direction=tuple(
        np.column_stack(
            [
                [0.0, 0.0, 1.0],
                [-np.sin(np.pi / 6), np.cos(np.pi / 6), 0.0],
                [np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0],
            ]
        ).ravel()
    ),
)


def _int16_volume(geometry=OBLIQUE) -> Volume:
    array = (np.arange(np.prod(geometry.shape)).reshape(geometry.shape) - 1024).astype(np.int16)
    return Volume(array=array, geometry=geometry, modality="CT")


def _assert_same_geometry(a: Geometry, b: Geometry, tol=1e-4) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, atol=tol)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


# ---- reading real data -------------------------------------------------------------------------


def test_reads_nifti_ct_with_lps_geometry_matching_nibabel():
    path = shared_data("totalsegmentator_example", "example_ct.nii.gz")

    volume = read_volume(path, modality="CT")

    image = nib.load(path)
    affine = image.affine
    assert volume.modality == "CT"
    assert volume.array.shape == tuple(reversed(image.shape))  # nibabel (i, j, k), ours (k, j, i)
    # NIfTI is RAS, we are LPS: same point with x and y negated.
    np.testing.assert_allclose(volume.geometry.origin_mm, affine[:3, 3] * [-1, -1, 1], atol=1e-3)
    np.testing.assert_allclose(volume.geometry.spacing_mm, tuple(reversed(image.header.get_zooms())), atol=1e-5)
    np.testing.assert_array_equal(volume.array, np.asarray(image.dataobj).T)
    # One voxel's LPS position agrees with nibabel's RAS position of the same voxel.
    ijk = np.array([10, 20, 30])
    ras = affine @ np.r_[ijk, 1.0]
    np.testing.assert_allclose(volume.geometry.index_to_lps(ijk[::-1]), ras[:3] * [-1, -1, 1], atol=1e-3)


def test_reads_nrrd_tumour_image_and_label():
    image = read_volume(shared_data("pyradiomics_tumour_masks", "lung1_image.nrrd"), modality="CT")
    label = read_volume(shared_data("pyradiomics_tumour_masks", "lung1_label.nrrd"))

    assert image.array.shape == (48, 512, 512)
    np.testing.assert_allclose(image.geometry.spacing_mm[0], 5.0, atol=1e-3)
    assert image.geometry.matches(label.geometry)
    assert int((label.array > 0).sum()) == 837  # SOURCE.md: nodule label of 837 voxels
    assert image.array.min() >= -1100 and image.array.max() > 500  # HU


def test_reads_mhd_with_its_raw_file(tmp_path):
    original = _int16_volume()
    sitk.WriteImage(sitk.GetImageFromArray(original.array), str(tmp_path / "scan.mhd"))  # writes scan.raw
    image = sitk.ReadImage(str(tmp_path / "scan.mhd"))
    image.SetSpacing((0.8, 0.703125, 2.5))
    image.SetOrigin(original.geometry.origin_mm)
    sitk.WriteImage(image, str(tmp_path / "scan.mhd"))

    volume = read_volume(tmp_path / "scan.mhd")

    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, original.array)
    assert volume.geometry.spacing_mm == (2.5, 0.703125, 0.8)
    assert volume.geometry.origin_mm == original.geometry.origin_mm


# ---- failures ----------------------------------------------------------------------------------


def test_rejects_mhd_without_raw(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "scan.mhd"))
    (tmp_path / "scan.raw").unlink()

    with pytest.raises(MissingCompanionFileError, match="scan.raw") as excinfo:
        read_volume(tmp_path / "scan.mhd")
    assert excinfo.value.code == "missing_companion_file"
    assert excinfo.value.filename == "scan.mhd"


def test_rejects_nhdr_without_its_data_file(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "scan.nhdr"))
    data_files = [p for p in tmp_path.iterdir() if p.name != "scan.nhdr"]
    assert data_files, "SimpleITK should write a detached data file for .nhdr"
    for p in data_files:
        p.unlink()

    with pytest.raises(MissingCompanionFileError, match=data_files[0].name):
        read_volume(tmp_path / "scan.nhdr")


def test_rejects_raw_shorter_than_the_mhd_header_declares(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "scan.mhd"))
    raw = tmp_path / "scan.raw"
    raw.write_bytes(raw.read_bytes()[:-100])

    with pytest.raises(CorruptFileError, match="scan.mhd"):
        read_volume(tmp_path / "scan.mhd")


def test_rejects_truncated_nii_gz(tmp_path):
    source = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    data = source.read_bytes()
    truncated = tmp_path / "ct.nii.gz"
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptFileError, match="ct.nii.gz") as excinfo:
        read_volume(truncated)
    assert excinfo.value.code == "corrupt_file"


def test_rejects_uncompressed_nii_missing_its_last_voxels(tmp_path):
    path = tmp_path / "ct.nii"
    write_nifti(_int16_volume(), path)
    path.write_bytes(path.read_bytes()[:-10])

    with pytest.raises(CorruptFileError):
        read_volume(path)


def test_rejects_truncated_nrrd(tmp_path):
    path = tmp_path / "image.nrrd"
    shutil.copyfile(shared_data("pyradiomics_tumour_masks", "brain1_label.nrrd"), path)
    path.write_bytes(path.read_bytes()[:-200])

    with pytest.raises(CorruptFileError):
        read_volume(path)


def test_rejects_2d_image(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(tmp_path / "slice.nii.gz"))

    with pytest.raises(UnsupportedFileError, match="2-D"):
        read_volume(tmp_path / "slice.nii.gz")


def test_rejects_4d_image(tmp_path):
    frame = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(tmp_path / "fmri.nii.gz"))

    with pytest.raises(UnsupportedFileError, match="4-D"):
        read_volume(tmp_path / "fmri.nii.gz")


def test_rejects_vector_image(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "colour.nrrd"))

    with pytest.raises(UnsupportedFileError, match="components per voxel"):
        read_volume(tmp_path / "colour.nrrd")


def test_rejects_a_text_file_as_not_a_medical_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")

    with pytest.raises(UnsupportedFileError, match="not a medical image"):
        read_volume(path)


# ---- writing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_write_nifti_round_trip_preserves_geometry_and_int16(tmp_path, name):
    original = _int16_volume()

    write_nifti(original, tmp_path / name)
    again = read_volume(tmp_path / name)

    assert again.array.dtype == np.int16
    np.testing.assert_array_equal(again.array, original.array)
    _assert_same_geometry(again.geometry, original.geometry, tol=1e-5)


def test_write_nifti_compresses_only_for_nii_gz(tmp_path):
    write_nifti(_int16_volume(), tmp_path / "a.nii.gz")
    write_nifti(_int16_volume(), tmp_path / "a.nii")

    assert (tmp_path / "a.nii.gz").read_bytes()[:2] == b"\x1f\x8b"
    with gzip.open(tmp_path / "a.nii.gz") as fh:
        assert len(fh.read()) == (tmp_path / "a.nii").stat().st_size


def test_write_nifti_round_trip_of_real_ct_is_exact(tmp_path):
    original = read_volume(shared_data("totalsegmentator_example", "example_ct_sm.nii.gz"))

    write_nifti(original, tmp_path / "copy.nii.gz")
    again = read_volume(tmp_path / "copy.nii.gz")

    assert again.array.dtype == original.array.dtype
    np.testing.assert_array_equal(again.array, original.array)
    _assert_same_geometry(again.geometry, original.geometry, tol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "max_label", "expected"),
    [(np.uint8, 3, np.uint8), (np.uint16, 300, np.uint16), (np.int64, 7, np.uint8), (np.int32, 1000, np.uint16)],
)
def test_write_labelmap_nifti_keeps_small_unsigned_dtype(tmp_path, dtype, max_label, expected):
    labels = np.zeros(OBLIQUE.shape, dtype=dtype)
    labels[1, 2, 3] = max_label

    write_labelmap_nifti(labels, OBLIQUE, tmp_path / "seg.nii.gz")
    again = read_volume(tmp_path / "seg.nii.gz")

    assert again.array.dtype == expected
    np.testing.assert_array_equal(again.array, labels)
    _assert_same_geometry(again.geometry, OBLIQUE, tol=1e-5)


def test_write_labelmap_nifti_rejects_negative_or_float_labels(tmp_path):
    with pytest.raises(ValueError):
        write_labelmap_nifti(np.full(OBLIQUE.shape, -1, np.int16), OBLIQUE, tmp_path / "seg.nii.gz")
    with pytest.raises(ValueError):
        write_labelmap_nifti(np.zeros(OBLIQUE.shape, np.float32), OBLIQUE, tmp_path / "seg.nii.gz")


def test_write_nifti_rejects_other_suffix(tmp_path):
    with pytest.raises(ValueError):
        write_nifti(_int16_volume(), tmp_path / "ct.nrrd")


# ---- sniffing ----------------------------------------------------------------------------------


def test_sniff_format_recognises_each_format_by_content(tmp_path, lidc_dir):
    write_nifti(_int16_volume(), tmp_path / "a.nii.gz")
    write_nifti(_int16_volume(), tmp_path / "a.nii")
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "a.mhd"))
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "a.mha"))
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(tmp_path / "a.nrrd"))
    shutil.make_archive(str(tmp_path / "a"), "zip", root_dir=tmp_path, base_dir="a.nii")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "fake.nii").write_bytes(b"x" * 1000)

    assert sniff_format(next(lidc_dir.glob("*.dcm"))) == "dicom"
    assert sniff_format(tmp_path / "a.nii.gz") == "nifti"
    assert sniff_format(tmp_path / "a.nii") == "nifti"
    assert sniff_format(tmp_path / "a.mhd") == "metaimage"
    assert sniff_format(tmp_path / "a.mha") == "metaimage"
    assert sniff_format(tmp_path / "a.raw") is None
    assert sniff_format(tmp_path / "a.nrrd") == "nrrd"
    assert sniff_format(tmp_path / "a.zip") == "zip"
    assert sniff_format(tmp_path / "noise.bin") is None
    assert sniff_format(tmp_path / "fake.nii") is None


def test_sniff_format_accepts_dicom_without_preamble(tmp_path, lidc_dir):
    source = next(lidc_dir.glob("*.dcm")).read_bytes()
    stripped = tmp_path / "nopreamble"
    stripped.write_bytes(source[132:])  # drop the 128-byte preamble and "DICM"

    assert sniff_format(stripped) == "dicom"


@pytest.mark.parametrize("data_file", ["../secret.raw", "/etc/hostname"])
def test_refuses_mhd_whose_data_file_lies_outside_its_folder(tmp_path, data_file):
    (tmp_path / "secret.raw").write_bytes(bytes(240))
    folder = tmp_path / "upload"
    folder.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(_int16_volume().array), str(folder / "scan.mhd"))
    header = (folder / "scan.mhd").read_text().replace("ElementDataFile = scan.raw", f"ElementDataFile = {data_file}")
    (folder / "scan.mhd").write_text(header)

    with pytest.raises(UnsupportedFileError, match="must lie in the header's folder"):
        read_volume(folder / "scan.mhd")
