"""Real-time events of the federation app: group names and payloads. Only services send them."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def task_group(task_id: int) -> str:
    """Return the Channels group that a task's live page joins."""
    return f"federation.task.{task_id}"


def send_task_event(task_id: int, kind: str, payload: dict) -> None:
    """Notify a task page (``kind``: ``round`` or ``status``); the rows are committed already."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(task_group(task_id), {"type": "federation.event", "kind": kind, "payload": payload})
