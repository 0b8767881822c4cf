"""Export (NIfTI, JSON, DICOM SEG read back with highdicom, many studies as a zip) and import
(NIfTI/NRRD/DICOM SEG checked against the grid, MSD batch import, MONAI bundle export)."""

from __future__ import annotations

import io
import json
import zipfile
from io import StringIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation import services
from annotation.imaging.formats import read_volume
from annotation.models import Segmentation
from tests.conftest import shared_data
from tests.helpers import api_client, stored_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def dcmqi_series(hospital, doctor):
    """The dcmqi CT (3 real 512×512 slices) imported from DICOM."""
    files = sorted(shared_data("dcmqi_ct_dicom_seg", "ct").glob("*.dcm"))
    return services.study_import(user=doctor, hospital=hospital, patient_mrn="SEG-1", paths=files).series[0]


def _import(client, series, path):
    with open(path, "rb") as fh:
        return client.post(reverse("segmentation-import", args=[series.pk]), {"file": fh}, format="multipart")


def test_dicom_seg_import_matches_the_source_labelmap(doctor, dcmqi_series):
    response = _import(api_client(doctor), dcmqi_series, shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm"))

    assert response.status_code == 201, response.content
    [created] = response.json()["results"]
    assert created["label_table"][0]["name"] == "Liver" and created["tool"] == "import:dicom_seg"
    imported = services.segmentation_labelmap_load(Segmentation.objects.get(pk=created["id"]))
    reference = read_volume(shared_data("dcmqi_ct_dicom_seg", "labelmaps", "liver_seg.nrrd")).array
    np.testing.assert_array_equal(imported > 0, reference > 0)


def test_dicom_seg_export_references_the_source_series_and_reads_back(doctor, dcmqi_series):
    import highdicom as hd

    client = api_client(doctor)
    created = _import(client, dcmqi_series, shared_data("dcmqi_ct_dicom_seg", "labelmaps", "liver_spine_seg.nrrd")).json()
    seg_id = created["results"][0]["id"]
    label_map = services.segmentation_labelmap_load(Segmentation.objects.get(pk=seg_id))

    response = client.get(reverse("segmentation-export", args=[seg_id]), {"type": "dicom_seg"})

    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    seg = hd.seg.segread(io.BytesIO(response.content))
    assert seg.SOPClassUID == services.SEG_SOP_CLASS_UID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == dcmqi_series.series_instance_uid
    sources = set(dcmqi_series.source_files.values_list("sop_instance_uid", flat=True))
    assert {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == sources
    assert seg.StudyInstanceUID == dcmqi_series.study.study_instance_uid
    assert [int(n) for n in seg.segment_numbers] == [1, 2]
    volume = seg.get_volume(combine_segments=False)
    # highdicom orders the frames by position; compare totals and per-slice counts per segment
    for number, label in ((0, 1), (1, 2)):
        ours = (label_map == label).sum(axis=(1, 2))
        theirs = volume.array[..., number].sum(axis=(1, 2))
        assert sorted(ours.tolist()) == sorted(theirs.tolist()) and ours.sum() > 0
    # and our importer puts it back voxel for voxel
    from annotation.interop.dicom_seg import dicom_seg_to_layers

    back = dicom_seg_to_layers(pydicom.dcmread(io.BytesIO(response.content)), services.series_geometry(dcmqi_series))
    np.testing.assert_array_equal(back.layers[0], label_map)


def test_overlapping_dicom_seg_becomes_layers_and_export_keeps_the_overlap(doctor, dcmqi_series):
    client = api_client(doctor)
    source = pydicom.dcmread(shared_data("dcmqi_ct_dicom_seg", "seg", "partial_overlaps.dcm"))
    results = _import(client, dcmqi_series, shared_data("dcmqi_ct_dicom_seg", "seg", "partial_overlaps.dcm")).json()["results"]

    assert len(results) > 1
    groups = set(Segmentation.objects.filter(pk__in=[r["id"] for r in results]).values_list("layer_group", flat=True))
    assert len(groups) == 1 and None not in groups

    response = client.get(reverse("segmentation-export", args=[results[0]["id"]]), {"type": "dicom_seg"})
    exported = pydicom.dcmread(io.BytesIO(response.content))
    assert len(exported.SegmentSequence) == len(source.SegmentSequence) == 5
    from annotation.interop.dicom_seg import dicom_seg_to_layers

    geometry = services.series_geometry(dcmqi_series)
    before, after = dicom_seg_to_layers(source, geometry), dicom_seg_to_layers(exported, geometry)
    assert after.overlapping
    for number in range(1, 6):
        assert (sum(l == number for l in before.layers) == sum(l == number for l in after.layers)).all()
    nifti = client.get(reverse("segmentation-export", args=[results[0]["id"]]), {"type": "nifti_gz"})
    assert nifti["Content-Type"] == "application/zip"
    assert len(zipfile.ZipFile(io.BytesIO(nifti.content)).namelist()) == len(results)


def test_nifti_and_json_exports_are_on_the_original_grid(doctor, series, first_version, tmp_path):
    client = api_client(doctor)
    for fmt, suffix in (("nifti_gz", ".nii.gz"), ("nifti", ".nii")):
        response = client.get(reverse("segmentation-export", args=[first_version.pk]), {"type": fmt})
        assert response.status_code == 200
        path = tmp_path / f"out{suffix}"
        path.write_bytes(response.content)
        exported = read_volume(path)
        assert exported.geometry.matches(services.series_geometry(series))
        np.testing.assert_array_equal(exported.array, services.segmentation_labelmap_load(first_version))
    body = client.get(reverse("segmentation-export", args=[first_version.pk]), {"type": "json"}).json()
    assert body["geometry"]["shape"] == series.shape and body["geometry"]["spacing_mm"] == series.spacing_mm
    assert [e["name"] for e in body["label_table"]] == ["box", "ball"]
    by_label = {m["label"]: m for m in body["measurements"]}
    box = by_label[1]
    assert by_label.get(2, {"voxel_count": 0})["voxel_count"] == 0
    assert box["voxel_count"] == 500 and box["volume_ml"] == pytest.approx(500 * 27 / 1000, rel=1e-3)


def test_dicom_seg_export_needs_a_dicom_series_and_a_known_format(doctor, first_version):
    client = api_client(doctor)
    response = client.get(reverse("segmentation-export", args=[first_version.pk]), {"type": "dicom_seg"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "seg_needs_dicom"
    response = client.get(reverse("segmentation-export", args=[first_version.pk]), {"type": "stl"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_format"


def test_many_studies_export_as_one_zip_with_a_manifest(doctor, series, first_version, dcmqi_series):
    client = api_client(doctor)
    _import(client, dcmqi_series, shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm"))
    studies = [series.study_id, dcmqi_series.study_id]

    response = client.post(reverse("studies-export"), {"studies": studies, "formats": ["nifti_gz", "json", "dicom_seg"]},
                           format="json")

    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert [s["study_id"] for s in manifest["studies"]] == studies
    import hashlib

    written = [f for s in manifest["studies"] for seg in s["segmentations"] for f in seg["files"] if "path" in f]
    assert len(written) == 5  # the NIfTI-imported CT has no DICOM SEG: its entry records why
    for f in written:
        assert hashlib.sha256(archive.read(f["path"])).hexdigest() == f["sha256"]
    failed = [f for s in manifest["studies"] for seg in s["segmentations"] for f in seg["files"] if "error" in f]
    assert [f["format"] for f in failed] == ["dicom_seg"]


def test_import_refuses_a_labelmap_on_another_grid_and_stores_nothing(doctor, series):
    before = stored_keys()
    response = _import(api_client(doctor), series, shared_data("dcmqi_ct_dicom_seg", "labelmaps", "liver_seg.nrrd"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "wrong_grid" and "shape" in error["message"]
    assert stored_keys() == before and not Segmentation.objects.filter(series=series).exists()


def test_import_refuses_an_image_as_a_labelmap_and_a_seg_of_another_series(doctor, series, small_ct_path):
    client = api_client(doctor)
    response = _import(client, series, small_ct_path)  # the CT itself: negative HU are no labels
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_labelmap"
    response = _import(client, series, shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "wrong_grid"


def test_import_and_export_are_denied_to_other_hospitals_and_patients(other_doctor, patient_user, series, first_version):
    path = shared_data("dcmqi_ct_dicom_seg", "labelmaps", "liver_seg.nrrd")
    for client, expected in ((api_client(other_doctor), 404), (api_client(patient_user), 403)):
        assert _import(client, series, path).status_code == expected
        assert client.get(reverse("segmentation-export", args=[first_version.pk]), {"type": "json"}).status_code == expected
        response = client.post(reverse("studies-export"), {"studies": [series.study_id], "formats": ["json"]}, format="json")
        assert response.status_code == expected


def _msd_zip(tmp_path: Path, cases: list[str], *, with_manifest: bool = True) -> Path:
    root = shared_data("msd_task04_hippocampus")
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}", "label": f"./labelsTr/{c}"} for c in cases]
    path = tmp_path / "msd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        if with_manifest:
            archive.writestr("Task04/dataset.json", json.dumps(meta))
        for c in cases:
            archive.write(root / "imagesTr" / c, f"Task04/imagesTr/{c}")
            archive.write(root / "labelsTr" / c, f"Task04/labelsTr/{c}")
    return path


def test_msd_dataset_import_over_the_api(doctor, tmp_path):
    cases = ["hippocampus_001.nii.gz", "hippocampus_003.nii.gz", "hippocampus_007.nii.gz"]
    with open(_msd_zip(tmp_path, cases), "rb") as fh:
        response = api_client(doctor).post(reverse("dataset-import"), {"file": fh, "mrn_prefix": "HIP-"}, format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["study_ids"]) == 3 and len(body["segmentation_ids"]) == 3 and body["skipped"] == []
    segmentation = Segmentation.objects.select_related("series__study__patient").get(pk=body["segmentation_ids"][0])
    assert segmentation.series.study.patient.mrn == "HIP-hippocampus_001"
    assert [e["name"] for e in segmentation.label_table] == ["Anterior", "Posterior"]
    reference = read_volume(shared_data("msd_task04_hippocampus", "labelsTr", cases[0])).array
    np.testing.assert_array_equal(services.segmentation_labelmap_load(segmentation), reference)


def test_msd_import_refuses_a_zip_without_dataset_json(doctor, tmp_path):
    with open(_msd_zip(tmp_path, ["hippocampus_001.nii.gz"], with_manifest=False), "rb") as fh:
        response = api_client(doctor).post(reverse("dataset-import"), {"file": fh}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_dataset"
    assert not Segmentation.objects.exists()


def test_msd_import_command_imports_only_the_first_cases(hospital):
    out = StringIO()
    call_command("import_labelled_dataset", str(shared_data("msd_task04_hippocampus")), "--hospital", hospital.code,
                 "--limit", "2", stdout=out)
    result = json.loads(out.getvalue())
    assert len(result["segmentation_ids"]) == 2
    assert Segmentation.objects.filter(series__study__hospital=hospital, source="import").count() == 2
