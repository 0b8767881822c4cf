"""Celery entry points of the annotation app: they take ids, call services, own time limits."""

import logging

from billiard.exceptions import WorkerLostError
from celery import Task, shared_task
from celery.worker.request import Request

logger = logging.getLogger(__name__)


def drop_database_connections() -> None:
    """Close this process's database connections, and its connection pools where there are (PostgreSQL
    with ``DATABASE_POOL``): a pooled connection is otherwise kept open and shared with forked children."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        close_pool = getattr(conn, "close_pool", None)
        conn.close()
        if close_pool is not None:
            close_pool()


class RunRequest(Request):
    """The worker's view of an inference-run message: when the pool process executing it dies
    (OOM, a crash), record the loss on the run row before the message is requeued.

    This runs in the worker's parent process, which survives its pool processes.
    """

    def record_loss(self, run_id: int, reason: str) -> None:
        """Put the run back to queued once, or fail it (the inference-run service; subclasses override)."""
        from .services import inference_run_lost

        inference_run_lost(run_id=run_id, reason=reason)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError) and self.args:
            try:
                # Pool processes forked earlier inherited this process's sockets and may have closed
                # them on the server: write through fresh connections only.
                drop_database_connections()
                self.record_loss(int(self.args[0]), f"the worker process running it was lost ({exc})")
            except Exception:  # noqa: BLE001 - the sweeper ends the run if this write fails
                logger.exception("could not record the loss of inference run %s", self.args[0])
            finally:
                # The parent forks new pool processes: leave them no inherited database connection.
                drop_database_connections()
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class RunTask(Task):
    """Base of tasks that execute a run row: requeued once when their pool process is lost."""

    Request = RunRequest


@shared_task(base=RunTask, name="annotation.inference_run", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, soft_time_limit=3600, time_limit=3700)
def inference_run_task(run_id: int) -> str:
    """Execute one inference run; a run that is not queued is left as it is (idempotent)."""
    from .services import inference_run_execute

    return inference_run_execute(run_id=run_id).status


class TrainingRunRequest(RunRequest):
    """As :class:`RunRequest`, for training runs: a lost run is queued again and resumes from its checkpoint."""

    def record_loss(self, run_id: int, reason: str) -> None:
        from .services import training_run_lost

        training_run_lost(run_id=run_id, reason=reason)


class TrainingRunTask(Task):
    """Base of the training task: requeued once when its pool process is lost."""

    Request = TrainingRunRequest


@shared_task(base=TrainingRunTask, name="annotation.training_run", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 120)
def training_run_task(run_id: int) -> str:
    """Train one training run; a run that is not queued is left as it is (idempotent)."""
    from .services import training_run_execute

    return training_run_execute(run_id=run_id).status


@shared_task(name="annotation.training_runs_sweep", ignore_result=True, soft_time_limit=300, time_limit=330)
def training_runs_sweep_task() -> dict:
    """Resume (from the last checkpoint) or fail training runs whose worker went silent; publish lost jobs."""
    import dataclasses

    from .services import training_runs_sweep

    return dataclasses.asdict(training_runs_sweep())


@shared_task(name="annotation.uncertainty_score", acks_late=True, soft_time_limit=1800, time_limit=1900)
def uncertainty_score_task(series_id: int, model_id: int, method: str) -> float:
    """Score one series' uncertainty under one model for the active-learning ranking (idempotent)."""
    from .services import uncertainty_score_compute

    return uncertainty_score_compute(series_id=series_id, model_id=model_id, method=method).score


@shared_task(name="annotation.runs_sweep", ignore_result=True, soft_time_limit=300, time_limit=330)
def runs_sweep_task() -> dict:
    """Resume or fail inference runs whose worker went silent; publish runs the broker never took."""
    import dataclasses

    from .services import runs_sweep

    return dataclasses.asdict(runs_sweep())


@shared_task(name="annotation.dicom_spool_purge", ignore_result=True, soft_time_limit=300, time_limit=330)
def dicom_spool_purge_task() -> int:
    """Remove refused received series older than ``DICOM_FAILED_RETENTION_DAYS`` from the DICOM spool
    (where the worker shares the listener's ``DICOM_SPOOL_DIR``; the listener also does it itself)."""
    from .services import dicom_spool_failed_purge

    return dicom_spool_failed_purge()
