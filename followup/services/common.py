"""Helpers that several follow-up services share: storing a message, the members of a conversation
and the clinician check.

They are writes or checks made inside a caller's transaction, not operations of their own, so
:mod:`followup.services` does not re-export them.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from annotation.models import Patient
from portal.api_errors import ServiceError
from portal.models import Role, User

from .. import events
from ..models import Conversation, ConversationMember, Message

logger = logging.getLogger(__name__)


def conversation_member_ids(conversation_id: int) -> list[int]:
    """Return the user ids of a conversation's members."""
    return list(ConversationMember.objects.filter(conversation_id=conversation_id).values_list("user_id", flat=True))


def message_store(message: Message, member_ids: list[int] | None = None) -> Message:
    """Save a built message, stamp the conversation and broadcast it to ``member_ids`` after commit.

    ``member_ids`` defaults to the conversation's members (one query more).
    """
    # Foreign keys were loaded by the caller and the client-id constraint is enforced by the
    # database (the caller catches the IntegrityError): skip the three existence queries full_clean would add.
    message.full_clean(exclude=["conversation", "sender", "attachment"], validate_constraints=False)
    message.save()
    Conversation.objects.filter(pk=message.conversation_id).update(last_message_at=message.created_at)
    # Your own messages never count as unread (the selectors leave them out), so the sender's read
    # mark is not moved here: one write less per message.
    if member_ids is None:
        member_ids = conversation_member_ids(message.conversation_id)
    return message_announce(message, member_ids)


def message_announce(message: Message, member_ids: list[int]) -> Message:
    """Broadcast a stored message to ``member_ids`` once its transaction has committed (at once outside one).

    The row is committed before anyone hears of it; the payload is built from the saved instance.
    """
    transaction.on_commit(lambda: events.send_message(message, member_ids))
    logger.info("message %s stored in conversation %s (%d chars)", message.pk, message.conversation_id,
                len(message.body))
    return message


def clinician_check(actor: User, patient: Patient) -> None:
    """Check that ``actor`` is a platform admin or a doctor or admin of the patient's hospital.

    Raises
    ------
    ServiceError
        403 otherwise.
    """
    if not (actor.is_platform_admin or (actor.role in (Role.DOCTOR, Role.HOSPITAL_ADMIN)
                                         and actor.hospital_id == patient.hospital_id)):
        raise ServiceError(_("Only the patient's doctors can do this."), code="forbidden", status_code=403)
