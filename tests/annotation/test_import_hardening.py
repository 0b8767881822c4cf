"""Imports that cannot hurt the server: concurrent uploads of the same series, and images whose
header declares more voxels than the web process may hold."""

from __future__ import annotations

import gzip
import struct
import threading
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from django.db import connection

from annotation.models import Series, SourceFile
from tests.conftest import shared_data
from tests.helpers import api_client, contiguous_slices, stored_keys, upload


# --- the same series twice at once ------------------------------------------------------------

def _race_after_duplicate_check(monkeypatch, parties: int = 2) -> threading.Barrier:
    """Hold every import between its duplicate check and its writing transaction until all arrive,
    so that each one has passed the check before any has written (the race, made certain)."""
    from annotation.services import imports

    barrier = threading.Barrier(parties, timeout=120)
    original = imports.ImportResult

    class Synchronised(original):
        def __init__(self, *args, **kwargs):
            barrier.wait()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(imports, "ImportResult", Synchronised)
    return barrier


def _concurrent_uploads(users, files: list[Path], mrn: str = "RACE-1") -> list:
    responses: list = [None] * len(users)

    def run(n):
        try:
            responses[n] = upload(api_client(users[n]), files, mrn=mrn)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return responses


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_of_one_series_store_it_once(monkeypatch, doctor):
    files = sorted(p for p in shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post").rglob("*")
                   if p.is_file() and p.name != "SOURCE.md")
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    before = stored_keys()
    _race_after_duplicate_check(monkeypatch)

    responses = _concurrent_uploads([doctor, doctor], files)

    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409], [r.content for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["error"]["code"] == "series_exists"
    assert Series.objects.filter(series_instance_uid=uid).count() == 1
    series = Series.objects.get(series_instance_uid=uid)
    assert SourceFile.objects.filter(series=series).count() == len(files)
    # The loser's objects were removed: the store holds the winner's volume and originals only.
    assert len(stored_keys() - before) == len(files) + 1


@pytest.mark.django_db(transaction=True)
def test_the_same_series_in_two_hospitals_is_not_a_conflict(monkeypatch, doctor, other_doctor):
    files = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 4)
    _race_after_duplicate_check(monkeypatch)
    responses = _concurrent_uploads([doctor, other_doctor], files)
    assert [r.status_code for r in responses] == [201, 201]
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    assert Series.objects.filter(series_instance_uid=uid).count() == 2


@pytest.mark.django_db
def test_an_instance_already_stored_in_another_series_is_a_conflict(doctor, tmp_path):
    files = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 4)
    assert upload(api_client(doctor), files).status_code == 201
    before = stored_keys()
    copies = []
    new_uid = pydicom.uid.generate_uid()
    for n, path in enumerate(files):  # same instances (SOPInstanceUID) relabelled as another series
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = new_uid
        copies.append(tmp_path / f"{n}.dcm")
        ds.save_as(copies[-1])

    response = upload(api_client(doctor), copies)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "instance_exists"
    assert not Series.objects.filter(series_instance_uid=new_uid).exists()
    assert stored_keys() == before


# --- volumes larger than the limits ------------------------------------------------------------

def _nifti1_header(dims: tuple[int, int, int], bitpix: int = 8, datatype: int = 2) -> bytes:
    """A valid NIfTI-1 header (nifti1.h): 348 bytes, then 4 extension bytes; data at offset 352."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<h", header, 70, datatype)
    struct.pack_into("<h", header, 72, bitpix)
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    struct.pack_into("<h", header, 254, 1)  # sform_code
    struct.pack_into("<4f", header, 280, 1, 0, 0, 0)
    struct.pack_into("<4f", header, 296, 0, 1, 0, 0)
    struct.pack_into("<4f", header, 312, 0, 0, 1, 0)
    header[344:348] = b"n+1\0"
    return bytes(header) + b"\0\0\0\0"


def _gzip_bomb(path: Path, dims: tuple[int, int, int]) -> Path:
    """Write a complete .nii.gz of zeros (uint8): a few MB that inflate to dims voxels."""
    voxels = dims[0] * dims[1] * dims[2]
    chunk = bytes(64 << 20)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(_nifti1_header(dims))
        left = voxels
        while left:
            n = min(left, len(chunk))
            fh.write(chunk[:n])
            left -= n
    return path


@pytest.mark.django_db
def test_a_gzip_bomb_nifti_is_refused_from_its_header_without_allocating(doctor, tmp_path):
    bomb = _gzip_bomb(tmp_path / "bomb.nii.gz", (1024, 1024, 1024))
    assert bomb.stat().st_size < 8 * 1024**2  # small on the wire, 1 GiB inflated
    before = stored_keys()

    tracemalloc.start()
    try:
        response = upload(api_client(doctor), [bomb])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "volume_too_large" and error["filename"] == "bomb.nii.gz"
    assert "1073741824" in error["message"] or "1024 × 1024 × 1024" in error["message"]
    assert peak < 64 * 1024**2  # the voxels were never read into memory
    assert stored_keys() == before and not Series.objects.exists()


@pytest.mark.django_db
def test_a_header_claiming_1024_cubed_is_refused_before_the_data_is_read(doctor, tmp_path):
    # Header only: had the data been read, this would be a truncated-file error instead.
    claim = tmp_path / "claim.nii.gz"
    claim.write_bytes(gzip.compress(_nifti1_header((1024, 1024, 1024), bitpix=16, datatype=4)))
    response = upload(api_client(doctor), [claim])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "volume_too_large"


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["mha", "nrrd", "nii.gz"])
def test_metaimage_nrrd_and_nifti_over_the_limits_are_refused(doctor, settings, tmp_path, small_ct_path, fmt):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(small_ct_path))
    path = tmp_path / f"ct.{fmt}"
    sitk.WriteImage(image, str(path), useCompression=True)
    voxels = image.GetNumberOfPixels()

    settings.IMPORT_MAX_VOXELS = voxels - 1
    response = upload(api_client(doctor), [path], mrn=f"LIM-{fmt}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "volume_too_large"

    settings.IMPORT_MAX_VOXELS = voxels
    settings.IMPORT_MAX_VOLUME_BYTES = voxels * 2 - 1  # int16: two bytes a voxel
    response = upload(api_client(doctor), [path], mrn=f"LIM-{fmt}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "volume_too_large"

    settings.IMPORT_MAX_VOLUME_BYTES = voxels * 2
    assert upload(api_client(doctor), [path], mrn=f"LIM-{fmt}").status_code == 201
