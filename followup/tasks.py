"""Celery entry points of the follow-up app (Celery beat runs them on the schedule in settings)."""

from celery import shared_task


@shared_task(name="followup.reminders_dispatch", soft_time_limit=300, time_limit=360)
def reminders_dispatch() -> dict:
    """Send due reminders and mark overdue items (idempotent: safe to run again the same day)."""
    from . import services

    return services.reminders_dispatch()
