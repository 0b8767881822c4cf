"""Training in the portal: a network trained on a training dataset by a worker, epoch by epoch.

:func:`training_run_start` checks the request and queues a :class:`~annotation.models.TrainingRun`;
after commit the Celery task (``annotation.training_run``) calls :func:`training_run_execute`, which
materialises the dataset (every file checked against its manifest), splits its cases by patient
pseudonym, trains with :func:`annotation.ml.training.train_segmentation`, writes each epoch's loss
and validation Dice to the row, saves a resumable checkpoint to object storage after every epoch and
notifies the run's page; on success it registers the model in the registry with its provenance.

The row is the truth. A run whose worker dies goes back to queued once (the worker's parent process,
:func:`training_run_lost`, or the sweeper, :func:`training_runs_sweep`, from a stale heartbeat) and
resumes from its last checkpoint; cancelling stops it at its next step or epoch.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError, error_message
from portal.models import CLINICAL_ROLES, AuditLog, User
from portal.services import audit_record

from .. import events
from ..models import SegmentationModel, TrainingDataset, TrainingRun
from ..storage import StoredKeys, work_dir
from .registry import segmentation_model_register
from .run_recovery import SweepResult
from .training_datasets import training_dataset_materialise

__all__ = [
    "TrainingSweepResult",
    "training_run_cancel",
    "training_run_execute",
    "training_run_lost",
    "training_run_publish",
    "training_run_start",
    "training_runs_sweep",
]

logger = logging.getLogger(__name__)

DEFAULT_SETTINGS = {
    "epochs": 50, "learning_rate": 1e-3, "patch_size": [48, 64, 48], "augmentation": True, "seed": 0,
    "patience": 10, "batch_size": 2, "val_fraction": 0.2, "network_config": {},
}
_PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6")


# --------------------------------------------------------------------------------------------------
# Starting, publishing, cancelling
# --------------------------------------------------------------------------------------------------


def _bad_setting(name: str) -> ServiceError:
    return ServiceError(_("The training setting “%(setting)s” is not valid."), params={"setting": name},
                        code="invalid_settings")


def _settings_clean(architecture: str, raw: dict | None) -> dict:
    """Return the full settings (defaults filled in), or raise ``invalid_settings`` naming the bad one."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(DEFAULT_SETTINGS) - {"body_part"})
    if unknown:
        raise _bad_setting(unknown[0])
    out = {**DEFAULT_SETTINGS, **raw}

    def integer(name, low, high):
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _bad_setting(name)

    integer("epochs", 1, 1000)
    integer("seed", 0, 2**31 - 1)
    integer("batch_size", 1, 64)
    if out["patience"] is not None:
        integer("patience", 1, 1000)
    for name, low, high in (("learning_rate", 0.0, 1.0), ("val_fraction", 0.0, 0.9)):
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value <= high):
            raise _bad_setting(name)
        out[name] = float(value)
    if not isinstance(out["augmentation"], bool):
        raise _bad_setting("augmentation")
    multiple = 16 if architecture == TrainingRun.Architecture.VNET else 8
    patch = out["patch_size"]
    if (not isinstance(patch, (list, tuple)) or len(patch) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 256 or v % multiple for v in patch)):
        raise _bad_setting("patch_size")
    out["patch_size"] = [int(v) for v in patch]
    if not isinstance(out["network_config"], dict):
        raise _bad_setting("network_config")
    if "body_part" in out and (not isinstance(out["body_part"], str) or not 0 < len(out["body_part"]) <= 64):
        raise _bad_setting("body_part")
    return out


def _dataset_labels_check(dataset: TrainingDataset) -> None:
    """Refuse a dataset whose label maps do not hold exactly its label set's labels (a label without
    any voxel cannot be learnt; a label set changed since the build would mislabel the model)."""
    with_label = dataset.label_statistics.get("cases_with_label") or {}
    in_data = sorted(int(v) for v, n in with_label.items() if int(v) and n)
    in_set = sorted(dataset.label_set.labels.values_list("index", flat=True))
    if in_data != in_set:
        raise ServiceError(
            _("The dataset's label maps hold the labels %(data_labels)s but its label set has %(set_labels)s; "
              "build a new version of the dataset first."),
            params={"data_labels": in_data, "set_labels": in_set}, code="labels_mismatch",
        )


def training_run_start(*, user: User, dataset: TrainingDataset, architecture: str, settings: dict | None = None,
                       enqueue: bool = True) -> TrainingRun:
    """Queue the training of ``architecture`` on ``dataset``; the worker picks it up after commit.

    Parameters
    ----------
    user : User
        A doctor or hospital administrator of the dataset's hospital.
    dataset : TrainingDataset
    architecture : str
        One of :class:`annotation.models.TrainingRun.Architecture` (the networks of
        :data:`annotation.ml.networks.ARCHITECTURES`).
    settings : dict, optional
        Overrides of :data:`DEFAULT_SETTINGS`: ``epochs`` (1–1000), ``learning_rate`` (0–1],
        ``patch_size`` ((k, j, i) voxels, multiples of 8, of 16 for VNet), ``augmentation``, ``seed``,
        ``patience`` (epochs, or None), ``batch_size``, ``val_fraction`` (share of patients held out),
        ``network_config`` and ``body_part`` (of the registered model; the label set's name when absent).
    enqueue : bool
        False only creates the row (for a caller that executes it itself).

    Raises
    ------
    portal.api_errors.ServiceError
        ``not_allowed`` (403) for anyone but the hospital's doctors and administrators;
        ``invalid_architecture``; ``invalid_settings`` naming the setting; ``labels_mismatch``;
        ``queue_unavailable`` (503) when the broker cannot take the job (the run stays queued and the
        sweeper publishes it later).
    """
    if not (user.role in CLINICAL_ROLES and user.hospital_id == dataset.hospital_id):
        raise ServiceError(_("Only the doctors and administrators of the dataset's hospital can train on it."),
                           code="not_allowed", status_code=403)
    if architecture not in TrainingRun.Architecture.values:
        raise ServiceError(_("Unknown network architecture."), code="invalid_architecture")
    cleaned = _settings_clean(architecture, settings)
    _dataset_labels_check(dataset)
    with transaction.atomic():
        run = TrainingRun(dataset=dataset, architecture=architecture, settings=cleaned, created_by=user)
        run.full_clean()
        run.save()
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="training_run", target_id=run.pk,
                     hospital=dataset.hospital,
                     detail={"dataset": dataset.pk, "architecture": architecture, "epochs": cleaned["epochs"]})
        run_id = run.pk
        if enqueue:
            transaction.on_commit(lambda: _publish_or_refuse(run_id))
    return run


def _publish_or_refuse(run_id: int) -> None:
    if not training_run_publish(run_id=run_id):
        raise ServiceError(
            gettext("The job queue is unavailable right now. The run is saved as queued and starts automatically "
                    "once the queue is back."),
            code="queue_unavailable", status_code=503,
        )


def training_run_publish(*, run_id: int) -> bool:
    """Hand a queued training run to the broker and record when; False (logged) when it refused."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from ..tasks import training_run_task

    try:
        training_run_task.apply_async((run_id,), retry=True, retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY)
    except (OperationalError, RedisError, OSError) as exc:
        logger.warning("training run %s: the broker did not take the job (%s)", run_id, type(exc).__name__)
        return False
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(published_at=timezone.now())
    return True


def training_run_cancel(*, user: User, run: TrainingRun) -> TrainingRun:
    """Ask a training run to stop: a queued run is cancelled at once, a running one at its next step.

    Raises
    ------
    portal.api_errors.ServiceError
        ``not_allowed`` (403) for anyone but the hospital's doctors and administrators;
        ``run_finished`` (409) when the run has already finished.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        run = TrainingRun.objects.select_related("dataset", "segmentation_model").get(pk=run.pk)
        if not (user.role in CLINICAL_ROLES and user.hospital_id == run.dataset.hospital_id):
            raise ServiceError(_("Only the doctors and administrators of the dataset's hospital can train on it."),
                               code="not_allowed", status_code=403)
        if run.status in TrainingRun.FINISHED:
            raise ServiceError(_("This run has already finished (%(run_status)s)."),
                               params={"run_status": run.get_status_display()}, code="run_finished", status_code=409)
        run.cancel_requested = True
        if run.status == TrainingRun.Status.QUEUED:
            run.status = TrainingRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.stage = "cancelled"
        run.save()
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="training_run", target_id=run.pk,
                     hospital=run.dataset.hospital, detail={"cancel": True})
        transaction.on_commit(lambda: events.send_training_progress(run), robust=True)
    return run


# --------------------------------------------------------------------------------------------------
# Executing
# --------------------------------------------------------------------------------------------------


def _finite(value):
    """JSON (and PostgreSQL's jsonb) has no NaN: a missing score is stored as null."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _epoch_record(record: dict) -> dict:
    return {
        "epoch": int(record["epoch"]), "loss": _finite(record["loss"]), "mean_dice": _finite(record["mean_dice"]),
        "val_dice_per_label": {str(k): _finite(v) for k, v in record["val_dice_per_label"].items()},
        "duration_s": round(float(record["duration_s"]), 2), "stopped_early": bool(record.get("stopped_early")),
    }


class _TrainingProgress:
    """Progress callback: percent and stage on the row (throttled), heartbeat, and cancellation."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.last_write = 0.0
        self.beat_interval_s = float(settings.RUNS_HEARTBEAT_INTERVAL_S)

    def cancelled(self) -> bool:
        return TrainingRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists()

    def __call__(self, percent: float, stage: str) -> None:
        from ..ml.progress import InferenceCancelled

        now = time.monotonic()
        if now - self.last_write < min(0.5, self.beat_interval_s):
            return
        self.last_write = now
        if self.cancelled():
            raise InferenceCancelled("cancelled by the user")
        overall = 5.0 + 90.0 * max(0.0, min(100.0, percent)) / 100.0
        self.run.progress_percent, self.run.stage = overall, stage
        TrainingRun.objects.filter(pk=self.run.pk).update(progress_percent=overall, stage=stage,
                                                          heartbeat_at=timezone.now())


def _finish(run: TrainingRun, *, status: str, **fields) -> TrainingRun:
    run.status = status
    run.finished_at = timezone.now()
    for key, value in fields.items():
        setattr(run, key, value)
    run.save()
    events.send_training_progress(run)
    return run


def _manifest_patients(folder: Path, case_ids: list[str]) -> dict[str, str]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    patients = {str(e["case"]): str(e["patient"]) for e in manifest.get("cases") or [] if e.get("patient")}
    missing = [c for c in case_ids if c not in patients]
    if missing:
        raise ServiceError(_("This dataset version does not record which patient each case belongs to, so it "
                             "cannot be split by patient; build a new version of the dataset first."),
                           code="dataset_without_patients")
    return {c: patients[c] for c in case_ids}


def _checkpoint_save(run: TrainingRun, state: dict, workdir: Path) -> str:
    """Write the resumable state to a fresh key; the previous epoch's object is deleted after."""
    import torch

    path = workdir / f"state-{state['epoch']:04d}.pt"
    torch.save(state, path)
    stored = StoredKeys()
    key, _sha, _size = stored.save(
        f"training-runs/{run.dataset.hospital_id}/{run.pk}/state-epoch-{state['epoch']:04d}-{uuid.uuid4().hex[:8]}.pt",
        path)
    path.unlink()
    return key


def _checkpoint_load(key: str, workdir: Path) -> dict | None:
    import torch

    if not key or not default_storage.exists(key):
        return None
    path = workdir / "resume.pt"
    with default_storage.open(key, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1024 * 1024)
    return torch.load(path, weights_only=True, map_location="cpu")


def training_run_execute(*, run_id: int) -> TrainingRun:
    """Train one queued run to the end (called by the Celery task; idempotent).

    The run is claimed atomically (queued → running, ``attempts`` + 1); a redelivered job finds it
    running or finished and returns it untouched. With a checkpoint from an earlier attempt, training
    resumes at the epoch after it. Failures (a tampered dataset, a loss that became NaN, any error)
    are recorded on the row with their message, never raised.
    """
    from ..interop.msd import dataset_read
    from ..ml.device import configure_threads, select_device
    from ..ml.inference import Preprocessing
    from ..ml.progress import InferenceCancelled
    from ..ml.training import TrainingConfig, TrainingDiverged, save_checkpoint, split_by_patient, train_segmentation

    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED, cancel_requested=False).update(
        status=TrainingRun.Status.RUNNING, heartbeat_at=now, attempts=F("attempts") + 1, stage="loading",
    )
    run = TrainingRun.objects.select_related("dataset", "dataset__hospital", "dataset__label_set").get(pk=run_id)
    if not claimed:
        if run.status == TrainingRun.Status.QUEUED and run.cancel_requested:
            return _finish(run, status=TrainingRun.Status.CANCELLED, stage="cancelled")
        return run
    if run.started_at is None:
        run.started_at = now
        TrainingRun.objects.filter(pk=run.pk).update(started_at=now)
    events.send_training_progress(run)
    workdir = work_dir()
    progress = _TrainingProgress(run)
    try:
        folder = training_dataset_materialise(dataset=run.dataset, dest=workdir / "dataset")
        data = dataset_read(folder)
        label_set_labels = {label.index: label for label in run.dataset.label_set.labels.all()}
        if sorted(data.label_names) != sorted(label_set_labels):
            raise ServiceError(
                _("The dataset's label maps hold the labels %(data_labels)s but its label set has %(set_labels)s; "
                  "build a new version of the dataset first."),
                params={"data_labels": sorted(data.label_names), "set_labels": sorted(label_set_labels)},
                code="labels_mismatch")
        cases = {case.case_id: case for case in data.cases}
        patients = _manifest_patients(folder, sorted(cases))
        options = run.settings
        train_ids, val_ids = split_by_patient(patients, val_fraction=options["val_fraction"], seed=options["seed"])
        if not run.split:
            run.split = {
                "train_cases": train_ids, "val_cases": val_ids,
                "train_patients": len({patients[c] for c in train_ids}),
                "val_patients": len({patients[c] for c in val_ids}),
            }
            TrainingRun.objects.filter(pk=run.pk).update(split=run.split)
        modality = (data.modality or "OT").upper()
        preprocessing = Preprocessing(
            target_spacing_mm=None, intensity="hu_window" if modality == "CT" else "zscore",
            hu_window=(-1000.0, 1000.0) if modality == "CT" else None, patch_size=tuple(options["patch_size"]),
        )
        config = TrainingConfig(
            architecture=run.architecture, network_config=options["network_config"], preprocessing=preprocessing,
            epochs=options["epochs"], batch_size=options["batch_size"], learning_rate=options["learning_rate"],
            seed=options["seed"], augmentation=options["augmentation"], patience=options["patience"],
        )
        if settings.TORCH_NUM_THREADS:
            configure_threads(settings.TORCH_NUM_THREADS)
        device = select_device(settings.INFERENCE_DEVICE)
        run.device = str(device)
        TrainingRun.objects.filter(pk=run.pk).update(device=run.device)
        resume = _checkpoint_load(run.checkpoint_key, workdir)
        if resume is not None:
            # The row keeps the epochs the checkpoint holds; later ones (after it was written) are redone.
            run.progress = [e for e in run.progress if e["epoch"] <= int(resume["epoch"])]

        def on_epoch(record: dict, state: dict) -> None:
            previous = run.checkpoint_key
            run.checkpoint_key = _checkpoint_save(run, state, workdir)
            run.progress = [*run.progress, _epoch_record(record)]
            run.stage = "training"
            TrainingRun.objects.filter(pk=run.pk).update(
                checkpoint_key=run.checkpoint_key, progress=run.progress, heartbeat_at=timezone.now(), stage="training")
            if previous and previous != run.checkpoint_key:
                default_storage.delete(previous)
            events.send_training_progress(run)
            if progress.cancelled():
                raise InferenceCancelled("cancelled by the user")

        result = train_segmentation(
            [tuple(cases[c]) for c in train_ids], [tuple(cases[c]) for c in val_ids],
            labels=dict(data.label_names), config=config, device=device, progress=progress, on_epoch=on_epoch,
            resume=resume,
        )
        weights = workdir / "model.pt"
        save_checkpoint(result, weights)
        model = _model_register(run, result=result, weights=weights, modality=modality,
                                label_set_labels=label_set_labels)
        return _finish(run, status=TrainingRun.Status.SUCCEEDED, progress_percent=100.0, stage="done",
                       segmentation_model=model)
    except InferenceCancelled:
        return _finish(run, status=TrainingRun.Status.CANCELLED, stage="cancelled")
    except TrainingDiverged as exc:
        logger.warning("training run %s diverged: %s", run.pk, exc)
        return _finish(run, status=TrainingRun.Status.FAILED, stage="failed", error_message=gettext(
            "The training loss became NaN (not a number) at epoch %(epoch)s, step %(step)s, so the run was stopped. "
            "Try a lower learning rate.") % {"epoch": exc.epoch, "step": exc.step})
    except ServiceError as exc:
        return _finish(run, status=TrainingRun.Status.FAILED, stage="failed", error_message=error_message(exc)[:2000])
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        logger.exception("training run %s failed", run.pk)
        return _finish(run, status=TrainingRun.Status.FAILED, stage="failed",
                       error_message=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _model_register(run: TrainingRun, *, result, weights: Path, modality: str,
                    label_set_labels: dict) -> SegmentationModel:
    """Register the trained network for the dataset's hospital, with where it came from."""
    dataset = run.dataset
    label_table = []
    for index, name in sorted(result.labels.items()):
        label = label_set_labels.get(index)
        label_table.append({"index": index, "name": name,
                            "color": label.color if label is not None else _PALETTE[(index - 1) % len(_PALETTE)]})
    dice = {str(k): _finite(v) for k, v in result.val_dice_per_label.items()}
    options = run.settings
    return segmentation_model_register(
        name=f"{dataset.name}-{run.architecture}"[:64],
        display_name=f"{dataset.name} v{dataset.version} ({run.architecture})",
        body_part=options.get("body_part") or dataset.label_set.name[:64], modality=modality,
        architecture=run.architecture, network_config=result.network_config, label_table=label_table,
        preprocessing=result.preprocessing.to_dict(), weights_path=weights,
        validation_metrics={"dice_per_label": dice, "mean_dice": _finite(result.mean_dice), "num_val": result.num_val},
        provenance={
            "source": "training_run", "training_run": run.pk,
            "dataset": {"id": dataset.pk, "name": dataset.name, "version": dataset.version,
                        "manifest_sha256": dataset.manifest_sha256},
            "split": run.split, "settings": options, "val_dice_per_label": dice,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped_early": result.stopped_early,
            "num_train": result.num_train, "num_val": result.num_val,
            "trained_at": timezone.now().isoformat(), "duration_s": round(result.duration_s, 1),
            "device": result.device,
        },
        hospital=dataset.hospital, user=run.created_by,
    )


# --------------------------------------------------------------------------------------------------
# Recovery: lost workers and stale heartbeats (as annotation/services/run_recovery.py for inference)
# --------------------------------------------------------------------------------------------------


# A sweep of training runs reports what the inference sweep reports (run ids per outcome).
TrainingSweepResult = SweepResult


def _requeue_or_fail(run: TrainingRun, *, reason: str) -> str:
    """Put a running run whose executor is gone back to queued (it resumes from its checkpoint), or
    fail it after the last attempt. Call inside a transaction holding the row lock."""
    if run.cancel_requested:
        _finish(run, status=TrainingRun.Status.CANCELLED, stage="cancelled")
        return run.status
    if run.attempts >= settings.RUNS_MAX_ATTEMPTS:
        _finish(run, status=TrainingRun.Status.FAILED, stage="failed",
                error_message=f"{reason}; gave up after {run.attempts} attempts"[:2000])
        return run.status
    run.status = TrainingRun.Status.QUEUED
    run.stage = "retrying"
    run.heartbeat_at = None
    run.published_at = None
    run.error_message = f"{reason}; resuming from the last checkpoint (attempt {run.attempts + 1} of " \
                        f"{settings.RUNS_MAX_ATTEMPTS})"[:2000]
    run.save(update_fields=["status", "stage", "heartbeat_at", "published_at", "error_message"])
    transaction.on_commit(lambda: events.send_training_progress(run), robust=True)
    return run.status


def training_run_lost(*, run_id: int, reason: str) -> TrainingRun | None:
    """Record that the process training a run died: queue it again (to resume) once, or fail it."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != TrainingRun.Status.RUNNING:
            return run
        status = _requeue_or_fail(run, reason=reason)
    logger.warning("training run %s: executor lost, now %s", run_id, status)
    return run


def training_runs_sweep(*, stale_after_s: float | None = None, republish_after_s: float | None = None,
                        now: datetime | None = None) -> TrainingSweepResult:
    """Resume or fail training runs with a stale heartbeat; publish queued runs the broker never took.

    Parameters are those of :func:`annotation.services.runs_sweep` (``RUNS_STALE_AFTER_S``,
    ``RUNS_REPUBLISH_AFTER_S``, ``RUNS_MAX_ATTEMPTS``). A requeued run resumes from its last
    checkpoint when it is executed again.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RUNS_STALE_AFTER_S if stale_after_s is None else stale_after_s)
    republish_after = timedelta(
        seconds=settings.RUNS_REPUBLISH_AFTER_S if republish_after_s is None else republish_after_s)
    result = TrainingSweepResult()
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    for run_id in TrainingRun.objects.filter(stale, status=TrainingRun.Status.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=run_id)
            beat = run.heartbeat_at or run.started_at
            if run.status != TrainingRun.Status.RUNNING or (beat is not None and beat >= cutoff):
                continue
            silent_s = (now - beat).total_seconds() if beat else 0.0
            status = _requeue_or_fail(run, reason=f"no heartbeat from its worker for {silent_s:.0f} s")
        {TrainingRun.Status.QUEUED: result.requeued, TrainingRun.Status.FAILED: result.failed,
         TrainingRun.Status.CANCELLED: result.cancelled}[status].append(run_id)
    unpublished = TrainingRun.objects.filter(
        Q(created_at__lt=now - republish_after) | Q(pk__in=result.requeued),
        status=TrainingRun.Status.QUEUED, published_at__isnull=True, cancel_requested=False,
    ).values_list("pk", flat=True)
    for run_id in unpublished:
        (result.republished if training_run_publish(run_id=run_id) else result.publish_failed).append(run_id)
    if result.requeued or result.failed or result.cancelled or result.republished or result.publish_failed:
        logger.info("training runs sweep: %s", result)
    return result
