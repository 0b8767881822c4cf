"""Runs that never hang: what happens to an inference run whose executor is lost or silent.

Three paths end every run in a clear state:

- the Celery pool process executing it dies (OOM, a crash): the worker's parent process calls
  :func:`inference_run_lost` (``annotation.tasks.RunRequest``) and then requeues the message
  (``acks_late`` + ``reject_on_worker_lost``); the run goes back to queued once, and a second loss
  fails it with the reason;
- the whole worker dies, or an executor hangs: its heartbeat goes stale and :func:`runs_sweep`
  (Celery beat, every ``RUNS_SWEEP_INTERVAL_S``) resumes it once or fails it with the reason;
- the publish to the broker failed (the API answered 503): the run is queued with ``published_at``
  empty, and :func:`runs_sweep` publishes it again.

The executor claims only queued runs (:func:`annotation.services.inference_run_execute`), so a
redelivered message never runs a job twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import events
from ..models import InferenceRun
from .inference import _run_finish, inference_run_publish

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What one sweep did, as lists of run ids."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)
    publish_failed: list[int] = field(default_factory=list)


def _requeue_or_fail(run: InferenceRun, *, reason: str) -> str:
    """Put a running run whose executor is gone back to queued, or fail it after the last attempt.

    Call inside a transaction holding the row lock. Returns the new status.
    """
    study_id = run.series.study_id
    if run.cancel_requested:
        _run_finish(run, status=InferenceRun.Status.CANCELLED, stage="cancelled")
        return run.status
    if run.attempts >= settings.RUNS_MAX_ATTEMPTS:
        _run_finish(run, status=InferenceRun.Status.FAILED, stage="failed",
                    error_message=f"{reason}; gave up after {run.attempts} attempts"[:2000])
        return run.status
    run.status = InferenceRun.Status.QUEUED
    run.stage = "retrying"
    run.heartbeat_at = None
    run.error_message = f"{reason}; retrying (attempt {run.attempts + 1} of {settings.RUNS_MAX_ATTEMPTS})"[:2000]
    run.save(update_fields=["status", "stage", "heartbeat_at", "error_message"])
    transaction.on_commit(lambda: events.send_inference_progress(run, study_id), robust=True)
    return run.status


def inference_run_lost(*, run_id: int, reason: str) -> InferenceRun | None:
    """Record that the process executing a run died; queue it again once, or fail it with ``reason``.

    Called by the Celery worker's parent process when a pool process is lost (the message is then
    requeued and the next execution claims the queued run). A run that already finished or was not
    started yet is left as it is. Returns the run, or None when it no longer exists.
    """
    with transaction.atomic():
        run = InferenceRun.objects.select_for_update().select_related("model", "series").filter(pk=run_id).first()
        if run is None or run.status != InferenceRun.Status.RUNNING:
            return run
        status = _requeue_or_fail(run, reason=reason)
    logger.warning("inference run %s: executor lost, now %s", run_id, status)
    return run


def runs_sweep(*, stale_after_s: float | None = None, republish_after_s: float | None = None,
               now: datetime | None = None) -> SweepResult:
    """Resume or fail runs with a stale heartbeat and publish queued runs the broker never took.

    Parameters
    ----------
    stale_after_s : float, optional
        A running run whose last heartbeat (or start) is older than this many seconds has lost its
        executor (default ``RUNS_STALE_AFTER_S``). It is queued again and published while it has
        attempts left (``RUNS_MAX_ATTEMPTS``), else failed with the reason; a run whose cancel was
        requested is cancelled.
    republish_after_s : float, optional
        A queued run created more than this many seconds ago whose publish failed
        (``published_at`` empty) is published again (default ``RUNS_REPUBLISH_AFTER_S``).
    now : datetime, optional
        The current time (default ``timezone.now()``).

    Returns
    -------
    SweepResult
        The ids of the runs requeued, failed, cancelled, republished and still unpublished.
    """
    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.RUNS_STALE_AFTER_S if stale_after_s is None else stale_after_s)
    republish_after = timedelta(
        seconds=settings.RUNS_REPUBLISH_AFTER_S if republish_after_s is None else republish_after_s
    )
    result = SweepResult()
    cutoff = now - stale_after
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    for run_id in InferenceRun.objects.filter(stale, status=InferenceRun.Status.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            run = InferenceRun.objects.select_for_update().select_related("model", "series").get(pk=run_id)
            beat = run.heartbeat_at or run.started_at
            if run.status != InferenceRun.Status.RUNNING or (beat is not None and beat >= cutoff):
                continue  # it finished or beat meanwhile
            silent_s = (now - beat).total_seconds() if beat else 0.0
            status = _requeue_or_fail(run, reason=f"no heartbeat from its worker for {silent_s:.0f} s")
        {InferenceRun.Status.QUEUED: result.requeued, InferenceRun.Status.FAILED: result.failed,
         InferenceRun.Status.CANCELLED: result.cancelled}[status].append(run_id)
        if status == InferenceRun.Status.QUEUED:
            InferenceRun.objects.filter(pk=run_id).update(published_at=None)
    unpublished = InferenceRun.objects.filter(
        Q(created_at__lt=now - republish_after) | Q(pk__in=result.requeued),
        status=InferenceRun.Status.QUEUED, published_at__isnull=True, cancel_requested=False,
    ).values_list("pk", flat=True)
    for run_id in unpublished:
        (result.republished if inference_run_publish(run_id=run_id) else result.publish_failed).append(run_id)
    if result.requeued or result.failed or result.cancelled or result.republished or result.publish_failed:
        logger.info("runs sweep: %s", result)
    return result
