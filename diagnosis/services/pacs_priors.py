"""A patient's priors from the hospital's PACS: query (C-FIND) and retrieve (C-MOVE), issue 15.

The PACS is the hospital's query/retrieve source: an active ``DicomPeer`` with ``query_retrieve`` set
and a host and port. :func:`pacs_priors_find` asks it for the patient's studies (Study Root, STUDY
level, Patient ID = the patient's MRN as stored) and marks those the portal already holds.
:func:`pacs_study_retrieve` checks that the PACS holds the study for this patient and queues a
:class:`~diagnosis.models.PriorRetrieve`; once the transaction commits a Celery task
(:func:`diagnosis.tasks.pacs_retrieve_task`) runs :func:`pacs_retrieve_execute`, a C-MOVE to the
portal's own AE title (``DICOM_AE_TITLE``). The PACS then stores the instances into the portal's DICOM
service (``manage.py dicom_listener``), calling with the peer's AE title, so they are filed exactly as
any study the PACS sends: same checks, grouping by series, audit and routing rules, into the peer's
hospital (the patient's), under the Patient ID of the files. A series already held is refused by that
import (``series_exists``), so a second retrieve adds nothing.

A PACS that cannot open an association to the portal (a firewall, no route back) is retrieved by C-GET
instead, when its peer's ``retrieve_method`` says so: the instances arrive on the portal's own association
(:func:`diagnosis.pacs.qr.get_study`), are checked as the C-STORE SCP checks them, spooled under the
peer's AE title in a folder of their own and then imported by the same import as a received series, in
the task itself (no DICOM service needed); a refused series goes to the spool's ``failed/`` folder.

The plain-Python SCU is :mod:`diagnosis.pacs.qr`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.dicomnet.validation import uid_valid
from annotation.models import DicomPeer, Patient, Study
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import PriorRetrieve
from ..pacs.qr import MoveResult, QueryRetrieveError, QueryRetrieveSource, StudyMatch, find_studies, get_study, move_study

logger = logging.getLogger(__name__)

# What the user reads for each failure of the SCU (its ``code``), with the HTTP status of the refusal.
_MESSAGES = {
    "pacs_unreachable": (_("The PACS %(ae_title)s at %(address)s cannot be reached."), 502),
    "association_rejected": (_("The PACS %(ae_title)s is busy and refused the connection; try again later."), 502),
    "association_rejected_permanent": (
        _("The PACS %(ae_title)s rejected the connection: check its AE title, and that it knows the portal's "
          "AE title %(our_ae_title)s."), 502),
    "model_not_accepted": (_("The PACS %(ae_title)s does not offer the Study Root query/retrieve service."), 502),
    "find_failed": (_("The PACS %(ae_title)s answered the search with the failure status %(status)s."), 502),
    "move_failed": (_("The PACS %(ae_title)s answered the retrieve with the failure status %(status)s."), 502),
    "get_failed": (_("The PACS %(ae_title)s answered the retrieve with the failure status %(status)s."), 502),
    "move_destination_unknown": (
        _("The PACS %(ae_title)s does not know the portal's AE title %(our_ae_title)s as a destination."), 502),
}


@dataclass(frozen=True)
class PacsStudy:
    """A study of the patient at the PACS, and the portal's study of the same Study Instance UID (if held)."""

    study_instance_uid: str
    study_date: dt.date | None
    modalities: tuple[str, ...]
    description: str
    instances: int | None
    held_study_id: int | None

    @property
    def held(self) -> bool:
        return self.held_study_id is not None


def pacs_query_source(*, hospital) -> DicomPeer | None:
    """Return the hospital's query/retrieve source (the first active one with a host and port), if any."""
    return (DicomPeer.objects.filter(hospital=hospital, is_active=True, query_retrieve=True, port__isnull=False)
            .exclude(host="").order_by("pk").first())


def _source(hospital) -> tuple[DicomPeer, QueryRetrieveSource]:
    peer = pacs_query_source(hospital=hospital)
    if peer is None:
        raise ServiceError(_("No PACS is configured to search for priors in this hospital."),
                           code="no_query_source", status_code=409)
    return peer, QueryRetrieveSource(host=peer.host, port=int(peer.port), called_ae=peer.ae_title,
                                     calling_ae=settings.DICOM_AE_TITLE,
                                     timeout_s=float(getattr(settings, "PACS_SEND_TIMEOUT_S", 30.0)))


def _error(exc: QueryRetrieveError, peer: DicomPeer) -> ServiceError:
    message, status_code = _MESSAGES.get(exc.code, (_("The PACS %(ae_title)s failed: %(detail)s"), 502))
    return ServiceError(message, code=exc.code, status_code=status_code, params={
        "ae_title": peer.ae_title, "address": f"{peer.host}:{peer.port}", "our_ae_title": settings.DICOM_AE_TITLE,
        "status": f"0x{exc.status:04X}" if exc.status is not None else "—", "detail": exc.message})


def _date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _find(peer: DicomPeer, source: QueryRetrieveSource, *, patient: Patient, study_instance_uid: str = "") -> list[StudyMatch]:
    try:
        return find_studies(source, patient_id=patient.mrn, study_instance_uid=study_instance_uid)
    except QueryRetrieveError as exc:
        logger.warning("PACS query of %s failed: %s (status %s)", peer.ae_title, exc.code, exc.status)
        raise _error(exc, peer) from None


def pacs_priors_find(*, user: User, patient: Patient) -> list[PacsStudy]:
    """Return the PACS's studies of ``patient`` (C-FIND, Study Root, STUDY level), newest first.

    The matching key is Patient ID (0010,0020) = the patient's MRN as stored; each study says whether
    the portal holds a study of the same Study Instance UID in the patient's hospital. The search is
    audit-logged (the PACS's AE title and the number of studies).

    Raises
    ------
    portal.api_errors.ServiceError
        (409) ``no_query_source`` when the hospital has no query/retrieve source; (502) ``pacs_unreachable``,
        ``association_rejected``, ``association_rejected_permanent``, ``model_not_accepted`` or
        ``find_failed`` (the PACS's failure status in the message).
    """
    peer, source = _source(patient.hospital)
    matches = _find(peer, source, patient=patient)
    held = dict(Study.objects.filter(hospital=patient.hospital, study_instance_uid__in=[m.study_instance_uid for m in matches])
                .values_list("study_instance_uid", "pk"))
    studies = [PacsStudy(study_instance_uid=m.study_instance_uid, study_date=_date(m.study_date), modalities=m.modalities,
                         description=m.description, instances=m.instances, held_study_id=held.get(m.study_instance_uid))
               for m in matches]
    studies.sort(key=lambda s: (s.study_date is not None, s.study_date or dt.date.min), reverse=True)
    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="patient", target_id=patient.pk,
                 hospital=patient.hospital, detail={"pacs_find": peer.ae_title, "studies": len(studies),
                                                    "held": sum(s.held for s in studies)})
    return studies


def pacs_study_retrieve(*, user: User, patient: Patient, study_instance_uid: str) -> PriorRetrieve:
    """Queue the retrieve of one of the patient's studies from the PACS (a C-MOVE run by a Celery task).

    The PACS is first asked (C-FIND) whether it holds this study for this patient: a study of another
    patient, or one it does not hold, is refused before anything is queued. A retrieve of the same study
    still queued or running is returned instead of a second one.

    Raises
    ------
    portal.api_errors.ServiceError
        (400) ``invalid_study_uid``; (404) ``study_not_in_pacs``; and the refusals of :func:`pacs_priors_find`.
    """
    study_instance_uid = (study_instance_uid or "").strip()
    if not uid_valid(study_instance_uid):
        raise ServiceError(_("This is not a valid Study Instance UID."), code="invalid_study_uid")
    peer, source = _source(patient.hospital)
    matches = _find(peer, source, patient=patient, study_instance_uid=study_instance_uid)
    match = next((m for m in matches if m.study_instance_uid == study_instance_uid), None)
    if match is None:
        raise ServiceError(_("The PACS %(ae_title)s holds no study %(uid)s of this patient."),
                           params={"ae_title": peer.ae_title, "uid": study_instance_uid},
                           code="study_not_in_pacs", status_code=404)
    return _retrieve_queue(user=user, patient=patient, peer=peer, match=match)


@transaction.atomic
def _retrieve_queue(*, user: User, patient: Patient, peer: DicomPeer, match: StudyMatch) -> PriorRetrieve:
    Patient.objects.select_for_update().get(pk=patient.pk)  # one queued retrieve per study, even when clicked twice
    running = PriorRetrieve.objects.filter(
        patient=patient, study_instance_uid=match.study_instance_uid,
        state__in=[PriorRetrieve.State.QUEUED, PriorRetrieve.State.RUNNING]).first()
    if running is not None:
        return running
    retrieve = PriorRetrieve(patient=patient, peer=peer, source=f"{peer.ae_title}@{peer.host}:{peer.port}",
                             study_instance_uid=match.study_instance_uid, study_date=_date(match.study_date),
                             description=match.description[:200], requested_by=user)
    retrieve.full_clean()
    retrieve.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="prior_retrieve", target_id=retrieve.pk,
                 hospital=patient.hospital, detail={"patient": patient.pk, "source": peer.ae_title})
    from ..tasks import pacs_retrieve_task

    transaction.on_commit(lambda: pacs_retrieve_task.delay(retrieve.pk))
    return retrieve


def _get_and_import(source: QueryRetrieveSource, *, peer: DicomPeer, retrieve: PriorRetrieve) -> MoveResult:
    """C-GET the study into a spool folder of this retrieve, then import each series as the DICOM service
    imports a received one (into the peer's hospital, routing rules applied; refused → ``failed/``)."""
    import shutil
    import uuid

    from annotation.dicomnet.spool import SeriesSpool
    from annotation.dicomnet.scp import instance_receive
    from annotation.dicomnet.validation import IMAGE_STORAGE_SOP_CLASSES
    from annotation.services import dicom_received_series_import, dicom_spool

    spool = dicom_spool()
    private = SeriesSpool(spool.root / "c-get" / f"{retrieve.pk}-{uuid.uuid4().hex[:8]}")

    def on_store(ds, transfer_syntax: str, data: bytes) -> int:
        return instance_receive(private, ds, calling_ae_title=peer.ae_title, transfer_syntax=transfer_syntax,
                                data=lambda: data, operation="C-GET")

    try:
        result = get_study(source, study_instance_uid=retrieve.study_instance_uid,
                           storage_classes=tuple(IMAGE_STORAGE_SOP_CLASSES), on_store=on_store)
        for spooled in private.claim_complete(quiet_s=0):
            try:
                dicom_received_series_import(spooled=spooled, spool=spool)  # refused → spool's failed/
            except Exception as exc:  # noqa: BLE001 - as the DICOM service: one bad series must not stop the rest
                logger.exception("prior retrieve %s: importing a series failed", retrieve.pk)
                if spooled.folder.exists():
                    spool.finish(spooled, error=type(exc).__name__)
    finally:
        shutil.rmtree(private.root, ignore_errors=True)
    return result


def pacs_retrieve_execute(*, retrieve_id: int) -> PriorRetrieve:
    """Run one queued retrieve: C-MOVE the study to the portal's AE title (or C-GET it and import it, for
    a peer whose ``retrieve_method`` is C-GET) and record the outcome.

    The row ends ``completed`` (every sub-operation completed, warnings included), ``partial`` (some
    failed, some stored) or ``failed`` (nothing stored: ``suboperations_failed``, ``nothing_moved``, the
    SCU's code such as ``pacs_unreachable``, ``move_destination_unknown``, ``move_failed`` or ``get_failed``, or ``peer_removed``), with the final DIMSE
    status and the completed / failed / warning sub-operation counts. A retrieve no longer queued is
    returned as it is (idempotent). Never raises for a failed retrieve.
    """
    with transaction.atomic():
        retrieve = (PriorRetrieve.objects.select_for_update(of=("self",)).select_related("peer", "patient__hospital")
                    .get(pk=retrieve_id))
        if retrieve.state != PriorRetrieve.State.QUEUED:
            return retrieve
        retrieve.state = PriorRetrieve.State.RUNNING
        retrieve.save(update_fields=["state"])
    peer = retrieve.peer
    result, error = None, None
    if peer is None or not peer.is_active or not peer.host or not peer.port:
        error = ("peer_removed", "the query/retrieve source was removed, deactivated or has no host and port", None)
    else:
        source = QueryRetrieveSource(host=peer.host, port=int(peer.port), called_ae=peer.ae_title,
                                     calling_ae=settings.DICOM_AE_TITLE,
                                     timeout_s=float(getattr(settings, "PACS_SEND_TIMEOUT_S", 30.0)))
        try:
            if peer.retrieve_method == DicomPeer.RetrieveMethod.C_GET:
                result = _get_and_import(source, peer=peer, retrieve=retrieve)
            else:
                result = move_study(source, study_instance_uid=retrieve.study_instance_uid)
        except QueryRetrieveError as exc:
            error = (exc.code, exc.message, exc.status)
        except OSError as exc:
            error = ("pacs_unreachable", f"{type(exc).__name__}: {exc}", None)
    with transaction.atomic():
        retrieve = PriorRetrieve.objects.select_for_update(of=("self",)).get(pk=retrieve_id)
        retrieve.finished_at = timezone.now()
        if result is not None:
            retrieve.completed, retrieve.failed, retrieve.warning = result.completed, result.failed, result.warning
            retrieve.last_status = result.status
            stored = result.completed + result.warning
            if result.failed and not stored:
                retrieve.state = PriorRetrieve.State.FAILED
                retrieve.error_code = "suboperations_failed"
                retrieve.last_error = f"all {result.failed} sub-operations failed (status 0x{result.status:04X})"
            elif not result.failed and not stored:
                # The PACS found nothing to move (the study was deleted there since it was listed).
                retrieve.state = PriorRetrieve.State.FAILED
                retrieve.error_code = "nothing_moved"
                retrieve.last_error = "the PACS moved no instance of the study"
            else:
                retrieve.state = PriorRetrieve.State.PARTIAL if result.failed else PriorRetrieve.State.COMPLETED
        else:
            retrieve.state = PriorRetrieve.State.FAILED
            retrieve.error_code, retrieve.last_error, retrieve.last_status = error[0][:32], error[1][:2000], error[2]
        retrieve.save()
        logger.info("prior retrieve %s from %s: %s (%s completed, %s failed, %s warning)%s", retrieve.pk,
                    retrieve.source, retrieve.state, retrieve.completed, retrieve.failed, retrieve.warning,
                    f" {retrieve.error_code}" if retrieve.error_code else "")
        audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="prior_retrieve", target_id=retrieve.pk,
                     hospital=retrieve.patient.hospital, channel="dicom",
                     detail={"state": retrieve.state, "completed": retrieve.completed, "failed": retrieve.failed,
                             "warning": retrieve.warning, "error_code": retrieve.error_code})
    return retrieve
