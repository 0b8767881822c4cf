"""Websocket routes of every app, collected in one place."""

from annotation.routing import websocket_urlpatterns as annotation_ws

websocket_urlpatterns = [*annotation_ws]
