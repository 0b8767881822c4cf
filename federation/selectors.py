"""Reads of federated tasks, scoped to what the user may see.

Staff of the owner hospital and of every invited hospital see a task (its rounds, metrics, ledger
and credits: no image and no patient data are part of it); platform admins see all; patients and
other hospitals see nothing (404).
"""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from portal.models import STAFF_ROLES, Hospital, User

from .models import ClientUpdate, FederatedTask, LedgerEntry, Participant, Round, SiteCertificate


def task_visible_queryset(user: User) -> QuerySet[FederatedTask]:
    """Return the tasks ``user`` may see."""
    qs = FederatedTask.objects.all()
    if not user.is_authenticated:
        return qs.none()
    if user.is_platform_admin:
        return qs
    if user.role in STAFF_ROLES and user.hospital_id:
        return qs.filter(Q(owner_hospital_id=user.hospital_id) | Q(participants__hospital_id=user.hospital_id)).distinct()
    return qs.none()


def task_list(*, user: User) -> QuerySet[FederatedTask]:
    """Return visible tasks, newest first, with the owner hospital loaded."""
    return task_visible_queryset(user).select_related("owner_hospital", "registered_model").order_by("-created_at")


def task_get(*, user: User, task_id: int) -> FederatedTask:
    """Return one visible task or raise Http404."""
    try:
        return task_visible_queryset(user).select_related("owner_hospital", "registered_model").get(pk=task_id)
    except FederatedTask.DoesNotExist:
        raise Http404("No such federated task.") from None


def task_detail(*, user: User, task_id: int) -> FederatedTask:
    """Return a visible task with participants, rounds and client updates prefetched."""
    task = task_get(user=user, task_id=task_id)
    task.participant_list = list(task.participants.select_related("hospital").order_by("client_id")
                                 .annotate(rounds_answered=Count("updates", filter=Q(updates__status="answered"))))
    nodes = site_nodes(task=task)
    for participant in task.participant_list:
        participant.site_node = nodes.get(participant.pk)
        participant.node_online = participant.node_is_online()
    task.round_list = list(
        Round.objects.filter(task=task)
        .prefetch_related(Prefetch("updates", queryset=ClientUpdate.objects.select_related("participant")))
        .order_by("round_number")
    )
    return task


def invitation_list(*, user: User) -> QuerySet[Participant]:
    """Return the invitations addressed to ``user``'s hospital."""
    if not user.is_authenticated or user.role not in STAFF_ROLES or not user.hospital_id:
        return Participant.objects.none()
    return (
        Participant.objects.filter(hospital_id=user.hospital_id)
        .exclude(task__owner_hospital_id=user.hospital_id)
        .select_related("task", "task__owner_hospital")
        .order_by("-created_at")
    )


def invitable_hospitals(*, user: User) -> QuerySet[Hospital]:
    """Return the hospitals ``user``'s hospital may invite to a new task (every other hospital), by name."""
    if not user.is_authenticated or user.role not in STAFF_ROLES or not user.hospital_id:
        return Hospital.objects.none()
    return Hospital.objects.exclude(pk=user.hospital_id).order_by("name")


def invitation_get(*, user: User, participant_id: int) -> Participant:
    """Return an invitation of the user's own hospital or raise Http404."""
    try:
        return Participant.objects.select_related("task", "hospital").get(
            pk=participant_id, hospital_id=user.hospital_id if user.is_authenticated else -1
        )
    except Participant.DoesNotExist:
        raise Http404("No such invitation.") from None


def ledger_entries(*, task: FederatedTask) -> QuerySet[LedgerEntry]:
    """Return a task's ledger in chain order."""
    return LedgerEntry.objects.filter(task=task).order_by("index")


def site_client_id(*, certificate: SiteCertificate) -> str:
    """Return the Flower client id of the hospital a site certificate was issued to, in its task."""
    return (Participant.objects.filter(task_id=certificate.task_id, hospital_id=certificate.hospital_id)
            .values_list("client_id", flat=True).get())


def site_nodes(*, task: FederatedTask) -> dict[int, SiteCertificate]:
    """Return each participant's live enrolled site certificate (the node that hospital runs itself).

    Returns
    -------
    dict
        Participant id → its newest non-revoked :class:`SiteCertificate` that carries a node key; a
        participant absent from it has its SuperNode run by the coordinator's runner.
    """
    by_hospital = {}
    for cert in (SiteCertificate.objects.filter(task=task, revoked_at__isnull=True)
                 .exclude(node_auth_public_key="").order_by("enrolled_at")):
        by_hospital[cert.hospital_id] = cert
    return {p.pk: by_hospital[p.hospital_id] for p in task.participants.all() if p.hospital_id in by_hospital}
