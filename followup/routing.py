"""Websocket routes of the followup app."""

from django.urls import path

from . import consumers
from .auth import JwtSubprotocolAuthMiddleware

websocket_urlpatterns = [
    path("ws/followup/conversations/<int:conversation_id>/",
         JwtSubprotocolAuthMiddleware(consumers.ConversationConsumer.as_asgi())),
    path("ws/followup/inbox/", JwtSubprotocolAuthMiddleware(consumers.InboxConsumer.as_asgi())),
]
