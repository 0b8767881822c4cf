"""Websocket routes of the federation app."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/federation/tasks/<int:task_id>/", consumers.TaskConsumer.as_asgi()),
]
