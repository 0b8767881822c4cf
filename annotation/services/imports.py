"""Importing studies: DICOM files, folders and zips, NIfTI, MetaImage and NRRD become studies and series."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from ..imaging.volume import Volume
from ..models import Patient, Series, SourceFile, Study
from ..storage import StoredKeys, work_dir


@dataclass
class ImportResult:
    studies: list[Study] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _guess_modality(volume: Volume) -> str:
    # CT is the only common modality with air at about -1000 HU; anything else stays unknown.
    return "CT" if float(volume.array.min()) <= -900 else "OT"


def patient_get_or_create(*, hospital: Hospital, mrn: str, name: str = "") -> Patient:
    mrn = mrn.strip()
    if not mrn:
        raise ServiceError("A medical record number (MRN) is required.", code="mrn_required")
    patient, created = Patient.objects.get_or_create(hospital=hospital, mrn=mrn, defaults={"name": name[:100]})
    if created:
        patient.full_clean()
    return patient


def study_import(
    *,
    user: User | None,
    hospital: Hospital,
    patient_mrn: str,
    paths: list[Path],
    patient_name: str = "",
    modality: str = "",
) -> ImportResult:
    """Import DICOM files/folders/zips, NIfTI, MetaImage or NRRD files as studies and series.

    Originals are stored unchanged with their SHA-256; each series also gets one canonical NIfTI
    volume on its original grid with its geometry on the row. DICOM series are grouped by
    SeriesInstanceUID and studies by StudyInstanceUID; other formats become one new study.

    Raises
    ------
    annotation.imaging.ImagingError
        When any input cannot be imported (nothing is stored then).
    portal.api_errors.ServiceError
        When a series was already imported for this hospital, or the MRN is missing.
    """
    from ..imaging.archive import ArchiveLimits
    from ..imaging.formats import write_nifti
    from ..imaging.loader import load_inputs

    if not patient_mrn or not patient_mrn.strip():
        raise ServiceError("A medical record number (MRN) is required.", code="mrn_required")
    if not paths:
        raise ServiceError("No files were given.", code="no_files")

    workdir = work_dir()
    stored = StoredKeys()
    try:
        limits = ArchiveLimits(
            max_total_bytes=settings.IMPORT_MAX_ARCHIVE_BYTES,
            max_files=settings.IMPORT_MAX_ARCHIVE_FILES,
            max_ratio=settings.IMPORT_MAX_COMPRESSION_RATIO,
        )
        loaded = load_inputs(paths, workdir=workdir / "extracted", limits=limits, default_modality=modality)
        uids = [s.series_instance_uid for s in loaded.series]
        existing = set(
            Series.objects.filter(study__hospital=hospital, series_instance_uid__in=uids).values_list(
                "series_instance_uid", flat=True
            )
        )
        if existing:
            raise ServiceError(
                f"{len(existing)} series of this upload were already imported for this hospital.",
                code="series_exists",
                status_code=409,
            )
        result = ImportResult(skipped=list(loaded.skipped))
        with transaction.atomic():
            patient = patient_get_or_create(
                hospital=hospital, mrn=patient_mrn, name=patient_name or (loaded.series[0].patient_name if loaded.series else "")
            )
            studies_by_uid: dict[str, Study] = {}
            new_study_uid = None
            for index, item in enumerate(loaded.series):
                study_uid = item.study_instance_uid
                if not study_uid:
                    from pydicom.uid import generate_uid

                    new_study_uid = new_study_uid or generate_uid()
                    study_uid = new_study_uid
                study = studies_by_uid.get(study_uid)
                if study is None:
                    study = Study.objects.filter(hospital=hospital, patient=patient, study_instance_uid=study_uid).first()
                    if study is None:
                        study = Study(
                            hospital=hospital, patient=patient, study_instance_uid=study_uid,
                            study_date=item.study_date, description=item.study_description[:200],
                            uploaded_by=user,
                        )
                        study.full_clean()
                        study.save()
                        result.studies.append(study)
                    studies_by_uid[study_uid] = study
                series_modality = item.modality or modality or _guess_modality(item.volume)
                prefix = f"studies/{study.pk}/{uuid.uuid4().hex}"
                nifti_path = workdir / f"series-{index}.nii.gz"
                write_nifti(item.volume, nifti_path)
                volume_name, volume_sha, _ = stored.save(f"{prefix}/volume.nii.gz", nifti_path)
                array = item.volume.array
                geometry = item.volume.geometry
                series = Series(
                    study=study,
                    series_instance_uid=item.series_instance_uid,
                    series_number=item.series_number,
                    modality=series_modality[:16],
                    description=item.series_description[:200],
                    body_part=item.body_part[:64],
                    source_format=item.source_format,
                    instance_count=len(item.source_files),
                    volume_file=volume_name,
                    volume_sha256=volume_sha,
                    intensity_min=float(array.min()),
                    intensity_max=float(array.max()),
                    window_center=item.volume.metadata.get("window_center"),
                    window_width=item.volume.metadata.get("window_width"),
                    **geometry.to_dict(),
                )
                series.full_clean()
                series.save()
                for n, source in enumerate(item.source_files):
                    suffix = "".join(source.suffixes[-2:]) if source.name.endswith(".nii.gz") else source.suffix
                    name, sha, size = stored.save(f"{prefix}/originals/{n:05d}{suffix.lower()}", source)
                    SourceFile.objects.create(
                        series=series, file=name, original_name=source.name[:255], sha256=sha, size_bytes=size,
                        sop_instance_uid=item.sop_instance_uids[n] if n < len(item.sop_instance_uids) else "",
                        instance_number=item.instance_numbers[n] if n < len(item.instance_numbers) else None,
                    )
                result.series.append(series)
                if study not in result.studies:
                    result.studies.append(study)
            for study in result.studies:
                audit_record(
                    actor=user, action=AuditLog.Action.CREATE, target_type="study", target_id=study.pk,
                    hospital=hospital, detail={"series": [s.pk for s in result.series if s.study_id == study.pk]},
                )
        return result
    except BaseException:
        stored.delete_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
