"""Real-time events of the follow-up app: group names and payloads. Only services send them,
after their transaction has committed, so a client that re-reads through the API sees the same rows."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer

from .models import Message

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: int) -> str:
    """Return the Channels group that every open chat page of a conversation joins."""
    return f"followup.conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    """Return the Channels group of one user's inbox (unread badges, notifications)."""
    return f"followup.user.{user_id}"


def message_payload(message: Message) -> dict:
    """Return the JSON form of a message shared by the API and the websocket (no PHI beyond the body)."""
    sender = message.sender
    payload = {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "kind": message.kind,
        "body": message.body,
        "sender": None if sender is None else {"id": sender.pk, "name": str(sender), "role": sender.role},
        "client_id": message.client_id,
        "to_assistant": message.to_assistant,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "meta": message.meta or {},
        "attachment": None,
        "link": None,
    }
    if message.attachment_id:
        attachment = message.attachment
        payload["attachment"] = {
            "id": attachment.pk,
            "name": attachment.original_name,
            "content_type": attachment.content_type,
            "size_bytes": attachment.size_bytes,
            "url": f"/api/followup/attachments/{attachment.pk}/",
        }
    if message.link_type:
        payload["link"] = {"type": message.link_type, "id": message.link_id}
    return payload


def _main_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running event loop this thread works for (a ``sync_to_async`` thread of daphne's
    loop), or None in a plain sync context (a Celery task, a management command, a test)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop if loop.is_running() and not loop.is_closed() else None


class _OrderedSender:
    """The group sends of one event loop, made one after another by one task of that loop.

    A service called from a socket runs in a ``database_sync_to_async`` thread of daphne's loop (the
    chat's own threads, or the one thread Django's other synchronous calls share); waiting there for
    Redis (three round trips per ``group_send``) held up the database work of every other socket
    queued behind it and capped one daphne process at about 80 stored messages/s. The thread now only
    queues the event (after the commit, as before) and goes on; this task sends the events in the
    order they were queued, so a conversation's events leave the process in commit order. Should the
    process die before sending, the rows are stored all the same and a reconnecting page reads them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            group, event = await self.queue.get()
            layer = get_channel_layer()
            try:
                await layer.group_send(group, event)
            except Exception:  # noqa: BLE001 - one failed send must not stop the others
                # The row is stored; a client that missed the event re-reads it ("resume", the API).
                logger.exception("group send to %s failed", group.split(".")[1])


_senders: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _OrderedSender]" = weakref.WeakKeyDictionary()


def _enqueue(loop: asyncio.AbstractEventLoop, group: str, event: dict) -> None:
    def put() -> None:
        sender = _senders.get(loop)
        if sender is None or sender.task.done():
            sender = _senders[loop] = _OrderedSender(loop)
        sender.queue.put_nowait((group, event))

    # call_soon_threadsafe keeps the calling thread's order; the queue is touched on the loop only.
    loop.call_soon_threadsafe(put)


def _send(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _main_loop()
    if loop is not None:
        _enqueue(loop, group, event)
    else:
        async_to_sync(layer.group_send)(group, event)


def send_message(message: Message, member_user_ids: list[int]) -> None:
    """Broadcast a stored message to the conversation and nudge each member's inbox."""
    payload = message_payload(message)
    _send(conversation_group(message.conversation_id), {"type": "chat.message", "message": payload})
    for user_id in member_user_ids:
        if user_id == message.sender_id:
            continue  # your own message changes nothing in your inbox
        _send(user_group(user_id), {"type": "inbox.update", "conversation_id": message.conversation_id,
                                    "message_id": message.pk})


def send_receipt(*, conversation_id: int, user_id: int, delivered_id: int, read_id: int) -> None:
    """Tell the conversation how far a member has received and read."""
    _send(conversation_group(conversation_id), {
        "type": "chat.receipt", "user_id": user_id, "delivered_id": delivered_id, "read_id": read_id})
    _send(user_group(user_id), {"type": "inbox.update", "conversation_id": conversation_id, "message_id": None})


def send_notification(*, user_id: int, notification_id: int, kind: str, title: str, url: str,
                      title_msgid: str = "", title_params: dict | None = None) -> None:
    """Push a new in-app notification to the user's open pages.

    ``title`` is in the default language; with ``title_msgid`` each open page's connection shows
    the title in its own language (the consumer translates it).
    """
    _send(user_group(user_id), {"type": "inbox.notification", "notification": {
        "id": notification_id, "kind": kind, "title": title, "url": url},
        "title_msgid": title_msgid, "title_params": title_params or {}})
