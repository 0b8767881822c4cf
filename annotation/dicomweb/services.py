"""STOW-RS (DICOM PS3.18 10.5): store the DICOM instances of a ``multipart/related`` body.

Each part is checked as a C-STORE instance is (``dicomnet.validation.instance_check``) and the accepted
ones are imported by ``study_import`` into the user's hospital, one import per Patient ID: the same
grouping, validation, storage and audit as an upload. An import either stores all of its instances
or none, so a failure leaves nothing half stored.
"""

from __future__ import annotations

import io
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field

import pydicom
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..dicomnet.validation import STATUS_CANNOT_UNDERSTAND, STATUS_DATASET_MISMATCH, instance_check
from ..imaging.errors import ImagingError
from ..models import Series
from ..services.imports import study_import
from ..storage import work_dir
from .multipart import Part

logger = logging.getLogger(__name__)

#: Failure reasons of the STOW-RS response (PS3.18 Table I.2-3 and PS3.7 C.4.2): processing failure,
#: duplicate SOP instance.
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_DUPLICATE_SOP_INSTANCE = 0x0111


@dataclass(frozen=True)
class StowFailure:
    """An instance not stored: its UIDs when they could be read, the PS3.18 failure reason, why."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int
    message: str


@dataclass
class StowResult:
    """What a STOW-RS request stored (``series``: the new Series rows with their instances) and what failed."""

    stored: list[tuple[str, str, Series]] = field(default_factory=list)  # (SOP Class UID, SOP Instance UID, series)
    failed: list[StowFailure] = field(default_factory=list)


def dicomweb_instances_store(*, user: User, parts: list[Part], study_uid: str | None = None) -> StowResult:
    """Store the DICOM parts of a STOW-RS request for the user's hospital.

    Parameters
    ----------
    user : User
        A clinician of a hospital: the instances are filed into ``user.hospital``.
    parts : list of Part
        The body's parts; each must be ``application/dicom`` (a Part 10 file).
    study_uid : str, optional
        The StudyInstanceUID of the request's path (``POST studies/{uid}``): instances of another
        study fail with 0xA900.

    Returns
    -------
    StowResult
        Stored and failed instances. A part that is not DICOM, fails the C-STORE checks, or whose
        patient's import is refused (a series or instance already stored: 0x0111; anything else the
        import refuses: 0x0110) is failed; the others are stored.

    Raises
    ------
    portal.api_errors.ServiceError
        ``no_hospital`` (403) when the user belongs to no hospital.
    """
    hospital = user.hospital
    if hospital is None:
        raise ServiceError(_("Storing DICOM instances needs an account of a hospital."), code="no_hospital",
                           status_code=403)
    result = StowResult()
    accepted: dict[str, list[tuple[pydicom.Dataset, bytes]]] = defaultdict(list)
    seen: set[str] = set()
    for part in parts:
        ds, failure = _part_read(part)
        if failure is None and study_uid and str(ds.StudyInstanceUID) != study_uid:
            failure = STATUS_DATASET_MISMATCH, "StudyInstanceUID differs from the study of the request"
        if failure is None and str(ds.SOPInstanceUID) in seen:
            failure = STATUS_DUPLICATE_SOP_INSTANCE, "the SOP Instance UID occurs twice in this request"
        if failure is not None:
            result.failed.append(StowFailure(
                str(ds.get("SOPClassUID", "")) if ds is not None else "",
                str(ds.get("SOPInstanceUID", "")) if ds is not None else "", failure[0], failure[1]))
            continue
        seen.add(str(ds.SOPInstanceUID))
        accepted[str(ds.PatientID).strip()].append((ds, part.data))
    for patient_id, items in accepted.items():
        workdir = work_dir()
        try:
            for n, (_ds, data) in enumerate(items):
                (workdir / f"{n:05d}.dcm").write_bytes(data)
            imported = study_import(user=user, hospital=hospital, patient_mrn=patient_id, paths=[workdir])
        except (ImagingError, ServiceError) as exc:
            duplicate = getattr(exc, "status_code", None) == 409
            reason = STATUS_DUPLICATE_SOP_INSTANCE if duplicate else STATUS_PROCESSING_FAILURE
            message = f"{getattr(exc, 'code', 'error')}: {exc}"
            result.failed.extend(StowFailure(str(ds.SOPClassUID), str(ds.SOPInstanceUID), reason, message)
                                 for ds, _data in items)
            continue
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        series_by_uid = {series.series_instance_uid: series for series in imported.series}
        for ds, _data in items:
            series = series_by_uid.get(str(ds.SeriesInstanceUID))
            if series is None:  # the import skipped it (e.g. a lone slice it could not place)
                result.failed.append(StowFailure(str(ds.SOPClassUID), str(ds.SOPInstanceUID), STATUS_PROCESSING_FAILURE,
                                                 "the import skipped this instance"))
            else:
                result.stored.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID), series))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="dicomweb:stow", hospital=hospital,
                 detail={"stored": len(result.stored), "failed": len(result.failed),
                                             "series": sorted({s.pk for _c, _i, s in result.stored})})
    logger.info("STOW-RS: %d instances stored, %d failed", len(result.stored), len(result.failed))
    return result


def _part_read(part: Part) -> tuple[pydicom.Dataset | None, tuple[int, str] | None]:
    """Read one part as a DICOM Part 10 file and check it; return the dataset and the failure, if any."""
    if part.content_type != "application/dicom":
        return None, (STATUS_CANNOT_UNDERSTAND, f"part of type {part.content_type[:60]}, not application/dicom")
    try:
        ds = pydicom.dcmread(io.BytesIO(part.data))  # a Part 10 file: preamble, DICM and file meta required
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:  # noqa: BLE001 - the sender's bytes; any decoding error is theirs
        return None, (STATUS_CANNOT_UNDERSTAND, f"not a DICOM Part 10 file ({type(exc).__name__})")
    refusal = instance_check(ds, transfer_syntax=transfer_syntax)
    if refusal is not None:
        return ds, (refusal.status, refusal.reason)
    return ds, None
