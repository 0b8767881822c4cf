"""Training datasets (issue 17): versioned MSD snapshots of approved segmentations, built from real
hippocampus MRIs and label maps through the real import, segmentation and review services, kept in
the real object storage and materialised with every file checked against the manifest."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from annotation import selectors, services
from annotation.imaging.formats import read_volume
from annotation.interop.msd import dataset_read
from annotation.models import Segmentation, TrainingDataset
from portal.api_errors import ServiceError
from portal.models import AuditLog, Role
from tests.annotation.conftest import HIPPOCAMPUS_CASES
from tests.conftest import shared_data
from tests.factories import UserFactory
from tests.helpers import stored_keys

pytestmark = pytest.mark.django_db

LABELS = [{"index": 1, "name": "前部", "color": "#ff0000"}, {"index": 2, "name": "posterior", "color": "#00ff00"}]


def _original(kind: str, case: str):
    return read_volume(shared_data("msd_task04_hippocampus", kind, f"{case}.nii.gz"))


def _annotate(series, label_set, annotator, label_map):
    """Start from the label set, save the label map as the next version, submit it (as the annotator)."""
    [blank] = services.segmentation_create_from_label_set(user=annotator, series=series, label_set=label_set)
    version = services.segmentation_create(
        series=series, label_map=label_map, label_table=blank.label_table, name=blank.name,
        source=Segmentation.Source.MANUAL, user=annotator, parent=blank, tool="editor")
    services.segmentation_review(user=annotator, segmentation=version, decision="submit")
    return version


@pytest.fixture
def label_set(hospital, annotator):
    return services.label_set_create(user=annotator, hospital=hospital, name="海马体", labels=LABELS)


@pytest.fixture
def approved(hippocampus_studies, label_set, annotator, doctor):
    """Each hippocampus MRI's reference label map, annotated by the annotator and approved by the doctor."""
    versions = []
    for series, case in zip(hippocampus_studies, HIPPOCAMPUS_CASES):
        label_map = _original("labelsTr", case).array.astype(np.uint8)
        version = _annotate(series, label_set, annotator, label_map)
        services.segmentation_review(user=doctor, segmentation=version, decision="approve")
        versions.append(version)
    return versions


def test_build_and_materialise_give_the_originals_voxel_for_voxel(approved, hospital, label_set, annotator, tmp_path):
    dataset = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)

    assert (dataset.version, dataset.case_count) == (1, 3)
    folder = services.training_dataset_materialise(dataset=dataset, dest=tmp_path / "ds")
    assert folder == tmp_path / "ds"
    read = dataset_read(folder)
    assert read.modality == "MR" and read.label_names == {1: "前部", 2: "posterior"}
    assert [c.case_id for c in read.cases] == ["hippo-train_001", "hippo-train_002", "hippo-train_003"]
    for case, original in zip(read.cases, HIPPOCAMPUS_CASES):
        for kind, path in (("imagesTr", case.image), ("labelsTr", case.label)):
            ours, theirs = read_volume(path), _original(kind, original)
            assert np.array_equal(ours.array, theirs.array), (kind, original)
            assert ours.array.shape == theirs.array.shape
            np.testing.assert_allclose(ours.geometry.spacing_mm, theirs.geometry.spacing_mm, rtol=1e-5)
            np.testing.assert_allclose(ours.geometry.origin_mm, theirs.geometry.origin_mm, atol=1e-4)
            np.testing.assert_allclose(ours.geometry.direction, theirs.geometry.direction, atol=1e-6)


def test_manifest_hashes_every_file_and_statistics_match_the_label_maps(approved, hospital, label_set, annotator,
                                                                        tmp_path):
    from federation.fl.data import label_statistics

    dataset = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)
    folder = services.training_dataset_materialise(dataset=dataset, dest=tmp_path / "ds")

    manifest_bytes = (folder / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == dataset.manifest_sha256
    manifest = json.loads(manifest_bytes)
    assert (manifest["dataset"], manifest["version"], manifest["case_count"]) == ("hippo-train", 1, 3)
    assert manifest["label_set"]["labels"] == {"1": "前部", "2": "posterior"}
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(e["path"] for e in manifest["files"]) + ["manifest.json"] == on_disk
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    # Counts only, the same as the federation node computes from the folder, and from the originals.
    assert dataset.label_statistics == manifest["label_statistics"] == label_statistics(folder)
    expected: dict[str, int] = {}
    for case in HIPPOCAMPUS_CASES:
        values, counts = np.unique(_original("labelsTr", case).array.astype(np.int64), return_counts=True)
        for v, c in zip(values, counts):
            expected[str(v)] = expected.get(str(v), 0) + int(c)
    assert dataset.label_statistics["voxels"] == expected
    assert dataset.label_statistics["cases_with_label"] == {"0": 3, "1": 3, "2": 3}
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert (meta["numTraining"], meta["modality"]) == (3, {"0": "MR"})
    # Pseudonymous: no MRN, study UID or original file name anywhere in the files or their names.
    text = " ".join(on_disk) + manifest_bytes.decode() + (folder / "dataset.json").read_text(encoding="utf-8")
    for series in [s.series for s in approved]:
        assert series.study.patient.mrn not in text and series.study.study_instance_uid not in text
    assert "hippocampus_" not in text
    assert AuditLog.objects.filter(target_type="training_dataset", target_id=str(dataset.pk), actor=annotator).exists()


def test_tampered_file_in_storage_is_refused_and_dest_is_untouched(approved, hospital, label_set, annotator, tmp_path):
    dataset = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)
    key = f"{dataset.storage_prefix}/labelsTr/hippo-train_002.nii.gz"
    default_storage.delete(key)
    assert default_storage.save(key, ContentFile(b"not the approved label map")) == key
    empty = tmp_path / "empty"
    empty.mkdir()

    for dest in (tmp_path / "ds", empty):
        with pytest.raises(ServiceError) as caught:
            services.training_dataset_materialise(dataset=dataset, dest=dest)
        assert caught.value.code == "manifest_mismatch" and "labelsTr/hippo-train_002.nii.gz" in str(caught.value)

    assert not (tmp_path / "ds").exists() and list(empty.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no partial folder left beside it
    # Each refusal is in the audit log, naming the file (a damaged or tampered snapshot).
    refusals = AuditLog.objects.filter(target_type="training_dataset", target_id=str(dataset.pk),
                                       detail__refused="manifest_mismatch")
    assert refusals.count() == 2 and refusals.first().detail["file"] == "labelsTr/hippo-train_002.nii.gz"


def test_tampered_manifest_is_refused(approved, hospital, label_set, annotator, tmp_path):
    dataset = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)
    key = f"{dataset.storage_prefix}/manifest.json"
    with default_storage.open(key, "rb") as fh:
        manifest = json.loads(fh.read())
    manifest["files"][0]["sha256"] = "0" * 64
    default_storage.delete(key)
    default_storage.save(key, ContentFile(json.dumps(manifest).encode()))

    with pytest.raises(ServiceError) as caught:
        services.training_dataset_materialise(dataset=dataset, dest=tmp_path / "ds")

    assert caught.value.code == "manifest_mismatch" and "manifest.json" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_no_approved_cases_is_refused_and_stores_nothing(hippocampus_studies, hospital, label_set, annotator):
    # Submitted but not approved yet.
    _annotate(hippocampus_studies[0], label_set, annotator, _original("labelsTr", HIPPOCAMPUS_CASES[0]).array.astype(np.uint8))
    before = stored_keys()

    with pytest.raises(ServiceError) as caught:
        services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)

    assert caught.value.code == "no_approved_cases"
    assert not TrainingDataset.objects.exists() and stored_keys() == before


@pytest.mark.parametrize("name", ["", "Hippo", "hippo train", "../x", "a" * 65, "-hippo"])
def test_invalid_name_is_refused(hospital, label_set, annotator, name):
    with pytest.raises(ServiceError) as caught:
        services.training_dataset_build(hospital=hospital, name=name, label_set=label_set, user=annotator)

    assert caught.value.code == "invalid_name"


def test_second_build_is_version_2_and_a_case_awaiting_review_drops_out(approved, hospital, label_set, annotator,
                                                                         tmp_path):
    first = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)
    # A newer version of the first case, submitted but not yet approved, takes that case out.
    newer = approved[0]
    services.segmentation_create(
        series=newer.series, label_map=np.zeros(tuple(newer.series.shape), dtype=np.uint8), label_table=newer.label_table,
        name=newer.name, source=Segmentation.Source.MANUAL, user=annotator, parent=newer)

    second = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)

    assert (second.version, second.case_count) == (2, 2)
    assert second.storage_prefix != first.storage_prefix
    assert selectors.training_dataset_get(hospital=hospital, name="hippo-train") == second
    assert selectors.training_dataset_get(hospital=hospital, name="hippo-train", version=1) == first
    # Version 1 is still intact after version 2 was built.
    assert len(dataset_read(services.training_dataset_materialise(dataset=first, dest=tmp_path / "v1")).cases) == 3


def test_get_unknown_dataset_is_not_found(hospital, other_doctor, approved, label_set, annotator):
    services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)

    for kwargs in ({"hospital": hospital, "name": "nope"}, {"hospital": hospital, "name": "hippo-train", "version": 9},
                   {"hospital": other_doctor.hospital, "name": "hippo-train"}):
        with pytest.raises(ServiceError) as caught:
            selectors.training_dataset_get(**kwargs)
        assert (caught.value.code, caught.value.status_code) == ("dataset_not_found", 404)


def test_another_hospitals_label_set_is_refused(hospital, other_doctor, label_set):
    with pytest.raises(ServiceError) as caught:
        services.training_dataset_build(hospital=other_doctor.hospital, name="x", label_set=label_set, user=other_doctor)

    assert caught.value.code == "label_set_not_found"


def test_command_builds_and_lists_as_json(approved, hospital, label_set):
    out = io.StringIO()
    call_command("training_dataset", "build", "--hospital", hospital.code, "--name", "hippo-train",
                 "--label-set", "海马体", stdout=out)
    built = json.loads(out.getvalue())
    assert set(built) == {"name", "version", "case_count", "manifest_sha256", "label_statistics"}
    assert (built["name"], built["version"], built["case_count"]) == ("hippo-train", 1, 3)
    assert re.fullmatch(r"[0-9a-f]{64}", built["manifest_sha256"])
    call_command("training_dataset", "build", "--hospital", hospital.code, "--name", "hippo-train",
                 "--label-set", str(label_set.pk), stdout=io.StringIO())

    out = io.StringIO()
    call_command("training_dataset", "list", "--hospital", hospital.code, stdout=out)
    listed = json.loads(out.getvalue())
    assert [(d["name"], d["version"]) for d in listed] == [("hippo-train", 2), ("hippo-train", 1)]
    assert listed[1]["manifest_sha256"] == built["manifest_sha256"]


def test_command_errors_exit_with_a_message(hippocampus_studies, hospital, label_set):
    with pytest.raises(CommandError, match="no_approved_cases"):
        call_command("training_dataset", "build", "--hospital", hospital.code, "--name", "hippo-train",
                     "--label-set", "海马体", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no label set"):
        call_command("training_dataset", "build", "--hospital", hospital.code, "--name", "hippo-train",
                     "--label-set", "missing", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no hospital"):
        call_command("training_dataset", "list", "--hospital", "nope", stdout=io.StringIO())


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_page_lists_and_builds_for_hospital_staff_only(approved, hospital, label_set, annotator, doctor,
                                                       patient_user, other_doctor):
    url = reverse("annotation:training-datasets")
    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    platform_admin = UserFactory(role=Role.PLATFORM_ADMIN)

    built = _client(annotator).post(url, {"name": "hippo-train", "label_set": label_set.pk})
    assert built.status_code == 302
    dataset = TrainingDataset.objects.get()
    assert (dataset.version, dataset.created_by) == (1, annotator)
    assert _client(admin).post(url, {"name": "hippo-train", "label_set": label_set.pk}).status_code == 302
    assert TrainingDataset.objects.filter(hospital=hospital).count() == 2

    page = _client(doctor).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "hippo-train" in html and dataset.manifest_sha256 in html and 'data-version="2"' in html
    assert _client(patient_user).get(url).status_code == 404
    assert _client(patient_user).post(url, {"name": "x", "label_set": label_set.pk}).status_code == 404
    assert _client(platform_admin).get(url).status_code == 200
    assert _client(platform_admin).post(url, {"name": "x", "label_set": label_set.pk}).status_code == 403
    # Another hospital's staff see none of it and cannot build from this hospital's label set.
    assert "hippo-train" not in _client(other_doctor).get(url).content.decode()
    refused = _client(other_doctor).post(url, {"name": "stolen", "label_set": label_set.pk}, follow=True)
    assert refused.status_code == 200 and not TrainingDataset.objects.filter(name="stolen").exists()
    assert TrainingDataset.objects.count() == 2


def test_a_dataset_downloads_as_a_de_identified_zip_for_its_hospitals_clinicians(
    approved, hippocampus_studies, hospital, label_set, annotator, doctor, other_doctor
):
    import gzip
    import zipfile

    dataset = services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)
    url = reverse("annotation:training-dataset-download", args=[dataset.pk])

    response = _client(doctor).get(url)

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert f"hippo-train-v1/{'manifest.json'}" in names
    assert sum(n.startswith("hippo-train-v1/imagesTr/") for n in names) == len(HIPPOCAMPUS_CASES)
    # No identifier of the patients: MRNs, study UIDs, the original file names, in any file or NIfTI header.
    identifiers = {s.study.patient.mrn for s in hippocampus_studies} | {s.study.study_instance_uid for s in hippocampus_studies}
    identifiers |= set(HIPPOCAMPUS_CASES)
    for name in names:
        data = archive.read(name)
        header = gzip.decompress(data)[:348] if name.endswith(".nii.gz") else data
        for value in identifiers:
            assert value.encode() not in data and value.encode() not in header, (name, value)
    assert AuditLog.objects.filter(action="export", target_type="training_dataset", target_id=str(dataset.pk),
                                   actor=doctor).exists()
    # Annotators (they build but do not export), another hospital and a tampered snapshot are refused.
    assert _client(annotator).get(url).status_code == 404
    assert _client(other_doctor).get(url).status_code == 404
    key = f"{dataset.storage_prefix}/labelsTr/hippo-train_001.nii.gz"
    default_storage.delete(key)
    default_storage.save(key, ContentFile(b"tampered"))
    assert _client(doctor).get(url).status_code == 409
