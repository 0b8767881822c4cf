"""Writes of the annotation app: importing studies, registering models, running one-click
segmentation and storing segmentations.

Stored objects get fresh keys, so nothing already stored is ever overwritten; when an import or a
run fails, the objects it wrote are deleted again and the database transaction rolls back.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record
from portal.storage import sha256_of

from . import events
from .imaging.volume import Geometry, Volume
from .models import InferenceRun, Patient, Segmentation, SegmentationModel, Series, SourceFile, Study

logger = logging.getLogger(__name__)


# --- storage helpers ------------------------------------------------------------------------

class _StoredKeys:
    """Remember object keys written during an operation so that a failure can delete them."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def save(self, key: str, path: Path) -> tuple[str, str, int]:
        """Upload ``path`` under ``key``; return (stored name, SHA-256, size in bytes)."""
        with open(path, "rb") as fh:
            digest = sha256_of(fh)
            fh.seek(0)
            name = default_storage.save(key, File(fh, name=path.name))
        self.keys.append(name)
        return name, digest, path.stat().st_size

    def delete_all(self) -> None:
        for key in self.keys:
            try:
                default_storage.delete(key)
            except Exception:  # noqa: BLE001 - best effort clean-up; the DB rolled back already
                logger.warning("could not delete stored object after a failed write")
        self.keys.clear()


def _work_dir() -> Path:
    base = Path(settings.VAR_DIR) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="work-", dir=base))


def stored_file_to_path(field_file, path: Path) -> Path:
    """Copy a stored object to a local path and return it."""
    with field_file.open("rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1024 * 1024)
    return path


def _stored_volume_load(field_file, *, modality: str = "") -> Volume:
    """Read a NIfTI volume kept in object storage (copied to a scratch file SimpleITK can open)."""
    from .imaging.formats import read_volume

    workdir = _work_dir()
    try:
        return read_volume(stored_file_to_path(field_file, workdir / "image.nii.gz"), modality=modality)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def series_volume_load(series: Series) -> Volume:
    """Read a series' canonical volume from object storage."""
    return _stored_volume_load(series.volume_file, modality=series.modality)


def segmentation_labelmap_load(segmentation: Segmentation) -> np.ndarray:
    """Read a segmentation's label map, shape (k, j, i), on its series' grid."""
    return _stored_volume_load(segmentation.labelmap_file).array


def series_geometry(series: Series) -> Geometry:
    return Geometry(
        shape=tuple(series.shape), spacing_mm=tuple(series.spacing_mm),
        origin_mm=tuple(series.origin_mm), direction=tuple(series.direction),
    )


# --- import ---------------------------------------------------------------------------------

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
    from .imaging.archive import ArchiveLimits
    from .imaging.formats import write_nifti
    from .imaging.loader import load_inputs

    if not patient_mrn or not patient_mrn.strip():
        raise ServiceError("A medical record number (MRN) is required.", code="mrn_required")
    if not paths:
        raise ServiceError("No files were given.", code="no_files")

    workdir = _work_dir()
    stored = _StoredKeys()
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


# --- model registry -------------------------------------------------------------------------

@transaction.atomic
def segmentation_model_register(
    *,
    name: str,
    body_part: str,
    modality: str,
    architecture: str,
    label_table: list[dict],
    display_name: str = "",
    network_config: dict | None = None,
    preprocessing: dict | None = None,
    weights_path: Path | None = None,
    validation_metrics: dict | None = None,
    provenance: dict | None = None,
    hospital: Hospital | None = None,
    user: User | None = None,
) -> SegmentationModel:
    """Register a new version of a model (version = previous + 1) with its weights in storage.

    Raises
    ------
    django.core.exceptions.ValidationError
        When the label table or a field is invalid.
    """
    from django.core.exceptions import ValidationError

    indices = [entry.get("index") for entry in label_table]
    if not label_table or any(not isinstance(i, int) or i < 1 for i in indices) or len(set(indices)) != len(indices):
        raise ValidationError({"label_table": "Labels need distinct positive integer indices."})
    version = (SegmentationModel.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0) + 1
    model = SegmentationModel(
        name=name, version=version, display_name=display_name or name, body_part=body_part, modality=modality,
        architecture=architecture, network_config=network_config or {}, label_table=label_table,
        preprocessing=preprocessing or {}, validation_metrics=validation_metrics or {},
        provenance=provenance or {}, hospital=hospital, created_by=user,
    )
    stored = _StoredKeys()
    try:
        if weights_path is not None:
            suffix = ".zip" if str(weights_path).endswith(".zip") else Path(weights_path).suffix or ".pt"
            name_, sha, _ = stored.save(f"models/{name}/v{version}-{uuid.uuid4().hex[:8]}{suffix}", Path(weights_path))
            model.weights_file = name_
            model.weights_sha256 = sha
        model.full_clean()
        model.save()
    except BaseException:
        stored.delete_all()
        raise
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="segmentation_model", target_id=model.pk)
    return model


def _weights_local_path(model: SegmentationModel) -> Path | None:
    """Return a local copy of the model's weights, cached by SHA-256."""
    if not model.weights_file:
        return None
    cache = Path(settings.VAR_DIR) / "model-cache"
    cache.mkdir(parents=True, exist_ok=True)
    suffix = ".zip" if model.weights_file.name.endswith(".zip") else Path(model.weights_file.name).suffix
    path = cache / f"{model.weights_sha256}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + f".{uuid.uuid4().hex}.part")
        stored_file_to_path(model.weights_file, tmp)
        tmp.replace(path)
    return path


def segmenter_for_model(model: SegmentationModel):
    """Build the inference pipeline of a registered model on the configured device."""
    from .ml.device import configure_threads, select_device
    from .ml.inference import load_segmenter

    if settings.TORCH_NUM_THREADS:
        configure_threads(settings.TORCH_NUM_THREADS)
    device = select_device(settings.INFERENCE_DEVICE)
    num_classes = max(int(entry["index"]) for entry in model.label_table) + 1
    segmenter = load_segmenter(
        architecture=model.architecture,
        network_config=model.network_config,
        preprocessing=model.preprocessing,
        num_classes=num_classes,
        weights_path=_weights_local_path(model),
        device=device,
    )
    return segmenter, device


# --- segmentations --------------------------------------------------------------------------

def segmentation_create(
    *,
    series: Series,
    label_map: np.ndarray,
    label_table: list[dict],
    name: str,
    source: str,
    user: User | None = None,
    model: SegmentationModel | None = None,
    parent: Segmentation | None = None,
) -> Segmentation:
    """Store a label map (shape (k, j, i), on the series grid) as a new segmentation.

    Raises
    ------
    ValueError
        When the label map does not have the series' shape.
    """
    from .imaging.formats import write_labelmap_nifti

    geometry = series_geometry(series)
    if tuple(label_map.shape) != geometry.shape:
        raise ValueError(f"label map shape {label_map.shape} does not match the series grid {geometry.shape}")
    dtype = np.uint8 if int(label_map.max(initial=0)) < 256 else np.uint16
    workdir = _work_dir()
    stored = _StoredKeys()
    try:
        path = workdir / "labelmap.nii.gz"
        write_labelmap_nifti(label_map.astype(dtype, copy=False), geometry, path)
        with transaction.atomic():
            key = f"studies/{series.study_id}/segmentations/{uuid.uuid4().hex}.nii.gz"
            stored_name, sha, _ = stored.save(key, path)
            segmentation = Segmentation(
                series=series, name=name[:200], source=source, model=model, parent=parent,
                version=(parent.version + 1) if parent else 1, label_table=label_table,
                labelmap_file=stored_name, labelmap_sha256=sha, created_by=user,
            )
            segmentation.full_clean()
            segmentation.save()
            audit_record(
                actor=user, action=AuditLog.Action.CREATE, target_type="segmentation", target_id=segmentation.pk,
                hospital=series.study.hospital, channel="worker" if user is None else None,
            )
        return segmentation
    except BaseException:
        stored.delete_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- one-click segmentation -----------------------------------------------------------------

def inference_run_create(*, user: User, series: Series, model: SegmentationModel) -> InferenceRun:
    """Queue a one-click segmentation of ``series`` with ``model``; the worker picks it up after commit.

    Raises
    ------
    portal.api_errors.ServiceError
        When the model is inactive or made for another modality.
    """
    from .tasks import inference_run_task

    if not model.is_active:
        raise ServiceError("This model is not active.", code="model_inactive")
    if model.modality and series.modality and model.modality.upper() != series.modality.upper():
        raise ServiceError(
            f"Model {model.name} is for {model.modality}; this series is {series.modality}.", code="modality_mismatch"
        )
    with transaction.atomic():
        run = InferenceRun(series=series, model=model, requested_by=user)
        run.full_clean()
        run.save()
        audit_record(
            actor=user, action=AuditLog.Action.CREATE, target_type="inference_run", target_id=run.pk,
            hospital=series.study.hospital, detail={"series": series.pk, "model": model.pk},
        )
        run_id, study_id = run.pk, series.study_id
        transaction.on_commit(lambda: inference_run_task.delay(run_id))
        transaction.on_commit(lambda: events.send_inference_progress(InferenceRun.objects.select_related("model").get(pk=run_id), study_id))
    return run


def inference_run_cancel(*, user: User, run: InferenceRun) -> InferenceRun:
    """Ask a run to stop. A queued run is cancelled at once; a running one at its next progress step."""
    with transaction.atomic():
        run = InferenceRun.objects.select_for_update().select_related("model", "series").get(pk=run.pk)
        if run.status in InferenceRun.FINISHED:
            raise ServiceError(f"This run has already finished ({run.status}).", code="run_finished", status_code=409)
        run.cancel_requested = True
        if run.status == InferenceRun.Status.QUEUED:
            run.status = InferenceRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.stage = "cancelled"
        run.save()
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="inference_run", target_id=run.pk,
                     detail={"cancel": True})
        study_id = run.series.study_id
        transaction.on_commit(lambda: events.send_inference_progress(run, study_id))
    return run


def inference_run_wait(run: InferenceRun, *, timeout_s: float, poll_s: float = 0.5, on_update=None) -> InferenceRun:
    """Poll the run row until the worker has finished it; the database is the truth.

    ``on_update(run)`` is called after each read. Raises TimeoutError when the run is still
    unfinished after ``timeout_s`` seconds (for example when no worker is running).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        run.refresh_from_db()
        if on_update is not None:
            on_update(run)
        if run.status in InferenceRun.FINISHED:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run.pk} is still {run.status} after {timeout_s:.0f} s (is a Celery worker running?)")
        time.sleep(poll_s)


class _RunProgress:
    """Progress callback for the ML pipeline: writes percent and stage to the run row (throttled),
    notifies the study page, and raises InferenceCancelled once a cancel was requested."""

    def __init__(self, run: InferenceRun, *, start: float = 5.0, end: float = 90.0):
        self.run = run
        self.start, self.end = start, end
        self.last_write = 0.0
        self.last_percent = -1.0

    def __call__(self, percent: float, stage: str) -> None:
        from .ml.inference import InferenceCancelled

        overall = self.start + (self.end - self.start) * max(0.0, min(100.0, percent)) / 100.0
        now = time.monotonic()
        if now - self.last_write < 0.5 and overall - self.last_percent < 5 and stage == self.run.stage:
            return
        self.last_write, self.last_percent = now, overall
        if InferenceRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
            raise InferenceCancelled("cancelled by the user")
        self.set(overall, stage)

    def set(self, percent: float, stage: str) -> None:
        self.run.progress_percent = percent
        self.run.stage = stage
        InferenceRun.objects.filter(pk=self.run.pk).update(progress_percent=percent, stage=stage)
        events.send_inference_progress(self.run, self.run.series.study_id)


def _run_finish(run: InferenceRun, *, status: str, **fields) -> InferenceRun:
    run.status = status
    run.finished_at = timezone.now()
    for key, value in fields.items():
        setattr(run, key, value)
    run.save()
    events.send_inference_progress(run, run.series.study_id)
    return run


def inference_run_execute(*, run_id: int) -> InferenceRun:
    """Run one queued inference to the end (called by the Celery task; idempotent).

    Loads the canonical volume, runs the model's pipeline (progress and cancellation through the
    run row), stores the label map as a new segmentation, measures it, and records the outcome.
    Failures are recorded on the row with their message, never raised to the caller.
    """
    from diagnosis.services import segmentation_measure

    from .ml.inference import InferenceCancelled

    run = InferenceRun.objects.select_related("model", "series", "series__study", "series__study__hospital").get(pk=run_id)
    if run.status in InferenceRun.FINISHED:
        return run
    if run.cancel_requested:
        return _run_finish(run, status=InferenceRun.Status.CANCELLED, stage="cancelled")
    run.status = InferenceRun.Status.RUNNING
    run.started_at = timezone.now()
    run.error_message = ""
    run.save(update_fields=["status", "started_at", "error_message"])
    progress = _RunProgress(run)
    try:
        progress.set(1.0, "loading")
        volume = series_volume_load(run.series)
        segmenter, device = segmenter_for_model(run.model)
        run.device = str(device)
        InferenceRun.objects.filter(pk=run.pk).update(device=run.device)
        progress.set(5.0, "preprocessing")
        label_map = segmenter(volume, progress=progress)
        progress.set(92.0, "saving")
        segmentation = segmentation_create(
            series=run.series, label_map=label_map, label_table=run.model.label_table,
            name=f"{run.model.display_name or run.model.name} v{run.model.version}", source=Segmentation.Source.MODEL,
            model=run.model,
        )
        progress.set(96.0, "measuring")
        segmentation_measure(segmentation=segmentation, label_map=label_map, volume=volume)
        return _run_finish(run, status=InferenceRun.Status.SUCCEEDED, progress_percent=100.0, stage="done",
                           segmentation=segmentation)
    except InferenceCancelled:
        return _run_finish(run, status=InferenceRun.Status.CANCELLED, stage="cancelled")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        logger.exception("inference run %s failed", run.pk)
        return _run_finish(run, status=InferenceRun.Status.FAILED, stage="failed",
                           error_message=f"{type(exc).__name__}: {exc}"[:2000])
