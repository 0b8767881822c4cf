"""Results back to the PACS by STOW-RS (issue 15, DICOM PS3.18 10.5): a signed report of LIDC-IDRI-0001 sends
its SEG, TID 1500 SR and Encapsulated PDF to Orthanc's DICOMweb plugin (Debian ``orthanc-dicomweb``), checked
through Orthanc's REST API; Orthanc down is a transient failure that is retried and succeeds once it is up; a
wrong URL path (HTTP 404) is a permanent failure, visible on the report, that harms nothing Orthanc already
holds. Then the portal as a DICOMweb peer of Orthanc: a series STOW-RS-sent from the portal's originals is
found by QIDO-RS in Orthanc with the same study, series and instance attributes as the portal's own QIDO-RS
answers. The STOW-RS client's handling of HTTP answers Orthanc cannot be made to give (503, 429, 401, a
Failed SOP Sequence) is checked against a small loopback HTTP server."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation import services as annotation_services
from annotation.models import DicomPeer
from diagnosis.models import ResultSend
from diagnosis.pacs.pdf import ENCAPSULATED_PDF_SOP_CLASS_UID
from diagnosis.pacs.scu import StoreError
from diagnosis.pacs.stow import StowDestination, stow_instances
from diagnosis.services.pacs import RETRYABLE_ERRORS
from portal.api_errors import ServiceError
from tests.conftest import shared_data
from tests.diagnosis.orthanc import free_port, orthanc_start
from tests.diagnosis.test_pacs_results import (  # noqa: F401 - fixtures
    SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, _run_queued, _sign, lidc_measured,
)
from tests.helpers import api_client, contiguous_slices

RESULT_CLASSES = {SEG_SOP_CLASS_UID, SR_SOP_CLASS_UID, ENCAPSULATED_PDF_SOP_CLASS_UID}


@pytest.fixture
def orthanc_web(tmp_path):
    """Orthanc with its DICOMweb plugin at ``/dicom-web``, holding three slices of the LIDC CT as the
    hospital's PACS already had them (skipped when the plugin is not installed)."""
    server = orthanc_start(tmp_path / "orthanc", dicomweb=True)
    server.upload(*contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 3))
    yield server
    server.stop()


def _stored(server) -> dict[str, dict]:
    """Orthanc's instances by SOP Instance UID, with their main tags."""
    tags = [server.get(f"/instances/{i}/simplified-tags") for i in server.get("/instances")]
    return {t["SOPInstanceUID"]: t for t in tags}


@pytest.mark.django_db
def test_signed_results_arrive_in_orthanc_by_stow_rs_and_a_wrong_path_fails_for_good(
        doctor, hospital, lidc_measured, orthanc_web, django_capture_on_commit_callbacks, settings):
    settings.PACS_SEND_MAX_RETRIES = 2
    before = _stored(orthanc_web)
    good = annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC-WEB",
                                                 stow_url=orthanc_web.dicomweb_url + "/")
    assert good.transport == DicomPeer.Transport.STOW_RS and good.stow_url == orthanc_web.dicomweb_url
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="WRONG-PATH",
                                          stow_url=f"http://127.0.0.1:{orthanc_web.http_port}/not-dicom-web")
    report, callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)
    assert len(callbacks) == 2

    sent, wrong = _run_queued(report)

    assert (sent.state, sent.attempts, sent.error_code) == ("sent", 1, ""), sent.last_error
    assert sent.destination == f"STOW-RS {orthanc_web.dicomweb_url}"
    stored = _stored(orthanc_web)
    results = {item["sop_instance_uid"] for item in sent.instances}
    assert set(stored) == set(before) | results  # the results, and what it held before, untouched
    assert {stored[uid]["SOPClassUID"] for uid in results} == RESULT_CLASSES
    study_uid = lidc_measured.series.study.study_instance_uid
    assert {stored[uid]["StudyInstanceUID"] for uid in results} == {study_uid}  # filed with the CT
    assert len(orthanc_web.get("/studies")) == 1
    # The wrong path: Orthanc answers 404; not retried, the reason on the row and in the API.
    assert (wrong.state, wrong.error_code, wrong.attempts, wrong.last_status) == ("failed", "stow_rejected", 1, 404)
    assert "stow_rejected" not in RETRYABLE_ERRORS and "404" in wrong.last_error
    listed = api_client(doctor).get(reverse("report-pacs-sends", args=[report.pk])).json()
    assert [(s["state"], s["error_code"]) for s in listed] == [("sent", ""), ("failed", "stow_rejected")]
    report.refresh_from_db()
    assert report.status == "final" and report.pdf_file


@pytest.mark.django_db
def test_orthanc_down_is_retried_and_the_send_succeeds_once_it_is_up(
        doctor, hospital, lidc_measured, django_capture_on_commit_callbacks, settings, tmp_path):
    settings.PACS_SEND_MAX_RETRIES = 1
    http_port = free_port()  # nothing listens there yet
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC-WEB",
                                          stow_url=f"http://127.0.0.1:{http_port}/dicom-web")
    report, _callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)

    [down] = _run_queued(report)

    assert (down.state, down.error_code, down.attempts) == ("failed", "peer_unreachable", 2)  # 1 + 1 retry
    assert "peer_unreachable" in RETRYABLE_ERRORS and "refused" in down.last_error.lower()
    server = orthanc_start(tmp_path / "orthanc", dicomweb=True, http_port=http_port)
    try:
        from diagnosis import services

        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.report_results_resend(user=doctor, report=report)
        assert len(callbacks) == 1
        [up] = _run_queued(report)
        assert (up.state, up.attempts, up.error_code) == ("sent", 3, "")
        assert set(_stored(server)) == {item["sop_instance_uid"] for item in down.instances}  # the same objects
    finally:
        server.stop()


@pytest.mark.django_db
def test_a_retry_is_scheduled_on_the_row_for_a_transient_failure(
        doctor, hospital, lidc_measured, django_capture_on_commit_callbacks, settings, monkeypatch):
    """The task notes the next attempt (``retry_at``) before asking Celery for the retry."""
    from diagnosis.tasks import result_send_task

    settings.PACS_SEND_MAX_RETRIES = 1
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="DOWN",
                                          stow_url=f"http://127.0.0.1:{free_port()}/dicom-web")
    report, _callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)
    [send] = report.result_sends.all()
    seen = {}

    def retry(*args, **kwargs):
        send.refresh_from_db()
        seen.update(state=send.state, retry_at=send.retry_at, countdown=kwargs.get("countdown"))
        raise RuntimeError("retry requested")

    monkeypatch.setattr(result_send_task, "retry", retry)
    with contextlib.suppress(RuntimeError):
        result_send_task.apply(args=[send.pk])

    assert seen["state"] == "failed" and seen["retry_at"] is not None and seen["countdown"] > 0


@pytest.mark.django_db
def test_a_missing_secret_variable_fails_without_sending(doctor, hospital, lidc_measured,
                                                         django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.delenv("YIXIN_TEST_STOW_TOKEN", raising=False)
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="SECURED", stow_url="http://127.0.0.1:9/dw",
                                          stow_secret_env="YIXIN_TEST_STOW_TOKEN")
    report, _callbacks = _sign(doctor, lidc_measured, django_capture_on_commit_callbacks)

    [send] = _run_queued(report)

    assert (send.state, send.error_code, send.attempts) == ("failed", "stow_secret_missing", 1)


@pytest.mark.django_db
def test_dicom_peer_add_takes_a_stow_url_and_refuses_credentials_in_it(hospital, capsys):
    call_command("dicom_peer", "add", "--hospital", hospital.code, "--ae-title", "WEBPACS",
                 "--stow-url", "https://pacs.example.org/dicom-web", "--stow-user", "yixin",
                 "--stow-secret-env", "PACS_STOW_PASSWORD")
    printed = json.loads(capsys.readouterr().out)
    assert printed["transport"] == "stow_rs" and printed["stow_url"] == "https://pacs.example.org/dicom-web"
    peer = DicomPeer.objects.get(ae_title="WEBPACS")
    assert (peer.stow_user, peer.stow_secret_env, peer.host, peer.port) == ("yixin", "PACS_STOW_PASSWORD", "", None)
    with pytest.raises(ServiceError) as excinfo:
        annotation_services.dicom_peer_create(hospital=hospital, ae_title="LEAKY",
                                              stow_url="https://user:secret@pacs.example.org/dicom-web")
    assert excinfo.value.code == "stow_url_credentials"
    with pytest.raises(ServiceError) as excinfo:
        annotation_services.dicom_peer_create(hospital=hospital, ae_title="NOURL", host="127.0.0.1", port=104,
                                              transport="stow_rs")
    assert excinfo.value.code == "stow_needs_url"


# --- the portal as a DICOMweb peer of Orthanc -----------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_series_stow_rs_sent_to_orthanc_qido_searches_like_the_portals_own(live_server, doctor, hospital,
                                                                             tmp_path):
    from dicomweb_client.api import DICOMwebClient
    from rest_framework_simplejwt.tokens import RefreshToken

    files = contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 5)
    series = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                              paths=files).series[0]
    originals = []
    for source in series.source_files.all():
        with source.file.open("rb") as fh:
            originals.append(pydicom.dcmread(fh))
    server = orthanc_start(tmp_path / "orthanc", dicomweb=True)
    try:
        stored = stow_instances(originals, StowDestination(base_url=server.dicomweb_url, timeout_s=30))
        assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in originals)

        orthanc = DICOMwebClient(url=server.dicomweb_url)
        portal = DICOMwebClient(url=f"{live_server.url}/dicomweb", headers={
            "Authorization": f"Bearer {RefreshToken.for_user(doctor).access_token}"})
        study_uid, series_uid = series.study.study_instance_uid, series.series_instance_uid

        def both(search, keywords, **kwargs):
            found = [[pydicom.Dataset.from_json(item) for item in client_search(**kwargs)]
                     for client_search in (getattr(orthanc, search), getattr(portal, search))]
            return [sorted(([str(ds.get(k, "")) for k in keywords] for ds in datasets)) for datasets in found]

        study_keys = ["StudyInstanceUID", "PatientID", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
                      "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
        at_orthanc, at_portal = both("search_for_studies", study_keys, search_filters={"StudyInstanceUID": study_uid})
        assert at_orthanc == at_portal and len(at_portal) == 1 and at_portal[0][-1] == "5"
        series_keys = ["SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
        at_orthanc, at_portal = both("search_for_series", series_keys, study_instance_uid=study_uid)
        assert at_orthanc == at_portal and at_portal == [[series_uid, "CT", str(series.series_number), "5"]]
        instance_keys = ["SOPInstanceUID", "SOPClassUID", "InstanceNumber"]
        at_orthanc, at_portal = both("search_for_instances", instance_keys, study_instance_uid=study_uid,
                                     series_instance_uid=series_uid)
        assert at_orthanc == at_portal and len(at_portal) == 5
    finally:
        server.stop()


# --- the STOW-RS client against answers Orthanc does not give -----------------------------------------

class _Answer(BaseHTTPRequestHandler):
    status = 200
    body: dict = {}
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        type(self).seen.append((self.path, dict(self.headers), self.rfile.read(length)))
        payload = json.dumps(type(self).body).encode()
        self.send_response(type(self).status)
        if type(self).status in (301, 302, 303, 307, 308):
            self.send_header("Location", "http://elsewhere.invalid/studies")
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering():
    """A loopback HTTP server answering every POST with ``_Answer.status`` and ``_Answer.body``."""
    _Answer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_slices():
    return [pydicom.dcmread(p) for p in contiguous_slices(shared_data("lidc_idri_0001_ct_nodules", "dicom"), 2)]


def _failed(uid: str, reason: int) -> dict:
    return {"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [uid]},
                                                  "00081197": {"vr": "US", "Value": [reason]}}]}}


@pytest.mark.parametrize(("status", "code"), [(503, "stow_unavailable"), (500, "stow_unavailable"),
                                              (429, "stow_unavailable"), (408, "stow_unavailable"),
                                              (401, "stow_rejected"), (409, "stow_rejected"),
                                              (302, "stow_rejected"), (307, "stow_rejected")])
def test_http_errors_are_transient_or_permanent(answering, two_slices, status, code):
    _Answer.status, _Answer.body = status, {}
    with pytest.raises(StoreError) as excinfo:
        stow_instances(two_slices, StowDestination(base_url=f"http://127.0.0.1:{answering.server_port}/dw"))
    assert (excinfo.value.code, excinfo.value.status) == (code, status)
    assert (code in RETRYABLE_ERRORS) == (status in (408, 429) or status >= 500)
    assert len(_Answer.seen) == 1  # a redirect is not followed


@pytest.mark.parametrize(("reason", "code"), [(0xA700, "store_failed"), (0x0122, "sop_class_not_accepted")])
def test_a_failed_sop_sequence_fails_the_send_with_its_reason(answering, two_slices, reason, code):
    _Answer.status, _Answer.body = 202, _failed(str(two_slices[1].SOPInstanceUID), reason)
    with pytest.raises(StoreError) as excinfo:
        stow_instances(two_slices, StowDestination(base_url=f"http://127.0.0.1:{answering.server_port}/dw"))
    assert (excinfo.value.code, excinfo.value.status) == (code, reason)
    assert str(two_slices[1].SOPInstanceUID) in excinfo.value.message


def test_the_request_is_multipart_related_dicom_with_the_credentials_kept_out_of_errors(answering, two_slices):
    _Answer.status, _Answer.body = 400, {}
    destination = StowDestination(base_url=f"http://127.0.0.1:{answering.server_port}/dw/", username="yixin",
                                  password="s3cret-pw")
    with pytest.raises(StoreError) as excinfo:
        stow_instances(two_slices, destination)
    [(path, headers, body)] = _Answer.seen
    assert path == "/dw/studies"
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    assert headers["Authorization"].startswith("Basic ") and headers["Accept"] == "application/dicom+json"
    assert body.count(b"Content-Type: application/dicom\r\n") == 2 and b"DICM" in body
    assert "s3cret-pw" not in excinfo.value.message and "s3cret-pw" not in repr(destination)
    token = StowDestination(base_url=destination.base_url, token="tok-123")
    with pytest.raises(StoreError):
        stow_instances(two_slices, token)
    assert _Answer.seen[1][1]["Authorization"] == "Bearer tok-123"
