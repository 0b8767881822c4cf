"""Websocket routes of the followup app."""

websocket_urlpatterns: list = []
