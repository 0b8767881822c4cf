"""Celery entry points of the diagnosis app: they take ids, call services and own the retries."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


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
