"""The knowledge-graph assistant in a conversation: a patient's question answered from the graph and
handed over to the doctors."""

from __future__ import annotations

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from portal.models import AuditLog, Role, User
from portal.services import audit_record

from ..models import Conversation, ConversationMember, Message, Notification
from .common import message_store
from .conversations import message_send
from .notifications import notification_create



def assistant_ask(*, user: User, conversation: Conversation, question: str, client_id: str = "",
                  language: str | None = None) -> tuple[Message, Message]:
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
    language = "en" if (language or translation.get_language() or "").lower().startswith("en") else "zh-hans"
    context = Conversation.objects.values_list("assistant_context", flat=True).get(pk=conversation.pk) or None
    meta = {"question_id": question_message.pk, "handover": True, "language": language}
    try:
        answer = kg_answer(question_message.body[:MAX_QUESTION_CHARS], context=context, channel=QuestionLog.Channel.CHAT,
                           language=language)
        text = answer.text
        # A question the assistant did not understand is said so (with examples), never answered
        # with the entity of an earlier question (issue 16).
        meta.update(answered=bool(answer.answered), understood=answer.understood, red_flags=list(answer.red_flags),
                    entities=[e.name for e in answer.entities][:10])
        new_context = answer.context
    except GraphError:
        with translation.override(language):
            text = _("The knowledge-graph assistant cannot answer just now.")
        meta.update(answered=False, red_flags=[], unavailable=True)
        new_context = context or {}
    with translation.override(language):
        handover = _("The answer above was written automatically by the knowledge-graph assistant. It is for "
                     "reference only and is no diagnosis. Your doctor sees this conversation and will reply.")
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(assistant_context=new_context or {})
        answer_message = message_store(Message(conversation=conversation, sender=None, kind=Message.Kind.ASSISTANT,
                                                body=f"{text}\n\n{handover}", meta=meta))
        audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="chat_message", target_id=answer_message.pk,
                     hospital=conversation.hospital, detail={"conversation": conversation.pk, "kind": "assistant"},
                     channel="worker")
        staff_ids = list(ConversationMember.objects.filter(conversation=conversation)
                         .exclude(user_id=user.pk).exclude(user__role=Role.PATIENT).values_list("user_id", flat=True))
        for staff_id in staff_ids:
            notification_create(user_id=staff_id, kind=Notification.Kind.HANDOVER,
                                title_msgid=gettext_noop("A patient asked the knowledge-graph assistant: please read and reply"),
                                url=f"/followup/conversations/{conversation.pk}/",
                                dedupe_key=f"handover:{question_message.pk}", send_external=False)
    return question_message, answer_message
