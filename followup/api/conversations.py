"""Conversations and messages: the inbox, opening a conversation, members, paged and searched history,
sending text, links and attachments, receipts and the knowledge-graph assistant. A message has one
JSON form, :func:`followup.events.message_payload`, shared with the websocket."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ErrorSerializer, ServiceError
from portal.models import AuditLog, Role, User
from portal.permissions import IsClinicianOrPatient
from portal.services import audit_record

from .. import selectors, services
from ..events import message_payload
from ..models import Conversation, Message
from .common import ERRORS, READ_ERRORS, PatientBriefSerializer, UserBriefSerializer


def member_payload(member) -> dict:
    return {"user_id": member.user_id, "name": str(member.user), "role": member.user.role,
            "last_delivered_id": member.last_delivered_id, "last_read_id": member.last_read_id}


def conversation_payload(conversation: Conversation, *, user: User) -> dict:
    members = list(conversation.members.all())
    data = {
        "id": conversation.pk, "kind": conversation.kind, "title": conversation.title,
        "patient": {"id": conversation.patient_id, "mrn": conversation.patient.mrn, "name": conversation.patient.name},
        "members": [member_payload(m) for m in members],
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
        "url": reverse("followup:conversation", args=[conversation.pk]),
        "websocket": f"/ws/followup/conversations/{conversation.pk}/",
    }
    if hasattr(conversation, "unread_count"):
        data["unread_count"] = conversation.unread_count
    if hasattr(conversation, "last_message"):
        last = conversation.last_message
        data["last_message"] = None if last is None else {"id": last.pk, "kind": last.kind,
                                                           "preview": last.body[:80], "created_at": last.created_at.isoformat()}
    return data


# --- schema components ------------------------------------------------------------------------

class MessageAttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="The file name as uploaded.")
    content_type = serializers.CharField()
    size_bytes = serializers.IntegerField()
    url = serializers.CharField(help_text="Download address (members only).")


class MessageLinkSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=Message.LinkType.choices)
    id = serializers.IntegerField(allow_null=True)


class MessageSerializer(serializers.Serializer):
    """One message, as the API returns it and the websocket sends it (``chat.message``)."""

    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Message.Kind.choices)
    body = serializers.CharField(allow_blank=True)
    sender = UserBriefSerializer(allow_null=True, help_text="None for system messages and the assistant.")
    client_id = serializers.CharField(allow_blank=True, help_text="The sender's id for idempotent retries.")
    to_assistant = serializers.BooleanField()
    created_at = serializers.DateTimeField(allow_null=True)
    meta = serializers.DictField(help_text="Assistant answers: facts, entities, hand-over; empty otherwise.")
    attachment = MessageAttachmentSerializer(allow_null=True)
    link = MessageLinkSerializer(allow_null=True, help_text="A link to one of the patient's reports or studies.")


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    has_more = serializers.BooleanField(help_text="True when a full page came back: ask again to go further.")


class ConversationMemberSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    last_delivered_id = serializers.IntegerField(help_text="The last message id delivered to this member.")
    last_read_id = serializers.IntegerField(help_text="The last message id this member has read.")


class LastMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Message.Kind.choices)
    preview = serializers.CharField(allow_blank=True, help_text="The first 80 characters of the body.")
    created_at = serializers.DateTimeField()


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    title = serializers.CharField(allow_blank=True)
    patient = PatientBriefSerializer()
    members = ConversationMemberSerializer(many=True)
    last_message_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField(help_text="The conversation's chat page.")
    websocket = serializers.CharField(help_text="The websocket path of the conversation.")
    unread_count = serializers.IntegerField(required=False, help_text="Messages of others not yet read (the inbox only).")
    last_message = LastMessageSerializer(required=False, allow_null=True, help_text="The inbox only.")


class InboxSerializer(serializers.Serializer):
    results = ConversationSerializer(many=True)
    unread_total = serializers.IntegerField()
    notifications_unread = serializers.IntegerField()


class AssistantExchangeSerializer(serializers.Serializer):
    question = MessageSerializer()
    answer = MessageSerializer()


class ReceiptSerializer(serializers.Serializer):
    last_delivered_id = serializers.IntegerField()
    last_read_id = serializers.IntegerField()


# --- views ------------------------------------------------------------------------------------

class ConversationListApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    class InputSerializer(serializers.Serializer):
        patient_id = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=Conversation.Kind.choices, default=Conversation.Kind.DIRECT)
        staff_ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
        title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")

    @extend_schema(operation_id="followup_conversations_list", responses={200: InboxSerializer},
                   summary="My conversations with unread counts (the inbox)")
    def get(self, request):
        conversations = selectors.conversation_list(user=request.user)
        return Response({
            "results": [conversation_payload(c, user=request.user) for c in conversations],
            "unread_total": sum(c.unread_count for c in conversations),
            "notifications_unread": selectors.notification_unread_count(user=request.user),
        })

    @extend_schema(request=InputSerializer, responses={201: ConversationSerializer, **ERRORS},
                   summary="Open a conversation about a patient")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patient = selectors.patient_get(user=request.user, patient_id=data.validated_data["patient_id"])
        staff = list(User.objects.filter(pk__in=data.validated_data["staff_ids"]))
        if len(staff) != len(set(data.validated_data["staff_ids"])):
            raise ServiceError(_("A staff member does not exist."), code="unknown_user")
        conversation = services.conversation_create(actor=request.user, patient=patient, staff=staff,
                                                    kind=data.validated_data["kind"], title=data.validated_data["title"])
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation.pk)
        return Response(conversation_payload(conversation, user=request.user), status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    @extend_schema(responses={200: ConversationSerializer, **READ_ERRORS}, summary="A conversation and its members")
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(conversation, user=request.user))


class ConversationMembersApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    class InputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={201: ConversationSerializer, **ERRORS},
                   summary="Add a staff member to a care-team conversation")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(pk=data.validated_data["user_id"]).first()
        if user is None:
            raise ServiceError(_("No such user."), code="unknown_user")
        services.conversation_member_add(actor=request.user, conversation=conversation, user=user)
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(conversation, user=request.user), status=status.HTTP_201_CREATED)


class MessageListApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(required=False, allow_blank=True, max_length=services.MAX_MESSAGE_CHARS, default="")
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
        link_type = serializers.ChoiceField(choices=Message.LinkType.choices, required=False, allow_blank=True, default="")
        link_id = serializers.IntegerField(required=False, allow_null=True, default=None)

    @extend_schema(
        parameters=[OpenApiParameter("after_id", int), OpenApiParameter("before_id", int),
                    OpenApiParameter("limit", int), OpenApiParameter("q", str, description="search text")],
        responses={200: MessagePageSerializer, **ERRORS},
        summary="Messages, paged by id (after_id to resume, before_id to scroll back), or searched")
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        try:
            after = int(request.query_params["after_id"]) if "after_id" in request.query_params else None
            before = int(request.query_params["before_id"]) if "before_id" in request.query_params else None
            limit = int(request.query_params.get("limit", 50))
        except ValueError:
            raise ServiceError(_("after_id, before_id and limit are whole numbers."), code="invalid_request") from None
        query = request.query_params.get("q", "").strip()[:100]
        messages = selectors.message_list(conversation=conversation, after_id=after, before_id=before, limit=limit,
                                          query=query)
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="conversation",
                     target_id=conversation.pk, hospital=conversation.hospital,
                     detail={"messages": len(messages), "search": bool(query)})
        return Response({"results": [message_payload(m) for m in messages],
                         "has_more": len(messages) == max(1, min(limit, selectors.MESSAGE_PAGE_MAX))})

    @extend_schema(request=InputSerializer, responses={201: MessageSerializer, 429: ErrorSerializer, **ERRORS},
                   summary="Send a message (stored, then broadcast)")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.message_send(sender=request.user, conversation=conversation, **data.validated_data)
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class AssistantAskApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    class InputSerializer(serializers.Serializer):
        question = serializers.CharField(max_length=300)
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")

    @extend_schema(request=InputSerializer, responses={201: AssistantExchangeSerializer, **ERRORS},
                   summary="Ask the knowledge-graph assistant in a conversation")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        question, answer = services.assistant_ask(user=request.user, conversation=conversation, **data.validated_data)
        return Response({"question": message_payload(question), "answer": message_payload(answer)},
                        status=status.HTTP_201_CREATED)


class ConversationReadApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    class InputSerializer(serializers.Serializer):
        read_id = serializers.IntegerField(required=False, min_value=0)
        delivered_id = serializers.IntegerField(required=False, min_value=0)

    @extend_schema(request=InputSerializer, responses={200: ReceiptSerializer, **ERRORS},
                   summary="Move my delivery/read marks (receipts)")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.message_mark(user=request.user, conversation=conversation, **data.validated_data)
        return Response({"last_delivered_id": member.last_delivered_id, "last_read_id": member.last_read_id})


class AttachmentUploadApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")

    @extend_schema(request=InputSerializer, responses={201: MessageSerializer, 413: ErrorSerializer, 415: ErrorSerializer, **ERRORS},
                   summary="Attach an image (PNG, JPEG) or a PDF")
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.attachment_send(sender=request.user, conversation=conversation,
                                           upload=data.validated_data["file"], client_id=data.validated_data["client_id"])
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class AttachmentDownloadApi(APIView):
    permission_classes = [IsClinicianOrPatient]
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="The file with its stored content type (image/png, "
                                                        "image/jpeg or application/pdf)."), **READ_ERRORS},
                   summary="An attachment (members only)")
    def get(self, request, attachment_id: int):
        attachment = selectors.attachment_get(user=request.user, attachment_id=attachment_id)
        data = services.attachment_read(user=request.user, attachment=attachment)
        response = HttpResponse(data, content_type=attachment.content_type)
        disposition = "inline" if attachment.content_type.startswith("image/") else "attachment"
        response["Content-Disposition"] = f'{disposition}; filename="attachment-{attachment.pk}"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
