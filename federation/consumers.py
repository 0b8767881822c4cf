"""Websocket consumer of a federated task's live page: authenticate, join the task's group, relay."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events


@database_sync_to_async
def _can_see_task(user, task_id: int) -> bool:
    from .selectors import task_visible_queryset

    return task_visible_queryset(user).filter(pk=task_id).exists()


class TaskConsumer(AsyncJsonWebsocketConsumer):
    """Push round and status events. Close codes: 4401 not signed in, 4404 not visible."""

    async def connect(self):
        user = self.scope.get("user")
        self.task_id = int(self.scope["url_route"]["kwargs"]["task_id"])
        self.group = events.task_group(self.task_id)
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await _can_see_task(user, self.task_id):
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

    async def federation_event(self, event):
        await self.send_json({"type": f"federation.{event['kind']}", "payload": event["payload"]})
