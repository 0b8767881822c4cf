"""One-click segmentation: queueing, cancelling, waiting for and executing inference runs.

After the label map is stored, the steps that higher apps registered on
``annotation.hooks.after_model_segmentation`` run (diagnosis measures the segments there).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from .. import events, hooks
from ..models import InferenceRun, Segmentation, SegmentationModel, Series
from ..storage import series_volume_load
from .registry import segmenter_for_model
from .versions import segmentation_create

logger = logging.getLogger(__name__)


def inference_run_create(*, user: User | None, series: Series, model: SegmentationModel, enqueue: bool = True) -> InferenceRun:
    """Queue a one-click segmentation (or detection) of ``series`` with ``model``; the worker picks it up after commit.

    ``enqueue=False`` only creates the row, for a caller that executes it in its own process
    (``manage.py segment/detect --inline``); the same checks apply.

    Raises
    ------
    portal.api_errors.ServiceError
        When the model is inactive or made for another modality (400); when the broker cannot take the
        job (503, code ``queue_unavailable``): the run is committed and stays queued, and the sweeper
        (:func:`annotation.services.runs_sweep`) publishes it again once the broker is back.
    """
    if not model.is_active:
        raise ServiceError(_("This model is not active."), code="model_inactive")
    if model.modality and series.modality and model.modality.upper() != series.modality.upper():
        raise ServiceError(
            _("Model %(model_name)s is for %(modality)s; this series is %(value)s."),
            params={"model_name": model.name, "modality": model.modality,
                    "value": series.modality or _("of unknown modality")},
            code="modality_mismatch",
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
        transaction.on_commit(
            lambda: events.send_inference_progress(InferenceRun.objects.select_related("model").get(pk=run_id), study_id),
            robust=True,
        )
        if enqueue:
            transaction.on_commit(lambda: _publish_or_refuse(run_id))
    return run


def _publish_or_refuse(run_id: int) -> None:
    if not inference_run_publish(run_id=run_id):
        raise ServiceError(
            gettext("The job queue is unavailable right now. The run is saved as queued and starts automatically "
                    "once the queue is back."),
            code="queue_unavailable", status_code=503,
        )


def inference_run_publish(*, run_id: int) -> bool:
    """Hand a queued run to the broker and record when (``published_at``); never blocks for long.

    The broker's connect and read timeouts and the bounded publish retry policy come from the
    ``CELERY_BROKER_TRANSPORT_OPTIONS`` / ``CELERY_TASK_PUBLISH_RETRY_POLICY`` settings, so an
    unreachable or frozen broker costs a few seconds, not a hung request.

    Returns
    -------
    bool
        True when the broker accepted the job; False (logged without patient data) when it did not.
        The run stays queued with ``published_at`` empty either way until a publish succeeds.
    """
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from ..tasks import inference_run_task

    try:
        inference_run_task.apply_async((run_id,), retry=True, retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY)
    except (OperationalError, RedisError, OSError) as exc:
        logger.warning("inference run %s: the broker did not take the job (%s)", run_id, type(exc).__name__)
        return False
    InferenceRun.objects.filter(pk=run_id, status=InferenceRun.Status.QUEUED).update(published_at=timezone.now())
    return True


def inference_run_cancel(*, user: User, run: InferenceRun) -> InferenceRun:
    """Ask a run to stop. A queued run is cancelled at once; a running one at its next progress step."""
    with transaction.atomic():
        run = InferenceRun.objects.select_for_update().select_related("model", "series").get(pk=run.pk)
        if run.status in InferenceRun.FINISHED:
            raise ServiceError(_("This run has already finished (%(run_status)s)."),
                               params={"run_status": run.get_status_display()}, code="run_finished", status_code=409)
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
        self.last_beat = time.monotonic()
        self.beat_interval_s = float(settings.RUNS_HEARTBEAT_INTERVAL_S)

    def __call__(self, percent: float, stage: str) -> None:
        from ..ml.inference import InferenceCancelled

        overall = self.start + (self.end - self.start) * max(0.0, min(100.0, percent)) / 100.0
        now = time.monotonic()
        if now - self.last_write < 0.5 and overall - self.last_percent < 5 and stage == self.run.stage:
            if now - self.last_beat >= self.beat_interval_s:
                self.beat()
            return
        self.last_write, self.last_percent = now, overall
        if InferenceRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
            raise InferenceCancelled("cancelled by the user")
        self.set(overall, stage)

    def beat(self) -> None:
        """Record a sign of life: the sweeper resumes or fails a run whose heartbeat goes stale."""
        self.last_beat = time.monotonic()
        InferenceRun.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())

    def set(self, percent: float, stage: str) -> None:
        self.run.progress_percent = percent
        self.run.stage = stage
        self.last_beat = time.monotonic()
        InferenceRun.objects.filter(pk=self.run.pk).update(progress_percent=percent, stage=stage, heartbeat_at=timezone.now())
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
    run row), stores the label map as a new segmentation, runs the steps registered on
    ``annotation.hooks.after_model_segmentation`` (diagnosis measures it), and records the outcome.
    Failures are recorded on the row with their message, never raised to the caller.

    Only a queued run is executed: it is claimed atomically (queued → running, ``attempts`` + 1), so
    a redelivered or duplicated job finds a finished run, or one another executor holds, and returns
    it untouched. A run whose executor was lost is put back to queued by
    :func:`annotation.services.inference_run_lost` or the sweeper before it is executed again.
    """
    from ..ml.inference import InferenceCancelled

    related = ("model", "series", "series__study", "series__study__hospital")
    now = timezone.now()
    claimed = InferenceRun.objects.filter(pk=run_id, status=InferenceRun.Status.QUEUED, cancel_requested=False).update(
        status=InferenceRun.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1,
        error_message="",
    )
    run = InferenceRun.objects.select_related(*related).get(pk=run_id)
    if not claimed:
        if run.status == InferenceRun.Status.QUEUED and run.cancel_requested:
            return _run_finish(run, status=InferenceRun.Status.CANCELLED, stage="cancelled")
        if run.status == InferenceRun.Status.RUNNING:
            logger.info("inference run %s is already running elsewhere; this delivery is dropped", run.pk)
        return run
    progress = _RunProgress(run)
    try:
        progress.set(1.0, "loading")
        volume = series_volume_load(run.series)
        segmenter, device = segmenter_for_model(run.model)
        run.device = str(device)
        InferenceRun.objects.filter(pk=run.pk).update(device=run.device)
        progress.set(5.0, "preprocessing")
        # A network also returns its voxel-wise uncertainty from the same softmax; classical methods
        # and detectors have none.
        if hasattr(segmenter, "segment_with_uncertainty"):
            result = segmenter.segment_with_uncertainty(volume, progress=progress)
        else:
            result = segmenter(volume, progress=progress)
        # A detector returns its label map with its own label table (one label per found object).
        label_map = getattr(result, "label_map", result)
        label_table = getattr(result, "label_table", None) or run.model.label_table
        progress.set(92.0, "saving")
        segmentation = segmentation_create(
            series=run.series, label_map=label_map, label_table=label_table,
            name=f"{run.model.display_name or run.model.name} v{run.model.version}", source=Segmentation.Source.MODEL,
            model=run.model, uncertainty_map=getattr(result, "uncertainty", None),
        )
        for stage, step in hooks.after_model_segmentation.items():
            progress.set(96.0, stage)
            step(segmentation=segmentation, label_map=label_map, volume=volume)
        return _run_finish(run, status=InferenceRun.Status.SUCCEEDED, progress_percent=100.0, stage="done",
                           segmentation=segmentation)
    except InferenceCancelled:
        return _run_finish(run, status=InferenceRun.Status.CANCELLED, stage="cancelled")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        logger.exception("inference run %s failed", run.pk)
        return _run_finish(run, status=InferenceRun.Status.FAILED, stage="failed",
                           error_message=f"{type(exc).__name__}: {exc}"[:2000])
