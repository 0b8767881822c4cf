"""Websocket routes of the federation app."""

websocket_urlpatterns: list = []
