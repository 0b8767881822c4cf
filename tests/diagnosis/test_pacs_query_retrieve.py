"""A patient's priors from the hospital's PACS (issue 15): Orthanc plays the PACS, holding the real
TCIA Brain-Tumor-Progression MR of PGBM-002 (22 slices) and the dcmqi CT of another patient; the portal's
own DICOM service (C-STORE SCP and the series-completion thread, as ``dicom_listener`` runs them) is the
C-MOVE destination that Orthanc knows. Find lists the study; retrieve files it into the patient and
hospital through the listener's import; a second retrieve adds nothing; failures are clear and harm nothing."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from django.test import Client
from django.urls import reverse
from django.utils.translation import override as translation_override

from annotation import services as annotation_services
from annotation.dicomnet.spool import SeriesSpool
from annotation.models import DicomPeer, Patient, Series, SourceFile, Study
from diagnosis import services
from diagnosis.models import PriorRetrieve
from diagnosis.tasks import pacs_retrieve_task
from portal.api_errors import ServiceError
from portal.models import AuditLog
from tests.annotation.dicomnet.conftest import RunningListener
from tests.conftest import shared_data
from tests.diagnosis.orthanc import Orthanc, free_port, orthanc_start
from tests.helpers import api_client

OUR_AE = "YIXIN_QR"
IT_AE = "HOSPITAL_IT"  # a hospital IT workstation the PACS knows (it runs dcmtk's findscu and movescu)
MR_STUDY_UID = "1.3.6.1.4.1.14519.5.2.1.4429.7055.290332099546120305394775536058"
MR_FILES = sorted(shared_data("tcia_brain_tumor_progression_mr_dicom").rglob("*.dcm"))
OTHER_PATIENTS_CT = sorted(shared_data("dcmqi_ct_dicom_seg", "ct").glob("*.dcm"))
# The DICOM service imports in its own thread and connection: the test's rows must be committed.
with_listener = pytest.mark.django_db(transaction=True)


@dataclass
class Pacs:
    orthanc: Orthanc
    listener: RunningListener
    service: object  # the running DicomListener
    peer: DicomPeer
    queued: list[int]


@pytest.fixture
def queued(monkeypatch):
    """The retrieve tasks enqueued on commit (run by hand with ``.apply``, as the worker would)."""
    ids: list[int] = []
    monkeypatch.setattr(pacs_retrieve_task, "delay", ids.append)
    return ids


@pytest.fixture
def pacs(tmp_path, transactional_db, hospital, settings, queued):
    """Orthanc as the hospital's query/retrieve source, knowing the portal's AE title ``YIXIN_QR`` at the
    running DICOM service's port; loaded with the MR of PGBM-002 and another patient's CT."""
    settings.DICOM_AE_TITLE = OUR_AE
    settings.PACS_SEND_TIMEOUT_S = 15.0
    port = free_port()
    orthanc = orthanc_start(tmp_path / "orthanc",
                            modalities={"yixin": {"AET": OUR_AE, "Host": "127.0.0.1", "Port": port},
                                        "it": {"AET": IT_AE, "Host": "127.0.0.1", "Port": free_port()}})
    spool = SeriesSpool(tmp_path / "spool")
    running = annotation_services.dicom_listener_build(ae_title=OUR_AE, port=port, host="127.0.0.1", spool=spool).start()
    stop = threading.Event()
    completion = annotation_services.dicom_completion_start(spool=spool, stop=stop, quiet_s=1.0, poll_s=0.2)
    try:
        orthanc.upload(*MR_FILES, *OTHER_PATIENTS_CT)
        peer = annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC", host="127.0.0.1",
                                                     port=orthanc.dicom_port, query_retrieve=True)
        yield Pacs(orthanc, RunningListener(ae_title=OUR_AE, port=port, spool=spool), running, peer, queued)
    finally:
        stop.set()
        running.stop()
        completion.join(timeout=60)
        orthanc.stop()


@pytest.fixture
def patient(hospital):
    """PGBM-002 as the portal knows them: the MRN is the PACS's Patient ID; no study held yet."""
    return annotation_services.patient_get_or_create(hospital=hospital, mrn="PGBM-002")


def _retrieve(pacs: Pacs, user, patient) -> PriorRetrieve:
    retrieve = services.pacs_study_retrieve(user=user, patient=patient, study_instance_uid=MR_STUDY_UID)
    assert pacs.queued[-1] == retrieve.pk
    pacs_retrieve_task.apply(args=[pacs.queued.pop()])
    pacs.listener.wait_idle()
    retrieve.refresh_from_db()
    return retrieve


@with_listener
def test_find_lists_the_patients_study_and_retrieve_files_it_once(doctor, hospital, patient, pacs):
    [found] = services.pacs_priors_find(user=doctor, patient=patient)  # not the other patient's CT

    assert found.study_instance_uid == MR_STUDY_UID and not found.held
    assert (str(found.study_date), found.modalities, found.instances) == ("2020-01-19", ("MR",), len(MR_FILES))
    assert AuditLog.objects.filter(target_type="patient", target_id=str(patient.pk),
                                   detail__pacs_find="ORTHANC", detail__studies=1).exists()

    retrieve = _retrieve(pacs, doctor, patient)

    assert (retrieve.state, retrieve.completed, retrieve.failed, retrieve.warning, retrieve.last_status) == (
        "completed", len(MR_FILES), 0, 0, 0x0000)
    study = Study.objects.get(study_instance_uid=MR_STUDY_UID)
    assert (study.hospital, study.patient) == (hospital, patient)  # filed into the patient's hospital
    [series] = study.series.all()
    assert (series.modality, series.instance_count, series.source_format) == ("MR", len(MR_FILES), "dicom")
    assert SourceFile.objects.filter(series=series).count() == len(MR_FILES)
    # The listener's import path: audited as a received series from the PACS's AE title.
    assert AuditLog.objects.filter(target_type="dicom_receive", target_id=str(series.pk),
                                   detail__calling_ae_title="ORTHANC").exists()
    [found] = services.pacs_priors_find(user=doctor, patient=patient)
    assert found.held and found.held_study_id == study.pk

    again = _retrieve(pacs, doctor, patient)

    assert again.pk != retrieve.pk and again.state == "completed"  # the PACS sent it again ...
    assert Series.objects.filter(hospital=hospital).count() == 1  # ... and the import refused the copy
    assert SourceFile.objects.filter(hospital=hospital).count() == len(MR_FILES)
    [refused] = list((Path(pacs.listener.spool.root) / "failed").iterdir())
    assert (refused / "reason.txt").read_text().startswith("series_exists")
    assert Patient.objects.filter(hospital=hospital).count() == 1


@with_listener
def test_hospital_it_finds_with_dcmtk_findscu_and_pushes_the_study_with_movescu(hospital, patient, pacs):
    """What hospital IT does by hand with dcmtk: find the patient's study in the PACS with ``findscu`` and have
    the PACS move it to the portal's AE with ``movescu``; the portal files it like any received series."""
    import subprocess

    from tests.annotation.dicomnet.conftest import dcmtk

    address = ["127.0.0.1", str(pacs.orthanc.dicom_port)]
    found = subprocess.run([dcmtk("findscu"), "-S", "-aet", IT_AE, "-aec", "ORTHANC", "-k", "QueryRetrieveLevel=STUDY",
                            "-k", "PatientID=PGBM-002", "-k", "StudyInstanceUID", *address],
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert MR_STUDY_UID in found.stdout + found.stderr  # findscu prints the responses on its log

    moved = subprocess.run([dcmtk("movescu"), "-S", "-aet", IT_AE, "-aec", "ORTHANC", "-aem", OUR_AE,
                            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={MR_STUDY_UID}", *address],
                           capture_output=True, text=True, timeout=120)
    assert moved.returncode == 0, moved.stderr
    pacs.listener.wait_idle()

    study = Study.objects.get(study_instance_uid=MR_STUDY_UID)
    assert (study.hospital, study.patient) == (hospital, patient)
    [series] = study.series.all()
    assert (series.modality, series.instance_count) == ("MR", len(MR_FILES))
    assert AuditLog.objects.filter(target_type="dicom_receive", target_id=str(series.pk),
                                   detail__calling_ae_title="ORTHANC").exists()


@with_listener
def test_an_unknown_or_another_patients_study_is_refused_before_anything_is_queued(doctor, patient, pacs):
    other_ct_uid = str(pydicom.dcmread(OTHER_PATIENTS_CT[0], stop_before_pixels=True).StudyInstanceUID)
    for uid in ("1.2.826.0.1.3680043.8.498.1", other_ct_uid):
        with pytest.raises(ServiceError) as refused:
            services.pacs_study_retrieve(user=doctor, patient=patient, study_instance_uid=uid)
        assert (refused.value.code, refused.value.status_code) == ("study_not_in_pacs", 404)
    with pytest.raises(ServiceError) as refused:
        services.pacs_study_retrieve(user=doctor, patient=patient, study_instance_uid="1.2.x'; --")
    assert refused.value.code == "invalid_study_uid"
    assert pacs.queued == [] and not PriorRetrieve.objects.exists() and not Study.objects.exists()


@with_listener
def test_a_wrong_ae_title_and_a_stopped_dicom_service_fail_clearly(doctor, patient, pacs):
    DicomPeer.objects.filter(pk=pacs.peer.pk).update(ae_title="NOT-ORTHANC")
    with pytest.raises(ServiceError) as refused:
        services.pacs_priors_find(user=doctor, patient=patient)
    assert (refused.value.code, refused.value.status_code) == ("association_rejected_permanent", 502)
    DicomPeer.objects.filter(pk=pacs.peer.pk).update(ae_title="ORTHANC")
    retrieve = services.pacs_study_retrieve(user=doctor, patient=patient, study_instance_uid=MR_STUDY_UID)
    pacs.service.stop()  # the portal's DICOM service is down: Orthanc cannot store a single instance

    pacs_retrieve_task.apply(args=[pacs.queued.pop()])

    retrieve.refresh_from_db()
    # Orthanc cannot open the sub-association: "unable to process" (PS3.4 Table C.4-2), nothing stored.
    assert (retrieve.state, retrieve.error_code, retrieve.last_status) == ("failed", "move_failed", 0xC000)
    assert (retrieve.completed, retrieve.warning) == (0, 0) and "0xC000" in retrieve.last_error
    assert not Study.objects.exists()


# --- the patient page -------------------------------------------------------------------------------

def _csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@with_listener
def test_the_patient_page_finds_and_retrieves_with_csrf(doctor, patient, pacs):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(doctor)
    page_url = reverse("patient-timeline", args=[patient.pk])
    with translation_override("en"):
        page = browser.get(page_url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="pacs-find"' in page and "Find priors in PACS" in page and 'id="pacs-studies"' not in page

    listed = browser.get(page_url + "?pacs=1").content.decode()

    assert f'data-uid="{MR_STUDY_UID}" data-held="no"' in listed
    retrieve_url = reverse("patient-pacs-retrieve", args=[patient.pk])
    assert f'action="{retrieve_url}"' in listed
    assert browser.post(retrieve_url, {"study_instance_uid": MR_STUDY_UID}).status_code == 403  # no CSRF token
    assert pacs.queued == []
    response = browser.post(retrieve_url, {"study_instance_uid": MR_STUDY_UID,
                                           "csrfmiddlewaretoken": _csrf_token(listed)})
    assert response.status_code == 302 and response["Location"].endswith("?pacs=1#pacs-priors")
    pacs_retrieve_task.apply(args=[pacs.queued.pop()])
    pacs.listener.wait_idle()

    after = browser.get(page_url + "?pacs=1").content.decode()
    study = Study.objects.get(study_instance_uid=MR_STUDY_UID)
    assert f'data-uid="{MR_STUDY_UID}" data-held="yes"' in after
    assert reverse("annotation:study-detail", args=[study.pk]) in after
    assert 'class="pacs-retrieve" data-state="completed"' in after
    assert f'data-study="{study.pk}"' in after  # on the timeline itself


@with_listener
def test_another_hospitals_user_gets_404_and_an_annotator_403(doctor, other_doctor, annotator, patient, pacs):
    retrieve_url = reverse("patient-pacs-retrieve", args=[patient.pk])
    for user, status in ((other_doctor, 404), (annotator, 403)):
        browser = Client()
        browser.force_login(user)
        assert browser.get(reverse("patient-timeline", args=[patient.pk]) + "?pacs=1").status_code == status
        assert browser.post(retrieve_url, {"study_instance_uid": MR_STUDY_UID}).status_code == status
        client = api_client(user)
        assert client.get(reverse("patient-pacs-studies", args=[patient.pk])).status_code == status
        assert client.get(reverse("patient-pacs-retrieves", args=[patient.pk])).status_code == status
        assert client.post(reverse("patient-pacs-retrieves", args=[patient.pk]),
                           {"study_instance_uid": MR_STUDY_UID}, format="json").status_code == status
    assert pacs.queued == [] and not PriorRetrieve.objects.exists()
    assert not AuditLog.objects.filter(detail__pacs_find="ORTHANC").exists()


@with_listener
def test_the_api_finds_queues_and_lists_retrieves(doctor, patient, pacs, django_assert_max_num_queries):
    client = api_client(doctor)
    studies = client.get(reverse("patient-pacs-studies", args=[patient.pk]))
    assert studies.status_code == 200
    assert [(s["study_instance_uid"], s["modalities"], s["held"]) for s in studies.json()] == [
        (MR_STUDY_UID, ["MR"], False)]

    queued = client.post(reverse("patient-pacs-retrieves", args=[patient.pk]),
                         {"study_instance_uid": MR_STUDY_UID}, format="json")
    again = client.post(reverse("patient-pacs-retrieves", args=[patient.pk]),
                        {"study_instance_uid": MR_STUDY_UID}, format="json")

    assert queued.status_code == 202 and queued.json()["state"] == "queued"
    assert again.json()["id"] == queued.json()["id"] and pacs.queued == [queued.json()["id"]]  # not queued twice
    missing = client.post(reverse("patient-pacs-retrieves", args=[patient.pk]),
                          {"study_instance_uid": "1.2.826.0.1.3680043.8.498.1"}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "study_not_in_pacs"
    pacs_retrieve_task.apply(args=[pacs.queued.pop()])
    pacs.listener.wait_idle()
    with django_assert_max_num_queries(6):
        listed = client.get(reverse("patient-pacs-retrieves", args=[patient.pk])).json()
    assert [(r["state"], r["completed"], r["failed"], r["warning"], r["last_status"]) for r in listed] == [
        ("completed", len(MR_FILES), 0, 0, 0)]


# --- without a reachable PACS (no Orthanc: fast) ------------------------------------------------------

@pytest.mark.django_db
def test_an_unreachable_pacs_is_a_clear_error_and_queues_nothing(doctor, hospital, patient, client, settings, queued):
    settings.PACS_SEND_TIMEOUT_S = 5.0
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", host="127.0.0.1", port=free_port(),
                                          query_retrieve=True)
    for call in (lambda: services.pacs_priors_find(user=doctor, patient=patient),
                 lambda: services.pacs_study_retrieve(user=doctor, patient=patient, study_instance_uid=MR_STUDY_UID)):
        with pytest.raises(ServiceError) as refused:
            call()
        assert (refused.value.code, refused.value.status_code) == ("pacs_unreachable", 502)
    client.force_login(doctor)
    with translation_override("en"):
        page = client.get(reverse("patient-timeline", args=[patient.pk]) + "?pacs=1",
                          HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-error-code="pacs_unreachable"' in page and "cannot be reached" in page
    response = api_client(doctor).get(reverse("patient-pacs-studies", args=[patient.pk]))
    assert response.status_code == 502 and response.json()["error"]["code"] == "pacs_unreachable"
    assert queued == [] and not PriorRetrieve.objects.exists()


@pytest.mark.django_db
def test_without_a_query_retrieve_source_there_is_no_button(doctor, hospital, patient, client):
    annotation_services.dicom_peer_create(hospital=hospital, ae_title="CT1", host="127.0.0.1", port=free_port())
    client.force_login(doctor)
    page = client.get(reverse("patient-timeline", args=[patient.pk]) + "?pacs=1").content.decode()
    assert 'id="pacs-find"' not in page and 'id="pacs-error"' not in page
    with pytest.raises(ServiceError) as refused:
        services.pacs_priors_find(user=doctor, patient=patient)
    assert (refused.value.code, refused.value.status_code) == ("no_query_source", 409)
    with pytest.raises(ServiceError) as refused:
        annotation_services.dicom_peer_create(hospital=hospital, ae_title="PACS", query_retrieve=True)
    assert refused.value.code == "query_source_needs_address"


# --- C-GET: a PACS that cannot connect to the portal ------------------------------------------------

@pytest.fixture
def get_pacs(tmp_path, transactional_db, hospital, settings, queued):
    """Orthanc as the query/retrieve source, retrieved by C-GET: no DICOM service of the portal is running
    (the address Orthanc has for the portal's AE title answers nothing), so a C-MOVE could not deliver."""
    settings.DICOM_AE_TITLE = OUR_AE
    settings.PACS_SEND_TIMEOUT_S = 15.0
    settings.DICOM_SPOOL_DIR = tmp_path / "spool"
    orthanc = orthanc_start(tmp_path / "orthanc",
                            modalities={"yixin": {"AET": OUR_AE, "Host": "127.0.0.1", "Port": free_port()}})
    try:
        orthanc.upload(*MR_FILES, *OTHER_PATIENTS_CT)
        peer = annotation_services.dicom_peer_create(hospital=hospital, ae_title="ORTHANC", host="127.0.0.1",
                                                     port=orthanc.dicom_port, query_retrieve=True,
                                                     retrieve_method=DicomPeer.RetrieveMethod.C_GET)
        yield orthanc, peer
    finally:
        orthanc.stop()


def _get(queued, user, patient) -> PriorRetrieve:
    retrieve = services.pacs_study_retrieve(user=user, patient=patient, study_instance_uid=MR_STUDY_UID)
    assert queued[-1] == retrieve.pk
    pacs_retrieve_task.apply(args=[queued.pop()])
    retrieve.refresh_from_db()
    return retrieve


@with_listener
def test_c_get_retrieves_the_study_on_the_portals_own_association_and_files_it_once(
        doctor, hospital, patient, get_pacs, queued, settings):
    retrieve = _get(queued, doctor, patient)

    assert (retrieve.state, retrieve.completed, retrieve.failed, retrieve.warning, retrieve.last_status) == (
        "completed", len(MR_FILES), 0, 0, 0x0000)
    study = Study.objects.get(study_instance_uid=MR_STUDY_UID)
    assert (study.hospital, study.patient) == (hospital, patient)
    [series] = study.series.all()
    assert (series.modality, series.instance_count, series.source_format) == ("MR", len(MR_FILES), "dicom")
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in MR_FILES}
    assert set(SourceFile.objects.filter(series=series).values_list("sop_instance_uid", flat=True)) == originals
    # The import of a received series, audited under the PACS's AE title; the C-GET folder is gone.
    assert AuditLog.objects.filter(target_type="dicom_receive", target_id=str(series.pk),
                                   detail__calling_ae_title="ORTHANC").exists()
    spool_root = Path(settings.DICOM_SPOOL_DIR)
    assert not any((spool_root / "c-get").iterdir())

    again = _get(queued, doctor, patient)

    assert again.state == "completed" and Series.objects.filter(hospital=hospital).count() == 1
    assert SourceFile.objects.filter(hospital=hospital).count() == len(MR_FILES)
    [refused] = list((spool_root / "failed").iterdir())  # kept for IT, then removed by the retention
    assert (refused / "reason.txt").read_text().startswith("series_exists")
    assert not any((spool_root / "c-get").iterdir())


@with_listener
def test_c_get_from_a_pacs_that_rejects_the_association_fails_clearly_and_stores_nothing(
        doctor, patient, get_pacs, queued):
    _orthanc, peer = get_pacs
    retrieve = services.pacs_study_retrieve(user=doctor, patient=patient, study_instance_uid=MR_STUDY_UID)
    DicomPeer.objects.filter(pk=peer.pk).update(ae_title="NOT-ORTHANC")  # Orthanc checks the called AE title

    pacs_retrieve_task.apply(args=[queued.pop()])

    retrieve.refresh_from_db()
    assert (retrieve.state, retrieve.error_code) == ("failed", "association_rejected_permanent")
    assert (retrieve.completed, retrieve.failed) == (0, 0) and not Study.objects.exists()
