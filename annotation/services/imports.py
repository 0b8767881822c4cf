"""Importing studies: DICOM files, folders and zips, NIfTI, MetaImage and NRRD become studies and series."""

from __future__ import annotations

import datetime
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record
from portal.validators import validate_mrn

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


def mrn_clean(mrn: str) -> str:
    """Return ``mrn`` without surrounding spaces, checked by the one MRN validator of the portal.

    Raises
    ------
    portal.api_errors.ServiceError
        ``mrn_required`` when empty; ``invalid_mrn`` when it holds control, zero-width or
        bidirectional-override characters.
    """
    from django.core.exceptions import ValidationError

    mrn = (mrn or "").strip()
    if not mrn:
        raise ServiceError(_("A medical record number (MRN) is required."), code="mrn_required")
    try:
        validate_mrn(mrn)
    except ValidationError as exc:
        error = exc.error_list[0]  # a lazy template and its params: translated in the response's language
        raise ServiceError(error.message, params=error.params, code="invalid_mrn") from None
    return mrn


def patient_get_or_create(*, hospital: Hospital, mrn: str, name: str = "") -> Patient:
    mrn = mrn_clean(mrn)
    patient, created = Patient.objects.get_or_create(hospital=hospital, mrn=mrn, defaults={"name": name[:100]})
    if created:
        patient.full_clean()
    return patient


def _import_conflict(hospital: Hospital, loaded) -> ServiceError | None:
    """Return the 409 for series or DICOM instances of ``loaded`` already stored for ``hospital``, if any."""
    uids = [item.series_instance_uid for item in loaded.series]
    existing = Series.objects.filter(hospital=hospital, series_instance_uid__in=uids).count()
    if existing:
        return ServiceError(
            _("%(existing)s series of this upload were already imported for this hospital."),
            params={"existing": existing},
            code="series_exists", status_code=409,
        )
    sop_uids = [uid for item in loaded.series for uid in item.sop_instance_uids if uid]
    instances = 0
    for first in range(0, len(sop_uids), 500):  # SQLite's limit on query parameters
        chunk = sop_uids[first:first + 500]
        instances += SourceFile.objects.filter(hospital=hospital, sop_instance_uid__in=chunk).count()
    if instances:
        return ServiceError(
            _("%(instances)s DICOM instances of this upload are already stored in another series of this "
              "hospital."), params={"instances": instances},
            code="instance_exists", status_code=409,
        )
    return None


def study_import(
    *,
    user: User | None,
    hospital: Hospital,
    patient_mrn: str,
    paths: list[Path],
    patient_name: str = "",
    modality: str = "",
    study_date: datetime.date | None = None,
) -> ImportResult:
    """Import DICOM files/folders/zips, NIfTI, MetaImage or NRRD files as studies and series.

    ``study_date`` is the date of a new study whose files carry none (NIfTI, NRRD, MetaImage, DICOM
    without Study Date (0008,0020)); a date in the files wins.

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
    from ..imaging.formats import VolumeLimits, write_nifti
    from ..imaging.loader import load_inputs

    patient_mrn = mrn_clean(patient_mrn)
    if not paths:
        raise ServiceError(_("No files were given."), code="no_files")

    workdir = work_dir()
    stored = StoredKeys()
    try:
        limits = ArchiveLimits(
            max_total_bytes=settings.IMPORT_MAX_ARCHIVE_BYTES,
            max_files=settings.IMPORT_MAX_ARCHIVE_FILES,
            max_ratio=settings.IMPORT_MAX_COMPRESSION_RATIO,
        )
        volume_limits = VolumeLimits(max_voxels=settings.IMPORT_MAX_VOXELS, max_bytes=settings.IMPORT_MAX_VOLUME_BYTES)
        loaded = load_inputs(paths, workdir=workdir / "extracted", limits=limits, default_modality=modality,
                             volume_limits=volume_limits)
        # A quick refusal of a repeated upload; the unique constraints decide when two run at once.
        conflict = _import_conflict(hospital, loaded)
        if conflict is not None:
            raise conflict
        result = ImportResult(skipped=list(loaded.skipped))
        try:
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
                                study_date=item.study_date or study_date, description=item.study_description[:200],
                                accession_number=item.accession_number[:64], uploaded_by=user,
                            )
                            study.full_clean()
                            study.save()
                            result.studies.append(study)
                        studies_by_uid[study_uid] = study
                    series_modality = item.modality or modality or _guess_modality(item.volume)
                    prefix = f"studies/{study.pk}/{uuid.uuid4().hex}"
                    nifti_path = workdir / f"series-{index}.nii.gz"
                    write_nifti(item.volume, nifti_path)
                    volume_name, volume_sha, _unused = stored.save(f"{prefix}/volume.nii.gz", nifti_path)
                    array = item.volume.array
                    geometry = item.volume.geometry
                    series = Series(
                        study=study,
                        hospital=hospital,
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
                    # The unique constraints are left to the database: a concurrent import of the same
                    # series must meet the IntegrityError below, not a validation error.
                    series.full_clean(validate_constraints=False)
                    series.save()
                    for n, source in enumerate(item.source_files):
                        suffix = "".join(source.suffixes[-2:]) if source.name.endswith(".nii.gz") else source.suffix
                        name, sha, size = stored.save(f"{prefix}/originals/{n:05d}{suffix.lower()}", source)
                        SourceFile.objects.create(
                            series=series, hospital=hospital, file=name, original_name=source.name[:255], sha256=sha, size_bytes=size,
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
        except IntegrityError:
            # Another import of the same series or instances committed first (the constraints
            # series_unique_uid_per_hospital and sourcefile_unique_sop_uid_per_hospital).
            raise (_import_conflict(hospital, loaded) or ServiceError(
                _("This upload conflicts with data stored meanwhile; try again."), code="conflict", status_code=409,
            )) from None
        return result
    except BaseException:
        stored.delete_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
