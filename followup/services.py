"""Writes of the follow-up app: conversations and messages, attachments, the assistant, notifications,
follow-up plans and questionnaires.

Every write runs in a transaction; real-time events are sent only after it commits
(``transaction.on_commit``), so a message is in the database before anyone is told about it.
Message text never reaches a log or the audit trail (ids and counts only).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string

from annotation.models import Patient
from portal.api_errors import ServiceError
from portal.models import STAFF_ROLES, AuditLog, Role, User
from portal.services import audit_record

from . import events
from .models import (
    Attachment,
    ContactPreference,
    Conversation,
    ConversationMember,
    FollowUpPlan,
    Message,
    Notification,
    PatientGroup,
    PlanItem,
    PlanOccurrence,
    Questionnaire,
    QuestionnaireAssignment,
)
from .questionnaires import AnswerError, DefinitionError, answers_validate, definition_validate, score_response

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000
ATTACHMENT_TYPES = {b"\x89PNG\r\n\x1a\n": ("image/png", "png"), b"\xff\xd8\xff": ("image/jpeg", "jpg"),
                    b"%PDF-": ("application/pdf", "pdf")}


def _rate_limit() -> tuple[int, int]:
    """Return (messages, seconds) of the per-user chat rate limit (``FOLLOWUP_CHAT_RATE_LIMIT``)."""
    return tuple(getattr(settings, "FOLLOWUP_CHAT_RATE_LIMIT", (30, 60)))


def _is_staff_user(user: User) -> bool:
    return user.role in STAFF_ROLES and user.hospital_id is not None


# --- conversations ----------------------------------------------------------------------------

@transaction.atomic
def conversation_create(
    *, actor: User, patient: Patient, staff: list[User], kind: str = Conversation.Kind.DIRECT, title: str = "",
) -> Conversation:
    """Open a conversation about ``patient`` with the patient's account and ``staff`` as members.

    A direct conversation has exactly one staff member, and there is one per patient and doctor
    (opening it again returns the existing one); a care-team conversation has one or more. The actor
    must be one of the staff (or the patient, who may open a direct conversation with a doctor of
    their hospital).

    Raises
    ------
    ServiceError
        400 when a staff member is of another hospital or not staff, a direct conversation does not
        have exactly one, or the patient has no portal account; 403 when the actor may not open it.
    """
    if kind not in Conversation.Kind.values:
        raise ServiceError("Unknown conversation kind.", code="invalid_kind")
    staff = list({u.pk: u for u in staff}.values())
    if not staff:
        raise ServiceError("A conversation needs at least one staff member.", code="no_staff")
    if kind == Conversation.Kind.DIRECT and len(staff) != 1:
        raise ServiceError("A direct conversation has exactly one doctor.", code="direct_needs_one")
    for member in staff:
        if not _is_staff_user(member) or member.hospital_id != patient.hospital_id:
            raise ServiceError("Every staff member must work at the patient's hospital.", code="wrong_hospital")
    if patient.user_id is None:
        raise ServiceError("The patient has no portal account to chat with.", code="patient_without_account")
    is_patient_actor = actor.pk == patient.user_id
    if not is_patient_actor and actor.pk not in {u.pk for u in staff}:
        raise ServiceError("Only a member can open this conversation.", code="not_member", status_code=403)
    if is_patient_actor and kind != Conversation.Kind.DIRECT:
        raise ServiceError("A patient opens direct conversations only.", code="forbidden", status_code=403)
    if kind == Conversation.Kind.DIRECT:
        existing = (Conversation.objects.filter(patient=patient, kind=Conversation.Kind.DIRECT, members__user=staff[0])
                    .order_by("pk").first())
        if existing is not None:
            return existing  # one direct conversation per patient and doctor
    conversation = Conversation(hospital=patient.hospital, patient=patient, kind=kind, title=title[:200], created_by=actor)
    conversation.full_clean()
    conversation.save()
    ConversationMember.objects.bulk_create(
        [ConversationMember(conversation=conversation, user_id=patient.user_id)]
        + [ConversationMember(conversation=conversation, user=u) for u in staff]
    )
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="conversation", target_id=conversation.pk,
                 hospital=patient.hospital, detail={"kind": kind, "members": len(staff) + 1})
    return conversation


@transaction.atomic
def conversation_member_add(*, actor: User, conversation: Conversation, user: User) -> ConversationMember:
    """Add a staff member of the patient's hospital to a care-team conversation (members only).

    Raises
    ------
    ServiceError
        403 when the actor is not a staff member of it; 400 for a direct conversation or a user who
        is not staff of the hospital.
    """
    if not ConversationMember.objects.filter(conversation=conversation, user=actor).exists() or not _is_staff_user(actor):
        raise ServiceError("Only staff members can add people.", code="forbidden", status_code=403)
    if conversation.kind != Conversation.Kind.CARE_TEAM:
        raise ServiceError("People are added to care-team conversations only.", code="direct_conversation")
    if not _is_staff_user(user) or user.hospital_id != conversation.hospital_id:
        raise ServiceError("Only staff of the patient's hospital can join.", code="wrong_hospital")
    last_id = Message.objects.filter(conversation=conversation).aggregate(m=Max("id"))["m"] or 0
    member, _ = ConversationMember.objects.get_or_create(
        conversation=conversation, user=user, defaults={"last_delivered_id": 0, "last_read_id": 0})
    audit_record(actor=actor, action=AuditLog.Action.UPDATE, target_type="conversation", target_id=conversation.pk,
                 detail={"member_added": user.pk, "last_message_id": last_id})
    return member


def _member_ids(conversation_id: int) -> list[int]:
    return list(ConversationMember.objects.filter(conversation_id=conversation_id).values_list("user_id", flat=True))


def _check_member(user: User, conversation: Conversation) -> None:
    if not ConversationMember.objects.filter(conversation=conversation, user=user).exists():
        # Same answer as for a conversation that does not exist.
        raise ServiceError("No such conversation.", code="not_found", status_code=404)


def _check_rate(user: User) -> None:
    limit, window_s = _rate_limit()
    since = timezone.now() - dt.timedelta(seconds=window_s)
    if Message.objects.filter(sender=user, created_at__gte=since).count() >= limit:
        raise ServiceError(f"Too many messages: at most {limit} in {window_s} s.", code="rate_limited", status_code=429)


def _check_link(conversation: Conversation, link_type: str, link_id: int, sender: User) -> None:
    """A link must point at the conversation's patient's own record that the sender may see."""
    if link_type == Message.LinkType.REPORT:
        from diagnosis.selectors import report_visible_queryset

        from diagnosis.models import Report

        # Only signed reports: the patient cannot open a draft.
        ok = report_visible_queryset(sender).filter(pk=link_id, study__patient=conversation.patient,
                                                    status=Report.Status.FINAL).exists()
    elif link_type == Message.LinkType.STUDY:
        from annotation.selectors import study_visible_queryset

        ok = study_visible_queryset(sender).filter(pk=link_id, patient=conversation.patient).exists()
    else:
        raise ServiceError("A link is to a report or a study.", code="invalid_link")
    if not ok:
        raise ServiceError("The link must be to this patient's own record.", code="invalid_link")


def _store_message(message: Message, member_ids: list[int] | None = None) -> Message:
    # Foreign keys were loaded by the caller and the client-id constraint is enforced by the
    # database (IntegrityError below): skip the three existence queries full_clean would add.
    message.full_clean(exclude=["conversation", "sender", "attachment"], validate_constraints=False)
    message.save()
    Conversation.objects.filter(pk=message.conversation_id).update(last_message_at=message.created_at)
    # Your own messages never count as unread (the selectors leave them out), so the sender's read
    # mark is not moved here: one write less per message.
    if member_ids is None:
        member_ids = _member_ids(message.conversation_id)
    # The row is committed before anyone hears of it; the payload is built from the saved instance.
    transaction.on_commit(lambda: events.send_message(message, member_ids))
    return message


def message_send(
    *, sender: User, conversation: Conversation, body: str = "", client_id: str = "", link_type: str = "",
    link_id: int | None = None, to_assistant: bool = False,
) -> Message:
    """Store a text message (or a link to the patient's report or study), then broadcast it.

    A retry with the same ``client_id`` returns the message already stored instead of a copy.

    Raises
    ------
    ServiceError
        404 when the sender is not a member; 429 past the rate limit; 400 for an empty or too long
        text or a link to another patient's record.
    """
    body = (body or "").strip()
    client_id = (client_id or "")[:64]
    with transaction.atomic():
        member_ids = _member_ids(conversation.pk)
        if sender.pk not in member_ids:
            raise ServiceError("No such conversation.", code="not_found", status_code=404)
        # A retry with a known client_id is caught by the unique constraint below (one query less
        # on every ordinary send than looking it up first).
        if link_type:
            if link_id is None:
                raise ServiceError("A link needs the record's id.", code="invalid_link")
            _check_link(conversation, link_type, int(link_id), sender)
        elif not body:
            raise ServiceError("The message is empty.", code="empty_message")
        if len(body) > MAX_MESSAGE_CHARS:
            raise ServiceError(f"A message has at most {MAX_MESSAGE_CHARS} characters.", code="message_too_long")
        _check_rate(sender)
        message = Message(
            conversation=conversation, sender=sender, body=body, client_id=client_id, to_assistant=to_assistant,
            kind=Message.Kind.LINK if link_type else Message.Kind.TEXT, link_type=link_type,
            link_id=int(link_id) if link_type else None,
        )
        try:
            with transaction.atomic():
                _store_message(message, member_ids)
        except IntegrityError:
            existing = Message.objects.filter(conversation=conversation, sender=sender, client_id=client_id).first()
            if existing is None:
                raise
            return existing
        audit_record(actor=sender, action=AuditLog.Action.CREATE, target_type="chat_message", target_id=message.pk,
                     hospital=conversation.hospital, detail={"conversation": conversation.pk, "kind": message.kind})
        logger.info("message %s stored in conversation %s (%d chars)", message.pk, conversation.pk, len(body))
    return message


def attachment_send(*, sender: User, conversation: Conversation, upload, client_id: str = "") -> Message:
    """Store an image (PNG, JPEG) or PDF in object storage and send it as a message.

    The type is read from the file's first bytes, not from its name or the browser's claim.

    Raises
    ------
    ServiceError
        404 when the sender is not a member; 413 over ``FOLLOWUP_ATTACHMENT_MAX_BYTES``; 415 for
        anything but PNG, JPEG or PDF; 429 past the rate limit. Nothing is stored then.
    """
    max_bytes = getattr(settings, "FOLLOWUP_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
    _check_member(sender, conversation)
    if upload.size > max_bytes:
        raise ServiceError(f"An attachment is at most {max_bytes // (1024 * 1024)} MB.", code="attachment_too_large",
                           status_code=413)
    head = upload.read(16)
    upload.seek(0)
    kind = next((v for magic, v in ATTACHMENT_TYPES.items() if head.startswith(magic)), None)
    if kind is None:
        raise ServiceError("Only images (PNG, JPEG) and PDF files can be attached.", code="unsupported_attachment",
                           status_code=415)
    content_type, ext = kind
    data = upload.read()
    key = f"followup/conversations/{conversation.pk}/{uuid.uuid4().hex}.{ext}"
    with transaction.atomic():
        _check_rate(sender)
        name = default_storage.save(key, ContentFile(data))
        try:
            attachment = Attachment(conversation=conversation, uploaded_by=sender, file=name,
                                    original_name=(getattr(upload, "name", "") or f"attachment.{ext}")[-255:],
                                    content_type=content_type, size_bytes=len(data),
                                    sha256=hashlib.sha256(data).hexdigest())
            attachment.full_clean()
            attachment.save()
            message = _store_message(Message(conversation=conversation, sender=sender, kind=Message.Kind.ATTACHMENT,
                                             attachment=attachment, client_id=(client_id or "")[:64]))
            audit_record(actor=sender, action=AuditLog.Action.CREATE, target_type="chat_attachment",
                         target_id=attachment.pk, hospital=conversation.hospital, detail={"bytes": len(data)})
        except BaseException:
            default_storage.delete(name)
            raise
    return message


def attachment_read(*, user: User, attachment: Attachment) -> bytes:
    """Return an attachment's bytes for a member (the selector has checked membership) and audit it."""
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="chat_attachment", target_id=attachment.pk,
                 hospital=attachment.conversation.hospital)
    with attachment.file.open("rb") as fh:
        return fh.read()


def message_mark(*, user: User, conversation: Conversation, delivered_id: int | None = None,
                 read_id: int | None = None) -> ConversationMember:
    """Move a member's delivery and read marks forward (never back) and broadcast the receipt.

    Read implies delivered. Ids beyond the conversation's last message are clamped to it.

    Raises
    ------
    ServiceError
        404 when the user is not a member.
    """
    with transaction.atomic():
        try:
            member = ConversationMember.objects.select_for_update().get(conversation=conversation, user=user)
        except ConversationMember.DoesNotExist:
            raise ServiceError("No such conversation.", code="not_found", status_code=404) from None
        last_id = Message.objects.filter(conversation=conversation).aggregate(m=Max("id"))["m"] or 0
        changed = False
        if read_id is not None:
            read_id = min(int(read_id), last_id)
            if read_id > member.last_read_id:
                member.last_read_id = read_id
                changed = True
            delivered_id = max(int(delivered_id or 0), read_id)
        if delivered_id is not None:
            delivered_id = min(int(delivered_id), last_id)
            if delivered_id > member.last_delivered_id:
                member.last_delivered_id = delivered_id
                changed = True
        if changed:
            member.save(update_fields=["last_delivered_id", "last_read_id"])
            receipt = dict(conversation_id=conversation.pk, user_id=user.pk, delivered_id=member.last_delivered_id,
                           read_id=member.last_read_id)
            transaction.on_commit(lambda: events.send_receipt(**receipt))
    return member


# --- the knowledge-graph assistant --------------------------------------------------------------

HANDOVER_ZH = "以上为知识图谱助手的自动回答，仅供参考，不能代替医生的诊断。您的医生会看到这段对话并回复您。"


def assistant_ask(*, user: User, conversation: Conversation, question: str, client_id: str = "") -> tuple[Message, Message]:
    """Store a question for the knowledge-graph assistant, answer it and hand the conversation over.

    The question is an ordinary message (so the doctor sees it); the answer is stored as an
    ``assistant`` message whose ``meta`` says whether the graph answered, lists red flags and marks
    the hand-over; every staff member gets a hand-over notification.

    Raises
    ------
    ServiceError
        As :func:`message_send` (membership, rate limit, empty question).
    """
    from knowledge_graph.graph import GraphError
    from knowledge_graph.models import QuestionLog
    from knowledge_graph.services import MAX_QUESTION_CHARS, kg_answer

    question_message = message_send(sender=user, conversation=conversation, body=question, client_id=client_id,
                                    to_assistant=True)
    if Message.objects.filter(conversation=conversation, kind=Message.Kind.ASSISTANT,
                              meta__question_id=question_message.pk).exists():
        answer_message = Message.objects.get(conversation=conversation, kind=Message.Kind.ASSISTANT,
                                             meta__question_id=question_message.pk)
        return question_message, answer_message
    context = Conversation.objects.values_list("assistant_context", flat=True).get(pk=conversation.pk) or None
    meta = {"question_id": question_message.pk, "handover": True}
    try:
        answer = kg_answer(question_message.body[:MAX_QUESTION_CHARS], context=context, channel=QuestionLog.Channel.CHAT)
        text = answer.text
        meta.update(answered=bool(answer.answered), red_flags=list(answer.red_flags),
                    entities=[e.name for e in answer.entities][:10])
        new_context = answer.context
    except GraphError:
        text = "知识图谱助手暂时无法回答。"
        meta.update(answered=False, red_flags=[], unavailable=True)
        new_context = context or {}
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(assistant_context=new_context or {})
        answer_message = _store_message(Message(conversation=conversation, sender=None, kind=Message.Kind.ASSISTANT,
                                                body=f"{text}\n\n{HANDOVER_ZH}", meta=meta))
        audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="chat_message", target_id=answer_message.pk,
                     hospital=conversation.hospital, detail={"conversation": conversation.pk, "kind": "assistant"},
                     channel="worker")
        staff_ids = list(ConversationMember.objects.filter(conversation=conversation)
                         .exclude(user_id=user.pk).exclude(user__role=Role.PATIENT).values_list("user_id", flat=True))
        for staff_id in staff_ids:
            notification_create(user_id=staff_id, kind=Notification.Kind.HANDOVER,
                                title="患者向知识图谱助手提问，请查看并回复",
                                url=f"/followup/conversations/{conversation.pk}/",
                                dedupe_key=f"handover:{question_message.pk}", send_external=False)
    return question_message, answer_message


# --- notifications ----------------------------------------------------------------------------

def notification_backends() -> list:
    """Build the external notification backends named in ``FOLLOWUP_NOTIFICATION_BACKENDS``."""
    names = getattr(settings, "FOLLOWUP_NOTIFICATION_BACKENDS", ["followup.notify.ConsoleBackend"])
    options = getattr(settings, "FOLLOWUP_NOTIFICATION_OPTIONS", {})
    return [import_string(name)(**options.get(name, {})) for name in names]


def notification_create(
    *, user_id: int, kind: str, title: str, body: str = "", url: str = "", dedupe_key: str = "",
    send_external: bool = True,
) -> Notification | None:
    """Create an in-app notification (idempotent on ``dedupe_key``) and send it through the backends.

    Returns None when a notification with the same key exists. A backend that fails is logged
    (backend name and notification id only) and does not undo the in-app notification.
    """
    from .notify import OutgoingNotification

    if dedupe_key and Notification.objects.filter(user_id=user_id, dedupe_key=dedupe_key).exists():
        return None
    notification = Notification(user_id=user_id, kind=kind, title=title[:200], body=body[:500], url=url[:300],
                                dedupe_key=dedupe_key[:120])
    notification.full_clean()
    with transaction.atomic():
        notification.save()
    delivered = ["in_app"]
    if send_external:
        user = User.objects.select_related("followup_contact").get(pk=user_id)
        contact = getattr(user, "followup_contact", None)
        outgoing = OutgoingNotification(
            notification_id=notification.pk, user_id=user_id,
            email=user.email if contact is None or contact.email_enabled else "",
            phone=contact.phone if contact is not None and contact.sms_enabled else "",
            title=notification.title, body=notification.body,
            url=settings.PORTAL_BASE_URL.rstrip("/") + url if url else "")
        for backend in notification_backends():
            try:
                if backend.send(outgoing):
                    delivered.append(backend.channel)
            except Exception:  # noqa: BLE001 - one failing gateway must not stop the others
                logger.exception("notification %s: backend %s failed", notification.pk, type(backend).__name__)
    Notification.objects.filter(pk=notification.pk).update(delivered_via=delivered)
    notification.delivered_via = delivered
    ids = dict(user_id=user_id, notification_id=notification.pk, kind=kind, title=notification.title, url=url)
    transaction.on_commit(lambda: events.send_notification(**ids))
    return notification


@transaction.atomic
def notification_mark_read(*, user: User, notification: Notification) -> Notification:
    if notification.user_id != user.pk:
        raise ServiceError("No such notification.", code="not_found", status_code=404)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


@transaction.atomic
def contact_preference_set(*, user: User, phone: str = "", email_enabled: bool = True,
                           sms_enabled: bool = True) -> ContactPreference:
    """Set the user's own mobile number and which external channels they want."""
    contact, _ = ContactPreference.objects.get_or_create(user=user)
    contact.phone, contact.email_enabled, contact.sms_enabled = phone.strip(), email_enabled, sms_enabled
    contact.full_clean()
    contact.save()
    return contact


# --- follow-up plans --------------------------------------------------------------------------

def _check_clinician_of(actor: User, patient: Patient) -> None:
    if not (actor.is_platform_admin or (actor.role in (Role.DOCTOR, Role.HOSPITAL_ADMIN)
                                         and actor.hospital_id == patient.hospital_id)):
        raise ServiceError("Only the patient's doctors can do this.", code="forbidden", status_code=403)


@transaction.atomic
def plan_create(*, actor: User, patient: Patient, title: str, notes: str = "") -> FollowUpPlan:
    """Start a follow-up plan for a patient of the actor's hospital.

    Raises
    ------
    ServiceError
        403 when the actor is not a doctor of the patient's hospital.
    """
    _check_clinician_of(actor, patient)
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
    _check_clinician_of(actor, plan.patient)
    if interval_days < 1:
        raise ServiceError("The interval is at least one day.", code="invalid_interval")
    if end_date is not None and end_date < start_date:
        raise ServiceError("The end date is before the start date.", code="invalid_dates")
    if kind == PlanItem.Kind.QUESTIONNAIRE:
        if questionnaire is None:
            raise ServiceError("Choose the questionnaire to send.", code="questionnaire_required")
        if questionnaire.hospital_id not in (None, plan.hospital_id):
            raise ServiceError("No such questionnaire.", code="not_found", status_code=404)
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
        _check_clinician_of(actor, patient)
    occurrence = PlanOccurrence.objects.select_for_update().get(pk=occurrence.pk)
    if occurrence.status == PlanOccurrence.Status.DONE:
        raise ServiceError("This reminder is already done.", code="already_done", status_code=409)
    occurrence.status = PlanOccurrence.Status.DONE
    occurrence.completed_at = timezone.now()
    occurrence.save(update_fields=["status", "completed_at"])
    next_due = _next_due(occurrence.item, occurrence.due_date)
    if next_due is not None:
        PlanOccurrence.objects.get_or_create(item=occurrence.item, due_date=next_due)
    audit_record(actor=actor, action=AuditLog.Action.UPDATE, target_type="followup_occurrence", target_id=occurrence.pk,
                 hospital=patient.hospital, detail={"done": True})
    return occurrence


_REMINDER_TITLES = {
    PlanItem.Kind.REEXAM: "复查提醒：{title}（{due}）",
    PlanItem.Kind.MEDICATION: "用药提醒：{title}",
    PlanItem.Kind.QUESTIONNAIRE: "请填写问卷：{title}（{due} 前）",
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
            _, created = PlanOccurrence.objects.get_or_create(item=item, due_date=due)
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
                    title=_REMINDER_TITLES[item.kind].format(title=item.title, due=occ.due_date.isoformat()),
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
                    title=f"逾期：{occ.item.plan.patient.mrn} · {occ.item.title}（{occ.due_date.isoformat()}）",
                    url=f"/followup/patients/{occ.item.plan.patient_id}/", dedupe_key=f"occ:{occ.pk}:overdue",
                    send_external=False)
    logger.info("reminders dispatched: %s", counts)
    return counts


# --- questionnaires ---------------------------------------------------------------------------

def _definition_or_error(definition: dict) -> dict:
    try:
        return definition_validate(definition)
    except DefinitionError as exc:
        raise ServiceError(str(exc), code="invalid_definition") from None


@transaction.atomic
def questionnaire_create(*, actor: User | None, code: str, title: str, definition: dict, description: str = "",
                         hospital=None, is_standard: bool = False) -> Questionnaire:
    """Save a questionnaire; a code already used by the hospital gets the next version.

    Raises
    ------
    ServiceError
        400 when the definition is invalid (the message says where).
    """
    definition = _definition_or_error(definition)
    if actor is not None and hospital is None and not is_standard:
        hospital = actor.hospital
    latest = (Questionnaire.objects.filter(hospital=hospital, code=code).aggregate(m=Max("version"))["m"] or 0)
    questionnaire = Questionnaire(hospital=hospital, code=code, version=latest + 1, title=title, description=description,
                                  definition=definition, is_standard=is_standard, created_by=actor)
    try:
        questionnaire.full_clean()
    except ValidationError as exc:
        raise ServiceError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
                           code="invalid_input") from None
    questionnaire.save()
    if actor is not None:
        audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="questionnaire", target_id=questionnaire.pk)
    return questionnaire


def instruments_install() -> list[Questionnaire]:
    """Install the shipped standard instruments (PHQ-9, GAD-7) once (idempotent)."""
    from .instruments import instruments_load

    rows = []
    for instrument in instruments_load():
        existing = Questionnaire.objects.filter(hospital=None, code=instrument["code"],
                                                version=instrument["version"]).first()
        if existing is None:
            existing = Questionnaire.objects.create(
                hospital=None, code=instrument["code"], version=instrument["version"], title=instrument["title"],
                description=instrument["description"], definition=definition_validate(instrument["definition"]),
                is_standard=True)
        rows.append(existing)
    return rows


@transaction.atomic
def group_create(*, actor: User, name: str, patients: list[Patient]) -> PatientGroup:
    """Create a named cohort of patients of the actor's hospital.

    Raises
    ------
    ServiceError
        400 when a patient is of another hospital or the name is taken.
    """
    if any(p.hospital_id != actor.hospital_id for p in patients):
        raise ServiceError("Every patient must be of your hospital.", code="wrong_hospital")
    if PatientGroup.objects.filter(hospital_id=actor.hospital_id, name=name).exists():
        raise ServiceError("A group with this name exists.", code="duplicate_name")
    group = PatientGroup(hospital_id=actor.hospital_id, name=name)
    group.full_clean()
    group.save()
    group.patients.set(patients)
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="patient_group", target_id=group.pk,
                 detail={"patients": len(patients)})
    return group


@transaction.atomic
def questionnaire_assign(*, actor: User, questionnaire: Questionnaire, due_date: dt.date,
                         patients: list[Patient] = (), group: PatientGroup | None = None) -> list[QuestionnaireAssignment]:
    """Assign a questionnaire to patients or to every patient of a group, due on ``due_date``.

    Raises
    ------
    ServiceError
        403 when the actor is not a doctor of every patient's hospital; 400 when nobody is chosen or
        the due date is in the past.
    """
    targets = list(patients) + (list(group.patients.all()) if group is not None else [])
    targets = list({p.pk: p for p in targets}.values())
    if not targets:
        raise ServiceError("Choose a patient or a group.", code="no_patients")
    if due_date < timezone.localdate():
        raise ServiceError("The due date is in the past.", code="invalid_due_date")
    rows = []
    for patient in targets:
        _check_clinician_of(actor, patient)
        assignment = QuestionnaireAssignment(questionnaire=questionnaire, patient=patient, group=group,
                                             assigned_by=actor, due_date=due_date)
        assignment.full_clean()
        assignment.save()
        rows.append(assignment)
        if patient.user_id:
            notification_create(user_id=patient.user_id, kind=Notification.Kind.QUESTIONNAIRE,
                                title=f"请填写问卷：{questionnaire.title}（{due_date.isoformat()} 前）",
                                url=f"/followup/me/questionnaires/{assignment.pk}/",
                                dedupe_key=f"assign:{assignment.pk}")
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="questionnaire_assignment",
                 target_id=questionnaire.pk, detail={"patients": len(rows), "group": group.pk if group else None})
    return rows


def _check_patient_owns(user: User, assignment: QuestionnaireAssignment) -> None:
    if assignment.patient.user_id != user.pk:
        raise ServiceError("Only the patient fills in their questionnaire.", code="forbidden", status_code=403)


@transaction.atomic
def assignment_autosave(*, user: User, assignment: QuestionnaireAssignment, answers: dict) -> QuestionnaireAssignment:
    """Save partial answers (merged into what is stored; ``None`` clears an answer).

    Raises
    ------
    ServiceError
        403 for anyone but the patient; 409 once submitted; 400 for an answer of the wrong form
        (what is stored stays as it was).
    """
    _check_patient_owns(user, assignment)
    assignment = QuestionnaireAssignment.objects.select_for_update().select_related("questionnaire").get(pk=assignment.pk)
    if assignment.status == QuestionnaireAssignment.Status.COMPLETED:
        raise ServiceError("This questionnaire has been submitted.", code="already_submitted", status_code=409)
    if not isinstance(answers, dict):
        raise ServiceError("Answers are an object of question → answer.", code="invalid_answers")
    merged = {**assignment.answers, **answers}
    merged = {k: v for k, v in merged.items() if v not in (None, "", [])}
    definition = assignment.questionnaire.definition
    try:
        # Keep answers of questions that are hidden now: the patient may change their mind back.
        answers_validate(definition, merged, complete=False)
        by_id = {i["link_id"] for i in definition["items"]}
        unknown = [k for k in merged if k not in by_id]
        if unknown:
            raise AnswerError({k: "no such question" for k in unknown})
    except AnswerError as exc:
        raise ServiceError(str(exc), code="invalid_answers") from None
    assignment.answers = merged
    assignment.status = QuestionnaireAssignment.Status.IN_PROGRESS
    assignment.save(update_fields=["answers", "status", "updated_at"])
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="questionnaire_assignment",
                 target_id=assignment.pk, detail={"answers": len(merged)})
    return assignment


def assignment_submit(*, user: User, assignment: QuestionnaireAssignment, answers: dict | None = None) -> QuestionnaireAssignment:
    """Submit (with any last answers), score with the questionnaire's rules and notify the doctor
    when the score asks for attention.

    Raises
    ------
    ServiceError
        403 for anyone but the patient; 409 when already submitted; 400 when a required visible
        question is unanswered or an answer is invalid.
    """
    if answers:
        # Saved on their own: a submission refused for a missing answer keeps what was typed.
        assignment = assignment_autosave(user=user, assignment=assignment, answers=answers)
    _check_patient_owns(user, assignment)
    with transaction.atomic():
        return _assignment_submit_locked(user=user, assignment=assignment)


def _assignment_submit_locked(*, user: User, assignment: QuestionnaireAssignment) -> QuestionnaireAssignment:
    assignment = QuestionnaireAssignment.objects.select_for_update().select_related("questionnaire", "patient").get(
        pk=assignment.pk)
    if assignment.status == QuestionnaireAssignment.Status.COMPLETED:
        raise ServiceError("This questionnaire has been submitted.", code="already_submitted", status_code=409)
    definition = assignment.questionnaire.definition
    try:
        kept = answers_validate(definition, assignment.answers, complete=True)
    except AnswerError as exc:
        raise ServiceError(str(exc), code="incomplete_answers") from None
    result = score_response(definition, kept)
    assignment.answers = kept
    assignment.score = result.to_dict()
    assignment.status = QuestionnaireAssignment.Status.COMPLETED
    assignment.submitted_at = timezone.now()
    assignment.save()
    if assignment.plan_item_id:
        PlanOccurrence.objects.filter(item_id=assignment.plan_item_id, status__in=[
            PlanOccurrence.Status.PENDING, PlanOccurrence.Status.OVERDUE], due_date__lte=assignment.due_date).update(
            status=PlanOccurrence.Status.DONE, completed_at=timezone.now())
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="questionnaire_assignment",
                 target_id=assignment.pk, hospital=assignment.patient.hospital, detail={"submitted": True})
    if result.attention and assignment.assigned_by_id:
        notification_create(user_id=assignment.assigned_by_id, kind=Notification.Kind.QUESTIONNAIRE,
                            title=f"问卷结果需要关注：{assignment.patient.mrn} · {assignment.questionnaire.title}",
                            url=f"/followup/patients/{assignment.patient_id}/",
                            dedupe_key=f"assign:{assignment.pk}:attention", send_external=False)
    return assignment


def questionnaire_import_fhir(*, actor: User, resource: dict) -> Questionnaire:
    """Create a questionnaire from a FHIR R4 Questionnaire (validated with fhir.resources).

    Raises
    ------
    ServiceError
        400 when the resource is not valid FHIR or uses an unsupported item type.
    """
    from .questionnaires.fhir import FhirError, questionnaire_from_fhir

    try:
        parsed = questionnaire_from_fhir(resource)
    except (FhirError, DefinitionError) as exc:
        raise ServiceError(str(exc), code="invalid_fhir") from None
    return questionnaire_create(actor=actor, code=parsed["code"], title=parsed["title"][:200],
                                description=parsed["description"], definition=parsed["definition"])


def questionnaire_fhir_url(questionnaire: Questionnaire) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/fhir/Questionnaire/{questionnaire.code}"


def questionnaire_export_fhir(questionnaire: Questionnaire) -> dict:
    from .questionnaires.fhir import questionnaire_to_fhir

    resource = questionnaire_to_fhir(questionnaire.definition, code=questionnaire.code, title=questionnaire.title,
                                     version=questionnaire.version, url=questionnaire_fhir_url(questionnaire),
                                     description=questionnaire.description)
    resource["id"] = str(questionnaire.pk)
    return resource


def assignment_export_fhir(*, user: User, assignment: QuestionnaireAssignment) -> dict:
    """Return the assignment's answers as a FHIR R4 QuestionnaireResponse (audited as an export)."""
    from .questionnaires.fhir import response_to_fhir

    questionnaire = assignment.questionnaire
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="questionnaire_assignment",
                 target_id=assignment.pk, hospital=assignment.patient.hospital, detail={"format": "fhir"})
    resource = response_to_fhir(
        questionnaire.definition, assignment.answers,
        questionnaire_url=f"{questionnaire_fhir_url(questionnaire)}|{questionnaire.version}",
        status="completed" if assignment.status == QuestionnaireAssignment.Status.COMPLETED else "in-progress",
        authored=(assignment.submitted_at or assignment.updated_at).isoformat(),
        subject_reference=f"Patient/{assignment.patient_id}", score=assignment.score.get("total"))
    resource["id"] = str(assignment.pk)
    return resource


def assignment_import_fhir(*, user: User, assignment: QuestionnaireAssignment, resource: dict) -> QuestionnaireAssignment:
    """Fill an assignment from a FHIR R4 QuestionnaireResponse (a completed one is submitted).

    Raises
    ------
    ServiceError
        400 for invalid FHIR or answers; 403/409 as :func:`assignment_autosave`.
    """
    from .questionnaires.fhir import FhirError, response_from_fhir

    try:
        answers = response_from_fhir(assignment.questionnaire.definition, resource)
    except FhirError as exc:
        raise ServiceError(str(exc), code="invalid_fhir") from None
    if resource.get("status") == "completed":
        return assignment_submit(user=user, assignment=assignment, answers=answers)
    return assignment_autosave(user=user, assignment=assignment, answers=answers)


CSV_FIXED_COLUMNS = ["assignment_id", "patient_id", "mrn", "questionnaire", "version", "submitted_at", "total", "band"]


def results_csv_rows(*, user: User, questionnaire: Questionnaire, assignments) -> list[list]:
    """Return CSV rows (header first) of completed assignments for research: one row per response,
    one column per question (multiple choice joined with ';'), then the total and band. Audited."""
    items = [i["link_id"] for i in questionnaire.definition["items"]]
    rows: list[list] = [CSV_FIXED_COLUMNS + items]
    for a in assignments:
        answers = [";".join(v) if isinstance(v, list) else ("" if v is None else v)
                   for v in (a.answers.get(i) for i in items)]
        rows.append([a.pk, a.patient_id, a.patient.mrn, a.questionnaire.code, a.questionnaire.version,
                     a.submitted_at.isoformat() if a.submitted_at else "", a.score.get("total", ""),
                     a.score.get("band") or "", *answers])
    audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="questionnaire", target_id=questionnaire.pk,
                 detail={"format": "csv", "rows": len(rows) - 1})
    return rows


# --- patient's records ------------------------------------------------------------------------

def study_key_images(*, user: User, study) -> dict[str, str]:
    """Return object-storage keys of the study's axial/coronal/sagittal key images (PNG), rendering
    and caching them on first use: through the largest segmented finding of the latest segmentation,
    or through the centre of the first series when there is none. Audited as a view."""
    from annotation.models import Segmentation, Series
    from annotation.services import segmentation_labelmap_load, series_geometry, series_volume_load
    from diagnosis.reporting.keyimages import PLANES, render_key_images

    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="study_key_images", target_id=study.pk,
                 hospital=study.hospital)
    segmentation = Segmentation.objects.filter(series__study=study).select_related("series", "model").order_by(
        "-created_at").first()
    series = segmentation.series if segmentation else Series.objects.filter(study=study).order_by("pk").first()
    if series is None:
        return {}
    tag = f"s{series.pk}-g{segmentation.pk if segmentation else 0}"
    keys = {plane: f"followup/keyimages/{study.pk}/{tag}-{plane}.png" for plane in PLANES}
    if all(default_storage.exists(k) for k in keys.values()):
        return keys
    import numpy as np

    volume = series_volume_load(series)
    geometry = series_geometry(series)
    label_map = segmentation_labelmap_load(segmentation) if segmentation else None
    center = tuple(n // 2 for n in geometry.shape)
    colors = {}
    if segmentation is not None:
        for entry in segmentation.label_table:
            hex_color = entry.get("color", "#ff0000").lstrip("#")
            colors[int(entry["index"])] = tuple(int(hex_color[i:i + 2], 16) for i in (0, 2, 4))
        if label_map is not None and label_map.any():
            # Through the centre of the labelled voxels (the finding), not the volume's centre.
            idx = np.argwhere(label_map > 0)
            center = tuple(int(v) for v in np.round(idx.mean(axis=0)))
    if series.modality.upper() == "CT":
        window = (-600.0, 1500.0) if "lung" in (series.description + str(segmentation and segmentation.name)).lower() else (40.0, 400.0)
    else:
        lo, hi = np.percentile(volume.array, [1, 99])
        window = (float(lo + hi) / 2, float(max(hi - lo, 1.0)))
    images = render_key_images(volume.array, label_map, geometry, center_index=center, window=window, colors=colors)
    for plane, png in images.items():
        if not default_storage.exists(keys[plane]):
            default_storage.save(keys[plane], ContentFile(png))
    return keys


def stored_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()


def conversation_unread_reset(*, user: User, conversation: Conversation) -> ConversationMember:
    """Mark everything in a conversation as read for ``user`` (opening it on a page)."""
    last_id = Message.objects.filter(conversation=conversation).aggregate(m=Max("id"))["m"] or 0
    return message_mark(user=user, conversation=conversation, read_id=last_id)
