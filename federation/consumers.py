"""Websocket consumer of a federated task's live page: authenticate, join the task's group, relay."""

from portal.consumers import VisibleObjectConsumer

from . import events


class TaskConsumer(VisibleObjectConsumer):
    """Push round and status events. Close codes: 4401 not signed in, 4404 not visible."""

    url_kwarg = "task_id"

    def group_name(self, object_id: int) -> str:
        return events.task_group(object_id)

    def is_visible(self, user, object_id: int) -> bool:
        from .selectors import task_visible_queryset

        return task_visible_queryset(user).filter(pk=object_id).exists()

    async def federation_event(self, event):
        await self.send_json({"type": f"federation.{event['kind']}", "payload": event["payload"]})
