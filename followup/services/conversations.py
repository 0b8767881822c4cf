"""Conversations and messages: opening a conversation, members, text and link messages,
attachments, delivery and read marks.

Every write runs in a transaction; real-time events are sent only after it commits
(``transaction.on_commit``), so a message is in the database before anyone is told about it.
Message text never reaches a log or the audit trail (ids and counts only).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.models import Patient
from portal.api_errors import ServiceError
from portal.models import CLINICAL_ROLES, AuditLog, User
from portal.services import audit_record

from .. import events
from ..models import Attachment, Conversation, ConversationMember, Message
from . import chat_store
from .common import message_announce, message_store


MAX_MESSAGE_CHARS = 4000
ATTACHMENT_TYPES = {b"\x89PNG\r\n\x1a\n": ("image/png", "png"), b"\xff\xd8\xff": ("image/jpeg", "jpg"),
                    b"%PDF-": ("application/pdf", "pdf")}


def _rate_limit() -> tuple[int, int]:
    """Return (messages, seconds) of the per-user chat rate limit (``FOLLOWUP_CHAT_RATE_LIMIT``)."""
    return tuple(getattr(settings, "FOLLOWUP_CHAT_RATE_LIMIT", (30, 60)))


def _is_staff_user(user: User) -> bool:
    # Conversations are patient contact: doctors and hospital admins only, never annotators.
    return user.role in CLINICAL_ROLES and user.hospital_id is not None


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
        400 when a staff member is of another hospital (``wrong_hospital``) or not a doctor or hospital admin
        (``not_clinician``), a direct conversation does not
        have exactly one, or the patient has no portal account; 403 when the actor may not open it.
    """
    if kind not in Conversation.Kind.values:
        raise ServiceError(_("Unknown conversation kind."), code="invalid_kind")
    staff = list({u.pk: u for u in staff}.values())
    if not staff:
        raise ServiceError(_("A conversation needs at least one staff member."), code="no_staff")
    if kind == Conversation.Kind.DIRECT and len(staff) != 1:
        raise ServiceError(_("A direct conversation has exactly one doctor."), code="direct_needs_one")
    for member in staff:
        if member.hospital_id != patient.hospital_id:
            raise ServiceError(_("Every staff member must work at the patient's hospital."), code="wrong_hospital")
        if not _is_staff_user(member):
            raise ServiceError(_("Only doctors and hospital administrators take part in conversations with "
                                 "patients."),
                               code="not_clinician")
    if patient.user_id is None:
        raise ServiceError(_("The patient has no portal account to chat with."), code="patient_without_account")
    is_patient_actor = actor.pk == patient.user_id
    if not is_patient_actor and actor.pk not in {u.pk for u in staff}:
        raise ServiceError(_("Only a member can open this conversation."), code="not_member", status_code=403)
    if is_patient_actor and kind != Conversation.Kind.DIRECT:
        raise ServiceError(_("A patient opens direct conversations only."), code="forbidden", status_code=403)
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
        raise ServiceError(_("Only staff members can add people."), code="forbidden", status_code=403)
    if conversation.kind != Conversation.Kind.CARE_TEAM:
        raise ServiceError(_("People are added to care-team conversations only."), code="direct_conversation")
    if user.hospital_id != conversation.hospital_id:
        raise ServiceError(_("Only staff of the patient's hospital can join."), code="wrong_hospital")
    if not _is_staff_user(user):
        raise ServiceError(_("Only doctors and hospital administrators take part in conversations with patients."),
                           code="not_clinician")
    last_id = Message.objects.filter(conversation=conversation).aggregate(m=Max("id"))["m"] or 0
    member, _created = ConversationMember.objects.get_or_create(
        conversation=conversation, user=user, defaults={"last_delivered_id": 0, "last_read_id": 0})
    audit_record(actor=actor, action=AuditLog.Action.UPDATE, target_type="conversation", target_id=conversation.pk,
                 detail={"member_added": user.pk, "last_message_id": last_id})
    return member


def _check_member(user: User, conversation: Conversation) -> None:
    if not ConversationMember.objects.filter(conversation=conversation, user=user).exists():
        # Same answer as for a conversation that does not exist.
        raise ServiceError(_("No such conversation."), code="not_found", status_code=404)


def _recent_messages(user: User):
    """Return the queryset of ``user``'s messages within the rate-limit window."""
    _limit, window_s = _rate_limit()
    return Message.objects.filter(sender=user, created_at__gte=timezone.now() - dt.timedelta(seconds=window_s))


def _raise_over_rate(recent: int) -> None:
    limit, window_s = _rate_limit()
    if recent >= limit:
        raise ServiceError(_("Too many messages: at most %(limit)s in %(window_s)s s."),
                           params={"limit": limit, "window_s": window_s}, code="rate_limited", status_code=429)


def _check_rate(user: User) -> None:
    _raise_over_rate(_recent_messages(user).count())


def _members_and_recent_count(conversation_id: int, sender: User) -> tuple[list[int], int]:
    """Return the conversation's member user ids and ``sender``'s message count within the rate-limit
    window, in one query (the count is an uncorrelated subquery, evaluated once)."""
    recent = _recent_messages(sender).order_by().values("sender").annotate(n=Count("id")).values("n")
    rows = list(ConversationMember.objects.filter(conversation_id=conversation_id)
                .annotate(recent=Coalesce(Subquery(recent), 0)).values_list("user_id", "recent"))
    return [user_id for user_id, _n in rows], (rows[0][1] if rows else 0)


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
        raise ServiceError(_("A link is to a report or a study."), code="invalid_link")
    if not ok:
        raise ServiceError(_("The link must be to this patient's own record."), code="invalid_link")


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
        text, a NUL character, or a link to another patient's record.
    """
    body = (body or "").strip()
    client_id = (client_id or "")[:64]
    if "\x00" in body or "\x00" in client_id:
        # The REST API's serializer refuses NUL; the websocket reaches this service directly, and
        # PostgreSQL cannot store NUL in text.
        raise ServiceError(_("A message may not contain NUL characters."), code="invalid_characters")
    if not link_type and body and len(body) <= MAX_MESSAGE_CHARS and chat_store.available():
        return _message_insert_text(sender=sender, conversation=conversation, body=body, client_id=client_id,
                                    to_assistant=to_assistant)
    try:
        return _message_insert(sender=sender, conversation=conversation, body=body, client_id=client_id,
                               link_type=link_type, link_id=link_id, to_assistant=to_assistant)
    except IntegrityError:
        # A retry with a known client_id hit the unique constraint: its transaction is rolled back
        # whole (no savepoint around the INSERT: two round trips less on every ordinary send).
        existing = (Message.objects.filter(conversation=conversation, sender=sender, client_id=client_id).first()
                    if client_id else None)
        if existing is None:
            raise
        return existing


def _message_insert_text(*, sender: User, conversation: Conversation, body: str, client_id: str,
                         to_assistant: bool) -> Message:
    """Store a checked, non-empty text message with :func:`chat_store.message_insert_text` (PostgreSQL: one
    statement instead of the ORM path's six round trips) and raise the ORM path's errors from its answer."""
    limit, window_s = _rate_limit()
    now = timezone.now()
    member_ids, recent, message_id = chat_store.message_insert_text(
        conversation_id=conversation.pk, hospital_id=conversation.hospital_id, sender_id=sender.pk, body=body,
        client_id=client_id, to_assistant=to_assistant, kind=Message.Kind.TEXT, now=now,
        since=now - dt.timedelta(seconds=window_s), limit=limit)
    if sender.pk not in member_ids:
        raise ServiceError(_("No such conversation."), code="not_found", status_code=404)
    _raise_over_rate(recent)
    if message_id is None:
        # A retry: this client_id is stored already (the only other way the INSERT is skipped).
        return Message.objects.get(conversation=conversation, sender=sender, client_id=client_id)
    message = Message(pk=message_id, conversation=conversation, sender=sender, kind=Message.Kind.TEXT, body=body,
                      client_id=client_id, to_assistant=to_assistant, meta={}, created_at=now)
    message._state.adding, message._state.db = False, connection.alias
    # Outside a transaction the statement has committed and this announces it at once; inside one, after it.
    return message_announce(message, member_ids)


@transaction.atomic
def _message_insert(*, sender: User, conversation: Conversation, body: str, client_id: str, link_type: str,
                    link_id: int | None, to_assistant: bool) -> Message:
    """Check and store one message: four statements (members and the sender's recent count in one
    SELECT, the INSERT, the conversation's ``last_message_at``, the audit row) in one transaction."""
    member_ids, recent = _members_and_recent_count(conversation.pk, sender)
    if sender.pk not in member_ids:
        raise ServiceError(_("No such conversation."), code="not_found", status_code=404)
    if link_type:
        if link_id is None:
            raise ServiceError(_("A link needs the record's id."), code="invalid_link")
        _check_link(conversation, link_type, int(link_id), sender)
    elif not body:
        raise ServiceError(_("The message is empty."), code="empty_message")
    if len(body) > MAX_MESSAGE_CHARS:
        raise ServiceError(_("A message has at most %(max_message_chars)s characters."),
                           params={"max_message_chars": MAX_MESSAGE_CHARS}, code="message_too_long")
    _raise_over_rate(recent)
    message = Message(
        conversation=conversation, sender=sender, body=body, client_id=client_id, to_assistant=to_assistant,
        kind=Message.Kind.LINK if link_type else Message.Kind.TEXT, link_type=link_type,
        link_id=int(link_id) if link_type else None,
    )
    message_store(message, member_ids)
    audit_record(actor=sender, action=AuditLog.Action.CREATE, target_type="chat_message", target_id=message.pk,
                 hospital=conversation.hospital, detail={"conversation": conversation.pk, "kind": message.kind})
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
        raise ServiceError(_("An attachment is at most %(max_bytes)s MB."),
                           params={"max_bytes": max_bytes // (1024 * 1024)}, code="attachment_too_large",
                           status_code=413)
    head = upload.read(16)
    upload.seek(0)
    kind = next((v for magic, v in ATTACHMENT_TYPES.items() if head.startswith(magic)), None)
    if kind is None:
        raise ServiceError(_("Only images (PNG, JPEG) and PDF files can be attached."), code="unsupported_attachment",
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
            message = message_store(Message(conversation=conversation, sender=sender, kind=Message.Kind.ATTACHMENT,
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
            raise ServiceError(_("No such conversation."), code="not_found", status_code=404) from None
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


def conversation_unread_reset(*, user: User, conversation: Conversation) -> ConversationMember:
    """Mark everything in a conversation as read for ``user`` (opening it on a page)."""
    last_id = Message.objects.filter(conversation=conversation).aggregate(m=Max("id"))["m"] or 0
    return message_mark(user=user, conversation=conversation, read_id=last_id)
