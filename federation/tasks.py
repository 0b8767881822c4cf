"""Celery entry points of the federation app: they take ids, call services, own time limits."""

from celery import shared_task


@shared_task(name="federation.task_run", acks_late=True, soft_time_limit=24 * 3600, time_limit=24 * 3600 + 300)
def federated_task_run(task_id: int) -> str:
    """Run a queued federated task to its end (a running, paused, cancelled or finished task is left as
    it is: a redelivered message never starts a second runner; the sweeper resumes a lost one)."""
    from .services import task_execute

    return task_execute(task_id=task_id).status


@shared_task(name="federation.tasks_sweep", ignore_result=True)
def federated_tasks_sweep() -> dict:
    """Celery beat: resume or fail running federated tasks whose runner was lost (see services.recovery)."""
    from dataclasses import asdict

    from .services import federated_tasks_sweep as sweep

    return asdict(sweep())
