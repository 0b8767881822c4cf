"""python manage.py export_study STUDY_ID --deidentify: no PHI left, the SEG still opens, stable pseudonyms."""

from __future__ import annotations

import datetime
import io
import json
import shutil
import zipfile
from io import StringIO

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command

from annotation import services
from annotation.models import PatientPseudonym, Segmentation
from portal.models import AuditLog
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db

MRN = "MRN-PHI-4711"
# Identifying values written into copies of the real series, on top of those it already carries.
INJECTED = {
    "PatientID": MRN,
    "PatientBirthDate": "19610203",
    "InstitutionName": "第一人民医院 First People's Hospital",
    "InstitutionAddress": "1 Renmin Road, Hangzhou",
    "ReferringPhysicianName": "Li^Wei",
    "OtherPatientIDs": "OTHER-ID-8899",
    "ImageComments": "follow-up of Chrisjen Avasarala",
    "PatientAge": "063Y",
}
PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "InstitutionAddress",
                "ReferringPhysicianName", "AccessionNumber", "OtherPatientIDs", "ImageComments", "StudyID")


def _walk_values(ds):
    """Yield (keyword, VR, str(value)) of every element, nested sequences and file meta included."""
    for dataset in (ds.file_meta, ds):
        for element in dataset.iterall():
            if element.VR != "SQ":
                yield element.keyword, element.VR, str(element.value)


@pytest.fixture
def phi_series_folder(tmp_path):
    source = shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post")
    folder = tmp_path / "with-phi"
    folder.mkdir()
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        for keyword, value in INJECTED.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name)
    return folder


@pytest.fixture
def phi_study(phi_series_folder, hospital, doctor):
    result = services.study_import(user=doctor, hospital=hospital, patient_mrn=MRN, paths=[phi_series_folder])
    series = result.series[0]
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    k, j, i = series.shape
    label_map[k // 3: 2 * k // 3, j // 3: j // 2, i // 3: i // 2] = 1
    services.segmentation_create(series=series, label_map=label_map, source=Segmentation.Source.MANUAL, name="tumour",
                                 label_table=[{"index": 1, "name": "tumour", "color": "#ff0000"}], user=doctor)
    return result.studies[0]


def _export(study, tmp_path, name="export.zip") -> zipfile.ZipFile:
    out = tmp_path / name
    call_command("export_study", str(study.pk), "--deidentify", "--out", str(out), stdout=StringIO())
    return zipfile.ZipFile(out)


def _datasets(archive: zipfile.ZipFile) -> dict[str, pydicom.Dataset]:
    return {name: pydicom.dcmread(io.BytesIO(archive.read(name))) for name in archive.namelist() if name.endswith(".dcm")}


def test_no_phi_attribute_of_the_series_is_left_in_the_export(phi_study, phi_series_folder, tmp_path):
    originals = [pydicom.dcmread(p) for p in sorted(phi_series_folder.glob("*.dcm"))]
    phi_values = {str(ds.get(k)) for ds in originals for k in PHI_KEYWORDS if str(ds.get(k, "") or "").strip()}
    phi_values = {v for v in phi_values if len(v) >= 5}  # short ones (StudyID "4") are checked per attribute below
    phi_values |= {"Chrisjen", "Avasarala", "PGBM-002", MRN}
    original_uids = {value for ds in originals for kw, vr, value in _walk_values(ds)
                     if vr == "UI" and not kw.endswith("ClassUID") and kw != "TransferSyntaxUID"}
    original_dates = {value for ds in originals for _kw, vr, value in _walk_values(ds) if vr == "DA" and value}

    archive = _export(phi_study, tmp_path)
    exported = _datasets(archive)

    assert len([n for n in exported if "/IM" in n]) == len(originals) == 22
    assert len([n for n in exported if "/SEG-" in n]) == 1
    pseudonym = PatientPseudonym.objects.get(patient=phi_study.patient).pseudonym
    texts = [archive.read("manifest.json").decode()]
    for name, ds in exported.items():
        assert ds.PatientID == pseudonym and str(ds.PatientName) == pseudonym, name
        assert ds.PatientIdentityRemoved == "YES" and ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert {item.CodeValue for item in ds.DeidentificationMethodCodeSequence} == {"113100", "113107"}
        assert not any(element.tag.is_private for element in ds.iterall()), name
        for keyword in ("InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "AccessionNumber",
                        "OtherPatientIDs", "ImageComments", "PatientAge", "StudyID"):
            assert str(ds.get(keyword, "") or "") not in {str(o.get(keyword, "")) for o in originals if o.get(keyword)}, (name, keyword)
        assert not ds.get("PatientBirthDate"), name
        for keyword, vr, value in _walk_values(ds):
            texts.append(value)
            if vr == "UI":
                assert value not in original_uids, (name, keyword)
            if vr == "DA" and value:
                assert value not in original_dates, (name, keyword)
    everything = "\n".join(texts)
    for value in phi_values:
        assert value not in everything, value
    assert MRN not in everything and "Hospital" not in everything


def test_dates_are_shifted_by_one_offset_per_patient_across_exports(phi_study, phi_series_folder, tmp_path):
    original = pydicom.dcmread(sorted(phi_series_folder.glob("*.dcm"))[0])

    first = _datasets(_export(phi_study, tmp_path, "a.zip"))
    second = _datasets(_export(phi_study, tmp_path, "b.zip"))

    def day(value):
        return datetime.datetime.strptime(value, "%Y%m%d").date()

    image = next(ds for name, ds in sorted(first.items()) if "/IM00001" in name)
    shift = day(original.StudyDate) - day(image.StudyDate)
    assert datetime.timedelta(days=62) <= shift <= datetime.timedelta(days=731)
    # Longitudinal information kept: the interval between acquisition and study dates is unchanged.
    assert day(original.StudyDate) - day(original.AcquisitionDate) == day(image.StudyDate) - day(image.AcquisitionDate)
    again = next(ds for name, ds in sorted(second.items()) if "/IM00001" in name)
    assert again.StudyDate == image.StudyDate and again.PatientID == image.PatientID


def test_the_seg_opens_against_the_deidentified_series(phi_study, tmp_path):
    import highdicom as hd

    exported = _datasets(_export(phi_study, tmp_path))
    images = {str(ds.SOPInstanceUID): ds for name, ds in exported.items() if "/IM" in name}
    seg_name = next(name for name in exported if "/SEG-" in name)

    seg = hd.seg.Segmentation.from_dataset(exported[seg_name])

    assert str(seg.StudyInstanceUID) == {str(ds.StudyInstanceUID) for ds in images.values()}.pop()
    referenced = {str(item.ReferencedSOPInstanceUID) for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced and referenced <= set(images)
    assert {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence} == {str(ds.SeriesInstanceUID) for ds in images.values()}
    source_uids = [uid for _study, _series, uid in seg.get_source_image_uids()]
    assert set(source_uids) <= set(images)
    volume = seg.get_volume(combine_segments=True)
    assert volume.array.max() == 1 and volume.array.sum() > 0
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["tumour"]


def test_two_exports_of_the_same_patient_share_the_pseudonym_which_is_kept_in_the_portal(phi_study, hospital, doctor, tmp_path):
    small = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    services.study_import(user=doctor, hospital=hospital, patient_mrn="OTHER-PATIENT", paths=[small], modality="CT")

    first = json.loads(_export(phi_study, tmp_path, "a.zip").read("manifest.json"))
    second = json.loads(_export(phi_study, tmp_path, "b.zip").read("manifest.json"))

    assert first["pseudonym"] == second["pseudonym"] == phi_study.patient.pseudonym.pseudonym
    assert PatientPseudonym.objects.count() == 1
    assert first["series"][0]["series_instance_uid"] == second["series"][0]["series_instance_uid"]
    assert first["series"][0]["review_required"] is False
    assert AuditLog.objects.filter(action=AuditLog.Action.EXPORT, target_type="study", target_id=str(phi_study.pk),
                                   detail__deidentified=True).count() == 2


def test_another_patient_gets_another_pseudonym_and_date_offset(phi_series_folder, hospital, doctor, tmp_path):
    import highdicom  # noqa: F401 - the export needs it

    from pydicom.uid import generate_uid

    copy = tmp_path / "second-patient"
    shutil.copytree(phi_series_folder, copy)
    series_uid = generate_uid()
    for path in copy.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path)
    a = services.study_import(user=doctor, hospital=hospital, patient_mrn="PATIENT-A", paths=[phi_series_folder]).studies[0]
    b = services.study_import(user=doctor, hospital=hospital, patient_mrn="PATIENT-B", paths=[copy]).studies[0]

    image_a = next(ds for n, ds in sorted(_datasets(_export(a, tmp_path, "a.zip")).items()) if "/IM00001" in n)
    image_b = next(ds for n, ds in sorted(_datasets(_export(b, tmp_path, "b.zip")).items()) if "/IM00001" in n)

    assert image_a.PatientID != image_b.PatientID
    assert image_a.StudyDate != image_b.StudyDate


def test_a_study_without_dicom_originals_is_refused_with_a_clear_message(small_ct_study, tmp_path):
    out = tmp_path / "nifti.zip"
    with pytest.raises(CommandError, match="deidentify_needs_dicom.*NIfTI"):
        call_command("export_study", str(small_ct_study.pk), "--deidentify", "--out", str(out))
    assert not out.exists() and not PatientPseudonym.objects.exists()


def test_export_study_refuses_without_deidentify_and_for_an_unknown_study(phi_study, tmp_path):
    with pytest.raises(CommandError, match="--deidentify"):
        call_command("export_study", str(phi_study.pk), "--out", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="no study"):
        call_command("export_study", "999999", "--deidentify", "--out", str(tmp_path / "x.zip"))
    assert not (tmp_path / "x.zip").exists()
