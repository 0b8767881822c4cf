"""The multi-study zip in its de-identified mode (issue 15): pseudonym and UIDs of the research export,
no MRN, name, accession number or portal id, a SEG de-identified as in the research export, NIfTI headers
without PHI, JSON dates shifted by the patient's DICOM offset."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zipfile

import pydicom
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import PatientPseudonym, Segmentation
from portal.models import AuditLog
from tests.annotation.dicomnet.test_research_export import MRN, INJECTED, phi_series_folder, phi_study  # noqa: F401
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

FORMATS = ["nifti", "json", "dicom_seg"]


def _zip(client, study, **extra):
    return client.post(reverse("studies-export"), {"studies": [study.pk], "formats": FORMATS, **extra}, format="json")


def test_the_deidentified_zip_carries_the_research_export_identity_and_no_phi(doctor, phi_study, phi_series_folder):
    originals = [pydicom.dcmread(p) for p in sorted(phi_series_folder.glob("*.dcm"))]
    phi = {MRN, "OTHER-ID-8899", "Chrisjen", "Avasarala", str(originals[0].PatientName), str(originals[0].PatientID)}
    phi |= {str(ds.AccessionNumber) for ds in originals if str(ds.get("AccessionNumber", "") or "").strip()}
    phi |= {str(originals[0].StudyInstanceUID), str(originals[0].SeriesInstanceUID)}

    response = _zip(api_client(doctor), phi_study, deidentified=True)

    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    research = zipfile.ZipFile(io.BytesIO(services.study_export_deidentified(user=doctor, study=phi_study)))
    research_manifest = json.loads(research.read("manifest.json"))
    manifest = json.loads(archive.read("manifest.json"))
    [study] = manifest["studies"]
    [segmentation] = study["segmentations"]
    assert "study_id" not in study and "id" not in segmentation
    assert study["pseudonym"] == research_manifest["pseudonym"] == phi_study.patient.pseudonym.pseudonym
    assert study["study_instance_uid"] == research_manifest["series"][0]["study_instance_uid"]
    assert segmentation["series_instance_uid"] == research_manifest["series"][0]["series_instance_uid"]
    files = {f["format"]: f["path"] for f in segmentation["files"]}
    assert set(files) == set(FORMATS), segmentation["files"]
    assert all(path.startswith(f"{study['pseudonym']}/study-001/series-001/") for path in files.values())

    texts = [archive.read("manifest.json").decode(), archive.read(files["json"]).decode(), *archive.namelist()]
    exported = json.loads(archive.read(files["json"]))
    assert exported["pseudonym"] == study["pseudonym"]
    assert exported["series"]["series_instance_uid"] == segmentation["series_instance_uid"]
    assert "id" not in exported["segmentation"] and "uid" not in exported["segmentation"]
    current = Segmentation.objects.get(series__study=phi_study, is_current=True)
    offset = services.patient_date_offset(patient=phi_study.patient)
    assert dt.datetime.fromisoformat(exported["segmentation"]["created_at"]) == timezone.localtime(current.created_at) + offset

    seg = pydicom.dcmread(io.BytesIO(archive.read(files["dicom_seg"])))
    research_seg = pydicom.dcmread(io.BytesIO(research.read(next(n for n in research.namelist() if "/SEG-" in n))))
    assert seg.PatientID == str(seg.PatientName) == study["pseudonym"] and seg.PatientIdentityRemoved == "YES"
    assert str(seg.StudyInstanceUID) == study["study_instance_uid"]
    assert {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence} == {segmentation["series_instance_uid"]}
    assert {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence} == \
        {str(i.ReferencedSOPInstanceUID) for s in research_seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert seg.StudyDate == research_seg.StudyDate != originals[0].StudyDate
    assert not any(element.tag.is_private for element in seg.iterall())
    texts += [str(element.value) for element in seg.iterall() if element.VR != "SQ"]
    texts += [str(element.value) for element in seg.file_meta.iterall()]

    nifti = archive.read(files["nifti"])
    header = nifti[:348] if not nifti[:2] == b"\x1f\x8b" else gzip.decompress(nifti)[:348]
    texts.append(header.decode("latin-1"))
    everything = "\n".join(texts)
    for value in phi:
        assert value not in everything, value
    assert INJECTED["InstitutionName"] not in everything
    audit = AuditLog.objects.filter(action=AuditLog.Action.EXPORT, target_type="study", target_id=str(phi_study.pk),
                                    detail__format="zip").get()
    assert audit.detail["deidentified"] is True


def test_a_bad_deidentified_value_is_a_400_and_the_default_zip_is_identified(doctor, phi_study):
    client = api_client(doctor)
    assert _zip(client, phi_study, deidentified="maybe").status_code == 400

    manifest = json.loads(zipfile.ZipFile(io.BytesIO(_zip(client, phi_study).content)).read("manifest.json"))
    assert manifest["studies"][0]["study_id"] == phi_study.pk
    assert manifest["studies"][0]["study_instance_uid"] == phi_study.study_instance_uid
    assert not PatientPseudonym.objects.exists()


# ---------------------------------------------------------------- the worklist's form, in the browser's shape

def test_the_worklist_exports_selected_studies_de_identified_with_a_form_post(doctor, phi_study):
    from django.test import Client

    client = Client()
    client.force_login(doctor)
    page = client.get(reverse("annotation:study-list")).content.decode()
    assert 'id="studies-export-form"' in page and f'name="studies" value="{phi_study.pk}"' in page

    response = client.post(reverse("annotation:studies-export"),
                           {"studies": [phi_study.pk], "formats": ["nifti_gz", "json"], "deidentified": "1"})

    assert response.status_code == 200 and "segmentations-deidentified.zip" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content) if response.streaming
                                         else response.content))
    names = archive.namelist()
    pseudonym = phi_study.patient.pseudonym.pseudonym
    assert all(n == "manifest.json" or n.startswith(f"{pseudonym}/") for n in names), names
    assert MRN not in archive.read("manifest.json").decode()


def test_the_worklist_export_refuses_an_empty_selection_a_bad_format_and_others_studies(
    doctor, phi_study, other_doctor, patient_user
):
    from django.test import Client

    client = Client()
    client.force_login(doctor)
    url = reverse("annotation:studies-export")
    empty = client.post(url, {"formats": ["json"]})
    assert empty.status_code == 400 and "id=\"export-error\"" in empty.content.decode()
    bad = client.post(url, {"studies": [phi_study.pk], "formats": ["exe"]})
    assert bad.status_code == 400
    assert client.get(url).status_code == 405

    other = Client()
    other.force_login(other_doctor)
    assert other.post(url, {"studies": [phi_study.pk], "formats": ["json"]}).status_code == 404
    patient = Client()
    patient.force_login(patient_user)
    assert patient.post(url, {"studies": [phi_study.pk], "formats": ["json"]}).status_code == 404
