"""Reads of the follow-up app, scoped to what the user may see.

- Conversations, messages and attachments: members only (staff of the same hospital who are not
  members do not see them either).
- A patient sees only their own plan, questionnaires, reports and studies (through the ``Patient`` row
  linked to their account); clinicians (doctors, hospital admins) see the patients of their hospital.
- Annotators see no follow-up data at all, not even conversations they were once added to: questionnaire
  answers and scores are mental-health data, conversations are patient contact (docs/permissions.md).
A record the user may not see is reported as not found (Http404), so its existence does not leak.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from annotation.models import Patient
from portal.models import Role, User
from portal.permissions import is_clinician, is_clinician_or_patient
from portal.selectors import tenancy_scope

from .models import (
    Attachment,
    Conversation,
    ConversationMember,
    FollowUpPlan,
    Message,
    Notification,
    PatientGroup,
    PlanOccurrence,
    Questionnaire,
    QuestionnaireAssignment,
)

MESSAGE_PAGE_MAX = 200


def _is_staff(user: User) -> bool:
    """Return True for the staff who follow patients up: clinicians (annotators are not)."""
    return is_clinician(user)


# --- patients ---------------------------------------------------------------------------------

def patient_of_user(*, user: User) -> Patient:
    """Return the patient record of a patient's account, or raise Http404 (not a patient, or not linked)."""
    if not user.is_authenticated or user.role != Role.PATIENT:
        raise Http404("This account is not a patient's.")
    patient = Patient.objects.filter(user=user).select_related("hospital").first()
    if patient is None:
        raise Http404("This account is not linked to a patient record.")
    return patient


def patient_visible_queryset(user: User) -> QuerySet[Patient]:
    """Return the patients ``user`` may see: their hospital's (clinicians), their own (patient), none (others)."""
    if not is_clinician_or_patient(user):
        return Patient.objects.none()
    return tenancy_scope(Patient.objects.all(), user, patient_user_field="user")


def patient_get(*, user: User, patient_id: int) -> Patient:
    try:
        return patient_visible_queryset(user).select_related("hospital", "user").get(pk=patient_id)
    except Patient.DoesNotExist:
        raise Http404("No such patient.") from None


# --- conversations ----------------------------------------------------------------------------

def conversation_visible_queryset(user: User) -> QuerySet[Conversation]:
    """Return the conversations ``user`` is a member of (clinicians and patients only)."""
    if not is_clinician_or_patient(user):
        return Conversation.objects.none()
    return Conversation.objects.filter(members__user=user)


def conversation_get(*, user: User, conversation_id: int) -> Conversation:
    """Return a conversation ``user`` is a member of, or raise Http404."""
    try:
        return conversation_visible_queryset(user).select_related("patient", "hospital").get(pk=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


def conversation_is_member(*, user: User, conversation_id: int) -> bool:
    return is_clinician_or_patient(user) and ConversationMember.objects.filter(
        conversation_id=conversation_id, user=user).exists()


def conversation_list(*, user: User) -> list[Conversation]:
    """Return the user's conversations, latest activity first, each with ``unread_count`` and
    ``last_message`` (None when empty). Three queries whatever the number of conversations."""
    unread = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .exclude(sender=user)
        .filter(id__gt=Subquery(ConversationMember.objects.filter(conversation=OuterRef(OuterRef("pk")), user=user)
                                .values("last_read_id")[:1]))
        .values("conversation").annotate(n=Count("id")).values("n")
    )
    conversations = list(
        conversation_visible_queryset(user)
        .select_related("patient", "hospital")
        .prefetch_related(Prefetch("members", queryset=ConversationMember.objects.select_related("user")))
        .annotate(unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)))
        .order_by(Coalesce("last_message_at", "created_at").desc(), "-pk")
    )
    last_ids = (
        Message.objects.filter(conversation__in=[c.pk for c in conversations])
        .values("conversation").annotate(last=Subquery(
            Message.objects.filter(conversation=OuterRef("conversation")).order_by("-id").values("id")[:1]))
        .values_list("last", flat=True)
    )
    last_messages = {m.conversation_id: m for m in Message.objects.filter(id__in=list(last_ids)).select_related("sender")}
    for conversation in conversations:
        conversation.last_message = last_messages.get(conversation.pk)
    return conversations


def unread_total(*, user: User) -> int:
    """Return the number of unread messages over all of the user's conversations."""
    return sum(c.unread_count for c in conversation_list(user=user))


def member_get(*, user: User, conversation: Conversation) -> ConversationMember:
    try:
        return ConversationMember.objects.get(conversation=conversation, user=user)
    except ConversationMember.DoesNotExist:
        raise Http404("No such conversation.") from None


def message_list(
    *, conversation: Conversation, after_id: int | None = None, before_id: int | None = None,
    limit: int = 50, query: str = "",
) -> list[Message]:
    """Return a page of messages in id order.

    ``after_id``: the oldest ``limit`` messages after it (resume); ``before_id``: the newest ``limit``
    messages before it (scrolling back); neither: the newest ``limit``. ``query`` keeps messages
    whose text contains it (case-insensitive), for search within the conversation.
    """
    limit = max(1, min(int(limit), MESSAGE_PAGE_MAX))
    qs = Message.objects.filter(conversation=conversation).select_related("sender", "attachment")
    if query:
        qs = qs.filter(body__icontains=query)
    if after_id is not None:
        return list(qs.filter(id__gt=after_id).order_by("id")[:limit])
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return list(reversed(qs.order_by("-id")[:limit]))


def attachment_get(*, user: User, attachment_id: int) -> Attachment:
    """Return an attachment of a conversation the user is a member of, or raise Http404."""
    try:
        return Attachment.objects.select_related("conversation", "conversation__hospital").get(
            pk=attachment_id, conversation__in=conversation_visible_queryset(user))
    except Attachment.DoesNotExist:
        raise Http404("No such attachment.") from None


# --- notifications ----------------------------------------------------------------------------

def notification_list(*, user: User, unread_only: bool = False, limit: int = 50) -> list[Notification]:
    qs = Notification.objects.filter(user=user)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    return list(qs.order_by("-created_at")[:limit])


def notification_unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def notification_get(*, user: User, notification_id: int) -> Notification:
    try:
        return Notification.objects.get(pk=notification_id, user=user)
    except Notification.DoesNotExist:
        raise Http404("No such notification.") from None


# --- plans ------------------------------------------------------------------------------------

def plan_list_for_patient(*, user: User, patient: Patient) -> list[FollowUpPlan]:
    """Plans of a patient the user may see (call :func:`patient_get` or :func:`patient_of_user` first)."""
    patient_get(user=user, patient_id=patient.pk)
    return list(
        FollowUpPlan.objects.filter(patient=patient)
        .prefetch_related(Prefetch("items__occurrences", queryset=PlanOccurrence.objects.order_by("due_date")),
                          "items__questionnaire")
        .order_by("-created_at")
    )


def plan_get(*, user: User, plan_id: int) -> FollowUpPlan:
    try:
        return FollowUpPlan.objects.select_related("patient", "hospital").get(
            pk=plan_id, patient__in=patient_visible_queryset(user))
    except FollowUpPlan.DoesNotExist:
        raise Http404("No such plan.") from None


def occurrence_get(*, user: User, occurrence_id: int) -> PlanOccurrence:
    try:
        return PlanOccurrence.objects.select_related("item", "item__plan", "item__plan__patient").get(
            pk=occurrence_id, item__plan__patient__in=patient_visible_queryset(user))
    except PlanOccurrence.DoesNotExist:
        raise Http404("No such reminder.") from None


def upcoming_occurrences(*, patient: Patient, days: int = 30) -> list[PlanOccurrence]:
    """Pending and overdue occurrences of a patient's active plans up to ``days`` ahead."""
    until = timezone.localdate() + dt.timedelta(days=days)
    return list(
        PlanOccurrence.objects.filter(item__plan__patient=patient, item__plan__status=FollowUpPlan.Status.ACTIVE,
                                      status__in=[PlanOccurrence.Status.PENDING, PlanOccurrence.Status.OVERDUE],
                                      due_date__lte=until)
        .select_related("item", "item__plan", "item__questionnaire").order_by("due_date")
    )


# --- questionnaires ---------------------------------------------------------------------------

def questionnaire_visible_queryset(user: User) -> QuerySet[Questionnaire]:
    """Standard instruments and the user's hospital's questionnaires (clinicians only)."""
    if not _is_staff(user):
        return Questionnaire.objects.none()
    if user.is_platform_admin:
        return Questionnaire.objects.all()
    return Questionnaire.objects.filter(Q(hospital__isnull=True) | Q(hospital_id=user.hospital_id))


def questionnaire_get(*, user: User, questionnaire_id: int) -> Questionnaire:
    try:
        return questionnaire_visible_queryset(user).get(pk=questionnaire_id)
    except Questionnaire.DoesNotExist:
        raise Http404("No such questionnaire.") from None


def assignment_visible_queryset(user: User) -> QuerySet[QuestionnaireAssignment]:
    return QuestionnaireAssignment.objects.filter(patient__in=patient_visible_queryset(user))


def assignment_get(*, user: User, assignment_id: int) -> QuestionnaireAssignment:
    try:
        return assignment_visible_queryset(user).select_related("questionnaire", "patient", "patient__hospital").get(
            pk=assignment_id)
    except QuestionnaireAssignment.DoesNotExist:
        raise Http404("No such questionnaire assignment.") from None


def assignment_list_for_patient(*, patient: Patient) -> list[QuestionnaireAssignment]:
    return list(QuestionnaireAssignment.objects.filter(patient=patient).select_related("questionnaire")
                .order_by("status", "due_date", "pk"))


def results_over_time(*, patient: Patient) -> dict[str, list[dict]]:
    """Completed, scored assignments of a patient grouped by questionnaire code, oldest first."""
    series: dict[str, list[dict]] = {}
    rows = (QuestionnaireAssignment.objects.filter(patient=patient, status=QuestionnaireAssignment.Status.COMPLETED)
            .select_related("questionnaire").order_by("submitted_at", "pk"))
    for row in rows:
        series.setdefault(row.questionnaire.code, []).append({
            "assignment_id": row.pk, "title": row.questionnaire.title,
            "submitted_at": row.submitted_at.isoformat() if row.submitted_at else None,
            "total": row.score.get("total"), "band": row.score.get("band"), "band_label": row.score.get("band_label", ""),
            "max_total": row.score.get("max_total"),
        })
    return series


def score_scales(*, patient: Patient, language: str = "zh-hans") -> dict[str, dict]:
    """The scale of each questionnaire a patient has completed, for drawing their scores over time.

    Returns ``{code: {"title", "min", "max", "bands": [{"min", "max", "code", "label", "attention"}]}}``
    with the instrument's own range: ``min`` 0 and ``max`` the highest possible total (e.g. PHQ-9 0–27,
    GAD-7 0–21, from the definition's option scores) and its severity bands, labelled in ``language``
    (``label_en`` for English when the definition has one). ``max`` is the highest total seen when the
    definition has no fixed maximum.
    """
    from .questionnaires.scoring import scale_max

    scales: dict[str, dict] = {}
    rows = (QuestionnaireAssignment.objects.filter(patient=patient, status=QuestionnaireAssignment.Status.COMPLETED)
            .select_related("questionnaire").order_by("-submitted_at", "-pk"))
    english = language.lower().startswith("en")
    for row in rows:
        if row.questionnaire.code in scales:
            continue
        scoring = (row.questionnaire.definition or {}).get("scoring") or {}
        highest = scale_max(row.questionnaire.definition or {})
        if highest is None:
            totals = [r.score.get("total") for r in rows if r.questionnaire.code == row.questionnaire.code]
            highest = max((t for t in totals if t is not None), default=0)
        scales[row.questionnaire.code] = {
            "title": row.questionnaire.title,
            "min": 0,
            "max": highest,
            "bands": [
                {"min": b["min"], "max": b["max"], "code": b["code"], "attention": bool(b.get("attention")),
                 "label": (b.get("label_en") if english and b.get("label_en") else b.get("label", b["code"]))}
                for b in sorted(scoring.get("bands") or [], key=lambda b: b.get("min", 0))
                if isinstance(b, dict) and "min" in b and "max" in b and "code" in b
            ],
        }
    return scales


def cohort_results(*, user: User, questionnaire: Questionnaire, group: PatientGroup | None = None) -> list[QuestionnaireAssignment]:
    """Completed assignments of a questionnaire among the patients the user may see (optionally one group)."""
    qs = (assignment_visible_queryset(user).filter(questionnaire__code=questionnaire.code,
                                                   status=QuestionnaireAssignment.Status.COMPLETED)
          .select_related("patient", "questionnaire").order_by("patient__mrn", "submitted_at"))
    if group is not None:
        qs = qs.filter(patient__in=group.patients.all())
    return list(qs)


def group_list(*, user: User) -> QuerySet[PatientGroup]:
    if not _is_staff(user):
        return PatientGroup.objects.none()
    qs = PatientGroup.objects.annotate(size=Count("patients"))
    return qs if user.is_platform_admin else qs.filter(hospital_id=user.hospital_id)


def group_get(*, user: User, group_id: int) -> PatientGroup:
    try:
        return group_list(user=user).get(pk=group_id)
    except PatientGroup.DoesNotExist:
        raise Http404("No such patient group.") from None


# --- attention --------------------------------------------------------------------------------

def patients_needing_attention(*, user: User) -> list[dict]:
    """Patients of the user's hospital with something to act on, most reasons first.

    Reasons: overdue plan items, overdue questionnaires, a completed questionnaire whose band or
    alert asks for attention (last 30 days), and unread messages from the patient to this user.
    """
    if not _is_staff(user):
        return []
    patients = patient_visible_queryset(user)
    today = timezone.localdate()
    reasons: dict[int, dict] = {}

    def add(patient: Patient, code: str, detail: dict):
        entry = reasons.setdefault(patient.pk, {"patient": patient, "reasons": []})
        entry["reasons"].append({"code": code, **detail})

    for occ in (PlanOccurrence.objects.filter(status=PlanOccurrence.Status.OVERDUE, item__plan__patient__in=patients,
                                              item__plan__status=FollowUpPlan.Status.ACTIVE)
                .select_related("item", "item__plan__patient").order_by("due_date")):
        add(occ.item.plan.patient, "overdue_" + occ.item.kind, {"title": occ.item.title, "due_date": occ.due_date.isoformat()})
    for assignment in (QuestionnaireAssignment.objects.filter(patient__in=patients, due_date__lt=today)
                       .exclude(status=QuestionnaireAssignment.Status.COMPLETED)
                       .select_related("patient", "questionnaire")):
        add(assignment.patient, "overdue_questionnaire", {"title": assignment.questionnaire.title,
                                                          "due_date": assignment.due_date.isoformat()})
    since = timezone.now() - dt.timedelta(days=30)
    for assignment in (QuestionnaireAssignment.objects.filter(patient__in=patients, submitted_at__gte=since,
                                                              status=QuestionnaireAssignment.Status.COMPLETED)
                       .select_related("patient", "questionnaire")):
        if assignment.score.get("attention"):
            add(assignment.patient, "score", {"title": assignment.questionnaire.title,
                                              "total": assignment.score.get("total"),
                                              "band_label": assignment.score.get("band_label", ""),
                                              "alerts": [a.get("code") for a in assignment.score.get("alerts", [])]})
    for conversation in conversation_list(user=user):
        if conversation.unread_count:
            add(conversation.patient, "unread_messages", {"count": conversation.unread_count,
                                                          "conversation_id": conversation.pk})
    return sorted(reasons.values(), key=lambda e: (-len(e["reasons"]), e["patient"].mrn))


def timeline_questionnaires(*, user: User, patient: Patient) -> list:
    """The completed questionnaires of a patient as events of diagnosis' patient timeline.

    Registered in ``diagnosis.timeline.patient_timeline_sources`` (followup builds on diagnosis);
    the timeline has already checked that ``user`` is a clinician of the patient's hospital. The
    severity band is labelled in the active language (``label_en`` for English when the definition
    has one); the questionnaire's title is shown as stored.
    """
    from django.urls import reverse
    from django.utils import translation
    from django.utils.translation import gettext as _

    from diagnosis.timeline import TimelineEvent

    from .instruments import instruments_load
    from .questionnaires.scoring import scale_max

    english = (translation.get_language() or "").lower().startswith("en")
    # A standard instrument's English title comes from its shipped file; a hospital's own
    # questionnaire keeps the title it was given.
    english_titles = {i["code"]: i.get("title_en") for i in instruments_load()} if english else {}
    events = []
    rows = (QuestionnaireAssignment.objects.filter(patient=patient, status=QuestionnaireAssignment.Status.COMPLETED,
                                                   submitted_at__isnull=False)
            .select_related("questionnaire").order_by("-submitted_at", "-pk"))
    for row in rows:
        definition = row.questionnaire.definition or {}
        total, highest = _number(row.score.get("total")), _number(scale_max(definition))
        band = next((b for b in (definition.get("scoring") or {}).get("bands") or []
                     if isinstance(b, dict) and b.get("code") == row.score.get("band")), None)
        detail = ""
        if total is not None:
            detail = (_("Score %(total)s of %(max)s") % {"total": total, "max": highest} if highest is not None
                      else _("Score %(total)s") % {"total": total})
            if band:
                detail += " · " + (band.get("label_en") if english and band.get("label_en") else band.get("label", band["code"]))
        title = (english_titles.get(row.questionnaire.code) if row.questionnaire.is_standard else None) or row.questionnaire.title
        events.append(TimelineEvent(at=row.submitted_at, kind="questionnaire", title=title,
                                    detail=detail, url=reverse("followup:patient", args=[patient.pk]),
                                    status="attention" if row.score.get("attention") else ""))
    return events


def _number(value):
    """A score as people write it: 9 rather than 9.0 (None stays None)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
