"""The portal's own results over its DICOMweb (issue 15): a signed report of LIDC-IDRI-0001 (the readers'
consensus nodules, measured) has its DICOM SEG, TID 1500 SR and Encapsulated PDF listed by QIDO-RS as series
of the study and retrieved by WADO-RS with dicomweb-client: the SEG opens with highdicom against the CT
series read from the same server, the SR with highdicom.sr, the PDF is the signed PDF byte for byte. They are
the objects sent to the PACS (same UIDs on every call and in the send); after a STOW-RS send to Orthanc,
Orthanc's DICOMweb and the portal's list the same series. Same auth and scoping as the originals."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from requests import HTTPError
from rest_framework_simplejwt.tokens import RefreshToken

from annotation import services as annotation_services
from diagnosis import services
from diagnosis.models import Measurement, ResultSend
from diagnosis.pacs.pdf import ENCAPSULATED_PDF_SOP_CLASS_UID
from tests.conftest import shared_data
from tests.diagnosis.orthanc import orthanc_start
from tests.diagnosis.test_pacs_results import (  # noqa: F401 - lidc_measured and pacs are fixtures
    SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, _run_queued, lidc_measured, pacs,
)

pytestmark = pytest.mark.django_db(transaction=True)

RESULT_MODALITIES = {"SEG", "SR", "DOC"}


def _client(live_server, user=None) -> DICOMwebClient:
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"} if user else {}
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", headers=headers)


def _sign(doctor, segmentation):
    report = services.report_create_draft(user=doctor, study=segmentation.series.study, segmentation=segmentation)
    services.report_update(user=doctor, report=report, impression="Nodule of the right upper lobe.")
    return services.report_finalize(user=doctor, report=report)


@pytest.fixture
def signed(doctor, lidc_measured):
    """The signed report of a hospital without a PACS destination (nothing is sent anywhere)."""
    report = _sign(doctor, lidc_measured)
    assert report.result_sends.get().state == ResultSend.State.NO_DESTINATION
    return report


def _series(client, study_uid) -> dict[str, pydicom.Dataset]:
    """The study's series found by QIDO-RS, by modality."""
    found = [pydicom.Dataset.from_json(s) for s in client.search_for_series(study_instance_uid=study_uid)]
    assert len({s.Modality for s in found}) == len(found)
    return {s.Modality: s for s in found}


def test_the_seg_sr_and_pdf_are_series_of_the_study_with_stable_uids(live_server, doctor, signed):
    client = _client(live_server, doctor)
    study_uid = signed.study.study_instance_uid

    first = _series(client, study_uid)
    again = _series(client, study_uid)

    assert set(first) == {"CT"} | RESULT_MODALITIES
    assert {m: s.SeriesInstanceUID for m, s in first.items()} == {m: s.SeriesInstanceUID for m, s in again.items()}
    assert all(first[m].NumberOfSeriesRelatedInstances == 1 for m in RESULT_MODALITIES)
    assert first["CT"].NumberOfSeriesRelatedInstances == 133
    # The objects served are those stored for the PACS, on the report's send row.
    [send] = signed.result_sends.all()
    stored = {item["kind"]: item for item in send.instances}
    assert {first[m].SeriesInstanceUID for m in RESULT_MODALITIES} == {i["series_instance_uid"] for i in stored.values()}
    instances = {pydicom.Dataset.from_json(i).SOPInstanceUID for m in RESULT_MODALITIES
                 for i in client.search_for_instances(study_instance_uid=study_uid,
                                                      series_instance_uid=first[m].SeriesInstanceUID)}
    assert instances == {i["sop_instance_uid"] for i in stored.values()}
    # Study level and searches across studies count them too, once stored.
    [study] = [pydicom.Dataset.from_json(s) for s in client.search_for_studies()]
    assert study.NumberOfStudyRelatedSeries == 4 and study.NumberOfStudyRelatedInstances == 136
    assert set(study.ModalitiesInStudy) == {"CT"} | RESULT_MODALITIES
    across = [pydicom.Dataset.from_json(s) for s in client.search_for_series(search_filters={"Modality": "SEG"})]
    assert [s.SeriesInstanceUID for s in across] == [first["SEG"].SeriesInstanceUID]
    page = client.search_for_series(study_instance_uid=study_uid, limit=2, offset=2)
    assert [pydicom.Dataset.from_json(s).Modality for s in page] == [
        m.Modality for m in list(again.values())[2:4]]


def test_the_seg_read_back_opens_with_highdicom_against_the_source_series(live_server, doctor, signed, lidc_measured):
    import highdicom as hd

    client = _client(live_server, doctor)
    study_uid = signed.study.study_instance_uid
    series = _series(client, study_uid)

    [seg_ds] = client.retrieve_series(study_uid, series["SEG"].SeriesInstanceUID)
    seg = hd.seg.Segmentation.from_dataset(seg_ds)
    ct_uids = {pydicom.Dataset.from_json(i).SOPInstanceUID for i in client.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=series["CT"].SeriesInstanceUID, limit=1000)}
    references = seg.get_source_image_uids()

    assert seg.SOPClassUID == SEG_SOP_CLASS_UID
    assert {series_uid for _study, series_uid, _sop in references} == {series["CT"].SeriesInstanceUID}
    assert {sop for _study, _series_uid, sop in references} <= ct_uids  # every frame refers to a served CT slice
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[sop for _s, _r, sop in references])
    stored = annotation_services.segmentation_labelmap_load(lidc_measured)
    assert int((pixels > 0).sum()) == int((stored > 0).sum())
    measured = Measurement.objects.filter(segmentation=lidc_measured, voxel_count__gt=0)
    assert int((pixels > 0).sum()) == sum(m.voxel_count for m in measured)
    # Metadata without the frames; one frame rendered as a black-and-white PNG.
    [metadata] = client.retrieve_series_metadata(study_uid, series["SEG"].SeriesInstanceUID)
    assert "7FE00010" not in metadata and metadata["00080060"]["Value"] == ["SEG"]
    png = client.retrieve_instance_frames_rendered(study_uid, series["SEG"].SeriesInstanceUID, seg.SOPInstanceUID,
                                                   frame_numbers=[1], media_types=("image/png",))
    frame = np.asarray(Image.open(io.BytesIO(png)))
    assert set(np.unique(frame)) <= {0, 255} and frame.max() == 255
    [raw] = client.retrieve_instance_frames(study_uid, series["SEG"].SeriesInstanceUID, seg.SOPInstanceUID,
                                            frame_numbers=[1])
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:seg.Rows * seg.Columns]
    assert np.array_equal(bits.reshape(seg.Rows, seg.Columns), seg.get_stored_frame(1).astype(np.uint8))


def test_the_sr_reads_with_highdicom_sr_and_the_pdf_is_the_signed_pdf(live_server, doctor, signed, lidc_measured):
    import highdicom as hd

    client = _client(live_server, doctor)
    study_uid = signed.study.study_instance_uid
    series = _series(client, study_uid)

    [sr_ds] = client.retrieve_series(study_uid, series["SR"].SeriesInstanceUID)
    [pdf_ds] = client.retrieve_series(study_uid, series["DOC"].SeriesInstanceUID)
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_ds)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    rows = Measurement.objects.filter(segmentation=lidc_measured, voxel_count__gt=0)
    seg_uid = pydicom.Dataset.from_json(client.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=series["SEG"].SeriesInstanceUID)[0]).SOPInstanceUID
    with signed.pdf_file.open("rb") as fh:
        signed_pdf = fh.read()

    assert sr_ds.SOPClassUID == SR_SOP_CLASS_UID and len(groups) == rows.count() > 0
    assert {g.referenced_segment.referenced_sop_instance_uid for g in groups} == {seg_uid}
    assert pdf_ds.SOPClassUID == ENCAPSULATED_PDF_SOP_CLASS_UID
    assert bytes(pdf_ds.EncapsulatedDocument)[:pdf_ds.EncapsulatedDocumentLength] == signed_pdf
    rendered = client.retrieve_instance_rendered(study_uid, series["DOC"].SeriesInstanceUID, pdf_ds.SOPInstanceUID,
                                                 media_types=("application/pdf",))
    assert rendered == signed_pdf


def test_a_result_that_is_not_an_image_has_no_frames_and_an_sr_is_not_rendered(live_server, doctor, signed):
    client = _client(live_server, doctor)
    study_uid = signed.study.study_instance_uid
    sr_series = _series(client, study_uid)["SR"].SeriesInstanceUID
    sr_uid = pydicom.Dataset.from_json(client.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=sr_series)[0]).SOPInstanceUID
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(doctor).access_token}"}
    base = f"{live_server.url}/dicomweb/studies/{study_uid}/series/{sr_series}/instances"

    frames = requests.get(f"{base}/{sr_uid}/frames/1", headers=headers, timeout=30)
    rendered = requests.get(f"{base}/{sr_uid}/rendered", headers=headers, timeout=30)
    unknown = requests.get(f"{base}/1.2.3.4", headers=headers, timeout=30)

    assert (frames.status_code, frames.json()["error"]["code"]) == (400, "no_pixel_data")
    assert (rendered.status_code, rendered.json()["error"]["code"]) == (400, "not_renderable")
    assert unknown.status_code == 404
    assert signed.result_sends.get().instances  # nothing stored was harmed


def test_results_follow_the_originals_scoping(live_server, doctor, other_doctor, patient_user, annotator, signed):
    study_uid = signed.study.study_instance_uid
    seg_series = _series(_client(live_server, doctor), study_uid)["SEG"].SeriesInstanceUID

    for user, status in ((other_doctor, 404), (patient_user, 403), (annotator, 403), (None, 401)):
        with pytest.raises(HTTPError) as excinfo:
            _client(live_server, user).retrieve_series(study_uid, seg_series)
        assert excinfo.value.response.status_code == status, user
    assert _client(live_server, other_doctor).search_for_series(search_filters={"Modality": "SEG"}) == []


def test_orthanc_and_the_portal_list_the_same_series_after_the_results_were_sent(
        live_server, doctor, hospital, lidc_measured, tmp_path, monkeypatch):
    from diagnosis.services import pacs as pacs_services

    orthanc = orthanc_start(tmp_path / "orthanc", dicomweb=True)
    try:
        orthanc.upload(*sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm")))
        annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC-WEB", stow_url=orthanc.dicomweb_url)
        monkeypatch.setattr(pacs_services, "_enqueue", lambda ids: None)  # run the send here, not in a worker
        report = _sign(doctor, lidc_measured)
        [send] = _run_queued(report)
        assert send.state == ResultSend.State.SENT, send.last_error
        study_uid = report.study.study_instance_uid

        def listing(client):
            return sorted((s.SeriesInstanceUID, s.Modality, int(s.NumberOfSeriesRelatedInstances))
                          for s in (pydicom.Dataset.from_json(d)
                                    for d in client.search_for_series(study_instance_uid=study_uid)))

        ours, theirs = listing(_client(live_server, doctor)), listing(DICOMwebClient(url=orthanc.dicomweb_url))
    finally:
        orthanc.stop()

    assert ours == theirs
    assert sorted(m for _uid, m, _n in ours) == ["CT", "DOC", "SEG", "SR"]
    assert {uid for uid, m, _n in ours if m != "CT"} == {i["series_instance_uid"] for i in send.instances}


def test_objects_served_before_a_pacs_was_configured_are_those_sent_by_the_resend(
        live_server, doctor, hospital, signed, pacs, monkeypatch):
    from diagnosis.services import pacs as pacs_services

    client = _client(live_server, doctor)
    study_uid = signed.study.study_instance_uid
    served = {pydicom.Dataset.from_json(i).SOPInstanceUID for m in RESULT_MODALITIES
              for i in client.search_for_instances(study_instance_uid=study_uid, search_filters={"Modality": m})}
    scp = pacs()
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", host="127.0.0.1", port=scp.port)
    monkeypatch.setattr(pacs_services, "_enqueue", lambda ids: None)  # run the send here, not in a worker

    services.report_results_resend(user=doctor, report=signed)
    [send] = _run_queued(signed)

    assert send.state == ResultSend.State.SENT, send.last_error
    assert {str(ds.SOPInstanceUID) for ds in scp.received().values()} == served and len(served) == 3
