"""Websocket consumer of the study page: authenticate, join the study's group, relay events."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events


@database_sync_to_async
def _can_see_study(user, study_id: int) -> bool:
    from .selectors import study_visible_queryset

    return study_visible_queryset(user).filter(pk=study_id).exists()


class StudyConsumer(AsyncJsonWebsocketConsumer):
    """Push inference progress to a study page. Close codes: 4401 not signed in, 4404 not visible."""

    async def connect(self):
        user = self.scope.get("user")
        self.study_id = int(self.scope["url_route"]["kwargs"]["study_id"])
        self.group = events.study_group(self.study_id)
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await _can_see_study(user, self.study_id):
            await self.close(code=4404)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The page only listens; state is re-read through the API.
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def inference_progress(self, event):
        await self.send_json({"type": "inference.progress", "run": event["run"]})
