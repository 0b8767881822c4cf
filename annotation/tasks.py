"""Celery entry points of the annotation app: they take ids, call services, own time limits."""

from celery import shared_task


@shared_task(name="annotation.inference_run", acks_late=True, soft_time_limit=3600, time_limit=3700)
def inference_run_task(run_id: int) -> str:
    """Execute one inference run; a finished run is left as it is (idempotent)."""
    from .services import inference_run_execute

    return inference_run_execute(run_id=run_id).status


@shared_task(name="annotation.uncertainty_score", acks_late=True, soft_time_limit=1800, time_limit=1900)
def uncertainty_score_task(series_id: int, model_id: int, method: str) -> float:
    """Score one series' uncertainty under one model for the active-learning ranking (idempotent)."""
    from .services import uncertainty_score_compute

    return uncertainty_score_compute(series_id=series_id, model_id=model_id, method=method).score
