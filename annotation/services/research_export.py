"""De-identified research exports of a study: originals, current segmentations as DICOM SEG, a manifest.

The originals go through :class:`annotation.dicomnet.deidentify.Deidentifier` (PS3.15 Basic
Profile with modified dates, dicognito). The SEG of each current segmentation is built by the same
highdicom code as the ordinary export, against the original instances, and then de-identified by
the same deidentifier: its referenced UIDs are remapped exactly as the instances' own, so it
references the de-identified series. The patient's seed is a keyed hash (HMAC-SHA256) of
``DEIDENTIFY_SECRET`` and the patient, so every export of one patient has the same pseudonym, date
offset and UIDs; the pseudonym ↔ patient mapping stays in the portal (``PatientPseudonym``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import io
import json
import secrets
import zipfile

import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..dicomnet.deidentify import PROFILE_CODES, Deidentifier, burned_in_annotation, date_offset
from ..models import Patient, PatientPseudonym, Segmentation, Series, Study
from ..storage import segmentation_labelmap_load, series_geometry
from .export_import import _merged_label_table, segmentation_layers


def patient_pseudonym_get_or_create(*, patient: Patient) -> PatientPseudonym:
    """Return the patient's research pseudonym, creating a random one (``YX`` + 10 hex digits) once."""
    existing = PatientPseudonym.objects.filter(patient=patient).first()
    if existing is not None:
        return existing
    for _attempt in range(5):
        try:
            with transaction.atomic():
                row = PatientPseudonym(patient=patient, pseudonym=f"YX{secrets.token_hex(5).upper()}")
                row.full_clean()
                row.save()
                return row
        except IntegrityError:
            existing = PatientPseudonym.objects.filter(patient=patient).first()
            if existing is not None:
                return existing
    raise ServiceError(_("Could not allocate a pseudonym."), code="pseudonym_collision", status_code=500)


def _patient_seed(patient: Patient) -> str:
    message = f"{patient.hospital.code}\x00{patient.mrn}".encode()
    return hmac.new(settings.DEIDENTIFY_SECRET.encode(), message, hashlib.sha256).hexdigest()


def patient_date_offset(*, patient: Patient) -> datetime.timedelta:
    """Return the patient's research date offset: the (negative, whole-hour) shift that the DICOM
    de-identification of :func:`study_export_deidentified` applies to every date and time of this
    patient (PS3.15 Annex E, Modified Dates Option), so that other de-identified exports (the
    questionnaire CSV) shift their dates alike. Derived from the same secret per-patient seed."""
    return date_offset(_patient_seed(patient))


def _dataset_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def study_export_deidentified(*, user: User | None, study: Study) -> bytes:
    """Return the de-identified research export of ``study`` as zip bytes.

    Layout: ``<pseudonym>/series-NNN/IMNNNNN.dcm`` (the de-identified originals),
    ``<pseudonym>/series-NNN/SEG-<n>.dcm`` (current segmentations) and ``manifest.json`` (profile,
    pseudonym, de-identified UIDs, instance counts, burned-in annotation flags, the series left out).
    Series imported from NIfTI, MetaImage or NRRD carry no DICOM header and are left out (listed).

    Raises
    ------
    portal.api_errors.ServiceError
        ``deidentify_needs_dicom`` when the study has no series imported from DICOM.
    """
    from ..interop.dicom_seg import SegInteropError, labelmap_to_dicom_seg

    all_series = list(study.series.order_by("series_number", "pk"))
    dicom_series = [s for s in all_series if s.source_format == Series.SourceFormat.DICOM]
    if not dicom_series:
        raise ServiceError(
            _("De-identified export needs DICOM originals; this study was imported from %(value)s."),
            params={"value": ', '.join(sorted({s.get_source_format_display() for s in all_series})) or _("no files")},
            code="deidentify_needs_dicom",
        )
    patient = study.patient
    pseudonym = patient_pseudonym_get_or_create(patient=patient).pseudonym
    deidentifier = Deidentifier(seed=_patient_seed(patient), pseudonym=pseudonym)
    manifest: dict = {
        "format": "yixin-research-export/1",
        "created_at": timezone.now().date().isoformat(),
        "deidentification": {
            "standard": "DICOM PS3.15 Annex E",
            "methods": [{"code": code, "scheme": "DCM", "meaning": meaning} for code, meaning in PROFILE_CODES],
            "library": "dicognito",
            "dates": "shifted by one secret offset per patient",
        },
        "pseudonym": pseudonym,
        "series": [],
        "segmentations": [],
        "left_out": [
            {"series": n, "source_format": s.source_format, "reason": "not DICOM: no header to de-identify"}
            for n, s in enumerate(all_series, start=1) if s.source_format != Series.SourceFormat.DICOM
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        study_uid = ""
        for number, series in enumerate(all_series, start=1):
            if series.source_format != Series.SourceFormat.DICOM:
                continue
            folder = f"{pseudonym}/series-{number:03d}"
            originals = []
            flags = []
            for index, source in enumerate(series.source_files.order_by("instance_number", "pk"), start=1):
                with source.file.open("rb") as handle:
                    original = pydicom.dcmread(handle)
                originals.append(original)
                flags.append(burned_in_annotation(original))
                copy = pydicom.dcmread(io.BytesIO(_dataset_bytes(original)))
                deidentifier.apply(copy)
                archive.writestr(f"{folder}/IM{index:05d}.dcm", _dataset_bytes(copy))
                series_uid, study_uid = str(copy.SeriesInstanceUID), str(copy.StudyInstanceUID)
            manifest["series"].append({
                "folder": folder, "series_instance_uid": series_uid, "study_instance_uid": study_uid,
                "modality": series.modality, "instances": len(originals),
                "burned_in_annotation": sorted({f.value or "absent" for f in flags}),
                "review_required": any(f.review_required for f in flags),
            })
            current = Segmentation.objects.filter(series=series, is_current=True).order_by("pk")
            seen_groups: set = set()
            for segmentation in current:
                if segmentation.layer_group:
                    if segmentation.layer_group in seen_groups:
                        continue
                    seen_groups.add(segmentation.layer_group)
                layers = segmentation_layers(segmentation)
                try:
                    seg = labelmap_to_dicom_seg(
                        [segmentation_labelmap_load(layer) for layer in layers], series_geometry(series), originals,
                        _merged_label_table(layers), series_description=f"{segmentation.name} v{segmentation.version}",
                    )
                except SegInteropError as exc:
                    manifest["segmentations"].append({"folder": folder, "error": exc.message})
                    continue
                # highdicom holds dates as pydicom DA objects; dicognito reads them as strings.
                seg = pydicom.dcmread(io.BytesIO(_dataset_bytes(seg)))
                deidentifier.apply(seg)
                path = f"{folder}/SEG-{len(manifest['segmentations']) + 1:03d}.dcm"
                archive.writestr(path, _dataset_bytes(seg))
                manifest["segmentations"].append({
                    "path": path, "referenced_series_instance_uid": series_uid, "version": segmentation.version,
                    "segments": [str(item.SegmentLabel) for item in seg.SegmentSequence],
                })
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    audit_record(
        actor=user, action=AuditLog.Action.EXPORT, target_type="study", target_id=study.pk, hospital=study.hospital,
        detail={"deidentified": True, "series": len(manifest["series"]), "segmentations": len(manifest["segmentations"])},
    )
    return buffer.getvalue()
