"""Notifications and how they reach me: the in-app list, marking one read, and my mobile number and
reminder channels (e-mail, SMS)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..models import Notification
from .common import ERRORS, READ_ERRORS


def notification_payload(n) -> dict:
    return {"id": n.pk, "kind": n.kind, "title": n.display_title, "body": n.body, "url": n.url,
            "created_at": n.created_at.isoformat(), "read": n.read_at is not None, "delivered_via": n.delivered_via}


class NotificationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Notification.Kind.choices)
    title = serializers.CharField()
    body = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_blank=True, help_text="The page to open (empty when none).")
    created_at = serializers.DateTimeField()
    read = serializers.BooleanField()
    delivered_via = serializers.ListField(child=serializers.CharField(),
                                          help_text="Where it went: in_app, then each backend that sent it (console, email, sms).")


class NotificationListSerializer(serializers.Serializer):
    results = NotificationSerializer(many=True)
    unread = serializers.IntegerField()


class ContactPreferenceSerializer(serializers.Serializer):
    phone = serializers.CharField(allow_blank=True)
    email_enabled = serializers.BooleanField()
    sms_enabled = serializers.BooleanField()


class NotificationListApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("unread", bool)], responses={200: NotificationListSerializer},
                   summary="My notifications")
    def get(self, request):
        rows = selectors.notification_list(user=request.user, unread_only=request.query_params.get("unread") == "true")
        return Response({"results": [notification_payload(n) for n in rows],
                         "unread": selectors.notification_unread_count(user=request.user)})


class NotificationReadApi(APIView):
    @extend_schema(request=None, responses={200: NotificationSerializer, **READ_ERRORS}, summary="Mark a notification read")
    def post(self, request, notification_id: int):
        notification = selectors.notification_get(user=request.user, notification_id=notification_id)
        return Response(notification_payload(services.notification_mark_read(user=request.user, notification=notification)))


class ContactPreferenceApi(APIView):
    class InputSerializer(serializers.Serializer):
        phone = serializers.RegexField(r"^\+?[0-9 \-]{0,31}$", required=False, allow_blank=True, default="")
        email_enabled = serializers.BooleanField(default=True)
        sms_enabled = serializers.BooleanField(default=True)

    @extend_schema(request=InputSerializer, responses={200: ContactPreferenceSerializer, **ERRORS},
                   summary="Set my mobile number and reminder channels")
    def put(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contact = services.contact_preference_set(user=request.user, **data.validated_data)
        return Response({"phone": contact.phone, "email_enabled": contact.email_enabled, "sms_enabled": contact.sms_enabled})
