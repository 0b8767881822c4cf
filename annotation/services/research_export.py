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

import io
import json
import zipfile

import pydicom
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..dicomnet.deidentify import PROFILE_CODES, burned_in_annotation
from ..models import Segmentation, Series, Study
from .export_import import _dataset_bytes, _seg_deidentified
from .pseudonyms import patient_deidentifier


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
    from ..interop.dicom_seg import SegInteropError

    all_series = list(study.series.order_by("series_number", "pk"))
    dicom_series = [s for s in all_series if s.source_format == Series.SourceFormat.DICOM]
    if not dicom_series:
        raise ServiceError(
            _("De-identified export needs DICOM originals; this study was imported from %(value)s."),
            params={"value": ', '.join(sorted({s.get_source_format_display() for s in all_series})) or _("no files")},
            code="deidentify_needs_dicom",
        )
    patient = study.patient
    deidentifier = patient_deidentifier(patient=patient)
    pseudonym = deidentifier.pseudonym
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
                try:
                    seg = _seg_deidentified(segmentation, series, originals, deidentifier)
                except SegInteropError as exc:
                    manifest["segmentations"].append({"folder": folder, "error": exc.message})
                    continue
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
