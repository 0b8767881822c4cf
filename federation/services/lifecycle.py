"""Life cycle: start (queue for the worker), pause and cancel a task. Each change of status is stored on
the task row and announced to the task's group only after the transaction commits; the Celery job is
enqueued the same way, so the worker never sees a task that is not yet queued."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from .. import events, selectors
from ..models import FederatedTask, Participant
from .tasks_invitations import _require_staff


def _set_status(task: FederatedTask, status: str, *, error: str = "") -> None:
    FederatedTask.objects.filter(pk=task.pk).update(status=status, error=error, updated_at=timezone.now())
    task.status, task.error = status, error
    transaction.on_commit(lambda: events.send_task_event(task.pk, "status", {"status": status, "error": error}))


@transaction.atomic
def task_start(*, task: FederatedTask, user: User | None, enqueue: bool = True) -> FederatedTask:
    """Queue a draft or paused task for the worker (resume continues after the last completed round).

    Raises
    ------
    ServiceError
        Not staff of the owner hospital, the task is not draft/paused, or fewer clients accepted than
        the minimum per round.
    """
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status not in (FederatedTask.Status.DRAFT, FederatedTask.Status.PAUSED, FederatedTask.Status.FAILED):
        raise ServiceError(_("A %(get_status_display)s task cannot be started."),
                           params={"get_status_display": task.get_status_display()},
                           code="invalid_state", status_code=409)
    # A hospital trains when it accepted with datasets here or enrolled its own node (which has its data).
    site_nodes = selectors.site_nodes(task=task)
    accepted = sum(1 for p in task.participants.filter(status=Participant.Status.ACCEPTED)
                   if p.datasets or p.pk in site_nodes)
    if accepted < task.min_clients:
        raise ServiceError(
            _("%(accepted)s hospital(s) accepted with a dataset; the task needs at least %(min_clients)s."),
            params={"accepted": accepted, "min_clients": task.min_clients},
            code="too_few_clients",
        )
    _set_status(task, FederatedTask.Status.QUEUED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "queued"})
    if enqueue:
        from ..tasks import federated_task_run

        task_id = task.pk
        transaction.on_commit(lambda: federated_task_run.delay(task_id))
    return task


@transaction.atomic
def task_pause(*, task: FederatedTask, user: User | None) -> FederatedTask:
    """Ask the runner to stop after the round in progress; resume with :func:`task_start`."""
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status not in (FederatedTask.Status.QUEUED, FederatedTask.Status.RUNNING):
        raise ServiceError(_("Only a queued or running task can be paused."), code="invalid_state", status_code=409)
    _set_status(task, FederatedTask.Status.PAUSED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "paused"})
    return task


@transaction.atomic
def task_cancel(*, task: FederatedTask, user: User | None) -> FederatedTask:
    """Cancel a task for good (completed rounds and the ledger stay)."""
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status in (FederatedTask.Status.COMPLETED, FederatedTask.Status.CANCELLED):
        raise ServiceError(_("The task has already ended."), code="invalid_state", status_code=409)
    _set_status(task, FederatedTask.Status.CANCELLED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "cancelled"})
    return task
