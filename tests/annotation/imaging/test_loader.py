"""load_inputs: files, folders and zips in; series and skipped objects out; all or nothing."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from annotation.imaging import (
    ImagingError,
    MissingCompanionFileError,
    UnsafeArchiveError,
    UnsupportedFileError,
    load_inputs,
)
from tests.conftest import shared_data


def _write_mhd(folder, name="phantom"):
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(image, str(folder / f"{name}.mhd"))
    return folder / f"{name}.mhd", folder / f"{name}.raw"


def test_loads_zipped_dicom_series_skipping_macos_clutter(tmp_path, lidc_files_by_z):
    slices = lidc_files_by_z[60:70]
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in slices:
            zf.write(path, f"LIDC/{path.name}")
        zf.writestr("__MACOSX/LIDC/._000001.dcm", b"resource fork")

    result = load_inputs([archive], workdir=tmp_path / "work")

    (series,) = result.series
    assert series.source_format == "dicom"
    assert series.volume.array.shape == (10, 512, 512)
    assert series.modality == "CT" and series.series_number is not None
    assert len(series.sop_instance_uids) == len(series.source_files) == 10
    assert all((tmp_path / "work").resolve() in f.resolve().parents for f in series.source_files)
    assert [f.name for f in series.source_files] == [p.name for p in slices]  # sorted along the normal
    assert result.skipped == (("upload.zip/__MACOSX/LIDC/._000001.dcm", result.skipped[0][1]),)


def test_loads_folder_with_ct_and_seg_listing_seg_as_skipped(tmp_path):
    source = shared_data("dcmqi_ct_dicom_seg")
    shutil.copytree(source / "ct", tmp_path / "study" / "ct")
    shutil.copytree(source / "seg", tmp_path / "study" / "seg")

    result = load_inputs([tmp_path / "study"], workdir=tmp_path / "work")

    assert len(result.series) == 1 and result.series[0].volume.array.shape == (3, 512, 512)
    assert sorted(name for name, _ in result.skipped) == ["study/seg/liver.dcm", "study/seg/partial_overlaps.dcm"]


def test_loads_nifti_with_default_modality_and_new_uid(tmp_path):
    path = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")

    result = load_inputs([path], workdir=tmp_path / "work", default_modality="CT")

    (series,) = result.series
    assert series.source_format == "nifti" and series.source_files == (path,)
    assert series.modality == "CT" and series.volume.modality == "CT"
    assert series.series_description == "example_ct_sm"
    assert series.series_instance_uid.startswith("1.2.826.0.1.3680043.8.498.")
    assert series.sop_instance_uids == () and series.study_instance_uid == ""
    assert not (tmp_path / "work").exists()  # nothing to extract, nothing written


def test_loads_mhd_together_with_its_raw(tmp_path):
    header, raw = _write_mhd(tmp_path / "upload")

    result = load_inputs([tmp_path / "upload"], workdir=tmp_path / "work")

    (series,) = result.series
    assert series.source_format == "metaimage"
    assert series.source_files == (header, raw)
    assert series.volume.geometry.spacing_mm == (2.0, 0.6, 0.5)


def test_loads_dicom_and_nifti_of_one_upload_as_separate_series(tmp_path, lidc_files_by_z, copy_files):
    copy_files(lidc_files_by_z[:3], tmp_path / "upload" / "dicom")
    shutil.copyfile(shared_data("pyradiomics_tumour_masks", "brain1_label.nrrd"), tmp_path / "upload" / "label.nrrd")

    result = load_inputs([tmp_path / "upload"], workdir=tmp_path / "work")

    assert [s.source_format for s in result.series] == ["dicom", "nrrd"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"follow-up in 3 months\n"),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        ("noise.bin", bytes(range(256)) * 8),
    ],
)
def test_rejects_upload_containing_a_non_image_file(tmp_path, lidc_files_by_z, copy_files, name, content):
    copy_files(lidc_files_by_z[:3], tmp_path / "upload")
    (tmp_path / "upload" / name).write_bytes(content)

    with pytest.raises(UnsupportedFileError, match="not a medical image") as excinfo:
        load_inputs([tmp_path / "upload"], workdir=tmp_path / "work")

    assert excinfo.value.filename == f"upload/{name}"
    assert excinfo.value.code == "unsupported_file"


def test_rejects_raw_without_its_mhd(tmp_path):
    header, raw = _write_mhd(tmp_path / "upload")
    header.unlink()

    with pytest.raises(UnsupportedFileError, match="without its header"):
        load_inputs([raw], workdir=tmp_path / "work")


def test_rejects_mhd_without_raw_naming_the_missing_file(tmp_path):
    header, raw = _write_mhd(tmp_path / "upload")
    raw.unlink()

    with pytest.raises(MissingCompanionFileError, match="phantom.raw") as excinfo:
        load_inputs([header], workdir=tmp_path / "work")
    assert excinfo.value.filename == "phantom.mhd"


def test_names_files_inside_an_archive_by_their_path_in_it(tmp_path):
    with zipfile.ZipFile(tmp_path / "upload.zip", "w") as zf:
        zf.writestr("scans/readme.txt", "hello")

    with pytest.raises(UnsupportedFileError, match="upload.zip/scans/readme.txt"):
        load_inputs([tmp_path / "upload.zip"], workdir=tmp_path / "work")


def test_rejects_zip_inside_a_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "inner.zip", "w") as zf:
        zf.writestr("a.txt", "x")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as zf:
        zf.write(tmp_path / "inner.zip", "inner.zip")

    with pytest.raises(UnsupportedFileError, match="zip inside a zip"):
        load_inputs([tmp_path / "outer.zip"], workdir=tmp_path / "work")


def test_rejects_zip_slip_upload(tmp_path):
    with zipfile.ZipFile(tmp_path / "upload.zip", "w") as zf:
        zf.writestr("../evil.dcm", "x")

    with pytest.raises(UnsafeArchiveError):
        load_inputs([tmp_path / "upload.zip"], workdir=tmp_path / "work")
    assert not (tmp_path / "evil.dcm").exists()


def test_rejects_upload_with_nothing_but_non_image_objects(tmp_path):
    seg = shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm")

    with pytest.raises(ImagingError, match="no image series"):
        load_inputs([seg], workdir=tmp_path / "work")


def test_rejects_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(ImagingError, match="no image series"):
        load_inputs([tmp_path / "empty"], workdir=tmp_path / "work")
