"""Follow-up plans: plans, recurring items, their occurrences and the reminder schedule."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from annotation.models import Patient
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import FollowUpPlan, Notification, PlanItem, PlanOccurrence, Questionnaire, QuestionnaireAssignment
from .common import clinician_check
from .notifications import notification_create

logger = logging.getLogger(__name__)


@transaction.atomic
def plan_create(*, actor: User, patient: Patient, title: str, notes: str = "") -> FollowUpPlan:
    """Start a follow-up plan for a patient of the actor's hospital.

    Raises
    ------
    ServiceError
        403 when the actor is not a doctor of the patient's hospital.
    """
    clinician_check(actor, patient)
    plan = FollowUpPlan(hospital=patient.hospital, patient=patient, title=title, notes=notes, created_by=actor)
    plan.full_clean()
    plan.save()
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="followup_plan", target_id=plan.pk,
                 hospital=patient.hospital)
    return plan


@transaction.atomic
def plan_item_add(
    *, actor: User, plan: FollowUpPlan, kind: str, title: str, start_date: dt.date, interval_days: int,
    end_date: dt.date | None = None, instructions: str = "", modality: str = "",
    questionnaire: Questionnaire | None = None, grace_days: int = 0,
) -> PlanItem:
    """Add a recurring item (re-examination, medication, questionnaire) and its first occurrence.

    Raises
    ------
    ServiceError
        403 for a non-doctor; 400 when the interval is not positive, the end is before the start,
        or a questionnaire item has no questionnaire (or one of another hospital).
    """
    clinician_check(actor, plan.patient)
    if interval_days < 1:
        raise ServiceError(_("The interval is at least one day."), code="invalid_interval")
    if end_date is not None and end_date < start_date:
        raise ServiceError(_("The end date is before the start date."), code="invalid_dates")
    if kind == PlanItem.Kind.QUESTIONNAIRE:
        if questionnaire is None:
            raise ServiceError(_("Choose the questionnaire to send."), code="questionnaire_required")
        if questionnaire.hospital_id not in (None, plan.hospital_id):
            raise ServiceError(_("No such questionnaire."), code="not_found", status_code=404)
    item = PlanItem(plan=plan, kind=kind, title=title, start_date=start_date, interval_days=interval_days,
                    end_date=end_date, instructions=instructions, modality=modality,
                    questionnaire=questionnaire if kind == PlanItem.Kind.QUESTIONNAIRE else None, grace_days=grace_days)
    item.full_clean()
    item.save()
    PlanOccurrence.objects.create(item=item, due_date=start_date)
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="followup_plan_item", target_id=item.pk,
                 hospital=plan.hospital, detail={"plan": plan.pk, "kind": kind})
    return item


def _next_due(item: PlanItem, after: dt.date) -> dt.date | None:
    steps = (after - item.start_date).days // item.interval_days + 1
    due = item.start_date + dt.timedelta(days=steps * item.interval_days)
    if item.end_date is not None and due > item.end_date:
        return None
    return due


@transaction.atomic
def occurrence_complete(*, actor: User, occurrence: PlanOccurrence) -> PlanOccurrence:
    """Mark a reminder done (the patient or their doctor) and schedule the next one.

    Raises
    ------
    ServiceError
        409 when it is already done; 403 for someone who is neither.
    """
    patient = occurrence.item.plan.patient
    if actor.pk != patient.user_id:
        clinician_check(actor, patient)
    occurrence = PlanOccurrence.objects.select_for_update().get(pk=occurrence.pk)
    if occurrence.status == PlanOccurrence.Status.DONE:
        raise ServiceError(_("This reminder is already done."), code="already_done", status_code=409)
    occurrence.status = PlanOccurrence.Status.DONE
    occurrence.completed_at = timezone.now()
    occurrence.save(update_fields=["status", "completed_at"])
    next_due = _next_due(occurrence.item, occurrence.due_date)
    if next_due is not None:
        PlanOccurrence.objects.get_or_create(item=occurrence.item, due_date=next_due)
    audit_record(actor=actor, action=AuditLog.Action.UPDATE, target_type="followup_occurrence", target_id=occurrence.pk,
                 hospital=patient.hospital, detail={"done": True})
    return occurrence


# Titles as English msgids (translated for each reader; e-mail and SMS in the default language).
_REMINDER_TITLES = {
    PlanItem.Kind.REEXAM: gettext_noop("Re-examination reminder: %(title)s (%(due)s)"),
    PlanItem.Kind.MEDICATION: gettext_noop("Medication reminder: %(title)s"),
    PlanItem.Kind.QUESTIONNAIRE: gettext_noop("Please fill in the questionnaire: %(title)s (by %(due)s)"),
}


def reminders_dispatch(*, today: dt.date | None = None) -> dict:
    """Run one pass of the reminder schedule (Celery beat calls this; idempotent for a given day).

    1. Every active item gets its occurrences up to ``today`` (missed intervals included) so that
       nothing due disappears while the beat was down.
    2. Pending occurrences due today or earlier (re-examinations: from ``FOLLOWUP_REEXAM_NOTICE_DAYS``
       ahead) notify the patient once; questionnaire items assign the questionnaire.
    3. Occurrences not done ``grace_days`` after the due date become overdue and notify the plan's
       doctor once.

    Returns
    -------
    dict
        Counts: ``created``, ``reminded``, ``overdue``, ``assigned``.
    """
    today = today or timezone.localdate()
    notice_days = getattr(settings, "FOLLOWUP_REEXAM_NOTICE_DAYS", 3)
    counts = {"created": 0, "reminded": 0, "overdue": 0, "assigned": 0}
    items = PlanItem.objects.filter(is_active=True, plan__status=FollowUpPlan.Status.ACTIVE).select_related(
        "plan", "plan__patient", "questionnaire")
    for item in items:
        horizon = today + dt.timedelta(days=notice_days if item.kind == PlanItem.Kind.REEXAM else 0)
        last = item.occurrences.aggregate(m=Max("due_date"))["m"]
        due = item.start_date if last is None else _next_due(item, last)
        while due is not None and due <= horizon:
            _occurrence, created = PlanOccurrence.objects.get_or_create(item=item, due_date=due)
            counts["created"] += int(created)
            due = _next_due(item, due)
    pending = (PlanOccurrence.objects.filter(status=PlanOccurrence.Status.PENDING, reminded_at__isnull=True,
                                             item__is_active=True, item__plan__status=FollowUpPlan.Status.ACTIVE)
               .select_related("item", "item__plan", "item__plan__patient", "item__questionnaire"))
    for occ in pending:
        item = occ.item
        horizon = today + dt.timedelta(days=notice_days if item.kind == PlanItem.Kind.REEXAM else 0)
        if occ.due_date > horizon:
            continue
        patient = item.plan.patient
        with transaction.atomic():
            url = "/followup/me/plan/"
            if item.kind == PlanItem.Kind.QUESTIONNAIRE and item.questionnaire_id:
                assignment, created = QuestionnaireAssignment.objects.get_or_create(
                    plan_item=item, patient=patient, due_date=occ.due_date + dt.timedelta(days=max(item.grace_days, 1)),
                    defaults={"questionnaire": item.questionnaire, "assigned_by": item.plan.created_by})
                counts["assigned"] += int(created)
                url = f"/followup/me/questionnaires/{assignment.pk}/"
            if patient.user_id:
                notification_create(
                    user_id=patient.user_id, kind=item.kind, url=url,
                    title_msgid=_REMINDER_TITLES[item.kind],
                    title_params={"title": item.title, "due": occ.due_date.isoformat()},
                    body=item.instructions, dedupe_key=f"occ:{occ.pk}:remind")
            PlanOccurrence.objects.filter(pk=occ.pk).update(reminded_at=timezone.now())
            counts["reminded"] += 1
    late = (PlanOccurrence.objects.filter(status=PlanOccurrence.Status.PENDING, item__is_active=True,
                                          item__plan__status=FollowUpPlan.Status.ACTIVE, due_date__lt=today)
            .select_related("item", "item__plan", "item__plan__patient"))
    for occ in late:
        if occ.due_date + dt.timedelta(days=occ.item.grace_days) >= today:
            continue
        with transaction.atomic():
            PlanOccurrence.objects.filter(pk=occ.pk).update(status=PlanOccurrence.Status.OVERDUE)
            counts["overdue"] += 1
            doctor_id = occ.item.plan.created_by_id
            if doctor_id:
                notification_create(
                    user_id=doctor_id, kind=Notification.Kind.OVERDUE,
                    title_msgid=gettext_noop("Overdue: %(mrn)s · %(title)s (%(due)s)"),
                    title_params={"mrn": occ.item.plan.patient.mrn, "title": occ.item.title,
                                  "due": occ.due_date.isoformat()},
                    url=f"/followup/patients/{occ.item.plan.patient_id}/", dedupe_key=f"occ:{occ.pk}:overdue",
                    send_external=False)
    logger.info("reminders dispatched: %s", counts)
    return counts
