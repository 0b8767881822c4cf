"""Celery entry points of the diagnosis app: they take ids, call services, own time limits and retries."""

from __future__ import annotations

import logging

from billiard.exceptions import WorkerLostError
from celery import Task, shared_task
from celery.worker.request import Request
from django.conf import settings

logger = logging.getLogger(__name__)


class PostProcessingRunRequest(Request):
    """The worker's view of a post-processing message: when the pool process executing it dies, record the
    loss on the run row (in the worker's parent process, which survives its pool processes).

    As for annotation's inference runs (``annotation.tasks.RunRequest``), the database connections inherited
    from before the fork are dropped first and the write goes through fresh ones.
    """

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError) and self.args:
            from annotation.tasks import drop_database_connections

            from .services import postprocessing_run_lost

            try:
                drop_database_connections()
                postprocessing_run_lost(run_id=int(self.args[0]), reason=f"the worker process running it was lost ({exc})")
            except Exception:  # noqa: BLE001 - logged; the run row stays as it was
                logger.exception("could not record the loss of post-processing run %s", self.args[0])
            finally:
                drop_database_connections()
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class PostProcessingRunTask(Task):
    Request = PostProcessingRunRequest


# Not redelivered when the worker is lost: a script that kills its worker would kill the next one too.
@shared_task(base=PostProcessingRunTask, name="diagnosis.postprocessing_run", acks_late=True,
             reject_on_worker_lost=False, ignore_result=True, soft_time_limit=900, time_limit=960)
def postprocessing_run_task(run_id: int) -> str:
    """Execute one post-processing run; a run that is not queued is left as it is (idempotent)."""
    from .services import postprocessing_run_execute

    return postprocessing_run_execute(run_id=run_id).status


@shared_task(name="diagnosis.postprocessing_runs_sweep", ignore_result=True, soft_time_limit=120, time_limit=150)
def postprocessing_runs_sweep_task() -> dict:
    """Fail post-processing runs whose worker died; publish queued runs the broker never took."""
    from .services import postprocessing_runs_sweep

    return postprocessing_runs_sweep()

def retry_countdown_s(retries: int) -> float:
    """Seconds before automatic retry number ``retries + 1``: PACS_SEND_RETRY_BASE_S doubling each time."""
    return float(settings.PACS_SEND_RETRY_BASE_S) * (2 ** retries)


@shared_task(bind=True, name="diagnosis.result_send", acks_late=True, ignore_result=True, max_retries=None,
             soft_time_limit=600, time_limit=660)
def result_send_task(self, send_id: int) -> str:
    """Attempt one PACS send (idempotent: a sent one is left alone); retry a curable failure with
    exponential backoff, up to PACS_SEND_MAX_RETRIES times, noting the next attempt on the row."""
    from .models import ResultSend
    from .services.pacs import RETRYABLE_ERRORS, result_send_execute, result_send_retry_scheduled

    send = result_send_execute(send_id=send_id)
    if (send.state == ResultSend.State.FAILED and send.error_code in RETRYABLE_ERRORS
            and self.request.retries < settings.PACS_SEND_MAX_RETRIES):
        countdown = retry_countdown_s(self.request.retries)
        result_send_retry_scheduled(send_id=send_id, countdown_s=countdown)
        raise self.retry(countdown=countdown)
    return send.state


@shared_task(name="diagnosis.pacs_retrieve", acks_late=True, ignore_result=True, soft_time_limit=3600, time_limit=3660)
def pacs_retrieve_task(retrieve_id: int) -> str:
    """Retrieve a patient's prior from the PACS (C-MOVE, or C-GET for a peer that asks for it) once; a failure stays on the row for the clinician
    to retry, since a retry cannot cure most (a wrong AE title, a study the PACS lost)."""
    from .services.pacs_priors import pacs_retrieve_execute

    return pacs_retrieve_execute(retrieve_id=retrieve_id).state


@shared_task(name="diagnosis.study_compare", acks_late=True, ignore_result=True, soft_time_limit=1800, time_limit=1860)
def study_compare_task(study_id: int, prior_id: int, user_id: int | None = None) -> int:
    """Register a study to its prior and match their findings (:func:`diagnosis.services.study_compare`)."""
    from annotation.models import Study
    from portal.models import User

    from .services import study_compare

    user = User.objects.filter(pk=user_id).first() if user_id else None
    study, prior = Study.objects.get(pk=study_id), Study.objects.get(pk=prior_id)
    return study_compare(user=user, study=study, prior=prior).pk
