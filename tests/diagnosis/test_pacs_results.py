"""Results back to the hospital's PACS (issue 15): signing a report of LIDC-IDRI-0001 sends its DICOM
SEG, its TID 1500 Measurement Report SR and the signed PDF by C-STORE to dcmtk's ``storescp``
playing the PACS; what arrives is read back and checked against the portal's stored rows. A peer
that is down or busy fails with retries and succeeds once it is up; a peer that refuses fails with the reason."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.urls import reverse
from django.utils.translation import override as translation_override

from annotation import services as annotation_services
from annotation.interop.dicom_seg import dicom_seg_to_layers
from diagnosis import services
from diagnosis.models import Measurement, ResultSend
from diagnosis.pacs import codes
from diagnosis.pacs.pdf import ENCAPSULATED_PDF_SOP_CLASS_UID
from diagnosis.tasks import result_send_task
from tests.annotation.dicomnet.conftest import dcmtk
from tests.conftest import shared_data
from tests.diagnosis.orthanc import orthanc_start
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

SR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
CT_ONLY_CONFIG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[CTOnly]
PresentationContext1 = CTImageStorage\\Uncompressed

[[Profiles]]
[CTOnly]
PresentationContexts = CTOnly
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StoreSCP:
    """dcmtk's storescp on a loopback port, writing what it receives into ``folder``."""

    def __init__(self, folder: Path, port: int, *extra: str):
        # dcmtk's storescp, not pynetdicom's app of the same name in the virtualenv's bin (first on PATH).
        program = dcmtk("storescp")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, port
        self.process = subprocess.Popen(
            [program, "--aetitle", "PACS", "--output-directory", str(folder), *extra, str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"storescp exited: {self.process.stderr.read().decode()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("storescp did not listen within 10 s")

    def received(self) -> dict[str, pydicom.Dataset]:
        """What arrived, by SOP Class UID."""
        datasets = [pydicom.dcmread(p) for p in sorted(self.folder.iterdir()) if p.is_file()]
        return {str(ds.SOPClassUID): ds for ds in datasets}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def pacs(tmp_path):
    """Start storescp instances on demand; all stopped at the end of the test."""
    started: list[StoreSCP] = []

    def start(port: int | None = None, *extra: str, name: str = "pacs") -> StoreSCP:
        scp = StoreSCP(tmp_path / name, port or _free_port(), *extra)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


@pytest.fixture
def lidc_measured(doctor, hospital):
    """LIDC-IDRI-0001 imported from DICOM, with the readers' consensus nodule segmentation measured."""
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    series = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                              paths=[folder]).series[0]
    read = services.lidc_reads_import(user=doctor, series=series,
                                      xml_path=shared_data("lidc_idri_0001_ct_nodules", "annotations", "069.xml"))
    consensus = read.segmentations[0]  # the readers' consensus comes first, the readers' own after it
    assert consensus.name.startswith("LIDC consensus")
    services.segmentation_measure(segmentation=consensus)
    return consensus


def _sign(doctor, segmentation, callbacks_fixture):
    """Draft and sign a report on ``segmentation``; return it and the send tasks queued on commit."""
    report = services.report_create_draft(user=doctor, study=segmentation.series.study, segmentation=segmentation)
    services.report_update(user=doctor, report=report, impression="Nodule of the right upper lobe.")
    with callbacks_fixture(execute=False) as callbacks:
        report = services.report_finalize(user=doctor, report=report)
    return report, callbacks


def _run_queued(report) -> list[ResultSend]:
    """Run the send task of every queued send of ``report`` as the worker would (eagerly, retries included)."""
    for send in report.result_sends.filter(state=ResultSend.State.QUEUED):
        result_send_task.apply(args=[send.pk])
    return list(report.result_sends.order_by("pk"))


def _measurement_value(group, concept) -> float:
    [item] = [m for m in group.get_measurements() if m.name == concept]
    return float(item.value)


def test_signing_sends_seg_sr_and_pdf_that_match_the_stored_measurements(
        doctor, hospital, lidc_measured, pacs, django_capture_on_commit_callbacks):
    import highdicom as hd

    scp = pacs()
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", host="127.0.0.1", port=scp.port)
    report, callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)
    assert len(callbacks) == 1 and report.result_sends.get().state == ResultSend.State.QUEUED

    [send] = _run_queued(report)

    assert send.state == ResultSend.State.SENT and send.attempts == 1 and send.sent_at is not None
    received = scp.received()
    assert set(received) == {SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, ENCAPSULATED_PDF_SOP_CLASS_UID}
    seg, sr_ds, pdf = received[SEG_SOP_CLASS_UID], received[SR_SOP_CLASS_UID], received[ENCAPSULATED_PDF_SOP_CLASS_UID]
    series = lidc_measured.series
    source = pydicom.dcmread(next(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm")),
                             stop_before_pixels=True)
    for ds in (seg, sr_ds, pdf):  # the PACS files them with the CT: same patient and study
        assert ds.PatientID == source.PatientID and ds.StudyInstanceUID == source.StudyInstanceUID
    # The SEG opens against the source series and holds the stored label map.
    layers = dicom_seg_to_layers(seg, annotation_services.series_geometry(series)).layers
    stored = annotation_services.segmentation_labelmap_load(lidc_measured)
    assert np.array_equal(sum(layer.astype(np.int32) for layer in layers) > 0, stored > 0)
    # The SR: TID 1500, one volumetric group per measured segment, referencing the SEG and the series.
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_ds)
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    groups = sr.content.get_volumetric_roi_measurement_groups()
    rows = list(Measurement.objects.filter(segmentation=lidc_measured, voxel_count__gt=0).order_by("label"))
    assert rows and len(groups) == len(rows)
    segment_of_label = {int(item.SegmentDescription.split()[1]): int(item.SegmentNumber)
                        for item in seg.SegmentSequence}
    for row, group in zip(rows, groups):
        referenced = group.referenced_segment
        assert referenced.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert referenced.referenced_segment_numbers == [segment_of_label[row.label]]
        assert group.finding_type == hd.sr.CodedConcept.from_dataset(
            seg.SegmentSequence[segment_of_label[row.label] - 1].SegmentedPropertyTypeCodeSequence[0])
        assert referenced.source_series_for_segmentation.value == series.series_instance_uid
        assert _measurement_value(group, codes.VOLUME) == pytest.approx(row.volume_ml, rel=1e-6)
        assert _measurement_value(group, codes.LONG_AXIS) == pytest.approx(row.axial_long_mm, rel=1e-6)
        assert _measurement_value(group, codes.SHORT_AXIS) == pytest.approx(row.axial_short_mm, rel=1e-6)
        assert _measurement_value(group, codes.ATTENUATION) == pytest.approx(row.mean_intensity, rel=1e-6)
        units = {m.name.value: m.unit.value for m in group.get_measurements()}
        assert units == {"118565006": "ml", "103339001": "mm", "103340004": "mm", "112031": "[hnsf'U]"}
    evidence = {item.SeriesInstanceUID for study in sr_ds.CurrentRequestedProcedureEvidenceSequence
                for item in study.ReferencedSeriesSequence}
    assert evidence == {series.series_instance_uid, seg.SeriesInstanceUID}
    # The Encapsulated PDF is the signed PDF, byte for byte.
    with report.pdf_file.open("rb") as fh:
        signed = fh.read()
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(pdf.EncapsulatedDocument)[:pdf.EncapsulatedDocumentLength] == signed


class BusySCP:
    """pynetdicom's storage SCP allowing one association, held open by another client: the next association
    is rejected as transient (PS3.8 Table 9-21: rejected-transient, local limit exceeded) until it is freed."""

    def __init__(self, port: int):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.received: list[str] = []

        def on_store(event):
            self.received.append(str(event.request.AffectedSOPInstanceUID))
            return 0x0000

        scp = AE(ae_title="BUSY")
        scp.supported_contexts = AllStoragePresentationContexts
        scp.add_supported_context(Verification)
        scp.maximum_associations = 1
        self.server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        holder = AE(ae_title="HOLDER")
        holder.add_requested_context(Verification)
        self.held = holder.associate("127.0.0.1", port, ae_title="BUSY")
        assert self.held.is_established

    def free(self) -> None:
        self.held.release()

    def stop(self) -> None:
        if self.held.is_established:
            self.held.release()
        self.server.shutdown()


def test_each_destination_fails_with_its_own_reason_and_a_peer_that_was_down_succeeds_on_resend(
        doctor, hospital, lidc_measured, pacs, django_capture_on_commit_callbacks, settings, tmp_path):
    """One signed report, four PACS: one down (retried, then up), one busy (a transient rejection: retried,
    then free), one refusing every association permanently and one accepting only CT images (neither
    retried: a retry cannot cure them)."""
    settings.PACS_SEND_MAX_RETRIES = 2
    down_port = _free_port()  # nothing listens there yet
    busy = BusySCP(_free_port())
    try:
        refusing = pacs(None, "--refuse", name="refusing")
        config = tmp_path / "storescp.cfg"
        config.write_text(CT_ONLY_CONFIG)
        ct_only = pacs(None, "--config-file", str(config), "CTOnly", name="ct-only")
        for ae_title, port in (("DOWN", down_port), ("BUSY", busy.server.server_address[1]),
                               ("REFUSING", refusing.port), ("CTONLY", ct_only.port)):
            annotation_services.dicom_peer_create(hospital=hospital, ae_title=ae_title, host="127.0.0.1", port=port)
        report, _callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)

        down, busy_send, refused, not_accepted = _run_queued(report)

        assert (down.state, down.error_code, down.attempts) == ("failed", "peer_unreachable", 3)  # 1 + 2 retries
        assert (busy_send.state, busy_send.error_code, busy_send.attempts) == ("failed", "association_rejected", 3)
        assert (refused.state, refused.error_code, refused.attempts) == ("failed", "association_rejected_permanent", 1)
        assert "rejected" in refused.last_error
        assert (not_accepted.state, not_accepted.error_code, not_accepted.attempts) == (
            "failed", "sop_class_not_accepted", 1)
        assert SEG_SOP_CLASS_UID in not_accepted.last_error
        assert refusing.received() == {} and ct_only.received() == {} and busy.received == []
        built = [item["sop_instance_uid"] for item in down.instances]
        assert [item["kind"] for item in down.instances] == ["seg", "sr", "pdf"]
        assert [item["sop_instance_uid"] for item in not_accepted.instances] == built  # built once per report

        came_up = pacs(down_port, name="came-up")
        busy.free()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.report_results_resend(user=doctor, report=report)
        assert len(callbacks) == 4
        down, busy_send, refused, not_accepted = _run_queued(report)

        assert (down.state, down.error_code, down.attempts) == ("sent", "", 4)
        assert sorted(ds.SOPInstanceUID for ds in came_up.received().values()) == sorted(built)  # the same objects
        assert (busy_send.state, busy_send.attempts) == ("sent", 4) and sorted(busy.received) == sorted(built)
        assert (refused.state, not_accepted.state) == ("failed", "failed")
    finally:
        busy.stop()


# --- without a PACS, without DICOM, and who may see or resend (the small NIfTI CT: fast) -------------

@pytest.fixture
def signed_nifti_report(doctor, small_ct_study, django_capture_on_commit_callbacks):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    services.report_update(user=doctor, report=report, impression="No focal lesion.")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = services.report_finalize(user=doctor, report=report)
    return report, callbacks


def test_without_a_destination_nothing_is_sent_and_the_state_says_so(doctor, client, signed_nifti_report):
    report, callbacks = signed_nifti_report
    assert callbacks == []
    [send] = report.result_sends.all()
    assert send.state == ResultSend.State.NO_DESTINATION and send.attempts == 0

    response = api_client(doctor).post(reverse("report-pacs-resend-api", args=[report.pk]))
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_destination"
    client.force_login(doctor)
    with translation_override("en"):
        page = client.get(reverse("diagnosis:report-detail", args=[report.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert b'data-state="no_destination"' in page.content and b"No destination configured" in page.content


def test_a_study_not_imported_from_dicom_fails_without_retry_and_keeps_the_report(
        doctor, hospital, signed_nifti_report, django_capture_on_commit_callbacks):
    report, _callbacks = signed_nifti_report
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", host="127.0.0.1", port=_free_port())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_client(doctor).post(reverse("report-pacs-resend-api", args=[report.pk]))
    assert response.status_code == 202 and len(callbacks) == 1
    assert [s.state for s in report.result_sends.all()] == [ResultSend.State.QUEUED]  # no_destination row replaced

    [send] = _run_queued(report)

    assert send.state == ResultSend.State.FAILED and send.error_code == "results_need_dicom" and send.attempts == 1
    assert send.instances == []
    report.refresh_from_db()
    assert report.status == "final" and report.pdf_file
    listed = api_client(doctor).get(reverse("report-pacs-sends", args=[report.pk])).json()
    assert [(s["state"], s["error_code"]) for s in listed] == [("failed", "results_need_dicom")]


def test_only_the_hospitals_clinicians_resend_and_only_its_staff_see_the_sends(
        doctor, other_doctor, annotator, patient_user, signed_nifti_report):
    report, _callbacks = signed_nifti_report
    assert api_client(other_doctor).get(reverse("report-pacs-sends", args=[report.pk])).status_code == 404
    assert api_client(other_doctor).post(reverse("report-pacs-resend-api", args=[report.pk])).status_code == 404
    assert api_client(patient_user).get(reverse("report-pacs-sends", args=[report.pk])).status_code == 403
    assert api_client(annotator).post(reverse("report-pacs-resend-api", args=[report.pk])).status_code == 403
    assert api_client(annotator).get(reverse("report-pacs-sends", args=[report.pk])).status_code == 200


def test_a_draft_is_not_sent(doctor, small_ct_study):
    draft = services.report_create_draft(user=doctor, study=small_ct_study)
    response = api_client(doctor).post(reverse("report-pacs-resend-api", args=[draft.pk]))
    assert response.status_code == 409 and response.json()["error"]["code"] == "report_not_final"
    assert not ResultSend.objects.filter(report=draft).exists()


# --- Orthanc as the hospital PACS ---------------------------------------------------------------------

@pytest.fixture
def orthanc(tmp_path):
    """Orthanc (Debian package) with its storage in ``tmp_path``: only the AE title YIXIN from 127.0.0.1
    may store, and called AE titles are checked, so a peer configured with the wrong AE title is rejected
    (see :func:`tests.diagnosis.orthanc.orthanc_start`)."""
    server = orthanc_start(tmp_path / "orthanc")
    yield server.dicom_port, server.get
    server.stop()


def test_orthanc_receives_seg_sr_and_pdf_and_rejects_a_wrong_called_ae_title(
        doctor, hospital, lidc_measured, orthanc, django_capture_on_commit_callbacks, settings):
    settings.PACS_SEND_MAX_RETRIES = 0
    settings.DICOM_AE_TITLE = "YIXIN"
    dicom_port, get = orthanc
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC", host="127.0.0.1", port=dicom_port)
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="NOT-ORTHANC", host="127.0.0.1",
                                          port=dicom_port)
    report, callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)
    assert len(callbacks) == 2

    good, wrong = _run_queued(report)

    assert good.state == ResultSend.State.SENT, good.last_error
    assert wrong.state == ResultSend.State.FAILED and wrong.error_code == "association_rejected_permanent"
    assert "called" in wrong.last_error.lower()  # A-ASSOCIATE-RJ: called AE title not recognised
    stored = {get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"]: get(f"/instances/{i}/simplified-tags")
              for i in get("/instances")}
    assert set(stored) == {item["sop_instance_uid"] for item in good.instances}
    classes = {tags["SOPClassUID"] for tags in stored.values()}
    assert classes == {SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, ENCAPSULATED_PDF_SOP_CLASS_UID}
    [study] = get("/studies")  # filed under the CT's study
    study_uid = get(f"/studies/{study}")["MainDicomTags"]["StudyInstanceUID"]
    assert study_uid == lidc_measured.series.study.study_instance_uid


def test_a_destination_removed_after_queueing_fails_without_retry(
        doctor, hospital, signed_nifti_report, django_capture_on_commit_callbacks):
    report, _callbacks = signed_nifti_report
    peer = annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", host="127.0.0.1",
                                                 port=_free_port())
    with django_capture_on_commit_callbacks(execute=False):
        services.report_results_resend(user=doctor, report=report)
    peer.delete()

    [send] = _run_queued(report)

    assert (send.state, send.error_code, send.attempts) == ("failed", "peer_removed", 1)
    assert send.destination == f"PACS@127.0.0.1:{peer.port}"  # still says where it was meant to go
