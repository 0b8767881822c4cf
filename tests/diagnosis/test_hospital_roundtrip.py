"""Issue 15's "done when", in one test against real peers: Orthanc, playing the hospital's PACS, sends
LIDC-IDRI-0001 to the portal's DICOM service with C-STORE; the routing rule segments it; a doctor signs the
report; the SEG, the SR and the PDF arrive back in Orthanc under the CT's study; the FHIR endpoint serves
the DiagnosticReport with its Observations; and a de-identified research export of the study holds none of
the patient's identifiers."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile

import pydicom
import pytest
from django.urls import reverse
from fhir.resources.R4B import get_fhir_model_class

from annotation import services as annotation_services
from annotation.models import DicomRoutingRule, InferenceRun, Series
from diagnosis import services
from diagnosis.models import Measurement, ResultSend
from diagnosis.pacs.pdf import ENCAPSULATED_PDF_SOP_CLASS_UID
from diagnosis.tasks import result_send_task
from tests.annotation.dicomnet.conftest import listener  # noqa: F401 - the portal's DICOM service
from tests.conftest import shared_data
from tests.diagnosis.orthanc import orthanc_start
from tests.helpers import api_client

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
SR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage (TID 1500, highdicom)


def _valid(resource: dict) -> dict:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def test_orthanc_sends_a_ct_and_gets_seg_sr_and_pdf_back_fhir_serves_the_report_and_the_export_is_anonymous(
    listener, hospital, doctor, ct_lung_model, tmp_path, settings  # noqa: F811
):
    settings.PACS_SEND_MAX_RETRIES = 0
    settings.DICOM_AE_TITLE = listener.ae_title  # the AE title the portal calls Orthanc with
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    phi = {str(first.PatientID), str(first.PatientName), str(first.StudyInstanceUID), str(first.SeriesInstanceUID)}
    phi |= {str(v) for v in (first.get("AccessionNumber"), first.get("InstitutionName")) if v}
    phi = {value for value in phi if value.strip()}
    assert str(first.PatientID) in phi

    # Orthanc knows the portal as a modality; the portal maps Orthanc's AE title to the hospital and sends
    # its results back to Orthanc's DICOM port.
    orthanc = orthanc_start(tmp_path / "orthanc",
                            modalities={"yixin": [listener.ae_title, "127.0.0.1", listener.port]})
    try:
        annotation_services.dicom_peer_create(hospital=hospital, ae_title=orthanc.ae_title, host="127.0.0.1",
                                              port=orthanc.dicom_port)
        DicomRoutingRule.objects.create(hospital=hospital, modality="CT", body_part="chest",
                                        series_description_pattern=r"^$|LUNG|CHEST", model=ct_lung_model, priority=1)
        orthanc.upload(*files)
        [orthanc_study] = orthanc.get("/studies")

        # Orthanc's own C-STORE SCU sends the study (POST /modalities/{id}/store).
        request = urllib.request.Request(f"http://127.0.0.1:{orthanc.http_port}/modalities/yixin/store",
                                         data=json.dumps({"Resources": [orthanc_study], "Synchronous": True}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read())
        assert answer.get("FailedInstancesCount", 0) == 0 and answer["InstancesCount"] == len(files), answer
        listener.wait_idle()

        series = Series.objects.get(study__hospital=hospital)
        assert series.instance_count == len(files) and series.study.study_instance_uid == str(first.StudyInstanceUID)
        # The routing rule queued the one-click lung segmentation; the worker's task body runs it here.
        [run] = InferenceRun.objects.filter(series=series, model=ct_lung_model)
        run = annotation_services.inference_run_execute(run_id=run.pk)
        assert run.status == InferenceRun.Status.SUCCEEDED, run.error
        segmentation = run.segmentation
        volumes = {m.label_name: m.volume_ml for m in Measurement.objects.filter(segmentation=segmentation)}
        assert len(volumes) == 2 and all(1000 < v < 5000 for v in volumes.values()), volumes

        # The doctor signs; the results go back to the PACS (the send task body, as the worker runs it).
        report = services.report_create_draft(user=doctor, study=series.study, segmentation=segmentation)
        services.report_update(user=doctor, report=report, impression="Both lungs segmented; volumes measured.")
        report = services.report_finalize(user=doctor, report=report)
        [send] = report.result_sends.all()
        result_send_task.apply(args=[send.pk])
        send.refresh_from_db()
        assert send.state == ResultSend.State.SENT, send.last_error

        classes = {}
        for instance in orthanc.get(f"/studies/{orthanc_study}/instances"):
            tags = orthanc.get(f"/instances/{instance['ID']}/simplified-tags")
            classes.setdefault(tags["SOPClassUID"], []).append(tags)
        assert {SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, ENCAPSULATED_PDF_SOP_CLASS_UID} <= set(classes)
        assert len(classes[SEG_SOP_CLASS_UID]) == len(classes[SR_SOP_CLASS_UID]) == 1
        assert {t["SOPInstanceUID"] for c in (SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, ENCAPSULATED_PDF_SOP_CLASS_UID)
                for t in classes[c]} == {item["sop_instance_uid"] for item in send.instances}
    finally:
        orthanc.stop()

    # The EMR reads the signed report and its Observations over FHIR R4.
    client = api_client(doctor)
    fhir_report = _valid(client.get(reverse("fhir:diagnosticreport-read", args=[report.pk])).json())
    assert fhir_report["status"] == "final" and fhir_report["presentedForm"][0]["contentType"] == "application/pdf"
    bundle = _valid(client.get(reverse("fhir:observation-search"), {"patient": series.study.patient_id}).json())
    observations = [e["resource"] for e in bundle.get("entry", [])]
    referenced = {r["reference"].rsplit("/", 1)[-1] for r in fhir_report.get("result", [])}
    assert referenced and referenced <= {o["id"] for o in observations}
    units = {o["valueQuantity"]["code"] for o in observations if o["id"] in referenced and "valueQuantity" in o}
    assert "mL" in units

    # The research export carries no identifier of the patient (PS3.15 Basic Profile through dicognito).
    archive = zipfile.ZipFile(io.BytesIO(annotation_services.study_export_deidentified(user=doctor,
                                                                                       study=series.study)))
    names = archive.namelist()
    assert sum(n.endswith(".dcm") for n in names) > len(files)  # the originals and the SEG
    for name in names:
        data = archive.read(name)
        for value in phi:
            assert value.encode() not in data, (name, value)
    exported = pydicom.dcmread(io.BytesIO(archive.read(next(n for n in names if n.endswith(".dcm")))))
    assert exported.PatientIdentityRemoved == "YES"
