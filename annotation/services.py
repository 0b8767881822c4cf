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
    comment: str = "",
    tool: str = "",
    parameters: dict | None = None,
) -> Segmentation:
    """Store a label map (shape (k, j, i), on the series grid) as a new segmentation.

    Without ``parent`` the row starts a new version tree; with it, the row is a new version in the
    parent's tree (numbered one above the tree's highest) and becomes the tree's current version.
    The parent's stored label map is never touched (copy-on-write).

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
            root_id = None
            version = 1
            if parent is not None:
                root_id = parent.root_id or parent.pk
                # Lock the tree's rows so that two saves cannot both take the same number.
                tree = list(Segmentation.objects.select_for_update().filter(root_id=root_id).values_list("version", flat=True))
                version = max(tree + [parent.version]) + 1
                Segmentation.objects.filter(root_id=root_id, is_current=True).update(is_current=False)
            segmentation = Segmentation(
                series=series, name=name[:200], source=source, model=model, parent=parent,
                version=version, label_table=label_table, root_id=root_id, is_current=True,
                comment=comment[:2000], tool=tool[:64], parameters=parameters or {},
                labelmap_file=stored_name, labelmap_sha256=sha, created_by=user,
            )
            segmentation.full_clean()
            segmentation.save()
            if root_id is None:
                segmentation.root_id = segmentation.pk
                segmentation.save(update_fields=["root"])
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


# --- versions: diffs, refinements, roll back ---------------------------------------------------

def label_table_validate(label_table) -> list[dict]:
    """Check a label table: a non-empty list of ``{"index": 1..65535, "name": str, "color": "#rrggbb"}``
    with distinct indices (extra keys such as ``description``, ``snomed_code`` are kept).

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_label_table`` describing the first problem.
    """
    import re

    if not isinstance(label_table, list) or not label_table:
        raise ServiceError("The label table must be a non-empty list.", code="bad_label_table")
    seen: set[int] = set()
    for entry in label_table:
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 65535 or index in seen:
            raise ServiceError("Each label needs a distinct integer index from 1 to 65535.", code="bad_label_table")
        if not str(entry.get("name", "")).strip():
            raise ServiceError(f"Label {index} has no name.", code="bad_label_table")
        color = entry.get("color", "#ff0000")
        if not isinstance(color, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
            raise ServiceError(f"Label {index} needs a colour written #rrggbb.", code="bad_label_table")
        seen.add(index)
    return label_table


def _locked_labels(segmentation: Segmentation, requested) -> set[int]:
    if requested is None:
        requested = []
    if not isinstance(requested, list) or not all(isinstance(v, int) for v in requested):
        raise ServiceError("locked_labels must be a list of label indices.", code="invalid_input")
    return set(requested) | {int(e["index"]) for e in segmentation.label_table if e.get("locked")}


def segmentation_create_blank(*, user: User, series: Series, name: str, label_table: list[dict]) -> Segmentation:
    """Start a new, empty version tree on ``series`` (all voxels background) to paint from scratch.

    Raises ServiceError for a bad label table.
    """
    label_table_validate(label_table)
    empty = np.zeros(tuple(series.shape), dtype=np.uint8)
    return segmentation_create(series=series, label_map=empty, label_table=label_table, name=name or "manual",
                               source=Segmentation.Source.MANUAL, user=user, tool="blank")


def segmentation_save_diff(
    *,
    user: User,
    parent: Segmentation,
    diff: dict,
    name: str = "",
    comment: str = "",
    tool: str = "",
    locked_labels: list[int] | None = None,
    label_table: list[dict] | None = None,
) -> Segmentation:
    """Apply a browser diff (``annotation.editing.diff`` wire format) to ``parent``'s label map on its
    grid and store the result as a new version; ``parent`` is never changed.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_diff`` (undecodable or malformed runs), ``wrong_grid`` (made on another grid),
        ``unknown_label`` (a label outside the label table), ``locked_label`` (a locked label would
        change), ``empty_diff`` (nothing changed), ``bad_label_table``.
    """
    from .editing.diff import DiffError, diff_apply, diff_decode

    series = parent.series
    table = label_table_validate(label_table) if label_table is not None else parent.label_table
    locked = _locked_labels(parent, locked_labels)
    shape = tuple(series.shape)
    try:
        decoded = diff_decode(diff, max_voxels=int(np.prod(shape)))
        if decoded.voxel_count == 0:
            raise ServiceError("The diff changes no voxel; nothing to save.", code="empty_diff")
        base = segmentation_labelmap_load(parent)
        result = diff_apply(base, decoded, locked_labels=locked, allowed_labels={int(e["index"]) for e in table})
    except DiffError as exc:
        raise ServiceError(exc.message, code=exc.code) from None
    return segmentation_create(
        series=series, label_map=result, label_table=table, name=name or parent.name,
        source=Segmentation.Source.MANUAL, user=user, parent=parent, comment=comment, tool=tool or "editor",
        parameters={"changed_voxels": decoded.voxel_count, "runs": len(decoded.runs)},
    )


def segmentation_refine(
    *,
    user: User,
    parent: Segmentation,
    operation: str,
    params: dict,
    mask_segmentation: Segmentation | None = None,
    comment: str = "",
) -> Segmentation:
    """Run one refinement (``annotation.editing.refine.OPERATIONS``) on ``parent`` and store the
    result as a new version that records the operation and its parameters.

    ``restrict_to_mask`` takes its mask from ``mask_segmentation`` (its non-zero voxels, or those of
    ``params["mask_labels"]``), which must lie on the same series.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_refinement`` for an unknown operation or bad parameters, ``wrong_grid`` for a mask on
        another series.
    """
    from .editing.refine import refine
    from .editing.tools import EditError

    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", code="bad_refinement")
    mask = None
    if mask_segmentation is not None:
        if mask_segmentation.series_id != parent.series_id:
            raise ServiceError("The mask segmentation belongs to another series.", code="wrong_grid")
        mask_map = segmentation_labelmap_load(mask_segmentation)
        wanted = params.get("mask_labels")
        mask = np.isin(mask_map, wanted) if isinstance(wanted, list) else mask_map > 0
    base = segmentation_labelmap_load(parent)
    try:
        result = refine(base, tuple(parent.series.spacing_mm), operation, params, mask=mask)
    except EditError as exc:
        raise ServiceError(exc.message, code="bad_refinement" if exc.code == "bad_edit" else exc.code) from None
    recorded = {**params, **({"mask_segmentation": mask_segmentation.pk} if mask_segmentation else {})}
    return segmentation_create(
        series=parent.series, label_map=result, label_table=parent.label_table, name=parent.name,
        source=Segmentation.Source.MANUAL, user=user, parent=parent, comment=comment,
        tool=f"refine:{operation}", parameters=recorded,
    )


@transaction.atomic
def segmentation_make_current(*, user: User, segmentation: Segmentation) -> Segmentation:
    """Roll back (or forward): make ``segmentation`` the current version of its tree. Nothing is deleted."""
    root_id = segmentation.root_id or segmentation.pk
    list(Segmentation.objects.select_for_update().filter(root_id=root_id).values_list("pk", flat=True))
    Segmentation.objects.filter(root_id=root_id, is_current=True).exclude(pk=segmentation.pk).update(is_current=False)
    Segmentation.objects.filter(pk=segmentation.pk).update(is_current=True)
    segmentation.is_current = True
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="segmentation", target_id=segmentation.pk,
                 hospital=segmentation.series.study.hospital, detail={"make_current": True})
    return segmentation


def _labelmap_nifti_bytes(label_map: np.ndarray, geometry: Geometry, *, gz: bool = True) -> bytes:
    from .imaging.formats import write_labelmap_nifti

    workdir = _work_dir()
    try:
        path = workdir / ("labelmap.nii.gz" if gz else "labelmap.nii")
        write_labelmap_nifti(label_map, geometry, path)
        return path.read_bytes()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def segmentation_change_map_nifti(*, user: User, segmentation_id: int, other_id: int) -> tuple[bytes, str]:
    """Return the difference of two visible versions as a NIfTI label map on the series grid
    (``annotation.editing.compare.change_map``: 1 added, 2 removed) and a file name; audited.

    Raises Http404 for an invisible segmentation and ServiceError ``wrong_grid`` across series.
    """
    from .editing.compare import change_map
    from .selectors import segmentation_get

    a = segmentation_get(user=user, segmentation_id=segmentation_id)
    b = segmentation_get(user=user, segmentation_id=other_id)
    if a.series_id != b.series_id:
        raise ServiceError("The two segmentations lie on different series.", code="wrong_grid")
    changes = change_map(segmentation_labelmap_load(a), segmentation_labelmap_load(b))
    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="segmentation", target_id=a.pk,
                 hospital=a.series.study.hospital, detail={"compare_with": b.pk})
    return _labelmap_nifti_bytes(changes, series_geometry(a.series)), f"changes-{a.pk}-{b.pk}.nii.gz"


# --- export and import -------------------------------------------------------------------------

EXPORT_FORMATS = ("nifti", "nifti_gz", "json", "dicom_seg")
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage (PS3.4 B.5)


def segmentation_layers(segmentation: Segmentation) -> list[Segmentation]:
    """Return ``segmentation`` and, when it is one layer of an overlapping label set, the current
    versions of the other layers, ordered by layer index."""
    if not segmentation.layer_group:
        return [segmentation]
    others = Segmentation.objects.filter(layer_group=segmentation.layer_group, is_current=True).exclude(
        root_id=segmentation.root_id
    ).select_related("series")
    return sorted([segmentation, *others], key=lambda s: s.layer_index)


def _merged_label_table(layers: list[Segmentation]) -> list[dict]:
    table: dict[int, dict] = {}
    for layer in layers:
        for entry in layer.label_table:
            table.setdefault(int(entry["index"]), entry)
    return [table[k] for k in sorted(table)]


def _source_datasets(series: Series) -> list:
    import pydicom

    datasets = []
    for source in series.source_files.all():
        with source.file.open("rb") as fh:
            try:
                datasets.append(pydicom.dcmread(fh))
            except Exception:  # noqa: BLE001 - a non-DICOM original (NIfTI import) means no SEG
                return []
    return datasets


def segmentation_export_json(segmentation: Segmentation) -> dict:
    """Return the JSON export: label table, series geometry, provenance and measurements per label
    (measured now when the version has none yet, through ``diagnosis.services``)."""
    from diagnosis.selectors import measurement_list
    from diagnosis.services import measurement_payload, segmentation_measure

    layers = segmentation_layers(segmentation)
    measurements = []
    for layer in layers:
        rows = list(measurement_list(segmentation=layer))
        if not rows:
            segmentation_measure(segmentation=layer)
            rows = list(measurement_list(segmentation=layer))
        measurements += [{**measurement_payload(r, layer.label_table), "layer": layer.layer_index} for r in rows]
    series = segmentation.series
    return {
        "format": "yixin-segmentation/1",
        "segmentation": {
            "id": segmentation.pk, "uid": str(segmentation.uid), "name": segmentation.name,
            "version": segmentation.version, "parent": segmentation.parent_id, "root": segmentation.root_id,
            "source": segmentation.source, "tool": segmentation.tool, "parameters": segmentation.parameters,
            "model": str(segmentation.model) if segmentation.model_id else None,
            "review_status": segmentation.review_status, "created_at": segmentation.created_at.isoformat(),
            "layers": [layer.pk for layer in layers],
        },
        "series": {
            "series_instance_uid": series.series_instance_uid, "study_instance_uid": series.study.study_instance_uid,
            "modality": series.modality,
        },
        "geometry": {**series_geometry(series).to_dict(), "axis_order": "k, j, i", "coordinates": "LPS mm"},
        "label_table": _merged_label_table(layers),
        "measurements": measurements,
    }


def segmentation_export(*, user: User | None, segmentation: Segmentation, fmt: str) -> tuple[bytes, str, str]:
    """Export a segmentation version (with its other layers when it has any) and audit the download.

    Formats: ``nifti`` / ``nifti_gz`` (the label map on the series' original grid; several layers
    come as a zip of one file per layer), ``json`` (label table, geometry, measurements),
    ``dicom_seg`` (highdicom, referencing the source DICOM series).

    Returns
    -------
    (bytes, file name, content type)

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_format``; ``seg_needs_dicom`` for DICOM SEG of a series not imported from DICOM;
        ``empty_segmentation`` for a DICOM SEG of an empty label map.
    """
    import io
    import json
    import zipfile

    from .interop.dicom_seg import SegInteropError, labelmap_to_dicom_seg

    if fmt not in EXPORT_FORMATS:
        raise ServiceError(f"Unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}.", code="bad_format")
    series = segmentation.series
    base = f"segmentation-{segmentation.pk}-v{segmentation.version}"
    layers = segmentation_layers(segmentation)
    if fmt == "json":
        data = json.dumps(segmentation_export_json(segmentation), ensure_ascii=False, indent=2).encode("utf-8")
        result = (data, f"{base}.json", "application/json")
    elif fmt in ("nifti", "nifti_gz"):
        gz = fmt == "nifti_gz"
        suffix = ".nii.gz" if gz else ".nii"
        files = [(_labelmap_nifti_bytes(segmentation_labelmap_load(layer), series_geometry(series), gz=gz),
                  f"{base}-layer{layer.layer_index}{suffix}") for layer in layers]
        if len(files) == 1:
            result = (files[0][0], f"{base}{suffix}", "application/gzip" if gz else "application/octet-stream")
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for data, name in files:
                    archive.writestr(name, data)
            result = (buffer.getvalue(), f"{base}-layers.zip", "application/zip")
    else:
        sources = _source_datasets(series) if series.source_format == Series.SourceFormat.DICOM else []
        try:
            seg = labelmap_to_dicom_seg(
                [segmentation_labelmap_load(layer) for layer in layers], series_geometry(series), sources,
                _merged_label_table(layers), series_description=f"{segmentation.name} v{segmentation.version}",
            )
        except SegInteropError as exc:
            raise ServiceError(exc.message, code=exc.code) from None
        buffer = io.BytesIO()
        seg.save_as(buffer)
        result = (buffer.getvalue(), f"{base}.dcm", "application/dicom")
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation", target_id=segmentation.pk,
                 hospital=series.study.hospital, detail={"format": fmt, "layers": len(layers)})
    return result


def studies_export_zip(*, user: User, studies: list[Study], formats: list[str]) -> bytes:
    """Export the current version of every segmentation of ``studies`` as one zip with a
    ``manifest.json`` (study/series UIDs, segmentation ids and versions, files with SHA-256).

    Raises ServiceError ``bad_format`` or ``nothing_to_export``.
    """
    import hashlib
    import io
    import json
    import zipfile

    if not formats or any(f not in EXPORT_FORMATS for f in formats):
        raise ServiceError(f"Choose export formats among {', '.join(EXPORT_FORMATS)}.", code="bad_format")
    manifest = {"format": "yixin-export/1", "created_at": timezone.now().isoformat(), "studies": []}
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for study in studies:
            entry = {"study_id": study.pk, "study_instance_uid": study.study_instance_uid, "segmentations": []}
            current = Segmentation.objects.filter(series__study=study, is_current=True).select_related(
                "series", "series__study", "series__study__hospital", "model").order_by("series_id", "pk")
            seen_groups: set = set()
            for segmentation in current:
                if segmentation.layer_group:
                    if segmentation.layer_group in seen_groups:
                        continue
                    seen_groups.add(segmentation.layer_group)
                files = []
                for fmt in formats:
                    try:
                        data, name, _ = segmentation_export(user=user, segmentation=segmentation, fmt=fmt)
                    except ServiceError as exc:
                        files.append({"format": fmt, "error": exc.message})
                        continue
                    path = f"study-{study.pk}/series-{segmentation.series_id}/{name}"
                    archive.writestr(path, data)
                    files.append({"format": fmt, "path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
                    count += 1
                entry["segmentations"].append({
                    "id": segmentation.pk, "name": segmentation.name, "version": segmentation.version,
                    "series_instance_uid": segmentation.series.series_instance_uid, "files": files,
                })
            manifest["studies"].append(entry)
        if count == 0:
            raise ServiceError("These studies have no segmentation to export.", code="nothing_to_export")
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    return buffer.getvalue()


def _is_dicom_seg(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM at all
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS_UID


def segmentation_import(
    *,
    user: User | None,
    series: Series,
    path: Path,
    name: str = "",
    label_table: list[dict] | None = None,
    label_names: dict[int, str] | None = None,
) -> list[Segmentation]:
    """Import a label map file (NIfTI, NRRD, MetaImage or DICOM SEG) onto ``series`` as a new
    segmentation, after checking that it lies on the series' grid.

    A DICOM SEG whose segments overlap becomes several layers (segmentations sharing a
    ``layer_group``); otherwise one segmentation is made.

    Raises
    ------
    portal.api_errors.ServiceError
        ``wrong_grid`` naming what differs (shape, spacing, orientation, origin), ``bad_labelmap``,
        ``bad_dicom_seg``, ``bad_label_table``.
    annotation.imaging.ImagingError
        For a file that cannot be read at all.
    """
    import pydicom

    from .interop.dicom_seg import SegInteropError, dicom_seg_to_layers
    from .interop.labelmaps import default_label_table, labelmap_read

    geometry = series_geometry(series)
    try:
        if _is_dicom_seg(path):
            imported = dicom_seg_to_layers(pydicom.dcmread(path), geometry)
            layers, table, tool = imported.layers, imported.label_table, "import:dicom_seg"
        else:
            layer = labelmap_read(path, geometry)
            layers, tool = [layer], "import:labelmap"
            table = default_label_table(layer, label_names)
    except SegInteropError as exc:
        raise ServiceError(exc.message, code=exc.code) from None
    if label_table is not None:
        table = label_table_validate(label_table)
        present = {int(v) for layer in layers for v in np.unique(layer) if v != 0}
        missing = sorted(present - {int(e["index"]) for e in table})
        if missing:
            raise ServiceError(f"The label map holds labels {missing} that the label table lacks.", code="bad_label_table")
    group = uuid.uuid4() if len(layers) > 1 else None
    created = []
    with transaction.atomic():
        for n, layer in enumerate(layers):
            present = {int(v) for v in np.unique(layer) if v != 0}
            layer_table = [e for e in table if int(e["index"]) in present] if group else table
            segmentation = segmentation_create(
                series=series, label_map=layer, label_table=layer_table or table,
                name=(name or Path(path).name.split(".")[0])[:190] + (f" [{n + 1}]" if group else ""),
                source=Segmentation.Source.IMPORT, user=user, tool=tool,
                parameters={"file": Path(path).name[:200], **({"layer": n} if group else {})},
            )
            if group:
                segmentation.layer_group, segmentation.layer_index = group, n
                segmentation.save(update_fields=["layer_group", "layer_index"])
            created.append(segmentation)
    return created


@dataclass
class DatasetImportResult:
    studies: list[Study] = field(default_factory=list)
    segmentations: list[Segmentation] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def dataset_import(*, user: User | None, hospital: Hospital, root: Path, limit: int | None = None,
                   mrn_prefix: str = "") -> DatasetImportResult:
    """Batch-import a labelled dataset in the MSD or nnU-Net layout: each case becomes a patient
    (MRN = prefix + case id), a study with the image, and a segmentation from its label map.

    A case that fails (a duplicate, a label map off the image grid) is skipped with its reason; the
    others are kept.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_dataset`` when the folder is not such a dataset.
    """
    from .imaging.errors import ImagingError
    from .interop.msd import DatasetLayoutError, dataset_read

    try:
        dataset = dataset_read(root)
    except DatasetLayoutError as exc:
        raise ServiceError(exc.message, code=exc.code) from None
    cases = dataset.cases[:limit] if limit else dataset.cases
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
    # Every label of the dataset is listed, also those absent from one case.
    table = [{"index": k, "name": v, "color": palette[(k - 1) % len(palette)]} for k, v in sorted(dataset.label_names.items())]
    result = DatasetImportResult()
    for case in cases:
        try:
            with transaction.atomic():
                imported = study_import(user=user, hospital=hospital, patient_mrn=f"{mrn_prefix}{case.case_id}"[:64],
                                        paths=[case.image], modality=dataset.modality)
                series = imported.series[0]
                segs = segmentation_import(user=user, series=series, path=case.label, name=f"{dataset.name} {case.case_id}",
                                           label_table=table)
            result.studies += imported.studies
            result.segmentations += segs
        except (ServiceError, ImagingError) as exc:
            result.skipped.append((case.case_id, getattr(exc, "message", str(exc))))
    if hospital is not None:
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="dataset_import", hospital=hospital,
                     detail={"cases": len(cases), "imported": len(result.segmentations), "skipped": len(result.skipped)})
    return result


def segmentation_model_export_bundle(*, user: User, model: SegmentationModel) -> tuple[bytes, str]:
    """Export a registered MONAI-network model as a zipped MONAI bundle with TorchScript inside.

    Returns (zip bytes, file name).

    Raises
    ------
    portal.api_errors.ServiceError
        ``not_exportable`` for the classical method, TorchScript/bundle models or a model without
        weights.
    """
    from .interop.bundle import bundle_write, bundle_zip
    from .ml.networks import ARCHITECTURES, build_network, default_network_config

    if model.architecture not in ARCHITECTURES or not model.weights_file:
        raise ServiceError("Only trained MONAI networks (UNet, VNet, SegResNet, DynUNet) with weights can be "
                           "exported as a MONAI bundle.", code="not_exportable")
    import torch

    num_classes = max(int(e["index"]) for e in model.label_table) + 1
    network = build_network(model.architecture, in_channels=1, out_channels=num_classes, config=model.network_config)
    state = torch.load(_weights_local_path(model), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    network.load_state_dict(state)
    kwargs = {**default_network_config(model.architecture), **model.network_config,
              "in_channels": 1, "out_channels": num_classes}
    patch = tuple(model.preprocessing.get("patch_size") or (32, 32, 32))
    workdir = _work_dir()
    try:
        root = bundle_write(workdir, name=f"{model.name}_v{model.version}".replace("-", "_"), version=f"{model.version}.0.0",
                            architecture=model.architecture, network_kwargs=kwargs, network=network,
                            label_table=model.label_table, preprocessing=model.preprocessing,
                            description=model.display_name, patch_size=patch)
        data = bundle_zip(root, workdir / "bundle.zip").read_bytes()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation_model", target_id=model.pk,
                 detail={"format": "monai_bundle"})
    return data, f"{root.name}.zip"


# --- label sets ----------------------------------------------------------------------------------

def _label_fields_check(*, index: int | None = None, name: str | None = None, color: str | None = None,
                        snomed_code: str | None = None) -> None:
    import re

    if index is not None and (not isinstance(index, int) or not 1 <= index <= 65535):
        raise ServiceError("A label value must be an integer from 1 to 65535.", code="bad_label")
    if name is not None and not name.strip():
        raise ServiceError("A label needs a name.", code="bad_label")
    if color is not None and not re.fullmatch(r"#[0-9a-fA-F]{6}", color or ""):
        raise ServiceError("A colour is written #rrggbb.", code="bad_label")
    if snomed_code and not re.fullmatch(r"\d{6,18}", snomed_code):
        raise ServiceError("A SNOMED CT concept id has 6 to 18 digits.", code="bad_label")


@transaction.atomic
def label_set_create(*, user: User, hospital: Hospital, name: str, project: str = "", description: str = "",
                     allow_overlap: bool = False, labels: list[dict] | None = None):
    """Create a label set of a hospital (optionally for one project) with its labels.

    Raises ServiceError ``bad_label`` or ``label_set_exists`` (409).
    """
    from .models import Label, LabelSet

    if LabelSet.objects.filter(hospital=hospital, project=project, name=name).exists():
        raise ServiceError("A label set with this name exists already.", code="label_set_exists", status_code=409)
    label_set = LabelSet(hospital=hospital, project=project, name=name, description=description,
                         allow_overlap=allow_overlap, created_by=user)
    label_set.full_clean()
    label_set.save()
    seen: set[int] = set()
    for entry in labels or []:
        _label_fields_check(index=entry.get("index"), name=entry.get("name", ""), color=entry.get("color", "#ff0000"),
                            snomed_code=entry.get("snomed_code", ""))
        if entry["index"] in seen:
            raise ServiceError(f"Label value {entry['index']} appears twice.", code="bad_label")
        seen.add(entry["index"])
        Label.objects.create(label_set=label_set, index=entry["index"], name=entry["name"],
                             color=entry.get("color", "#ff0000"), description=entry.get("description", ""),
                             snomed_code=entry.get("snomed_code", ""), snomed_meaning=entry.get("snomed_meaning", ""))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="label_set", target_id=label_set.pk, hospital=hospital)
    return label_set


@transaction.atomic
def label_set_update(*, user: User, label_set, **fields):
    """Rename or describe a label set, or change whether it allows overlapping segments."""
    for key in ("name", "project", "description", "allow_overlap"):
        if key in fields and fields[key] is not None:
            setattr(label_set, key, fields[key])
    label_set.full_clean()
    label_set.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="label_set", target_id=label_set.pk,
                 hospital=label_set.hospital)
    return label_set


@transaction.atomic
def label_upsert(*, user: User, label_set, index: int, **fields):
    """Add a label to a set, or rename / recolour / describe / code the one with this value.

    Raises ServiceError ``bad_label``.
    """
    from .models import Label

    _label_fields_check(index=index, name=fields.get("name"), color=fields.get("color"), snomed_code=fields.get("snomed_code"))
    label = Label.objects.filter(label_set=label_set, index=index).first()
    if label is None:
        if not fields.get("name"):
            raise ServiceError("A new label needs a name.", code="bad_label")
        label = Label(label_set=label_set, index=index)
    for key in ("name", "color", "description", "snomed_code", "snomed_meaning"):
        if fields.get(key) is not None:
            setattr(label, key, fields[key])
    label.full_clean()
    label.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="label_set", target_id=label_set.pk,
                 hospital=label_set.hospital, detail={"label": index})
    return label


def segmentation_create_from_label_set(*, user: User, series: Series, label_set, name: str = "") -> list[Segmentation]:
    """Start empty segmentations on ``series`` from a label set: one label map, or, when the set
    allows overlapping segments, one layer per label (sharing a ``layer_group``).

    Raises ServiceError ``bad_label_table`` for a label set without labels.
    """
    table = label_set.label_table()
    if not table:
        raise ServiceError("This label set has no labels yet.", code="bad_label_table")
    tables = [[entry] for entry in table] if label_set.allow_overlap else [table]
    group = uuid.uuid4() if label_set.allow_overlap else None
    created = []
    with transaction.atomic():
        for n, layer_table in enumerate(tables):
            segmentation = segmentation_create_blank(
                user=user, series=series, label_table=layer_table,
                name=(name or label_set.name)[:180] + (f" · {layer_table[0]['name']}" if group else ""),
            )
            segmentation.label_set = label_set
            segmentation.layer_group, segmentation.layer_index = group, n
            segmentation.save(update_fields=["label_set", "layer_group", "layer_index"])
            created.append(segmentation)
    return created


# --- review workflow -----------------------------------------------------------------------------

def study_assign(*, user: User, study: Study, annotator: User, review_only: bool = False):
    """Assign a study to an annotator (or doctor) of the same hospital; idempotent per person.

    Raises ServiceError ``bad_annotator`` for a user of another hospital or a patient.
    """
    from portal.models import STAFF_ROLES

    from .models import StudyAssignment

    if annotator.role not in STAFF_ROLES or annotator.hospital_id != study.hospital_id:
        raise ServiceError("Studies can be assigned only to staff of the study's hospital.", code="bad_annotator")
    with transaction.atomic():
        assignment, created = StudyAssignment.objects.get_or_create(
            study=study, annotator=annotator, defaults={"assigned_by": user, "review_only": review_only})
        if not created and assignment.review_only != review_only:
            assignment.review_only = review_only
            assignment.save(update_fields=["review_only"])
        audit_record(actor=user, action=AuditLog.Action.CREATE if created else AuditLog.Action.UPDATE,
                     target_type="study_assignment", target_id=assignment.pk, hospital=study.hospital,
                     detail={"annotator": annotator.pk})
    return assignment


_TRANSITIONS = {
    "submit": ({"draft", "rejected"}, "submitted"),
    "approve": ({"submitted"}, "approved"),
    "reject": ({"submitted"}, "rejected"),
}


def segmentation_review(*, user: User, segmentation: Segmentation, decision: str, text: str = ""):
    """Move a version through draft → submitted → approved / rejected and record the comment.

    Annotators and doctors submit; only doctors and hospital administrators (clinicians) approve or
    reject, and not their own version. A rejection needs a comment.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_decision``; ``invalid_transition`` (409) from the current status; ``not_reviewer``
        (403); ``comment_required``.
    """
    from portal.permissions import is_clinician

    from .models import ReviewComment, StudyAssignment

    if decision not in _TRANSITIONS:
        raise ServiceError("The decision must be submit, approve or reject.", code="bad_decision")
    allowed_from, target = _TRANSITIONS[decision]
    if decision in ("approve", "reject"):
        if not is_clinician(user):
            raise ServiceError("Only doctors review segmentations.", code="not_reviewer", status_code=403)
        if segmentation.created_by_id == user.pk:
            raise ServiceError("A version is reviewed by someone other than its author.", code="not_reviewer", status_code=403)
    if decision == "reject" and not text.strip():
        raise ServiceError("Say why the version is rejected.", code="comment_required")
    with transaction.atomic():
        current = Segmentation.objects.select_for_update().get(pk=segmentation.pk)
        if current.review_status not in allowed_from:
            raise ServiceError(f"A {current.review_status} version cannot be {target}.", code="invalid_transition",
                               status_code=409)
        current.review_status = target
        current.save(update_fields=["review_status"])
        study = segmentation.series.study
        comment = ReviewComment.objects.create(study=study, segmentation=current, author=user,
                                               decision=decision, text=text[:4000])
        if decision == "submit":
            StudyAssignment.objects.filter(study=study, annotator=user).update(status=StudyAssignment.Status.SUBMITTED)
        elif decision == "approve" and current.created_by_id:
            StudyAssignment.objects.filter(study=study, annotator_id=current.created_by_id).update(
                status=StudyAssignment.Status.DONE)
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="segmentation", target_id=current.pk,
                     hospital=study.hospital, detail={"review": decision})
    segmentation.review_status = target
    return comment


def review_comment_add(*, user: User, study: Study, text: str):
    """Add a plain comment on a study. Raises ServiceError ``comment_required`` for empty text."""
    from .models import ReviewComment

    if not text.strip():
        raise ServiceError("The comment is empty.", code="comment_required")
    comment = ReviewComment.objects.create(study=study, author=user, text=text[:4000])
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="review_comment", target_id=comment.pk,
                 hospital=study.hospital)
    return comment


# --- active learning -------------------------------------------------------------------------------

def uncertainty_rank_start(*, user: User, model: SegmentationModel, method: str = "entropy", limit: int = 20) -> list[int]:
    """Queue uncertainty scoring of the user's hospital's unlabelled series (after commit); return their ids.

    Raises ServiceError ``bad_method`` or ``not_scorable`` for the classical method.
    """
    from .ml.uncertainty import METHODS
    from .selectors import unlabelled_series
    from .tasks import uncertainty_score_task

    if method not in METHODS:
        raise ServiceError(f"Choose the uncertainty method among {', '.join(METHODS)}.", code="bad_method")
    if model.architecture == SegmentationModel.Architecture.CLASSICAL_LUNG:
        raise ServiceError("The classical method gives no probabilities to score.", code="not_scorable")
    series_ids = [s.pk for s in unlabelled_series(user=user, modality=model.modality)[:limit]]
    model_id = model.pk
    for series_id in series_ids:
        transaction.on_commit(lambda sid=series_id: uncertainty_score_task.delay(sid, model_id, method))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="uncertainty_ranking", target_id=model.pk,
                 detail={"series": len(series_ids), "method": method})
    return series_ids


def uncertainty_score_compute(*, series_id: int, model_id: int, method: str = "entropy", samples: int = 6):
    """Score one series with one model and store the result (called by the Celery task; idempotent).

    Raises ValueError from ``annotation.ml.uncertainty`` for a model it cannot score.
    """
    from .ml.uncertainty import segmenter_uncertainty
    from .models import UncertaintyScore

    series = Series.objects.get(pk=series_id)
    model = SegmentationModel.objects.get(pk=model_id)
    segmenter, _device = segmenter_for_model(model)
    result = segmenter_uncertainty(segmenter, series_volume_load(series), method=method, samples=samples)
    score, _ = UncertaintyScore.objects.update_or_create(
        series=series, model=model, method=method, defaults={"score": result.score, "details": result.to_dict()})
    return score
