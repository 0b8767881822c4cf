"""Pages: the list of federated tasks and invitations, and a task's live page."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from portal.models import STAFF_ROLES

from . import selectors, services
from .models import FederatedTask


def _require_staff(user) -> None:
    # Federated training is hospital staff's business; a patient gets a plain 404.
    if not (user.is_platform_admin or (user.role in STAFF_ROLES and user.hospital_id)):
        raise Http404


@login_required
def task_list(request):
    _require_staff(request.user)
    tasks = selectors.task_list(user=request.user)[:200]
    invitations = selectors.invitation_list(user=request.user)
    datasets = services.dataset_choices(hospital=request.user.hospital) if request.user.hospital_id else []
    context = {"tasks": tasks, "invitations": invitations, "datasets": datasets}
    # Only staff of a hospital create tasks: the hospital owns the task and takes part as a client.
    if request.user.hospital_id:
        context["create_form"] = {
            "api_url": reverse("federation-task-list"),
            "architectures": FederatedTask.Architecture.choices,
            "strategies": FederatedTask.Strategy.choices,
            "hospitals": selectors.invitable_hospitals(user=request.user),
        }
    return render(request, "federation/task_list.html", context)


@login_required
def task_detail(request, task_id: int):
    _require_staff(request.user)
    task = selectors.task_detail(user=request.user, task_id=task_id)
    config = {
        "task_id": task.pk,
        "api_url": reverse("federation-task-detail", args=[task.pk]),
        "ws_path": f"/ws/federation/tasks/{task.pk}/",
        "actions": {
            name: reverse(f"federation-task-{name}", args=[task.pk]) for name in ("start", "pause", "cancel", "resume")
        },
        "register_url": reverse("federation-task-register-model", args=[task.pk]),
        "can_control": request.user.is_platform_admin or request.user.hospital_id == task.owner_hospital_id,
    }
    return render(request, "federation/task_detail.html", {"task": task, "page_config": config})
