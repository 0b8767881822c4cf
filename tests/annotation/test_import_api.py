"""Importing studies over the API: real data in, a clear 4xx for bad input, nothing stored lost."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from annotation.models import Series, SourceFile, Study
from annotation.services import series_volume_load
from portal.models import AuditLog
from tests.helpers import api_client, contiguous_slices, stored_keys, upload
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_imports_mr_dicom_series_with_geometry_and_unchanged_originals(doctor):
    folder = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SOURCE.md")
    response = upload(api_client(doctor), files)
    assert response.status_code == 201, response.content
    series = Series.objects.get(pk=response.json()["series_ids"][0])
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert series.series_instance_uid == first.SeriesInstanceUID
    assert series.study.study_instance_uid == first.StudyInstanceUID
    assert series.modality == "MR" and series.source_format == "dicom"
    assert series.instance_count == len(files)
    assert series.shape[0] == len(files)
    assert series.spacing_mm[1] == pytest.approx(float(first.PixelSpacing[0]))
    # Every original is kept byte for byte, with its SHA-256.
    originals = {sf.sop_instance_uid: sf for sf in SourceFile.objects.filter(series=series)}
    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        stored = originals[uid]
        assert stored.sha256 == _sha256(path)
        with stored.file.open("rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    # The canonical volume matches SimpleITK's reading of the same series.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = sitk.GetArrayFromImage(reader.Execute())
    volume = series_volume_load(series)
    assert volume.array.shape == reference.shape
    assert np.allclose(np.sort(volume.array.ravel()), np.sort(reference.ravel()))
    assert AuditLog.objects.filter(action="create", target_type="study", target_id=str(series.study_id)).exists()


def test_imports_nifti_with_modality_and_hu_range(doctor, small_ct_path):
    response = upload(api_client(doctor), [small_ct_path], modality="CT")
    assert response.status_code == 201, response.content
    series = Series.objects.get(pk=response.json()["series_ids"][0])
    reference = sitk.ReadImage(str(small_ct_path))
    assert series.shape == list(reversed(reference.GetSize()))
    assert series.spacing_mm == pytest.approx(list(reversed(reference.GetSpacing())))
    assert series.intensity_min <= -900 and series.modality == "CT"


def test_imports_a_zip_of_dicom_and_skips_non_image_objects(doctor, tmp_path):
    folder = shared_data("dcmqi_ct_dicom_seg")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((folder / "ct").glob("*.dcm")):
            zf.write(path, f"ct/{path.name}")
        zf.write(folder / "seg" / "liver.dcm", "seg/liver.dcm")
    response = upload(api_client(doctor), [archive])
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["series_ids"]) == 1
    assert any("liver.dcm" in name for name, _ in body["skipped"])


def test_imports_mhd_with_its_raw(doctor, tmp_path):
    image = sitk.ReadImage(str(shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")))
    header = tmp_path / "scan.mhd"
    sitk.WriteImage(image, str(header), useCompression=False)
    response = upload(api_client(doctor), [header, tmp_path / "scan.raw"], modality="CT")
    assert response.status_code == 201, response.content
    assert Series.objects.get(pk=response.json()["series_ids"][0]).source_format == "metaimage"


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[Path], str]]:
    ct = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    lidc = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 12)

    text = tmp_path / "notes.txt"
    text.write_text("这不是医学影像 / not an image")

    image = sitk.ReadImage(str(ct))
    mhd_dir = tmp_path / "mhd"
    mhd_dir.mkdir()
    sitk.WriteImage(image, str(mhd_dir / "scan.mhd"), useCompression=False)

    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(ct.read_bytes()[: ct.stat().st_size // 2])

    gap = tmp_path / "gap"
    gap.mkdir()
    for i, path in enumerate(lidc):
        if i != 5:
            shutil.copy(path, gap / path.name)

    duplicate = tmp_path / "dup"
    duplicate.mkdir()
    for path in lidc[:6]:
        shutil.copy(path, duplicate / path.name)
    ds = pydicom.dcmread(lidc[6])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImagePositionPatient = pydicom.dcmread(lidc[2], stop_before_pixels=True).ImagePositionPatient
    ds.save_as(duplicate / "copy.dcm")

    tilted = tmp_path / "tilted"
    tilted.mkdir()
    for i, path in enumerate(lidc[:6]):
        ds = pydicom.dcmread(path)
        if i == 3:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8660254, -0.5]
        ds.save_as(tilted / path.name)

    traversal = tmp_path / "evil.zip"
    with zipfile.ZipFile(traversal, "w") as zf:
        zf.writestr("../../outside.dcm", lidc[0].read_bytes())

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.dcm", "w", force_zip64=True) as fh:
            chunk = bytes(1024 * 1024)
            for _ in range(300):
                fh.write(chunk)

    return {
        "not_an_image": ([text], "unsupported_file"),
        "mhd_without_raw": ([mhd_dir / "scan.mhd"], "missing_companion_file"),
        "truncated_nifti": ([truncated], "corrupt_file"),
        "missing_slice": (sorted(gap.glob("*.dcm")), "inconsistent_series"),
        "duplicated_slice": (sorted(duplicate.glob("*.dcm")), "inconsistent_series"),
        "varying_orientation": (sorted(tilted.glob("*.dcm")), "inconsistent_series"),
        "zip_path_traversal": ([traversal], "unsafe_archive"),
        "zip_bomb": ([bomb], "unsafe_archive"),
    }


@pytest.mark.parametrize(
    "case",
    ["not_an_image", "mhd_without_raw", "truncated_nifti", "missing_slice", "duplicated_slice",
     "varying_orientation", "zip_path_traversal", "zip_bomb"],
)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(case, doctor, small_ct_study, tmp_path):
    paths, code = _bad_inputs(tmp_path)[case]
    before_keys = stored_keys()
    before = (Study.objects.count(), Series.objects.count(), SourceFile.objects.count())
    response = upload(api_client(doctor), paths)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert (Study.objects.count(), Series.objects.count(), SourceFile.objects.count()) == before
    assert stored_keys() == before_keys
    # What was stored before is intact.
    series = small_ct_study.series.get()
    assert series_volume_load(series).array.shape == tuple(series.shape)


def test_mixed_series_are_imported_separately(doctor, tmp_path):
    lidc = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 8)
    mr = sorted(p for p in shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post").rglob("*") if p.is_file() and p.name != "SOURCE.md")
    response = upload(api_client(doctor), lidc + mr)
    assert response.status_code == 201, response.content
    modalities = sorted(Series.objects.filter(pk__in=response.json()["series_ids"]).values_list("modality", flat=True))
    assert modalities == ["CT", "MR"]


def _viewer_config(client, series):
    import json
    import re

    page = client.get(f"/studies/{series.study_id}/?series={series.pk}").content.decode()
    return json.loads(re.search(r'<script id="viewer-config" type="application/json">(.*?)</script>', page, re.S)[1])


def test_the_dicom_window_is_stored_and_the_viewer_opens_in_it(doctor, client):
    lidc = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 8)
    mr = sorted(p for p in shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post").rglob("*") if p.is_file() and p.name != "SOURCE.md")
    response = upload(api_client(doctor), lidc + mr)
    assert response.status_code == 201, response.content
    ct = Series.objects.get(pk__in=response.json()["series_ids"], modality="CT")
    mr_series = Series.objects.get(pk__in=response.json()["series_ids"], modality="MR")
    client.force_login(doctor)

    ct_config = _viewer_config(client, ct)
    mr_config = _viewer_config(client, mr_series)

    first = pydicom.dcmread(lidc[0], stop_before_pixels=True)
    assert (ct.window_center, ct.window_width) == (float(first.WindowCenter), float(first.WindowWidth)) == (-600, 1600)
    assert ct_config["initialWindow"] == {"source": "dicom", "preset": None, "center": -600.0, "width": 1600.0}
    assert [p["name"] for p in ct_config["windowPresets"]][0] == "lung"
    # An MR never gets HU presets.
    assert mr_config["windowPresets"] == []
    assert mr_config["initialWindow"]["preset"] is None


def test_reimporting_the_same_series_is_refused(doctor, small_ct_study, tmp_path):
    folder = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SOURCE.md")
    assert upload(api_client(doctor), files).status_code == 201
    count = Series.objects.count()
    response = upload(api_client(doctor), files)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "series_exists"
    assert Series.objects.count() == count


def test_missing_mrn_is_a_validation_error(doctor, small_ct_path):
    client = api_client(doctor)
    with open(small_ct_path, "rb") as fh:
        response = client.post("/api/studies/import/", {"files": [fh]}, format="multipart")
    assert response.status_code == 400
    assert "patient_mrn" in response.json()["error"]["message"]


def test_patients_cannot_upload(patient_user, small_ct_path):
    assert upload(api_client(patient_user), [small_ct_path]).status_code == 403


def test_import_study_command_prints_json(hospital, small_ct_path):
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("import_study", str(small_ct_path), "--hospital", hospital.code, "--patient", "CLI-1", "--modality", "CT", stdout=out)
    payload = json.loads(out.getvalue())
    series = Series.objects.get(pk=payload["series_ids"][0])
    assert series.study_id == payload["study_ids"][0] and series.study.patient.mrn == "CLI-1"
