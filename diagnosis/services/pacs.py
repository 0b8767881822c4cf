"""Results back to the hospital's PACS: a signed report's DICOM SEG, Measurement Report SR (TID 1500)
and Encapsulated PDF, sent to the hospital's destination peers by C-STORE (PS3.4 B) or, for a peer
whose transport is STOW-RS, by STOW-RS to its DICOMweb base URL (PS3.18 10.5).

Signing queues one :class:`~diagnosis.models.ResultSend` per destination (a ``DicomPeer`` of the
report's hospital with a host and port, or a STOW-RS peer with a URL) and, once the transaction
commits, a Celery task per send (:func:`diagnosis.tasks.result_send_task`), which calls
:func:`result_send_execute` and retries with backoff. The three objects are built once per report and stored, so every attempt and every
destination gets the same SOP Instance UIDs. The plain-Python builders live in ``diagnosis.pacs``.

The same stored objects are served by the portal's DICOMweb as series of the study
(:func:`report_result_instances`, registered on ``annotation.hooks.dicomweb_result_instances``): what a
viewer reads from the portal is what the PACS received, with the same UIDs.
"""

from __future__ import annotations

import io
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.models import DicomPeer, Segmentation, Series
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import Measurement, Report, ResultSend

logger = logging.getLogger(__name__)

KINDS = ("seg", "sr", "pdf")


# --- queueing ---------------------------------------------------------------------------------------

def _destinations(report: Report) -> list[DicomPeer]:
    c_store = Q(transport=DicomPeer.Transport.C_STORE, port__isnull=False) & ~Q(host="")
    stow = Q(transport=DicomPeer.Transport.STOW_RS) & ~Q(stow_url="")
    return list(DicomPeer.objects.filter(hospital_id=report.study.hospital_id, is_active=True)
                .filter(c_store | stow).order_by("pk"))


def _destination_label(peer: DicomPeer) -> str:
    """Where a send goes, as shown and logged: ``AE@host:port`` or ``STOW-RS <url>`` (never credentials)."""
    if peer.transport == DicomPeer.Transport.STOW_RS:
        return f"STOW-RS {peer.stow_url}"[:300]
    return f"{peer.ae_title}@{peer.host}:{peer.port}"


def _enqueue(send_ids: list[int]) -> None:
    from ..tasks import result_send_task

    for send_id in send_ids:
        transaction.on_commit(lambda sid=send_id: result_send_task.delay(sid))


@transaction.atomic
def report_results_queue(*, report: Report) -> list[ResultSend]:
    """Queue the sending of a signed report's results to each destination of its hospital.

    With no destination, one ``no_destination`` row says so and nothing is sent. The tasks are
    enqueued once the surrounding transaction commits.
    """
    peers = _destinations(report)
    if not peers:
        return [ResultSend.objects.create(report=report, state=ResultSend.State.NO_DESTINATION)]
    sends = [ResultSend.objects.create(report=report, peer=peer, destination=_destination_label(peer))
             for peer in peers]
    _enqueue([s.pk for s in sends])
    return sends


@transaction.atomic
def report_results_resend(*, user: User, report: Report) -> list[ResultSend]:
    """Send a final report's results again: every send not yet delivered is queued again, and each
    destination configured since signing gets a send of its own.

    Raises
    ------
    ServiceError
        (409) ``report_not_final`` for a draft; (409) ``no_destination`` when the hospital has no
        destination peer with a host and port or a STOW-RS URL.
    """
    report = Report.objects.select_for_update().select_related("study").get(pk=report.pk)
    if report.status != Report.Status.FINAL:
        raise ServiceError(_("Only a signed report is sent to the PACS."), code="report_not_final", status_code=409)
    peers = _destinations(report)
    if not peers:
        raise ServiceError(_("No PACS destination is configured for this hospital."), code="no_destination",
                           status_code=409)
    sends = list(report.result_sends.select_for_update())
    # Objects already built (served by DICOMweb) stay those sent: their rows go, the objects move on.
    built = next((s.instances for s in sends if s.state == ResultSend.State.NO_DESTINATION and s.instances), [])
    ResultSend.objects.filter(pk__in=[s.pk for s in sends if s.state == ResultSend.State.NO_DESTINATION]).delete()
    queued = []
    for send in sends:
        if send.state == ResultSend.State.FAILED and send.peer_id is not None:
            send.state = ResultSend.State.QUEUED
            send.retry_at = None
            send.save(update_fields=["state", "retry_at", "updated_at"])
            queued.append(send)
    served = {s.peer_id for s in sends}
    for peer in peers:
        if peer.pk not in served:
            queued.append(ResultSend.objects.create(report=report, peer=peer, instances=built,
                                                    destination=_destination_label(peer)))
    _enqueue([s.pk for s in queued])
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="report", target_id=report.pk,
                 hospital=report.study.hospital, detail={"pacs_resend": [s.pk for s in queued]})
    return queued


# --- building the objects -----------------------------------------------------------------------------

def _source_headers(series: Series) -> list:
    """The source series' instances without pixel data, in slice order of their Instance Number."""
    import pydicom

    datasets = []
    for source in series.source_files.all():
        with source.file.open("rb") as fh:
            datasets.append(pydicom.dcmread(fh, stop_before_pixels=True))
    return sorted(datasets, key=lambda ds: int(getattr(ds, "InstanceNumber", 0) or 0))


def _person_name(user: User | None) -> str:
    if user is None:
        return "Unknown"
    if user.last_name or user.first_name:
        return f"{user.last_name}^{user.first_name}"
    return f"{user.display_name or user.username}^"  # one component: the trailing caret says so (PS3.5 6.2.1.2)


def _device_observer(segmentation: Segmentation):
    from pydicom.uid import generate_uid

    model = segmentation.model
    if model is not None:
        return (generate_uid(entropy_srcs=[f"yixin-model-{model.pk}"]), model.name, f"{model.name} {model.version}")
    return (generate_uid(entropy_srcs=["yixin-workbench"]), "Annotation workbench", "Yixin Portal workbench")


def _segment_figures(segmentation: Segmentation, modality: str):
    from ..pacs.sr import SegmentFigures

    return [
        SegmentFigures(label=row.label, name=row.label_name, volume_ml=row.volume_ml, long_axis_mm=row.axial_long_mm,
                       short_axis_mm=row.axial_short_mm,
                       mean_hu=row.mean_intensity if modality.upper() == "CT" else None)
        for row in Measurement.objects.filter(segmentation=segmentation, voxel_count__gt=0).order_by("label")
    ]


def report_result_objects_build(report: Report) -> list[tuple[str, object]]:
    """Build the DICOM objects of a signed report: its segmentation's SEG, the TID 1500 SR of its
    measurements and the signed PDF, as ``[(kind, pydicom.Dataset)]``. Without a segmentation
    (or without measured segments) only the PDF is built.

    Raises
    ------
    ServiceError
        ``results_need_dicom`` when the study's series was not imported from DICOM (the objects take
        patient and study from its instances); ``report_not_final`` for a draft.
    """
    import highdicom as hd
    import pydicom

    from annotation.services import segmentation_export

    from ..pacs.pdf import encapsulated_pdf
    from ..pacs.sr import Observers, ResultObjectError, measurement_report_sr

    if report.status != Report.Status.FINAL or not report.pdf_file:
        raise ServiceError(_("Only a signed report is sent to the PACS."), code="report_not_final", status_code=409)
    segmentation = report.segmentation
    series = segmentation.series if segmentation else report.study.series.order_by("pk").first()
    if series is None or series.source_format != Series.SourceFormat.DICOM:
        raise ServiceError(_("Results go to the PACS only for series imported from DICOM."),
                           code="results_need_dicom")
    headers = _source_headers(series)
    if not headers:
        raise ServiceError(_("Results go to the PACS only for series imported from DICOM."),
                           code="results_need_dicom")
    hospital = report.study.hospital
    signed_at = timezone.localtime(report.signed_at or timezone.now())
    objects: list[tuple[str, object]] = []
    if segmentation is not None:
        data, _name, _type = segmentation_export(user=None, segmentation=segmentation, fmt="dicom_seg")
        seg = pydicom.dcmread(io.BytesIO(data))
        objects.append(("seg", seg))
        figures = _segment_figures(segmentation, series.modality or "")
        if figures:
            device_uid, device_name, device_model = _device_observer(segmentation)
            signer = report.signed_by
            try:
                sr = measurement_report_sr(
                    source_datasets=headers, seg_dataset=seg, segments=figures,
                    observers=Observers(person_name=_person_name(signer),
                                        person_login=signer.username if signer else "",
                                        organization=hospital.name, device_uid=device_uid, device_name=device_name,
                                        device_model=device_model),
                    series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(), institution_name=hospital.name,
                    content_datetime=signed_at,
                )
            except ResultObjectError as exc:
                raise ServiceError.from_error(exc) from None
            objects.append(("sr", sr))
    with report.pdf_file.open("rb") as fh:
        pdf = fh.read()
    objects.append(("pdf", encapsulated_pdf(
        pdf, source_dataset=headers[0], series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(),
        document_title=f"Diagnostic imaging report v{report.version}", content_datetime=signed_at,
        institution_name=hospital.name)))
    return objects


def _stored_instances(report: Report) -> list[dict]:
    """The report's result objects, built and stored on first use (shared by all its sends)."""
    for send in report.result_sends.exclude(instances=[]):
        return send.instances
    instances = []
    try:
        for kind, ds in report_result_objects_build(report):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            key = default_storage.save(
                f"studies/{report.study_id}/reports/{report.pk}/pacs/{uuid.uuid4().hex}-{kind}.dcm",
                ContentFile(buffer.getvalue(), name=f"{kind}.dcm"))
            instances.append({"kind": kind, "key": key, **_instance_attributes(ds)})
    except BaseException:
        for item in instances:
            default_storage.delete(item["key"])
        raise
    return instances


def _instance_attributes(ds) -> dict:
    """The attributes of a stored result object that DICOMweb lists without reading the file."""
    return {"sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID),
            "series_instance_uid": str(ds.SeriesInstanceUID), "modality": str(ds.get("Modality", "")),
            "series_number": int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None,
            "series_description": str(ds.get("SeriesDescription", "") or ""),
            "instance_number": int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None}


@transaction.atomic
def report_result_objects_store(*, report: Report) -> list[dict]:
    """Build and store a signed report's SEG, SR and PDF unless already stored, and return them as
    ``ResultSend.instances`` lists them (the same objects, with the same UIDs, for every later call
    and every send).

    They are kept on the report's first send row (a ``no_destination`` row when the hospital has no
    PACS; one is created when the report has no send row at all).

    Raises
    ------
    ServiceError
        As :func:`report_result_objects_build` (``report_not_final``, ``results_need_dicom``).
    """
    report = Report.objects.select_for_update().get(pk=report.pk)
    instances = _stored_instances(report)
    if not report.result_sends.exclude(instances=[]).exists():
        send = report.result_sends.order_by("pk").first()
        if send is None:
            ResultSend.objects.create(report=report, state=ResultSend.State.NO_DESTINATION, instances=instances)
        else:
            send.instances = instances
            send.save(update_fields=["instances", "updated_at"])
    return instances


def report_result_instances(*, studies, build: bool) -> list:
    """List the stored result objects of the final reports of ``studies`` for DICOMweb.

    Parameters
    ----------
    studies : QuerySet of annotation.models.Study
        Already scoped to what the user may see.
    build : bool
        Build and store the objects of a final report that has none stored yet
        (:func:`report_result_objects_store`); a report whose objects cannot be built (a series not
        imported from DICOM) is skipped and logged.

    Returns
    -------
    list of annotation.dicomweb.results.ResultInstance
    """
    import pydicom

    from annotation.dicomweb.results import ResultInstance

    reports = list(Report.objects.filter(study__in=studies, status=Report.Status.FINAL)
                   .select_related("study").order_by("study_id", "version"))
    stored: dict[int, list[dict]] = {}
    for send in ResultSend.objects.filter(report__in=[r.pk for r in reports]).exclude(instances=[]).order_by("pk"):
        stored.setdefault(send.report_id, send.instances)
    found = []
    for report in reports:
        items = stored.get(report.pk)
        if not items and build:
            try:
                items = report_result_objects_store(report=report)
            except ServiceError as exc:
                logger.info("report %s: no DICOM results to serve (%s)", report.pk, exc.code)
                continue
            except Exception:  # noqa: BLE001 - one report's data refused by highdicom must not fail the read
                logger.exception("report %s: the DICOM results could not be built", report.pk)
                continue
        for item in items or []:
            if "series_instance_uid" not in item:  # stored before these attributes were kept
                with default_storage.open(item["key"], "rb") as fh:
                    item = {**item, **_instance_attributes(pydicom.dcmread(fh, stop_before_pixels=True))}
            found.append(ResultInstance(
                study_id=report.study_id, study_instance_uid=report.study.study_instance_uid,
                series_instance_uid=item["series_instance_uid"], sop_instance_uid=item["sop_instance_uid"],
                sop_class_uid=item["sop_class_uid"], modality=item["modality"], series_number=item["series_number"],
                series_description=item["series_description"], instance_number=item["instance_number"],
                storage_key=item["key"]))
    return found


def _load_instances(instances: list[dict]) -> list:
    import pydicom

    datasets = []
    for item in instances:
        with default_storage.open(item["key"], "rb") as fh:
            datasets.append(pydicom.dcmread(io.BytesIO(fh.read())))
    return datasets


# --- sending ------------------------------------------------------------------------------------------

def _stow_destination(peer: DicomPeer):
    """The STOW-RS destination of ``peer``, its secret read from the environment variable it names.

    Raises
    ------
    ServiceError
        ``stow_secret_missing`` when that variable is not set.
    """
    import os

    from ..pacs.stow import StowDestination

    secret = ""
    if peer.stow_secret_env:
        secret = os.environ.get(peer.stow_secret_env, "")
        if not secret:
            raise ServiceError(_("The environment variable %(name)s holding the STOW-RS secret is not set."),
                               params={"name": peer.stow_secret_env}, code="stow_secret_missing")
    return StowDestination(base_url=peer.stow_url, username=peer.stow_user,
                           password=secret if peer.stow_user else "", token="" if peer.stow_user else secret,
                           timeout_s=getattr(settings, "PACS_SEND_TIMEOUT_S", 30.0))


def result_send_execute(*, send_id: int) -> ResultSend:
    """Make one attempt at a send: build (once) and send the report's SEG, SR and PDF to its peer, by
    C-STORE (PS3.4 B) or STOW-RS (PS3.18 10.5) as the peer's transport says.

    A send already ``sent`` or without destination is returned as it is (idempotent). On failure the
    row is ``failed`` with the attempt counted, a stable ``error_code`` (``peer_unreachable``,
    ``association_rejected``, ``association_rejected_permanent``, ``sop_class_not_accepted``, ``store_failed``,
    STOW-RS's ``stow_unavailable`` (HTTP 408, 429, 5xx) and ``stow_rejected`` (other 4xx),
    ``peer_removed``, ``stow_secret_missing``, ``build_failed`` or a build error's code such as
    ``results_need_dicom``), the message and the peer's DIMSE status, HTTP status or STOW-RS Failure
    Reason where it answered. Never raises for a failed send: the caller (the task) decides on a retry
    from the row.
    """
    from ..pacs.scu import PacsDestination, StoreError, store_instances
    from ..pacs.stow import stow_instances

    with transaction.atomic():
        # of=("self",): PostgreSQL cannot lock the nullable side of the outer join to the peer.
        send = (ResultSend.objects.select_for_update(of=("self",))
                .select_related("report", "report__study", "peer").get(pk=send_id))
        if send.state in (ResultSend.State.SENT, ResultSend.State.NO_DESTINATION):
            return send
        send.attempts += 1
        send.retry_at = None
        send.save(update_fields=["attempts", "retry_at", "updated_at"])
    peer = send.peer
    stow = peer is not None and peer.transport == DicomPeer.Transport.STOW_RS
    error: tuple[str, str, int | None] | None = None
    if peer is None or (not stow and (not peer.host or not peer.port)) or (stow and not peer.stow_url):
        error = ("peer_removed", "the destination peer was removed or has no address for results", None)
    else:
        try:
            with transaction.atomic():
                report = Report.objects.select_for_update().get(pk=send.report_id)
                instances = _stored_instances(report)
                if not send.instances:
                    send.instances = instances
                    send.save(update_fields=["instances", "updated_at"])
            if stow:
                stow_instances(_load_instances(send.instances), _stow_destination(peer))
            else:
                destination = PacsDestination(host=peer.host, port=int(peer.port), called_ae=peer.ae_title,
                                              calling_ae=settings.DICOM_AE_TITLE,
                                              timeout_s=getattr(settings, "PACS_SEND_TIMEOUT_S", 30.0))
                store_instances(_load_instances(send.instances), destination)
        except ServiceError as exc:
            error = (exc.code, str(exc), None)
        except StoreError as exc:
            error = (exc.code, exc.message, exc.status)
        except OSError as exc:  # storage or network errors below pynetdicom
            error = ("peer_unreachable", f"{type(exc).__name__}: {exc}", None)
        except Exception as exc:  # noqa: BLE001 - highdicom/pydicom refusing the data: record it, never lose the row
            logger.exception("result send %s: the DICOM objects could not be built or sent", send_id)
            error = ("build_failed", f"{type(exc).__name__}: {exc}", None)
    with transaction.atomic():
        send = ResultSend.objects.select_for_update(of=("self",)).select_related("report__study").get(pk=send_id)
        if error is None:
            send.state, send.sent_at = ResultSend.State.SENT, timezone.now()
            send.error_code, send.last_error, send.last_status = "", "", None
        else:
            send.state = ResultSend.State.FAILED
            send.error_code, send.last_error, send.last_status = error[0][:32], error[1][:2000], error[2]
            logger.warning("result send %s to %s failed (attempt %s): %s", send.pk, send.destination, send.attempts,
                           error[0])
        send.save()
        audit_record(actor=None, action=AuditLog.Action.EXPORT, target_type="report", target_id=send.report_id,
                     hospital=send.report.study.hospital,
                     detail={"pacs_send": send.pk, "destination": send.destination, "state": send.state,
                             "attempt": send.attempts, "error_code": send.error_code})
    return send


# Failures a later attempt may cure; a permanently rejected association (a wrong AE title), a refused SOP
# class, a STOW-RS 4xx other than 408/429 (a wrong URL path, refused credentials) or a build error is not
# retried: the doctor resends once the configuration is fixed.
RETRYABLE_ERRORS = {"peer_unreachable", "association_rejected", "store_failed", "stow_unavailable"}


def result_send_retry_scheduled(*, send_id: int, countdown_s: float) -> None:
    """Note on the row when the next automatic attempt is due."""
    ResultSend.objects.filter(pk=send_id, state=ResultSend.State.FAILED).update(
        retry_at=timezone.now() + timedelta(seconds=countdown_s), updated_at=timezone.now())
