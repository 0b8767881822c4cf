"""Celery entry points of the annotation app: they take ids, call services, own time limits."""

from celery import shared_task


@shared_task(name="annotation.inference_run", acks_late=True, soft_time_limit=3600, time_limit=3700)
def inference_run_task(run_id: int) -> str:
    """Execute one inference run; a finished run is left as it is (idempotent)."""
    from .services import inference_run_execute

    return inference_run_execute(run_id=run_id).status
