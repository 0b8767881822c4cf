"""Websocket routes of the annotation app."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/studies/<int:study_id>/", consumers.StudyConsumer.as_asgi()),
    path("ws/training-runs/<int:run_id>/", consumers.TrainingRunConsumer.as_asgi()),
]
