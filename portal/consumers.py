"""A base for websocket consumers that push one object's events to the people allowed to see it."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer


class VisibleObjectConsumer(AsyncJsonWebsocketConsumer):
    """Join the channel-layer group of the object named in the URL once the user may see it.

    Subclasses name the URL keyword (``url_kwarg``) and define :meth:`group_name` and
    :meth:`is_visible` (a synchronous database check, run in a thread). Close codes: 4401 when the
    connection is not signed in, 4404 when the object does not exist or is not visible (the same code
    for both, as the API's 404). A ``{"type": "ping"}`` is answered with ``{"type": "pong"}``; the pages
    only listen and re-read state through the API.
    """

    url_kwarg: str = ""

    def group_name(self, object_id: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_visible(self, user, object_id: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    async def connect(self):
        user = self.scope.get("user")
        self.object_id = int(self.scope["url_route"]["kwargs"][self.url_kwarg])
        self.group = self.group_name(self.object_id)
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(self.is_visible)(user, self.object_id):
            await self.close(code=4404)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
