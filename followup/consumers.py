"""Websocket consumers of the follow-up chat: authenticate, join groups, call services, relay events.

Protocol of ``/ws/followup/conversations/<id>/`` (JSON frames):

client → server
    ``{"type": "resume", "last_seen_id": N}``   replay every stored message with id > N (in pages of
                                                200, then ``{"type": "resumed", "last_id": …}``)
    ``{"type": "send", "client_id": "…", "body": "…"}`` (optional ``link_type``/``link_id``)
    ``{"type": "ask_assistant", "client_id": "…", "question": "…"}``
    ``{"type": "delivered", "up_to": N}`` / ``{"type": "read", "up_to": N}``
    ``{"type": "typing", "is_typing": true}``
server → client
    ``{"type": "message", "message": {…}}`` (each id once per connection; a replay in id order, live
                                            messages in commit order, which may differ from id order
                                            between two senders: the page orders by id)
    ``{"type": "ack", "client_id": "…", "message_id": N}`` once the message is stored
    ``{"type": "receipt", "user_id", "delivered_id", "read_id"}``, ``{"type": "typing", …}``
    ``{"type": "error", "code", "message", "client_id"?}``

Close codes: 4401 not signed in, 4404 not a member (the same for a conversation that does not exist).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import close_old_connections
from django.http import Http404
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.i18n import language_from_scope

from . import events

REPLAY_PAGE = 200
SENT_IDS_KEPT = 2000


def _accepted_subprotocol(scope) -> str | None:
    from .auth import SUBPROTOCOL

    return SUBPROTOCOL if SUBPROTOCOL in (scope.get("subprotocols") or []) else None


# A socket's database work (joining, one call per frame) runs in one of CHAT_DB_THREADS threads of the
# process (thread_sensitive=False): with the single thread every socket of a process shared, one
# process stored at most as many messages as one connection's round trips to the database allow in a
# second, and a burst (or a morning's worth of sockets joining) queued behind it for seconds. Each
# thread keeps to its own connection (PostgreSQL: from the process's pool, DATABASE_POOL_MAX_SIZE must
# exceed CHAT_DB_THREADS); a pool of its own, not the loop's default executor, so the number of
# connections is bounded whatever else runs in threads. Transactions of two threads may commit in
# another order than their ids; chat_message copes with that.
CHAT_DB_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=CHAT_DB_THREADS, thread_name_prefix="followup-chat-db")


def _in_chat_thread(func):
    """Return an awaitable version of ``func`` that runs in the chat's database threads."""
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            # database_sync_to_async does this too, but channels' test communicator turns its call into
            # a no-op: without this a chat thread would keep a pool connection between tests.
            close_old_connections()

    return database_sync_to_async(run, thread_sensitive=False, executor=_executor)


def _conversation_for_in_thread(user, conversation_id: int):
    """Return the conversation when ``user`` is a member of it, else None."""
    from .selectors import conversation_get

    try:
        return conversation_get(user=user, conversation_id=conversation_id)
    except Http404:
        return None


_conversation_for = _in_chat_thread(_conversation_for_in_thread)


def _backlog_in_thread(user, conversation_id: int, after_id: int) -> list[dict]:
    from .selectors import conversation_get, message_list

    conversation = conversation_get(user=user, conversation_id=conversation_id)
    return [events.message_payload(m) for m in message_list(conversation=conversation, after_id=after_id,
                                                             limit=REPLAY_PAGE)]


_backlog = _in_chat_thread(_backlog_in_thread)


def _call_in_thread(user, conversation, action: str, content: dict, language: str):
    # Each service checks membership again in its own transaction (a member may have been removed);
    # its messages (errors, the assistant's answer) are in the connection's language.
    with translation.override(language):
        return _call_in_language(user, conversation, action, content, language)


_call = _in_chat_thread(_call_in_thread)


def _call_in_language(user, conversation, action: str, content: dict, language: str):
    from . import services

    if action == "send":
        link_id = content.get("link_id")
        return services.message_send(
            sender=user, conversation=conversation, body=str(content.get("body", "")),
            client_id=str(content.get("client_id", "")), link_type=str(content.get("link_type", "") or ""),
            link_id=int(link_id) if isinstance(link_id, (int, str)) and str(link_id).isdigit() else None)
    if action == "ask_assistant":
        question, _answer = services.assistant_ask(user=user, conversation=conversation,
                                                   question=str(content.get("question", "")),
                                                   client_id=str(content.get("client_id", "")),
                                                   language=language)
        return question
    if action in ("delivered", "read"):
        up_to = content.get("up_to")
        if not isinstance(up_to, int) or up_to < 0:
            raise ServiceError(_("up_to is a message id."), code="invalid_request")
        return services.message_mark(user=user, conversation=conversation,
                                     **({"read_id": up_to} if action == "read" else {"delivered_id": up_to}))
    raise ServiceError(_("Unknown request type."), code="unknown_type")


class _LoopOnlyConsumer(AsyncJsonWebsocketConsumer):
    """A consumer whose handlers never use the ORM on the event loop.

    Channels' ``dispatch`` runs ``close_old_connections`` in the process's one shared synchronous
    thread before every handler — for each frame and each group event of every socket, all queued
    behind that thread's other work (sessions, user lookups of handshakes). These consumers do their
    database work in :data:`_executor`'s threads, which close their connections themselves
    (:func:`_in_chat_thread`), so the hop is skipped: one thread switch less per event.
    """

    async def dispatch(self, message):
        from channels.consumer import get_handler_name

        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class ConversationConsumer(_LoopOnlyConsumer):
    """One open chat of one member. Messages are stored by services before they are broadcast; this
    consumer only relays them, each id at most once and in order."""

    async def connect(self):
        user = self.scope.get("user")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        self.last_sent_id = 0
        self.floor_id = 0  # ids up to this one the page has (its "resume") or are long past
        self.sent_ids: set[int] = set()  # ids above floor_id sent on this connection
        self.replaying = False
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.conversation = await _conversation_for(user, self.conversation_id)
        if self.conversation is None:
            await self.close(code=4404)
            return
        self.user = user
        self.language = language_from_scope(self.scope)
        self.group = events.conversation_group(self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=_accepted_subprotocol(self.scope))

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_send(self.group, {
                "type": "chat.typing", "user_id": self.user.pk, "name": str(self.user), "is_typing": False,
                "sender_channel": self.channel_name})

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self._send_error("invalid_request", _("A frame is a JSON object."))
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "resume":
            await self._resume(content.get("last_seen_id", 0))
        elif kind == "typing":
            await self.channel_layer.group_send(self.group, {
                "type": "chat.typing", "user_id": self.user.pk, "name": str(self.user),
                "is_typing": bool(content.get("is_typing")), "sender_channel": self.channel_name})
        elif kind in ("send", "ask_assistant", "delivered", "read"):
            try:
                result = await _call(self.user, self.conversation, kind, content, self.language)
            except ServiceError as exc:
                if exc.status_code == 404:  # no longer a member
                    await self.close(code=4404)
                    return
                with translation.override(self.language):
                    message = exc.message
                await self._send_error(exc.code, message, client_id=content.get("client_id"))
                return
            except Http404:
                await self.close(code=4404)
                return
            if kind in ("send", "ask_assistant"):
                await self.send_json({"type": "ack", "client_id": content.get("client_id"), "message_id": result.pk})
        else:
            await self._send_error("unknown_type", _("Unknown request type."))

    async def _send_error(self, code: str, message, **extra):
        # Error frames are in the connection's language, like the API's error bodies.
        with translation.override(self.language):
            frame = {"type": "error", "code": code, "message": str(message), **extra}
        await self.send_json(frame)

    async def _resume(self, last_seen_id):
        if isinstance(last_seen_id, bool) or not isinstance(last_seen_id, int) or last_seen_id < 0:
            await self._send_error("invalid_request", _("last_seen_id is a message id."))
            return
        # Events that arrive meanwhile wait in this consumer's queue (handlers run one at a time), and
        # chat_message skips ids already replayed, so nothing is lost or shown twice.
        after = max(last_seen_id, 0)
        self.last_sent_id = after
        self.floor_id, self.sent_ids = after, set()
        while True:
            try:
                page = await _backlog(self.user, self.conversation_id, after)
            except Http404:
                await self.close(code=4404)
                return
            for payload in page:
                await self._send_message(payload)
            if len(page) < REPLAY_PAGE:
                break
            after = page[-1]["id"]
        await self.send_json({"type": "resumed", "last_id": self.last_sent_id})

    async def _send_message(self, payload: dict):
        message_id = payload["id"]
        if message_id <= self.floor_id or message_id in self.sent_ids:
            return
        self.sent_ids.add(message_id)
        self.last_sent_id = max(self.last_sent_id, message_id)
        if len(self.sent_ids) > SENT_IDS_KEPT:
            # Out-of-order arrivals are a few ids apart (transactions committing at the same time),
            # so the oldest half can be forgotten behind the floor.
            oldest = sorted(self.sent_ids)[:SENT_IDS_KEPT // 2]
            self.floor_id = oldest[-1]
            self.sent_ids.difference_update(oldest)
        await self.send_json({"type": "message", "message": payload})

    async def chat_message(self, event):
        # Message ids are global, so ids within one conversation are not contiguous and a gap says
        # nothing; a client that suspects a loss (reconnect, wake-up) sends "resume" with its last id.
        # Live events come in commit order, which two senders' concurrent transactions (threads,
        # daphne processes) may make differ from id order: a lower id after a higher one is still
        # sent (once), and the page places each message by its id.
        await self._send_message(event["message"])

    async def chat_receipt(self, event):
        await self.send_json({"type": "receipt", "user_id": event["user_id"], "delivered_id": event["delivered_id"],
                              "read_id": event["read_id"]})

    async def chat_typing(self, event):
        if event.get("sender_channel") == self.channel_name:
            return
        await self.send_json({"type": "typing", "user_id": event["user_id"], "name": event["name"],
                              "is_typing": event["is_typing"]})


class InboxConsumer(_LoopOnlyConsumer):
    """A signed-in user's inbox: pushes ``inbox.update`` (unread counts changed) and notifications."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = events.user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=_accepted_subprotocol(self.scope))

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def inbox_update(self, event):
        await self.send_json({"type": "inbox.update", "conversation_id": event["conversation_id"],
                              "message_id": event["message_id"]})

    async def inbox_notification(self, event):
        notification = dict(event["notification"])
        if event.get("title_msgid"):
            from .models import notification_title

            with translation.override(language_from_scope(self.scope)):
                notification["title"] = notification_title(event["title_msgid"], event.get("title_params"))
        await self.send_json({"type": "notification", "notification": notification})
