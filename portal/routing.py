"""Websocket routes of every app, collected in one place."""

from annotation.routing import websocket_urlpatterns as annotation_ws
from federation.routing import websocket_urlpatterns as federation_ws
from followup.routing import websocket_urlpatterns as followup_ws

websocket_urlpatterns = [*annotation_ws, *federation_ws, *followup_ws]
